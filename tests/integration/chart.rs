//! The Helm chart, rendered by the real `helm template`: its RBAC equals the operator's one list of
//! permissions (`apphealth_operator::act::rules()`, each action's declared in its file) — nothing missing, nothing extra — in both modes
//! and for each permission toggle; its CRD is the one in crds/; a typo in values fails the render.
//!
//! helm comes from PATH: `make tools` installs it into target/tools/bin and `make test` puts that
//! directory first on PATH. Without helm these tests fail, never pass silently.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use apphealth_operator::api::Action;
use apphealth_operator::{
    act,
    rbac::{Need, Rule},
};
use serde_json::Value;

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/apphealth-operator");
const RELEASE_NAMESPACE: &str = "apphealth-system";

/// Every action.
const ACTIONS: &[Action] = &Action::ALL;

/// The chart's `permissions.*` value that grants an action's rights: what the action's file says.
fn permission(action: Action) -> &'static str {
    act::descriptor(action).permission
}

/// Every `permissions.*` value: one per action, and the second values some rights need too
/// (`diagnosticsExec`).
fn permission_values() -> Vec<&'static str> {
    act::permission_values().collect()
}

/// The values that must all be true for the chart to grant `rule`.
fn toggles(rule: &Rule) -> Vec<&'static str> {
    act::toggles(rule)
}

/// (apiGroup, resource, verb)
type Triple = (String, String, String);

fn triples(rules: impl IntoIterator<Item = Rule>) -> BTreeSet<Triple> {
    rules
        .into_iter()
        .flat_map(|r| {
            r.verbs
                .iter()
                .map(move |v| (r.group.to_owned(), r.resource.to_owned(), (*v).to_owned()))
        })
        .collect()
}

/// What the chart must grant when exactly the `enabled` permission values are true.
fn expected(enabled: &[&str]) -> BTreeSet<Triple> {
    triples(
        act::rules()
            .iter()
            .filter(|r| toggles(r).iter().all(|t| enabled.contains(t)))
            .copied(),
    )
}

/// `--set permissions.X=…` for every permission value: true for those in `enabled`.
fn permission_flags(enabled: &[&str]) -> Vec<String> {
    permission_values()
        .into_iter()
        .flat_map(|p| {
            [
                "--set".to_owned(),
                format!("permissions.{p}={}", enabled.contains(&p)),
            ]
        })
        .collect()
}

/// `helm template` of the chart with `args`: the rendered objects, or helm's stderr when it fails.
fn helm_template(args: &[String]) -> Result<Vec<Value>, String> {
    let output = Command::new("helm")
        .args(["template", "apphealth", CHART, "--namespace", RELEASE_NAMESPACE])
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `helm` ({e}): it must be on PATH for the chart tests. Run `make tools` \
                 (installs helm into target/tools/bin) and test with that directory on PATH, as \
                 `make test` does"
            )
        });
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let yaml = String::from_utf8(output.stdout).expect("helm prints UTF-8");
    let documents: Vec<Value> = serde_saphyr::from_multiple(&yaml)
        .unwrap_or_else(|e| panic!("helm template printed YAML that does not parse: {e}\n{yaml}"));
    Ok(documents.into_iter().filter(|d| !d.is_null()).collect())
}

fn render(args: &[String]) -> Vec<Value> {
    helm_template(args).unwrap_or_else(|e| panic!("helm template {args:?} failed:\n{e}"))
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// The Role and RoleBinding for the leader-election Lease, apart from the rights `act::rules()` lists.
const LEADER_ELECTION: &str = "apphealth-apphealth-operator-leader-election";

/// The objects of `kind` that carry the rights `act::rules()` lists (not the leader election's).
fn operator_rbac<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    of_kind(objects, kind)
        .into_iter()
        .filter(|o| o["metadata"]["name"] != LEADER_ELECTION)
        .collect()
}

fn strings(value: &Value, what: &str) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("{what} is not a list: {value}"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("{what} has a non-string: {s}"))
                .to_owned()
        })
        .collect()
}

