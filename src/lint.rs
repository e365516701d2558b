//! Offline policy validation for GitOps CI: what `kubectl apply` would refuse (the CRD's OpenAPI
//! schema, its CEL rules, unknown fields as strict field validation reports them) and what the
//! operator would report as `InvalidSpec`, for every AppHealthPolicy in multi-document YAML files.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::{api::AppHealthPolicy, settings::validate};

/// One problem, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub file: String,
    /// 1-based line of the field (or of the document when the field cannot be found).
    pub line: usize,
    /// The field, as a dotted path (`spec.probe.periodSeconds`), or "" for the whole document.
    pub field: String,
    pub problem: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}:{}: {}", self.file, self.line, self.problem)
        } else {
            write!(f, "{}:{}: {}: {}", self.file, self.line, self.field, self.problem)
        }
    }
}

/// What a lint run found.
#[derive(Debug, Default)]
pub struct Report {
    pub files: usize,
    pub policies: usize,
    pub findings: Vec<Finding>,
}

/// The checks, built once.
pub struct Linter {
    schema: Value,
    validator: jsonschema::Validator,
}

/// A document of a YAML file and the line it starts on.
struct Document<'a> {
    text: &'a str,
    first_line: usize,
}

/// Splits multi-document YAML on `---` lines, keeping where each document starts.
fn documents(text: &str) -> Vec<Document<'_>> {
    let mut docs = Vec::new();
    let (mut start, mut first_line) = (0, 1);
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_end() == "---" || line.starts_with("--- ") {
            docs.push(Document {
                text: &text[start..offset],
                first_line,
            });
            start = offset + line.len();
            first_line = i + 2;
        }
        offset += line.len();
    }
    docs.push(Document {
        text: &text[start..],
        first_line,
    });
    docs.retain(|d| {
        d.text
            .lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
    });
    docs
}

/// "/spec/probe/periodSeconds" or "spec.probe.periodSeconds" → ["spec", "probe", "periodSeconds"].
fn segments(path: &str) -> Vec<String> {
    path.split(['/', '.'])
        .flat_map(|s| s.split('['))
        .map(|s| s.trim_end_matches(']'))
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The line of the deepest key of `path` found in order in the document, else its first line.
fn line_of(doc: &Document, path: &str) -> usize {
    let mut line = doc.first_line;
    let mut from = 0;
    let lines: Vec<&str> = doc.text.lines().collect();
    for key in segments(path).iter().filter(|s| s.parse::<usize>().is_err()) {
        let found = lines.iter().enumerate().skip(from).find(|(_, l)| {
            let l = l.trim_start().trim_start_matches("- ");
            l.starts_with(&format!("{key}:"))
                || l.contains(&format!("{{{key}:"))
                || l.contains(&format!(" {key}:"))
        });
        if let Some((i, _)) = found {
            line = doc.first_line + i;
            from = i;
        }
    }
    line
}

fn dotted(path: &str) -> String {
    let mut out = String::new();
    for s in segments(path) {
        if s.parse::<usize>().is_ok() {
            out.push_str(&format!("[{s}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&s);
        }
    }
    out
}

/// Fields the schema does not know, as strict field validation reports them.
fn unknown_fields(schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
                return;
            }
            let properties = schema.get("properties").and_then(Value::as_object);
            for (key, child) in map {
                let child_path = format!("{path}/{key}");
                match properties.and_then(|p| p.get(key)) {
                    Some(s) => unknown_fields(s, child, &child_path, out),
                    None if properties.is_some()
                        && !(path.is_empty()
                            && matches!(key.as_str(), "apiVersion" | "kind" | "metadata" | "status")) =>
                    {
                        out.push(child_path)
                    }
                    None => {}
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    unknown_fields(s, item, &format!("{path}/{i}"), out);
                }
            }
        }
        _ => {}
    }
}

impl Linter {
    /// Builds the checks from the CRD the code generates.
    pub fn new() -> crate::Result<Self> {
        let crd = serde_json::to_value(crate::api::crd()).map_err(|source| crate::Error::Serialize {
            what: "the CRD",
            source,
        })?;
        let schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
        let validator = jsonschema::options()
            .build(&schema)
            .map_err(|e| crate::Error::Usage(format!("the CRD's schema does not compile: {e}")))?;
        Ok(Self { schema, validator })
    }

