//! CollectDiagnostics: for each unhealthy pod, the last lines of every container's log (and of its
//! previous, crashed instance), its container states and conditions, and its recent Events, in a
//! ConfigMap owned by the policy (garbage-collected with it), bounded below the 1 MiB a ConfigMap
//! holds (truncated, and it says so). Captures beyond spec.remediation.diagnosticsRetention are
//! deleted, oldest first. The ConfigMap's name derives from the decision time: it is the mark.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{ConfigMap, Event, Pod},
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use kube::{
    Api,
    api::{AttachParams, DeleteParams, ListParams, LogParams, PostParams},
};
use tokio::io::AsyncReadExt;

use super::{
    ActCtx, ActError, Action, Descriptor, Done, Effect, MANAGER, Remediation, StepParams, api_error,
    params::{Params, StepField, named},
};
use crate::{
    api::{
        CollectDiagnosticsParams, RemediationStep,
        validate::{
            InvalidSpec, at_least_one, at_most, chars, invalid, items, optional_chars, positive_duration,
        },
    },
    rbac::{Right, right},
    record::Capture,
};

/// What CollectDiagnostics is: see [`Descriptor`].
pub(super) const DESCRIPTOR: Descriptor = Descriptor {
    action: crate::api::Action::CollectDiagnostics,
    reason: "DiagnosticsCollected",
    changes_target: false,
    restarts_pods: false,
    replaces_pods: false,
    permission: "collectDiagnostics",
    rights: &[
        right("", "pods/log", &["get"]),
        right("", "events", &["list"]),
        right("", "configmaps", &["create", "delete"]),
        // Only with `exec` set; a WebSocket exec checks get (before Kubernetes 1.31) or create.
        Right {
            also: Some("diagnosticsExec"),
            ..right("", "pods/exec", &["get", "create"])
        },
    ],
    why: "capture logs, Events and a thread dump before anything restarts; keep and prune the ConfigMaps it writes (`pods/exec` only with `diagnosticsExec`)",
};

pub struct CollectDiagnostics;

/// CollectDiagnostics' parameters, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiagnosticsSettings {
    pub log_lines: u32,
    pub previous: bool,
    pub exec: Option<ExecSettings>,
}

impl Default for DiagnosticsSettings {
    fn default() -> Self {
        Self {
            log_lines: 200,
            previous: true,
            exec: None,
        }
    }
}

/// The command run in each pod, bounded by its timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSettings {
    pub container: Option<String>,
    pub command: Vec<String>,
    pub timeout: std::time::Duration,
}

impl Params for CollectDiagnostics {
    type Settings = DiagnosticsSettings;
    const TIMEOUT: std::time::Duration = std::time::Duration::ZERO;

    fn block(step: &RemediationStep) -> Option<&'static str> {
        named("collectDiagnostics", step.collect_diagnostics.as_ref())
    }

    fn limits(f: StepField, step: &RemediationStep) -> Result<(), InvalidSpec> {
        let Some(d) = &step.collect_diagnostics else {
            return Ok(());
        };
        at_most(&f.at("collectDiagnostics.logLines"), d.log_lines, 10_000)?;
        if let Some(e) = &d.exec {
            optional_chars(
                &f.at("collectDiagnostics.exec.container"),
                e.container.as_ref(),
                63,
            )?;
            items(&f.at("collectDiagnostics.exec.command"), &e.command, 32)?;
            for (j, arg) in e.command.iter().enumerate() {
                chars(&f.at(&format!("collectDiagnostics.exec.command[{j}]")), arg, 1024)?;
            }
        }
        Ok(())
    }

    fn settings(f: StepField, step: &RemediationStep) -> Result<DiagnosticsSettings, InvalidSpec> {
        let default = CollectDiagnosticsParams::default();
        let p = step.collect_diagnostics.as_deref().unwrap_or(&default);
        let exec = match &p.exec {
            None => None,
            Some(e) => {
                if e.command.is_empty() || e.command.iter().any(String::is_empty) {
                    return Err(invalid(
                        f.at("collectDiagnostics.exec.command"),
                        "must name a command, with no empty argument",
                    ));
                }
                Some(ExecSettings {
                    container: e.container.clone(),
                    command: e.command.clone(),
                    timeout: positive_duration(&f.at("collectDiagnostics.exec.timeout"), &e.timeout)?,
                })
            }
        };
        Ok(DiagnosticsSettings {
            log_lines: at_least_one(&f.at("collectDiagnostics.logLines"), p.log_lines)?,
            previous: p.previous,
            exec,
        })
    }
}

