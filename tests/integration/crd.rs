//! Generated files and offline admission: the checked-in CRD matches the code, every example policy
//! passes the CRD's schema and CEL rules, and every invalid example is rejected with a useful message.

use std::path::{Path, PathBuf};

use apphealth_operator::{api::AppHealthPolicy, settings::validate};

const CRD_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/crds/apphealthpolicies.apphealth.io.yaml"
);

fn examples(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no examples in {}", dir.display());
    files
}

pub(crate) fn schema() -> serde_json::Value {
    let crd: serde_json::Value = serde_saphyr::from_str(&std::fs::read_to_string(CRD_FILE).unwrap()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// What the API server would say about `object` at `kubectl apply`: schema errors, then CEL errors.
pub(crate) fn admission_errors(schema: &serde_json::Value, object: &serde_json::Value) -> Vec<String> {
    let validator = jsonschema::options()
        .build(schema)
        .expect("the CRD schema compiles");
    let mut errors: Vec<String> = validator
        .iter_errors(object)
        .map(|e| format!("{}: {}", e.instance_path(), e))
        .collect();
    if errors.is_empty()
        && let Err(cel) = kube::core::cel::Validator::new().validate(schema, object, None)
    {
        errors.extend(
            cel.into_vec()
                .into_iter()
                .map(|e| format!("{}: {}", e.field_path, e.message)),
        );
    }
    errors
}

#[test]
fn checked_in_crd_matches_the_code() {
    let generated = serde_saphyr::to_string(&apphealth_operator::api::crd()).unwrap();
    let on_disk = std::fs::read_to_string(CRD_FILE).unwrap();
    assert!(
        generated == on_disk,
        "crds/ drifted from the Rust types: run `make crd` and commit the result"
    );
}

#[test]
fn crd_has_the_promised_shape() {
    let crd = apphealth_operator::api::crd();
    assert_eq!(crd.spec.group, "apphealth.io");
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.short_names, Some(vec!["ahp".to_owned()]));
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(
        version
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some(),
        "status subresource"
    );
    let columns: Vec<&str> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    for wanted in ["Target", "Healthy", "Last Action", "Age"] {
        assert!(
            columns.contains(&wanted),
            "printer column {wanted} missing: {columns:?}"
        );
    }
    let schema = serde_json::to_value(version.schema.as_ref().unwrap()).unwrap();
    let conditions = &schema["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(
        conditions["x-kubernetes-list-map-keys"],
        serde_json::json!(["type"])
    );
    let description = schema["openAPIV3Schema"]["description"].as_str().unwrap();
    assert!(
        description.starts_with("AppHealthPolicy declares"),
        "{description}"
    );
}

#[test]
fn every_field_is_documented_for_kubectl_explain() {
    fn walk(path: &str, node: &serde_json::Value, missing: &mut Vec<String>) {
        if let Some(props) = node.get("properties").and_then(|p| p.as_object()) {
            for (name, child) in props {
                let path = format!("{path}.{name}");
                if child.get("description").is_none()
                    && !path.starts_with(".metadata")
                    && path != ".apiVersion"
                    && path != ".kind"
                {
                    missing.push(path.clone());
                }
                walk(&path, child, missing);
            }
        }
        if let Some(items) = node.get("items") {
            walk(&format!("{path}[]"), items, missing);
        }
    }
    let mut missing = Vec::new();
    walk("", &schema(), &mut missing);
    // Condition's own fields come documented from Kubernetes; ours must be too.
    assert!(missing.is_empty(), "fields without a description: {missing:?}");
}

#[test]
fn example_policies_pass_admission_and_validation() {
    let schema = schema();
    for file in examples("policies") {
        let text = std::fs::read_to_string(&file).unwrap();
        let object: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        let errors = admission_errors(&schema, &object);
        assert!(errors.is_empty(), "{} is rejected: {errors:?}", file.display());
        let policy: AppHealthPolicy = serde_json::from_value(object).unwrap();
        validate(&policy.spec).unwrap_or_else(|e| panic!("{} is invalid: {e}", file.display()));
    }
}

#[test]
fn invalid_examples_are_rejected_with_a_message_naming_the_problem() {
    let schema = schema();
    for file in examples("invalid") {
        let text = std::fs::read_to_string(&file).unwrap();
        let object: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        let errors = admission_errors(&schema, &object);
        if let Some(expected) = text.lines().find_map(|l| l.strip_prefix("# expect: ")) {
            assert!(
                errors.iter().any(|e| e.contains(expected)),
                "{}: expected an admission error containing {expected:?}, got {errors:?}",
                file.display()
            );
        } else if let Some(expected) = text.lines().find_map(|l| l.strip_prefix("# expect-invalid: ")) {
            assert!(
                errors.is_empty(),
                "{} should pass the schema: {errors:?}",
                file.display()
            );
            let policy: AppHealthPolicy = serde_json::from_value(object).unwrap();
            let err = validate(&policy.spec)
                .expect_err("semantic example must be invalid")
                .to_string();
            assert!(
                err.contains(expected),
                "{}: expected {expected:?} in {err:?}",
                file.display()
            );
        } else {
            panic!(
                "{} has no `# expect:` or `# expect-invalid:` line",
                file.display()
            );
        }
    }
}

#[test]
fn lint_passes_every_example_policy_and_names_the_problem_of_every_invalid_one() {
    let linter = apphealth_operator::lint::Linter::new().unwrap();
    let dir = |d: &str| Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(d);
    let good = linter.lint_paths(&[dir("policies")]);
    assert!(good.findings.is_empty(), "{:?}", good.findings);
    assert_eq!(good.policies, examples("policies").len());
    for file in examples("invalid") {
        let text = std::fs::read_to_string(&file).unwrap();
        let expected = text
            .lines()
            .find_map(|l| {
                l.strip_prefix("# expect: ")
                    .or_else(|| l.strip_prefix("# expect-invalid: "))
            })
            .unwrap();
        let report = linter.lint_paths(std::slice::from_ref(&file));
        let found: Vec<String> = report.findings.iter().map(ToString::to_string).collect();
        // Schema messages name the field as a JSON pointer; lint says it dotted.
        let problem = expected.rsplit(": ").next().unwrap_or(expected);
        assert!(
            found
                .iter()
                .any(|f| f.contains(problem) && f.starts_with(&file.display().to_string())),
            "{}: expected {problem:?} in {found:?}",
            file.display()
        );
    }
}

#[test]
fn the_lint_command_prints_file_line_field_problem_and_fails() {
    let bad = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/invalid/period-zero.yaml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_apphealth-operator"))
        .arg("lint")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with(&format!("{}:", bad.display())) && stdout.contains(": spec.probe.periodSeconds: "),
        "{stdout}"
    );
    let good = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/policies");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_apphealth-operator"))
        .arg("lint")
        .arg(&good)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("policies in"));
}
