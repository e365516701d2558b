//! The policy's target: exactly one of `targetRef` (one workload) and `targetSelector` (many), each
//! well-formed. A selector is checked as Kubernetes checks a workload's selector, so what the
//! operator matches with is what the person meant.

use super::{InvalidSpec, invalid, limits, names};
use crate::api::{
    AppHealthPolicySpec, ClusterAppHealthPolicySpec, LabelMatch, SelectorOperator, TargetSelector,
};

pub(super) fn target(spec: &AppHealthPolicySpec) -> Result<(), InvalidSpec> {
    match (&spec.target_ref, &spec.target_selector) {
        (Some(_), Some(_)) => Err(invalid(
            "spec.targetSelector",
            "cannot be set together with spec.targetRef: a policy names one workload or selects many",
        )),
        (None, None) => Err(invalid(
            "spec.targetRef",
            "is required (or spec.targetSelector): the policy must name or select its workloads",
        )),
        (Some(target), None) => {
            limits::chars("spec.targetRef.name", &target.name, 253)?;
            if target.name.is_empty() {
                return Err(invalid("spec.targetRef.name", "must name a workload"));
            }
            names::object("spec.targetRef.name", &target.name)?;
            match target
                .api_version
                .as_deref()
                .filter(|v| *v != crate::api::APPS_V1)
            {
                Some(other) => Err(invalid(
                    "spec.targetRef.apiVersion",
                    format!(
                        "{other:?} is not supported: the operator targets Deployment and StatefulSet in {}",
                        crate::api::APPS_V1
                    ),
                )),
                None => Ok(()),
            }
        }
        (None, Some(selector)) => selector_ok(selector),
    }
}

fn selector_ok(selector: &TargetSelector) -> Result<(), InvalidSpec> {
    let field = "spec.targetSelector";
    if selector.kinds.is_empty() {
        return Err(invalid(
            format!("{field}.kinds"),
            "must list Deployment, StatefulSet or both",
        ));
    }
    if selector.kinds.len() == 2 && selector.kinds[0] == selector.kinds[1] {
        return Err(invalid(format!("{field}.kinds"), "must not repeat a kind"));
    }
    labels_ok(field, &selector.labels)
}

/// A ClusterAppHealthPolicy's own rules: it selects (no targetRef), and its namespaceSelector is
/// well-formed. The rest of its spec is checked as an AppHealthPolicy's.
pub fn cluster(spec: &ClusterAppHealthPolicySpec) -> Result<(), InvalidSpec> {
    if spec.policy.target_ref.is_some() {
        return Err(invalid(
            "spec.targetRef",
            "is not allowed in a ClusterAppHealthPolicy: it selects its workloads with \
             spec.targetSelector in the namespaces spec.namespaceSelector selects",
        ));
    }
    if spec.policy.target_selector.is_none() {
        return Err(invalid(
            "spec.targetSelector",
            "is required: a ClusterAppHealthPolicy selects its workloads by kind and labels",
        ));
    }
    match &spec.namespace_selector {
        Some(namespaces) => labels_ok("spec.namespaceSelector", namespaces),
        None => Ok(()),
    }
}

/// A label selector at `field`, checked as Kubernetes checks one.
fn labels_ok(field: &str, selector: &LabelMatch) -> Result<(), InvalidSpec> {
    limits::items(
        &format!("{field}.matchExpressions"),
        &selector.match_expressions,
        16,
    )?;
    if selector.match_labels.len() > 32 {
        return Err(invalid(
            format!("{field}.matchLabels"),
            format!(
                "has {} labels; at most 32 are allowed",
                selector.match_labels.len()
            ),
        ));
    }
    for (key, value) in &selector.match_labels {
        let at = format!("{field}.matchLabels[{key:?}]");
        label_key(&at, key)?;
        label_value(&at, value)?;
    }
    for (i, requirement) in selector.match_expressions.iter().enumerate() {
        let at = format!("{field}.matchExpressions[{i}]");
        label_key(&format!("{at}.key"), &requirement.key)?;
        let wants_values = matches!(
            requirement.operator,
            SelectorOperator::In | SelectorOperator::NotIn
        );
        if wants_values && requirement.values.is_empty() {
            return Err(invalid(
                format!("{at}.values"),
                format!(
                    "must list at least one value for {}",
                    requirement.operator.as_str()
                ),
            ));
        }
        if !wants_values && !requirement.values.is_empty() {
            return Err(invalid(
                format!("{at}.values"),
                format!("must be empty for {}", requirement.operator.as_str()),
            ));
        }
        limits::items(&format!("{at}.values"), &requirement.values, 64)?;
        for (j, value) in requirement.values.iter().enumerate() {
            label_value(&format!("{at}.values[{j}]"), value)?;
        }
    }
    Ok(())
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63 characters
/// (letters, digits, `-`, `_`, `.`, alphanumeric at both ends).
fn label_key(field: &str, key: &str) -> Result<(), InvalidSpec> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| !p.is_empty() && names::object(field, p).is_ok());
    if prefix_ok && label_name(name) && !name.is_empty() {
        return Ok(());
    }
    Err(invalid(
        field,
        format!(
            "{key:?} is not a label key (an optional DNS prefix and '/', then at most 63 letters, digits, '-', '_' or '.')"
        ),
    ))
}