/// A ClusterRole's or Role's rules as triples; each rule must be plain (no resourceNames or
/// nonResourceURLs) and list its verbs sorted.
fn granted(role: &Value) -> BTreeSet<Triple> {
    let name = format!(
        "{} {}/{}",
        role["kind"], role["metadata"]["namespace"], role["metadata"]["name"]
    );
    let rules = role["rules"]
        .as_array()
        .unwrap_or_else(|| panic!("{name} has no rules"));
    let mut triples = BTreeSet::new();
    for rule in rules {
        let fields: BTreeSet<&str> = rule
            .as_object()
            .unwrap_or_else(|| panic!("{name}: a rule is not a mapping: {rule}"))
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            fields,
            BTreeSet::from(["apiGroups", "resources", "verbs"]),
            "{name}: unexpected rule fields in {rule}"
        );
        let verbs = strings(&rule["verbs"], "verbs");
        let mut sorted = verbs.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            verbs, sorted,
            "{name}: verbs are rendered sorted and once each: {rule}"
        );
        for group in strings(&rule["apiGroups"], "apiGroups") {
            for resource in strings(&rule["resources"], "resources") {
                for verb in &verbs {
                    triples.insert((group.clone(), resource.clone(), verb.clone()));
                }
            }
        }
    }
    triples
}