/// Bytes of data a capture holds at most: a ConfigMap holds 1 MiB with its keys and metadata.
pub const MAX_CAPTURE_BYTES: usize = 900 * 1024;
/// Label that finds a policy's captures (its UID: names may be longer than a label value).
pub const POLICY_UID_LABEL: &str = "apphealth.io/policy-uid";

/// The ConfigMap of the capture decided at `at`.
pub fn config_map_name(policy: &str, at: jiff::Timestamp) -> String {
    let stamp = at.strftime("%Y%m%d-%H%M%S").to_string();
    let max_prefix = 253 - "-diagnostics-".len() - stamp.len();
    let prefix: String = policy.chars().take(max_prefix).collect();
    format!("{}-diagnostics-{stamp}", prefix.trim_end_matches(['-', '.']))
}

/// Keeps the end of `text` within `max` bytes, saying what was dropped.
fn keep_tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut cut = text.len().saturating_sub(max);
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    format!(
        "[truncated: the first {cut} bytes are not kept]\n{}",
        &text[cut..]
    )
}

/// Fits the pieces in [`MAX_CAPTURE_BYTES`]: pieces share the space evenly, small ones give what
/// they do not need to the others.
fn bounded(pieces: BTreeMap<String, String>) -> (BTreeMap<String, String>, bool) {
    let total: usize = pieces.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total <= MAX_CAPTURE_BYTES {
        return (pieces, false);
    }
    let mut sizes: Vec<(String, usize)> = pieces.iter().map(|(k, v)| (k.clone(), v.len())).collect();
    sizes.sort_by_key(|(_, n)| *n);
    let keys: usize = pieces.keys().map(|k| k.len() + 64).sum();
    let mut left = MAX_CAPTURE_BYTES.saturating_sub(keys);
    let mut limits = BTreeMap::new();
    for (i, (key, size)) in sizes.iter().enumerate() {
        let share = left / (sizes.len() - i);
        let limit = (*size).min(share);
        limits.insert(key.clone(), limit);
        left -= limit;
    }
    let out = pieces
        .into_iter()
        .map(|(k, v)| {
            let limit = limits.get(&k).copied().unwrap_or(0);
            let v = keep_tail(&v, limit);
            (k, v)
        })
        .collect();
    (out, true)
}

/// Output kept from a diagnostics command, per stream.
const MAX_EXEC_BYTES: u64 = 256 * 1024;

