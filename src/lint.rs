//! Offline policy validation for GitOps CI: what `kubectl apply` would refuse (the CRD's OpenAPI
//! schema, its CEL rules, unknown fields as strict field validation reports them) and what the
//! operator would report as `InvalidSpec`, for every AppHealthPolicy and ClusterAppHealthPolicy in
//! multi-document YAML files.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::{
    api::{AppHealthPolicy, ClusterAppHealthPolicy},
    settings::validate,
};

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
    /// The Deployments and StatefulSets in the files: kind, namespace, labels.
    workloads: Vec<(String, Option<String>, std::collections::BTreeMap<String, String>)>,
    /// The targetSelector policies in the files, to check against them: where, namespace (None for
    /// a cluster policy: any namespace), selector.
    selectors: Vec<(String, usize, Option<String>, crate::api::TargetSelector)>,
}

/// The checks, built once: an AppHealthPolicy's and a ClusterAppHealthPolicy's.
pub struct Linter {
    namespaced: Schema,
    cluster: Schema,
}

/// A CRD's schema, compiled.
struct Schema {
    schema: Value,
    validator: jsonschema::Validator,
}

impl Schema {
    fn of(
        crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    ) -> crate::Result<Self> {
        let crd = serde_json::to_value(crd).map_err(|source| crate::Error::Serialize {
            what: "the CRD",
            source,
        })?;
        let schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
        let validator = jsonschema::options()
            .build(&schema)
            .map_err(|e| crate::Error::Usage(format!("the CRD's schema does not compile: {e}")))?;
        Ok(Self { schema, validator })
    }

    /// What the API server would say at `kubectl apply`: "path: problem".
    fn check(&self, object: &Value) -> Vec<(String, String)> {
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
        match kube::core::cel::Validator::new().validate(&self.schema, object, None) {
            Ok(()) => Vec::new(),
            Err(cel) => cel
                .into_vec()
                .into_iter()
                .map(|e| (e.field_path.to_string(), e.message.to_string()))
                .collect(),
        }
    }
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
    /// Builds the checks from the CRDs the code generates.
    pub fn new() -> crate::Result<Self> {
        Ok(Self {
            namespaced: Schema::of(crate::api::crd())?,
            cluster: Schema::of(crate::api::cluster_crd())?,
        })
    }

    /// What the API server would say at `kubectl apply` of an AppHealthPolicy, then what the
    /// operator would: "path: problem".
    pub fn check(&self, object: &Value) -> Vec<(String, String)> {
        let problems = self.namespaced.check(object);
        if !problems.is_empty() {
            return problems;
        }
        match serde_json::from_value::<AppHealthPolicy>(object.clone()) {
            Err(e) => vec![(String::new(), e.to_string())],
            Ok(policy) => match validate(&policy.spec) {
                Ok(_) => Vec::new(),
                Err(invalid) => vec![(invalid.field, invalid.problem)],
            },
        }
    }

    /// The same for a ClusterAppHealthPolicy: its own rules, then an AppHealthPolicy's.
    pub fn check_cluster(&self, object: &Value) -> Vec<(String, String)> {
        let problems = self.cluster.check(object);
        if !problems.is_empty() {
            return problems;
        }
        match serde_json::from_value::<ClusterAppHealthPolicy>(object.clone()) {
            Err(e) => vec![(String::new(), e.to_string())],
            Ok(policy) => match crate::api::validate::cluster(&policy.spec)
                .and_then(|()| validate(&policy.spec.policy).map(|_| ()))
            {
                Ok(()) => Vec::new(),
                Err(invalid) => vec![(invalid.field, invalid.problem)],
            },
        }
    }

    /// Which of the project's kinds `object` is, if it is one.
    fn kind_of(object: &Value) -> Option<&str> {
        let ours = object["apiVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("apphealth.io/"));
        object["kind"]
            .as_str()
            .filter(|k| ours && matches!(*k, "AppHealthPolicy" | "ClusterAppHealthPolicy"))
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
            let Some(kind) = Self::kind_of(&object) else {
                remember_workload(&object, report);
                continue;
            };
            report.policies += 1;
            // A cluster policy's selector is compared with the workloads of every namespace.
            let (problems, selector) = if kind == "ClusterAppHealthPolicy" {
                let problems = self.check_cluster(&object);
                let selector = serde_json::from_value::<ClusterAppHealthPolicy>(object.clone())
                    .ok()
                    .and_then(|p| Some((None, p.spec.policy.target_selector?)));
                (problems, selector)
            } else {
                let problems = self.check(&object);
                let selector = serde_json::from_value::<AppHealthPolicy>(object.clone())
                    .ok()
                    .and_then(|p| Some((p.metadata.namespace, p.spec.target_selector?)));
                (problems, selector)
            };
            if problems.is_empty()
                && let Some((namespace, selector)) = selector
            {
                let line = line_of(&doc, "/spec/targetSelector");
                report
                    .selectors
                    .push((file.to_owned(), line, namespace, selector));
            }
            for (path, problem) in problems {
                report.findings.push(Finding {
                    file: file.to_owned(),
                    line: line_of(&doc, &path),
                    field: dotted(&path),
                    problem,
                });
            }
        }
    }