/// Equal sets, or a failure naming what is missing and what is extra.
fn assert_same_rights(what: &str, granted: &BTreeSet<Triple>, expected: &BTreeSet<Triple>) {
    let missing: Vec<&Triple> = expected.difference(granted).collect();
    let extra: Vec<&Triple> = granted.difference(expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: the chart's RBAC differs from the code's rules (src/rbac.rs and each action's file).\n\
         missing (apiGroup, resource, verb): {missing:#?}\nextra: {extra:#?}"
    );
}

/// The rights a cluster-wide install adds to serve ClusterAppHealthPolicies.
fn cluster_policy_rights() -> BTreeSet<Triple> {
    triples(
        apphealth_operator::rbac::CLUSTER_POLICIES
            .rights
            .iter()
            .map(|r| Rule::new(r, Need::Always)),
    )
}

/// The rights of the one ClusterRole a render watching every namespace has (its binding checked
/// too), apart from those serving ClusterAppHealthPolicies, which it must hold.
fn cluster_role_rights(objects: &[Value]) -> BTreeSet<Triple> {
    let mut rights = cluster_role_all_rights(objects);
    let cluster = cluster_policy_rights();
    let missing: Vec<&Triple> = cluster.difference(&rights).collect();
    assert!(
        missing.is_empty(),
        "a cluster-wide install serves ClusterAppHealthPolicies: missing {missing:?}"
    );
    rights.retain(|t| !cluster.contains(t));
    rights
}

/// Every right of the one ClusterRole a cluster-wide render has.
fn cluster_role_all_rights(objects: &[Value]) -> BTreeSet<Triple> {
    let roles = of_kind(objects, "ClusterRole");
    assert_eq!(roles.len(), 1, "one ClusterRole");
    let bindings = of_kind(objects, "ClusterRoleBinding");
    assert_eq!(bindings.len(), 1, "one ClusterRoleBinding");
    assert_binds(bindings[0], roles[0]);
    assert!(
        operator_rbac(objects, "Role").is_empty(),
        "no Role in cluster-wide mode"
    );
    assert!(
        operator_rbac(objects, "RoleBinding").is_empty(),
        "no RoleBinding in cluster-wide mode"
    );
    granted(roles[0])
}

/// `binding` grants `role` to the operator's ServiceAccount.
fn assert_binds(binding: &Value, role: &Value) {
    assert_eq!(binding["roleRef"]["kind"], role["kind"], "{binding}");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"], "{binding}");
    assert_eq!(
        binding["roleRef"]["apiGroup"], "rbac.authorization.k8s.io",
        "{binding}"
    );
    let subjects = binding["subjects"].as_array().expect("subjects");
    assert_eq!(subjects.len(), 1, "{binding}");
    assert_eq!(subjects[0]["kind"], "ServiceAccount");
    assert_eq!(subjects[0]["name"], "apphealth-apphealth-operator");
    assert_eq!(subjects[0]["namespace"], RELEASE_NAMESPACE);
}

#[test]
fn chart_rbac_with_every_permission_equals_the_code() {
    let all = permission_values();
    let objects = render(&permission_flags(&all));
    let rights = cluster_role_rights(&objects);
    assert_same_rights("all permissions", &rights, &triples(act::rules()));
    // The rule table is not trivially small: the test compares something.
    assert!(rights.len() > 30, "{rights:#?}");
}

#[test]
fn chart_rbac_with_no_permission_is_the_controllers_own() {
    let objects = render(&permission_flags(&[]));
    let always = triples(act::rules().into_iter().filter(|r| r.need == Need::Always));
    assert_same_rights("no permissions", &cluster_role_rights(&objects), &always);
}

#[test]
fn chart_rbac_with_only_restart_pods_adds_the_eviction_right() {
    let objects = render(&permission_flags(&["restartPods"]));
    let want = triples(
        act::rules()
            .iter()
            .filter(|r| matches!(r.need, Need::Always | Need::Action(Action::RestartPods)))
            .copied(),
    );
    assert!(want.contains(&("".into(), "pods/eviction".into(), "create".into())));
    assert_same_rights("only restartPods", &cluster_role_rights(&objects), &want);
}

#[test]
fn chart_rbac_grants_each_action_alone_exactly_its_rules() {
    // Every action the code lists a rule for has a toggle.
    for rule in act::rules() {
        if let Need::Action(a) = rule.need {
            assert!(ACTIONS.contains(&a), "{a:?} is missing from ACTIONS");
        }
    }
    let mut cases: Vec<Vec<&str>> = ACTIONS.iter().map(|a| vec![permission(*a)]).collect();
    cases.push(vec!["collectDiagnostics", "diagnosticsExec"]);
    // Exec without diagnostics grants nothing: it is only used by CollectDiagnostics.
    cases.push(vec!["diagnosticsExec"]);
    for enabled in cases {
        let objects = render(&permission_flags(&enabled));
        assert_same_rights(
            &format!("only {enabled:?}"),
            &cluster_role_rights(&objects),
            &expected(&enabled),
        );
    }
    // The exec right is its own toggle.
    assert!(!expected(&["collectDiagnostics"]).contains(&("".into(), "pods/exec".into(), "create".into())));
    assert!(expected(&["collectDiagnostics", "diagnosticsExec"]).contains(&(
        "".into(),
        "pods/exec".into(),
        "create".into()
    )));
}

#[test]
fn chart_watching_some_namespaces_refuses_cluster_policies_and_grants_no_right_to_them() {
    let objects = render(&["--set".to_owned(), "watchNamespaces={a,b}".to_owned()]);
    let rights = cluster_role_all_rights(&objects);
    let cluster = cluster_policy_rights();
    assert!(
        rights.is_disjoint(&cluster),
        "{:?}",
        rights.intersection(&cluster).collect::<Vec<_>>()
    );
    let policy = of_kind(&objects, "ValidatingAdmissionPolicy");
    assert_eq!(policy.len(), 1, "one ValidatingAdmissionPolicy");
    assert_eq!(
        policy[0]["spec"]["matchConstraints"]["resourceRules"][0]["resources"],
        serde_json::json!(["clusterapphealthpolicies"])
    );
    let message = policy[0]["spec"]["validations"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("watches only the namespaces a, b"), "{message}");
    let binding = of_kind(&objects, "ValidatingAdmissionPolicyBinding");
    assert_eq!(binding.len(), 1);
    assert_eq!(binding[0]["spec"]["policyName"], policy[0]["metadata"]["name"]);
    assert_eq!(
        binding[0]["spec"]["validationActions"],
        serde_json::json!(["Deny"])
    );
    // Turned off, or cluster-wide: none.
    let off = render(&[
        "--set".to_owned(),
        "watchNamespaces={a,b}".to_owned(),
        "--set".to_owned(),
        "refuseClusterPolicies=false".to_owned(),
    ]);
    assert!(of_kind(&off, "ValidatingAdmissionPolicy").is_empty());
    assert!(of_kind(&render(&[]), "ValidatingAdmissionPolicy").is_empty());
}

#[test]
fn chart_namespaced_mode_has_a_role_per_watched_namespace_and_no_cluster_rights() {
    let mut args: Vec<String> = ["--set", "rbac.namespaced=true", "--set", "watchNamespaces={a,b}"]
        .map(String::from)
        .to_vec();
    args.extend(permission_flags(&permission_values()));
    let objects = render(&args);

    for cluster_wide in ["ClusterRole", "ClusterRoleBinding"] {
        assert!(
            of_kind(&objects, cluster_wide).is_empty(),
            "namespaced mode renders no {cluster_wide}"
        );
    }
    let roles = operator_rbac(&objects, "Role");
    let bindings = operator_rbac(&objects, "RoleBinding");
    let namespaces = |objects: &[&Value]| -> Vec<String> {
        let mut ns: Vec<String> = objects
            .iter()
            .map(|o| o["metadata"]["namespace"].as_str().expect("namespace").to_owned())
            .collect();
        ns.sort();
        ns
    };
    assert_eq!(
        namespaces(&roles),
        ["a", "b"],
        "one Role in each watched namespace"
    );
    assert_eq!(
        namespaces(&bindings),
        ["a", "b"],
        "one RoleBinding in each watched namespace"
    );
    let all = triples(act::rules());
    for role in &roles {
        let ns = &role["metadata"]["namespace"];
        assert_same_rights(&format!("Role in {ns}"), &granted(role), &all);
        let binding = bindings
            .iter()
            .find(|b| &b["metadata"]["namespace"] == ns)
            .expect("a binding in the Role's namespace");
        assert_binds(binding, role);
    }

    // The operator is told to watch exactly those namespaces.
    let deployments = of_kind(&objects, "Deployment");
    assert_eq!(deployments.len(), 1);
    let args = strings(
        &deployments[0]["spec"]["template"]["spec"]["containers"][0]["args"],
        "args",
    );
    assert!(args.contains(&"--namespace=a,b".to_owned()), "{args:?}");
}

/// Leader election needs the Lease the operator is told to use, in its own namespace, in both modes:
/// `rbac::LEASE`, with get and patch limited to the Lease's name.
#[test]
fn chart_grants_the_leader_election_lease_in_the_release_namespace_only() {
    let namespaced = ["--set", "rbac.namespaced=true", "--set", "watchNamespaces={a,b}"].map(String::from);
    for args in [&[][..], &namespaced[..]] {
        let objects = render(args);
        let role = of_kind(&objects, "Role")
            .into_iter()
            .find(|r| r["metadata"]["name"] == LEADER_ELECTION)
            .unwrap_or_else(|| panic!("a leader-election Role with {args:?}"));
        let binding = of_kind(&objects, "RoleBinding")
            .into_iter()
            .find(|r| r["metadata"]["name"] == LEADER_ELECTION)
            .unwrap_or_else(|| panic!("a leader-election RoleBinding with {args:?}"));
        assert_eq!(role["metadata"]["namespace"], RELEASE_NAMESPACE);
        assert_eq!(binding["metadata"]["namespace"], RELEASE_NAMESPACE);
        assert_binds(binding, role);

        let container = &of_kind(&objects, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0];
        let lease = strings(&container["args"], "args")
            .iter()
            .find_map(|a| a.strip_prefix("--lease-name=").map(str::to_owned))
            .expect("the Deployment names its Lease");
        let env = container["env"].as_array().expect("env");
        assert!(
            env.iter().any(|e| e["name"] == "POD_NAMESPACE"
                && e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"),
            "the Lease lives in the pod's namespace: {env:?}"
        );
        let code: Vec<serde_json::Value> = apphealth_operator::rbac::lease_rules()
            .iter()
            .map(|r| {
                let mut rule =
                    serde_json::json!({"apiGroups": [r.group], "resources": [r.resource], "verbs": r.verbs});
                if r.verbs != ["create"] {
                    rule["resourceNames"] = serde_json::json!([lease]);
                }
                rule
            })
            .collect();
        let mut rendered = role["rules"].as_array().expect("rules").clone();
        for rule in &mut rendered {
            if let Some(obj) = rule.as_object_mut() {
                // Key order does not matter; compare the same shape.
                let sorted: serde_json::Map<String, serde_json::Value> =
                    obj.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                *obj = sorted;
            }
        }
        assert_eq!(
            serde_json::Value::Array(rendered),
            serde_json::Value::Array(code),
            "with {args:?}"
        );
    }
}

/// With `sharding.shards` above 1 the operator is told the number of shards and may read, list and
/// update the Leases of its namespace (`rbac::SHARD_LEASES`); with 1, neither.
#[test]
fn chart_shards_the_work_only_when_asked_with_the_rights_it_needs() {
    for (shards, expected) in [(1, None), (3, Some("--shards=3"))] {
        let objects = render(&["--set".into(), format!("sharding.shards={shards}")]);
        let container = &of_kind(&objects, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0];
        let args = strings(&container["args"], "args");
        let sharded = args.iter().find(|a| a.starts_with("--shards"));
        assert_eq!(sharded.map(String::as_str), expected, "{args:?}");
        let role = of_kind(&objects, "Role")
            .into_iter()
            .find(|r| r["metadata"]["name"] == LEADER_ELECTION)
            .expect("the Lease Role");
        let rules = role["rules"].as_array().expect("rules");
        let by_type: Vec<serde_json::Value> = rules
            .iter()
            .filter(|r| r.get("resourceNames").is_none())
            .map(|r| r["verbs"].clone())
            .collect();
        if shards == 1 {
            assert_eq!(by_type, [serde_json::json!(["create"])], "{rules:?}");
        } else {
            let code: Vec<serde_json::Value> = apphealth_operator::rbac::shard_lease_rules()
                .iter()
                .map(|r| serde_json::json!(r.verbs))
                .collect();
            assert_eq!(by_type, code, "{rules:?}");
        }
    }
    let err = helm_template(&["--set".into(), "sharding.shards=0".into()]).expect_err("0 shards");
    assert!(err.contains("shards"), "{err}");
}

#[test]
fn chart_namespaced_mode_without_namespaces_fails_saying_what_to_set() {
    let err = helm_template(&["--set".into(), "rbac.namespaced=true".into()])
        .expect_err("rbac.namespaced=true without watchNamespaces must not render");
    assert!(err.contains("watchNamespaces"), "{err}");
}

#[test]
fn chart_rejects_a_typo_in_values() {
    // The control: the same render without the typo works.
    render(&["--set".into(), "replicas=2".into()]);
    let err = helm_template(&["--set".into(), "replicaz=2".into()])
        .expect_err("a values typo must fail helm template (values.schema.json)");
    assert!(err.contains("replicaz"), "the error names the typo: {err}");
    let err = helm_template(&["--set".into(), "permissions.restartpods=false".into()])
        .expect_err("a typo in a nested value must fail too");
    assert!(err.contains("restartpods"), "{err}");
}

#[test]
fn chart_crd_is_the_one_in_crds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let name = "apphealthpolicies.apphealth.io.yaml";
    let top = std::fs::read_to_string(root.join("crds").join(name)).expect("crds/ has the CRD");
    let chart = std::fs::read_to_string(Path::new(CHART).join("crds").join(name))
        .expect("the chart's crds/ has the CRD");
    assert!(
        top == chart,
        "charts/apphealth-operator/crds/{name} differs from crds/{name}: run `make crd` and commit the result"
    );
}

#[test]
fn chart_deployment_runs_the_operator_locked_down() {
    let objects = render(&[]);
    let deployments = of_kind(&objects, "Deployment");
    assert_eq!(deployments.len(), 1);
    let pod = &deployments[0]["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let security = &container["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["runAsUser"], 65532);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(pod["terminationGracePeriodSeconds"], 30);
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["ports"][0]["name"], "http");
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    assert!(container["resources"]["requests"].is_object() && container["resources"]["limits"].is_object());
    let args = strings(&container["args"], "args");
    assert_eq!(args[0], "run");
    assert!(args.contains(&"--http-addr=0.0.0.0:8080".to_owned()), "{args:?}");
    assert!(
        !args.iter().any(|a| a.starts_with("--namespace")),
        "all namespaces by default: {args:?}"
    );
    // Loopback is never probed in a cluster unless asked for.
    assert!(!args.contains(&"--allow-loopback".to_owned()), "{args:?}");
    let loopback = render(&["--set".into(), "allowLoopback=true".into()]);
    let args = strings(
        &of_kind(&loopback, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"],
        "args",
    );
    assert!(args.contains(&"--allow-loopback".to_owned()), "{args:?}");
    let env: Vec<&str> = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| e["name"].as_str().expect("name"))
        .collect();
    for name in ["RUST_LOG", "POD_NAME", "POD_NAMESPACE"] {
        assert!(env.contains(&name), "{name} in {env:?}");
    }
    // Two replicas by default, so a PodDisruptionBudget; none for one replica.
    assert_eq!(of_kind(&objects, "PodDisruptionBudget").len(), 1);
    let single = render(&["--set".into(), "replicas=1".into()]);
    assert!(of_kind(&single, "PodDisruptionBudget").is_empty());
    // The metrics Service, and the ServiceMonitor only when asked for.
    let services = of_kind(&objects, "Service");
    assert_eq!(services.len(), 1);
    assert_eq!(services[0]["spec"]["ports"][0]["name"], "http-metrics");
    assert!(of_kind(&objects, "ServiceMonitor").is_empty());
    let monitored = render(&["--set".into(), "serviceMonitor.enabled=true".into()]);
    assert_eq!(of_kind(&monitored, "ServiceMonitor").len(), 1);
}