/// Runs the diagnostics command in `pod`, bounded in output and time; a sentence when it fails.
async fn exec(ctx: &ActCtx<'_>, pod: &Pod, exec: &ExecSettings) -> String {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let ns = &ctx.workload.namespace;
    let container = exec
        .container
        .clone()
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.containers.first())
                .map(|c| c.name.clone())
        })
        .unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let params = AttachParams::default()
        .container(container.clone())
        .stdin(false)
        .stdout(true)
        .stderr(true);
    let command = exec.command.join(" ");
    let run = async {
        let mut attached = pods.exec(&name, exec.command.clone(), &params).await.map_err(
            |e| match api_error("create", "pods/exec", ns)(e) {
                ActError::Forbidden { .. } => {
                    format!(
                        "the operator may not create pods/exec in namespace {ns}; grant it, or remove exec"
                    )
                }
                other => other.to_string(),
            },
        )?;
        let read = |stream: Option<tokio::io::ReadHalf<tokio::io::SimplexStream>>| async move {
            let mut buf = Vec::new();
            if let Some(s) = stream {
                let _ = s.take(MAX_EXEC_BYTES).read_to_end(&mut buf).await;
            }
            String::from_utf8_lossy(&buf).into_owned()
        };
        let status = attached.take_status();
        let (stdout, stderr) = tokio::join!(read(attached.stdout()), read(attached.stderr()));
        let status = match status {
            Some(s) => s.await,
            None => None,
        };
        let outcome = match status {
            Some(s) if s.status.as_deref() == Some("Success") => "exit code 0".to_owned(),
            Some(s) => s.message.unwrap_or_else(|| "failed".into()),
            None => "no exit status".to_owned(),
        };
        Ok::<_, String>(format!(
            "$ {command}   ({outcome})\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        ))
    };
    match tokio::time::timeout(exec.timeout, run).await {
        Ok(Ok(text)) => text,
        Ok(Err(why)) => format!("$ {command}\ncould not run it in container {container}: {why}\n"),
        Err(_) => format!(
            "$ {command}\nabandoned after {} (collectDiagnostics.exec.timeout)\n",
            crate::api::format_duration(exec.timeout)
        ),
    }
}

async fn capture_pod(
    ctx: &ActCtx<'_>,
    name: &str,
    settings: &DiagnosticsSettings,
    out: &mut BTreeMap<String, String>,
) -> Result<(), ActError> {
    let (log_lines, previous) = (settings.log_lines, settings.previous);
    let ns = &ctx.workload.namespace;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let Some(pod) = pods.get_opt(name).await.map_err(api_error("get", "pods", ns))? else {
        out.insert(format!("{name}.status.yaml"), "the pod no longer exists\n".into());
        return Ok(());
    };
    let status = pod.status.clone().unwrap_or_default();
    let state = serde_json::json!({
        "phase": status.phase,
        "conditions": status.conditions,
        "containerStatuses": status.container_statuses,
    });
    out.insert(
        format!("{name}.status.yaml"),
        serde_saphyr::to_string(&state).unwrap_or_else(|e| format!("could not render: {e}\n")),
    );
    let containers: Vec<String> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter().map(|c| c.name.clone()))
        .collect();
    let restarted = |c: &str| {
        status.container_statuses.iter().flatten().any(|s| {
            s.name == c
                && (s.restart_count > 0 || s.last_state.as_ref().is_some_and(|l| l.terminated.is_some()))
        })
    };
    for container in &containers {
        let mut params = LogParams {
            container: Some(container.clone()),
            tail_lines: Some(i64::from(log_lines)),
            limit_bytes: Some(i64::try_from(MAX_CAPTURE_BYTES).unwrap_or(i64::MAX)),
            ..LogParams::default()
        };
        let log = pods
            .logs(name, &params)
            .await
            .unwrap_or_else(|e| format!("could not read the log: {e}\n"));
        out.insert(format!("{name}.{container}.log"), log);
        if previous && restarted(container) {
            params.previous = true;
            let log = pods
                .logs(name, &params)
                .await
                .unwrap_or_else(|e| format!("could not read the previous log: {e}\n"));
            out.insert(format!("{name}.{container}.previous.log"), log);
        }
    }
    let events: Api<Event> = Api::namespaced(ctx.client.clone(), ns);
    let listed = events
        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await
        .map_err(api_error("list", "events", ns))?;
    let mut lines: Vec<String> = listed
        .items
        .iter()
        .filter(|e| e.involved_object.kind.as_deref() == Some("Pod"))
        .map(|e| {
            let at = e
                .last_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
                .or_else(|| e.event_time.as_ref().map(|t| t.0.to_string()))
                .unwrap_or_default();
            format!(
                "{at} {} {} {}",
                e.type_.as_deref().unwrap_or_default(),
                e.reason.as_deref().unwrap_or_default(),
                e.message.as_deref().unwrap_or_default()
            )
        })
        .collect();
    lines.sort();
    out.insert(format!("{name}.events.txt"), lines.join("\n") + "\n");
    if let Some(e) = &settings.exec {
        out.insert(format!("{name}.exec.txt"), exec(ctx, &pod, e).await);
    }
    Ok(())
}

/// Captures `pods` into the ConfigMap of `r`'s mark and prunes old captures.
async fn capture(ctx: &ActCtx<'_>, r: &Remediation, pods: &[String]) -> Result<Done, ActError> {
    let settings = match &r.params {
        StepParams::CollectDiagnostics(d) => d,
        _ => &ctx.diagnostics,
    };
    let ns = &ctx.workload.namespace;
    let name = config_map_name(&ctx.policy.captures, r.at);
    if pods.is_empty() {
        return Ok(Done::skipped(
            "no unhealthy pod to capture (a probe through a Service judges the Service)",
        ));
    }
    if r.dry_run {
        return Ok(Done::succeeded(format!(
            "would capture logs, states and Events of pod {} into ConfigMap {name}.",
            pods.join(", ")
        )));
    }
    let mut pieces = BTreeMap::new();
    for pod in pods {
        capture_pod(ctx, pod, settings, &mut pieces).await?;
    }
    let (mut data, truncated) = bounded(pieces);
    data.insert(
        "summary.txt".into(),
        format!(
            "Captured at {} by {} {} (step {} of {}) for {}.\nWhy: {}\n{}",
            r.at,
            ctx.policy.kind,
            ctx.policy.name,
            r.step,
            r.of,
            ctx.workload,
            ctx.summary,
            if truncated {
                "Some pieces were truncated (keeping their end) to fit a ConfigMap.\n"
            } else {
                ""
            }
        ),
    );
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            labels: Some(BTreeMap::from([
                ("app.kubernetes.io/managed-by".to_owned(), MANAGER.to_owned()),
                (POLICY_UID_LABEL.to_owned(), ctx.policy.uid.clone()),
            ])),
            owner_references: Some(vec![OwnerReference {
                api_version: "apphealth.io/v1alpha1".into(),
                kind: ctx.policy.kind.clone(),
                name: ctx.policy.name.clone(),
                uid: ctx.policy.uid.clone(),
                ..OwnerReference::default()
            }]),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..ConfigMap::default()
    };
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    let params = PostParams {
        field_manager: Some(MANAGER.into()),
        ..PostParams::default()
    };
    match api.create(&params, &cm).await {
        Ok(_) => {}
        // Same name, same mark: it was created before a restart.
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(api_error("create", "configmaps", ns)(e)),
    }
    prune(ctx, &api).await?;
    Ok(Done::succeeded(format!(
        "Captured logs, states and Events of pod {} in ConfigMap {name}{}.",
        pods.join(", "),
        if truncated { " (truncated to fit)" } else { "" }
    ))
    .with(Effect::Diagnostics(Capture {
        config_map: name,
        at: r.at,
        pods: pods.to_vec(),
    })))
}