    /// The checks across files, once every file has been read: a targetSelector that selects none
    /// of the Deployments and StatefulSets in the files (when the files hold any: policies linted
    /// on their own are not compared with a cluster lint cannot see). A policy or workload without
    /// a namespace is taken to be in the one its counterpart names.
    pub fn finish(&self, report: &mut Report) {
        if report.workloads.is_empty() {
            return;
        }
        for (file, line, namespace, selector) in std::mem::take(&mut report.selectors) {
            let matched = report.workloads.iter().any(|(kind, ns, labels)| {
                (namespace.is_none() || ns.is_none() || *ns == namespace)
                    && crate::api::TargetKind::parse(kind).is_some_and(|k| selector.selects(k, labels))
            });
            if !matched {
                let labels = selector.describe();
                let kinds: Vec<&str> = selector.kinds.iter().map(|k| k.as_str()).collect();
                report.findings.push(Finding {
                    file,
                    line,
                    field: "spec.targetSelector".into(),
                    problem: format!(
                        "selects none of the {} in the files given ({} {labels})",
                        kinds.join(" and "),
                        if labels.is_empty() { "every one" } else { "by" },
                    ),
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
        self.finish(&mut report);
        report
    }
}

/// Keeps a Deployment or StatefulSet of the files, for the selectors to be checked against.
fn remember_workload(object: &Value, report: &mut Report) {
    let kind = object["kind"].as_str().unwrap_or_default();
    if object["apiVersion"] != crate::api::APPS_V1 || !matches!(kind, "Deployment" | "StatefulSet") {
        return;
    }
    let meta = &object["metadata"];
    let labels = serde_json::from_value(meta["labels"].clone()).unwrap_or_default();
    let namespace = meta["namespace"].as_str().map(str::to_owned);
    report.workloads.push((kind.to_owned(), namespace, labels));
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
    fn cluster_policies_are_checked_by_their_own_rules_and_selectors() {
        let cluster = "apiVersion: apphealth.io/v1alpha1\nkind: ClusterAppHealthPolicy\nmetadata: {name: web}\nspec:\n  namespaceSelector:\n    matchLabels: {env: prod}\n  targetSelector:\n    matchLabels: {tier: web}\n  probe:\n    http: {port: 8080}\n";
        let workload = |labels: &str| {
            format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: a, namespace: bank, labels: {labels}}}\n"
            )
        };
        let linted = |text: String| {
            let linter = Linter::new().unwrap();
            let mut report = Report::default();
            linter.lint_text("c.yaml", &text, &mut report);
            linter.finish(&mut report);
            let found: Vec<String> = report.findings.iter().map(ToString::to_string).collect();
            (report.policies, found)
        };
        // Selects a workload of any namespace: clean.
        let (policies, found) = linted(format!("{cluster}---\n{}", workload("{tier: web}")));
        assert_eq!((policies, found.len()), (1, 0), "{found:?}");
        // Selects none of them: flagged.
        let (_, found) = linted(format!("{cluster}---\n{}", workload("{tier: db}")));
        assert!(
            found
                .iter()
                .any(|f| f.contains("spec.targetSelector: selects none")),
            "{found:?}"
        );
        // No targetRef in this kind (its CRD has none); a bad namespaceSelector is named.
        let named = cluster.replace(
            "  targetSelector:",
            "  targetRef: {kind: Deployment, name: web}\n  targetSelector:",
        );
        let (_, found) = linted(named);
        assert!(
            found.iter().any(|f| f.contains("spec.targetRef: unknown field")),
            "{found:?}"
        );
        let (_, found) = linted(cluster.replace("{env: prod}", "{env: \"no spaces\"}"));
        assert!(
            found
                .iter()
                .any(|f| f.contains("c.yaml:6: spec.namespaceSelector.matchLabels")
                    && f.contains("not a label value")),
            "{found:?}"
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
    fn a_selector_matching_none_of_the_workloads_given_is_flagged() {
        let fleet = "apiVersion: apphealth.io/v1alpha1\nkind: AppHealthPolicy\nmetadata: {name: web, namespace: shop}\nspec:\n  targetSelector:\n    matchLabels: {tier: web}\n  probe:\n    http: {port: 8080}\n";
        let workload = |labels: &str| {
            format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: a, namespace: shop, labels: {labels}}}\n"
            )
        };
        let linter = Linter::new().unwrap();
        let run = |text: &str| {
            let mut report = Report::default();
            linter.lint_text("p.yaml", text, &mut report);
            linter.finish(&mut report);
            report
                .findings
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            run(fleet),
            Vec::<String>::new(),
            "no workloads given: nothing to compare with"
        );
        assert_eq!(
            run(&format!("{fleet}---\n{}", workload("{tier: web}"))),
            Vec::<String>::new()
        );
        assert_eq!(
            run(&format!("{fleet}---\n{}", workload("{tier: batch}"))),
            [
                "p.yaml:5: spec.targetSelector: selects none of the Deployment and StatefulSet in the files given (by tier=web)"
            ]
        );
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