    /// What the API server would say at `kubectl apply`, then what the operator would: "path: problem".
    pub fn check(&self, object: &Value) -> Vec<(String, String)> {
        let mut problems: Vec<(String, String)> = self
            .validator
            .iter_errors(object)
            .map(|e| (e.instance_path().to_string(), e.to_string()))
            .collect();
        let mut unknown = Vec::new();
        unknown_fields(&self.schema, object, "", &mut unknown);
        problems.extend(unknown.into_iter().map(|p| (p, "unknown field".to_owned())));
        if !problems.is_empty() {
            return problems;
        }
        if let Err(cel) = kube::core::cel::Validator::new().validate(&self.schema, object, None) {
            return cel
                .into_vec()
                .into_iter()
                .map(|e| (e.field_path.to_string(), e.message.to_string()))
                .collect();
        }
        match serde_json::from_value::<AppHealthPolicy>(object.clone()) {
            Err(e) => vec![(String::new(), e.to_string())],
            Ok(policy) => match validate(&policy.spec) {
                Ok(_) => Vec::new(),
                Err(invalid) => vec![(invalid.field, invalid.problem)],
            },
        }
    }

    /// Lints one file's text.
    pub fn lint_text(&self, file: &str, text: &str, report: &mut Report) {
        report.files += 1;
        for doc in documents(text) {
            let object: Value = match serde_saphyr::from_str(doc.text) {
                Ok(v) => v,
                Err(e) => {
                    report.findings.push(Finding {
                        file: file.to_owned(),
                        line: doc.first_line,
                        field: String::new(),
                        problem: format!("not YAML: {e}"),
                    });
                    continue;
                }
            };
            let is_policy = object["kind"] == "AppHealthPolicy"
                && object["apiVersion"]
                    .as_str()
                    .is_some_and(|v| v.starts_with("apphealth.io/"));
            if !is_policy {
                continue;
            }
            report.policies += 1;
            for (path, problem) in self.check(&object) {
                report.findings.push(Finding {
                    file: file.to_owned(),
                    line: line_of(&doc, &path),
                    field: dotted(&path),
                    problem,
                });
            }
        }
    }

    /// Lints files and directories (their `.yaml` and `.yml` files, recursively).
    pub fn lint_paths(&self, paths: &[PathBuf]) -> Report {
        let mut report = Report::default();
        for path in paths {
            for file in files(path) {
                let name = file.display().to_string();
                match std::fs::read_to_string(&file) {
                    Ok(text) => self.lint_text(&name, &text, &mut report),
                    Err(e) => report.findings.push(Finding {
                        file: name,
                        line: 1,
                        field: String::new(),
                        problem: format!("cannot be read: {e}"),
                    }),
                }
            }
        }
        report
    }
}

fn files(path: &Path) -> Vec<PathBuf> {
    if path.is_dir() {
        let mut out: Vec<PathBuf> = std::fs::read_dir(path)
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|e| files(&e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        out.sort();
        out
    } else {
        vec![path.to_owned()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "apiVersion: apphealth.io/v1alpha1\nkind: AppHealthPolicy\nmetadata: {name: web, namespace: shop}\nspec:\n  targetRef: {kind: Deployment, name: web}\n  probe:\n    http: {port: 8080}\n";

    fn lint(text: &str) -> Report {
        let mut report = Report::default();
        Linter::new().unwrap().lint_text("p.yaml", text, &mut report);
        report
    }

    #[test]
    fn a_valid_policy_has_no_findings_and_other_kinds_are_skipped() {
        let text = format!("{GOOD}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\n");
        let report = lint(&text);
        assert_eq!(
            (report.policies, report.findings.len()),
            (1, 0),
            "{:?}",
            report.findings
        );
    }

    #[test]
    fn each_layer_reports_with_file_line_and_field() {
        let cases = [
            // schema
            (
                GOOD.replace("port: 8080}", "port: 8080}\n    periodSeconds: 0"),
                "p.yaml:8: spec.probe.periodSeconds: 0 is less than the minimum of 1",
            ),
            // unknown field
            (
                GOOD.replace("  probe:", "  probes: {}\n  probe:"),
                "p.yaml:6: spec.probes: unknown field",
            ),
            // CEL
            (
                GOOD.replace("port: 8080}", "port: 8080, timeoutSeconds: 20}"),
                "the probe's timeoutSeconds must be at most probe.periodSeconds",
            ),
            // semantic
            (
                GOOD.replace("port: 8080}", "port: 8080, successCodes: [\"399-200\"]}"),
                "spec.probe.http.successCodes[0]: range \"399-200\" is empty",
            ),
        ];
        for (text, expected) in cases {
            let report = lint(&text);
            let found: Vec<String> = report.findings.iter().map(ToString::to_string).collect();
            assert!(
                found.iter().any(|f| f.contains(expected)),
                "{expected:?} not in {found:?}"
            );
        }
    }

    #[test]
    fn the_second_document_is_located_in_the_file() {
        let text = format!(
            "{GOOD}---\n{}",
            GOOD.replace("name: web}", "name: web}\n  bogus: 1")
        );
        let report = lint(&text);
        let found: Vec<String> = report.findings.iter().map(ToString::to_string).collect();
        assert_eq!(found, ["p.yaml:14: spec.bogus: unknown field"]);
    }
}