/// Deletes the policy's captures beyond the retention, oldest first.
async fn prune(ctx: &ActCtx<'_>, api: &Api<ConfigMap>) -> Result<(), ActError> {
    let ns = &ctx.workload.namespace;
    let mut captures = api
        .list(&ListParams::default().labels(&format!("{POLICY_UID_LABEL}={}", ctx.policy.uid)))
        .await
        .map_err(api_error("list", "configmaps", ns))?
        .items;
    // Names end in the capture time, so they sort oldest first.
    captures.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let keep = usize::try_from(ctx.retention).unwrap_or(usize::MAX);
    let excess = captures.len().saturating_sub(keep);
    for old in captures.iter().take(excess) {
        if let Some(name) = &old.metadata.name {
            match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(api_error("delete", "configmaps", ns)(e)),
            }
        }
    }
    Ok(())
}

/// Captures the pods a restarting remediation is about to restart, when the ladder collects
/// diagnostics and they have not been captured yet.
pub(super) async fn capture_before_restart(ctx: &ActCtx<'_>, r: &Remediation) -> Result<Done, ActError> {
    capture(ctx, r, &r.capture_first).await
}

impl Action for CollectDiagnostics {
    async fn apply(&self, ctx: &ActCtx<'_>, r: &Remediation) -> Result<Done, ActError> {
        capture(ctx, r, &r.pods).await
    }

    async fn applied(&self, ctx: &ActCtx<'_>, r: &Remediation) -> Result<Option<Done>, ActError> {
        let ns = &ctx.workload.namespace;
        let name = config_map_name(&ctx.policy.captures, r.at);
        let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
        let found = api
            .get_opt(&name)
            .await
            .map_err(api_error("get", "configmaps", ns))?;
        Ok(found.map(|_| {
            Done::succeeded(format!("ConfigMap {name} holds the capture.")).with(Effect::Diagnostics(
                Capture {
                    config_map: name,
                    at: r.at,
                    pods: r.pods.clone(),
                },
            ))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_time_and_fit_a_name() {
        let a = config_map_name("web", "2026-01-01T00:00:09Z".parse().unwrap());
        let b = config_map_name("web", "2026-01-01T00:00:10Z".parse().unwrap());
        assert_eq!(a, "web-diagnostics-20260101-000009");
        assert!(a < b);
        let long = config_map_name(&"x".repeat(300), "2026-01-01T00:00:09Z".parse().unwrap());
        assert_eq!(long.len(), 253);
    }

    #[test]
    fn a_capture_is_bounded_and_keeps_the_end_of_each_piece() {
        let big = "line\n".repeat(400_000); // 2 MB
        let pieces = BTreeMap::from([
            ("a.app.log".to_owned(), big.clone()),
            ("a.status.yaml".to_owned(), "phase: Running\n".to_owned()),
            ("b.app.log".to_owned(), big),
        ]);
        let (data, truncated) = bounded(pieces);
        assert!(truncated);
        let total: usize = data.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(total <= MAX_CAPTURE_BYTES, "{total}");
        assert_eq!(
            data["a.status.yaml"], "phase: Running\n",
            "small pieces are kept whole"
        );
        assert!(data["a.app.log"].starts_with("[truncated: the first "));
        assert!(data["a.app.log"].ends_with("line\n"));
    }
}