/// The Grafana dashboard queries only metrics the operator exports, and ships as a ConfigMap for
/// Grafana's sidecar when enabled.
#[test]
fn chart_dashboard_queries_the_operators_metrics_and_ships_when_enabled() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/charts/apphealth-operator/dashboards/apphealth-operator.json"
    ))
    .unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    // One series in every family, so that each is in the text format.
    let metrics = apphealth_operator::metrics::Metrics::default();
    metrics.probe(true, std::time::Duration::from_millis(1), "");
    metrics.probe(false, std::time::Duration::from_millis(1), "Timeout");
    metrics.remediation_failed("RestartPods", "Forbidden");
    metrics.trigger_fired("consecutiveFailures");
    metrics.verdict_changed("Healthy");
    metrics.remediation("shop/web", "RestartPods", "Succeeded", false);
    metrics.hold("shop/web", "Cooldown");
    metrics.health("shop/web", Some(apphealth_operator::api::Health::Healthy));
    metrics.reconcile_failed("report", "APIError");
    metrics.policy_ready("shop/web", Some("Probing"));
    metrics.reconcile_duration.observe(0.01);
    metrics
        .api_requests
        .get_or_create(&apphealth_operator::metrics::ApiLabels {
            verb: "GET".into(),
            code: "200".into(),
        })
        .inc();
    let exported = metrics.render();
    let mut queried = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for name in expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("apphealth_"))
            {
                let family = name.trim_end_matches("_bucket").trim_end_matches("_total");
                assert!(
                    exported.contains(&format!("# TYPE {family} ")),
                    "panel {:?} queries {name}, which the operator does not export",
                    panel["title"]
                );
                queried += 1;
            }
        }
    }
    assert!(queried >= 10, "{queried}");
    assert!(of_kind(&render(&[]), "ConfigMap").is_empty(), "off by default");
    let on = render(&["--set".into(), "dashboard.enabled=true".into()]);
    let maps = of_kind(&on, "ConfigMap");
    assert_eq!(maps.len(), 1);
    assert_eq!(maps[0]["metadata"]["labels"]["grafana_dashboard"], "1");
    let shipped: serde_json::Value =
        serde_json::from_str(maps[0]["data"]["apphealth-operator.json"].as_str().unwrap()).unwrap();
    assert_eq!(shipped, dashboard);
}