fn label_value(field: &str, value: &str) -> Result<(), InvalidSpec> {
    if label_name(value) {
        return Ok(());
    }
    Err(invalid(
        field,
        format!(
            "{value:?} is not a label value (at most 63 letters, digits, '-', '_' or '.', alphanumeric at both ends)"
        ),
    ))
}

/// Empty, or at most 63 characters of `[A-Za-z0-9._-]` beginning and ending alphanumeric.
fn label_name(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() {
        return true;
    }
    b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(target: &str) -> AppHealthPolicySpec {
        let json = format!(r#"{{"probe": {{"http": {{"path": "/healthz", "port": 8080}}}}{target}}}"#);
        serde_json::from_str(&json).unwrap()
    }

    #[test]
    fn exactly_one_target_well_formed() {
        let cases = [
            (r#","targetRef":{"kind":"Deployment","name":"web"}"#, None),
            (r#","targetSelector":{"matchLabels":{"tier":"web"}}"#, None),
            (r#","targetSelector":{}"#, None),
            (
                r#","targetSelector":{"kinds":["Deployment"],"matchExpressions":[{"key":"app.kubernetes.io/part-of","operator":"In","values":["shop"]}]}"#,
                None,
            ),
            ("", Some("spec.targetRef")),
            (
                r#","targetRef":{"kind":"Deployment","name":"web"},"targetSelector":{}"#,
                Some("spec.targetSelector"),
            ),
            (
                r#","targetRef":{"kind":"Deployment","name":"Web"}"#,
                Some("spec.targetRef.name"),
            ),
            (
                r#","targetRef":{"apiVersion":"apps/v2","kind":"Deployment","name":"web"}"#,
                Some("spec.targetRef.apiVersion"),
            ),
            (
                r#","targetSelector":{"kinds":[]}"#,
                Some("spec.targetSelector.kinds"),
            ),
            (
                r#","targetSelector":{"kinds":["Deployment","Deployment"]}"#,
                Some("spec.targetSelector.kinds"),
            ),
            (
                r#","targetSelector":{"matchLabels":{"bad key!":"x"}}"#,
                Some(r#"spec.targetSelector.matchLabels["bad key!"]"#),
            ),
            (
                r#","targetSelector":{"matchLabels":{"tier":"no spaces"}}"#,
                Some(r#"spec.targetSelector.matchLabels["tier"]"#),
            ),
            (
                r#","targetSelector":{"matchExpressions":[{"key":"tier","operator":"In"}]}"#,
                Some("spec.targetSelector.matchExpressions[0].values"),
            ),
            (
                r#","targetSelector":{"matchExpressions":[{"key":"tier","operator":"Exists","values":["a"]}]}"#,
                Some("spec.targetSelector.matchExpressions[0].values"),
            ),
            (
                r#","targetSelector":{"matchExpressions":[{"key":"","operator":"Exists"}]}"#,
                Some("spec.targetSelector.matchExpressions[0].key"),
            ),
        ];
        for (json, field) in cases {
            let got = target(&spec(json)).err().map(|e| e.field.clone());
            assert_eq!(got.as_deref(), field, "{json}: {got:?}");
        }
    }

    #[test]
    fn a_cluster_policy_selects_in_well_formed_namespaces() {
        let cluster = |rest: &str| -> ClusterAppHealthPolicySpec {
            let json = format!(r#"{{"probe": {{"http": {{"path": "/healthz", "port": 8080}}}}{rest}}}"#);
            serde_json::from_str(&json).unwrap()
        };
        let cases = [
            (r#","targetSelector":{"matchLabels":{"tier":"web"}}"#, None),
            (
                r#","targetSelector":{},"namespaceSelector":{"matchLabels":{"env":"prod"}}"#,
                None,
            ),
            (
                r#","targetSelector":{},"namespaceSelector":{"matchExpressions":[{"key":"kubernetes.io/metadata.name","operator":"NotIn","values":["kube-system"]}]}"#,
                None,
            ),
            ("", Some("spec.targetSelector")),
            (
                r#","targetRef":{"kind":"Deployment","name":"web"},"targetSelector":{}"#,
                Some("spec.targetRef"),
            ),
            (
                r#","targetSelector":{},"namespaceSelector":{"matchLabels":{"env":"no spaces"}}"#,
                Some(r#"spec.namespaceSelector.matchLabels["env"]"#),
            ),
            (
                r#","targetSelector":{},"namespaceSelector":{"matchExpressions":[{"key":"env","operator":"In"}]}"#,
                Some("spec.namespaceSelector.matchExpressions[0].values"),
            ),
        ];
        for (json, field) in cases {
            let got = super::cluster(&cluster(json)).err().map(|e| e.field.clone());
            assert_eq!(got.as_deref(), field, "{json}: {got:?}");
        }
    }
}
