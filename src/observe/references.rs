//! What a policy and its pods reference in ConfigMaps and Secrets: header values and CA bundles
//! for probes (read when the probe is set up; values never logged), and the configuration a pod
//! template mounts or reads, for the configChanged trigger.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
};

use jiff::Timestamp;
use k8s_openapi::{
    api::core::v1::{ConfigMap, Secret},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{Api, Client};

use super::{
    pod::{CachedPod, ConfigKind},
    request::{RequestTemplate, Sensitive, TlsOptions},
};
use crate::api::{
    KeyRef,
    validate::{CaRef, Check, HeaderSource, ProbeSettings},
};

/// A reference that could not be resolved: the field that names it and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unresolved {
    pub field: String,
    pub problem: KeyProblem,
}

/// What is wrong with a referenced key. The text never contains the key's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyProblem {
    #[error("{kind} {name} could not be read: {error}")]
    Unreadable {
        kind: &'static str,
        name: String,
        error: String,
    },
    #[error("{kind} {name} does not exist")]
    Missing { kind: &'static str, name: String },
    #[error("{kind} {name} has no key {key:?}")]
    NoKey {
        kind: &'static str,
        name: String,
        key: String,
    },
    #[error("key {key:?} of Secret {name} is not UTF-8 text")]
    NotText { name: String, key: String },
    #[error("key {key:?} of Secret {name} holds characters not allowed in a header value")]
    NotHeaderValue { name: String, key: String },
    #[error("the referenced key holds no PEM certificate")]
    NotPem,
}

impl KeyProblem {
    /// A stable name for the kind of problem.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unreadable { .. } => "ReferenceUnreadable",
            Self::Missing { .. } => "ReferenceMissing",
            Self::NoKey { .. } => "ReferenceKeyMissing",
            Self::NotText { .. } | Self::NotHeaderValue { .. } | Self::NotPem => "ReferenceValueInvalid",
        }
    }

    fn no_key(kind: ConfigKind, key: &KeyRef) -> Self {
        Self::NoKey {
            kind: kind.as_str(),
            name: key.name.clone(),
            key: key.key.clone(),
        }
    }
}

impl std::fmt::Display for Unresolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

/// Keys read from Secrets and ConfigMaps, with the resourceVersion they were read at. A key is
/// read from the API again only when the watched metadata shows the object at another version, so
/// a reconcile costs no reads while nothing changed. Values are [`Sensitive`].
#[derive(Default)]
pub struct ReadCache(Mutex<HashMap<CachedKey, (String, Read)>>);

/// Kind, namespace, name and key.
type CachedKey = (ConfigKind, String, String, String);

/// A key's value, or why there is none (for people).
type Read = Result<Sensitive, KeyProblem>;

impl ReadCache {
    fn get(&self, key: &CachedKey, version: &str) -> Option<Read> {
        let entries = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(key)
            .filter(|(v, _)| v == version)
            .map(|(_, value)| value.clone())
    }

    fn put(&self, key: CachedKey, version: String, value: Read) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, (version, value));
    }
}

/// Where reads go: the API, through the cache, with the versions the metadata watch has seen.
pub struct Reads<'a> {
    pub client: &'a Client,
    pub namespace: &'a str,
    pub cache: &'a ReadCache,
    /// The resourceVersion of a ConfigMap or Secret of the namespace as last watched, if known.
    pub version: &'a (dyn Fn(ConfigKind, &str) -> Option<String> + Send + Sync),
}

impl Reads<'_> {
    /// The value of `key` in the named ConfigMap or Secret; Err is the problem, for people.
    async fn key(&self, kind: ConfigKind, key: &KeyRef) -> Read {
        let cached = (kind, self.namespace.to_owned(), key.name.clone(), key.key.clone());
        if let Some(version) = (self.version)(kind, &key.name)
            && let Some(hit) = self.cache.get(&cached, &version)
        {
            return hit;
        }
        let (version, value) = match kind {
            ConfigKind::Secret => {
                let api: Api<Secret> = Api::namespaced(self.client.clone(), self.namespace);
                let secret = api
                    .get_opt(&key.name)
                    .await
                    .map_err(|e| unreadable(kind, key, &e))?
                    .ok_or_else(|| missing(kind, key))?;
                (
                    secret.metadata.resource_version.clone(),
                    secret_value(&secret, key),
                )
            }
            ConfigKind::ConfigMap => {
                let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), self.namespace);
                let cm = api
                    .get_opt(&key.name)
                    .await
                    .map_err(|e| unreadable(kind, key, &e))?
                    .ok_or_else(|| missing(kind, key))?;
                let value = cm
                    .data
                    .as_ref()
                    .and_then(|d| d.get(&key.key))
                    .map(|v| Sensitive::new(v.clone()))
                    .ok_or_else(|| KeyProblem::no_key(kind, key));
                (cm.metadata.resource_version.clone(), value)
            }
        };
        if let Some(version) = version {
            self.cache.put(cached, version, value.clone());
        }
        value
    }

    async fn field(&self, kind: ConfigKind, key: &KeyRef, field: &str) -> Result<Sensitive, Unresolved> {
        self.key(kind, key).await.map_err(|problem| Unresolved {
            field: field.to_owned(),
            problem,
        })
    }
}

fn unreadable(kind: ConfigKind, key: &KeyRef, error: &kube::Error) -> KeyProblem {
    KeyProblem::Unreadable {
        kind: kind.as_str(),
        name: key.name.clone(),
        error: error.to_string(),
    }
}

fn missing(kind: ConfigKind, key: &KeyRef) -> KeyProblem {
    KeyProblem::Missing {
        kind: kind.as_str(),
        name: key.name.clone(),
    }
}

fn secret_value(secret: &Secret, key: &KeyRef) -> Read {
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&key.key))
        .map(|b| b.0.clone())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(&key.key))
                .map(|s| s.clone().into_bytes())
        })
        .ok_or_else(|| KeyProblem::no_key(ConfigKind::Secret, key))?;
    String::from_utf8(bytes)
        .map(Sensitive::new)
        .map_err(|_| KeyProblem::NotText {
            name: key.name.clone(),
            key: key.key.clone(),
        })
}

/// Reads the Secret and ConfigMap keys a probe needs, in the policy's namespace.
pub async fn resolve_template(
    reads: &Reads<'_>,
    probe: &ProbeSettings,
) -> Result<RequestTemplate, Unresolved> {
    let mut template = RequestTemplate::literal(probe);
    let Check::Http(http) = &probe.check else {
        return Ok(template);
    };
    let mut headers = Vec::with_capacity(http.headers.len());
    for (i, h) in http.headers.iter().enumerate() {
        let value = match &h.value {
            HeaderSource::Literal(v) => Sensitive::new(v.clone()),
            HeaderSource::Secret(key) => {
                let field = format!("spec.probe.http.headers[{i}].valueFrom.secretKeyRef");
                let value = reads.field(ConfigKind::Secret, key, &field).await?;
                if http::HeaderValue::from_str(value.expose()).is_err() {
                    return Err(Unresolved {
                        field,
                        problem: KeyProblem::NotHeaderValue {
                            name: key.name.clone(),
                            key: key.key.clone(),
                        },
                    });
                }
                value
            }
        };
        headers.push((h.name.clone(), value));
    }
    template.headers = headers;
    if let Some(tls) = &mut template.tls {
        tls.ca_pem = match &http.tls.ca {
            None => None,
            Some(CaRef::Secret(key)) => Some(
                reads
                    .field(ConfigKind::Secret, key, "spec.probe.http.tls.ca.secretKeyRef")
                    .await?
                    .expose()
                    .to_owned(),
            ),
            Some(CaRef::ConfigMap(key)) => Some(
                reads
                    .field(
                        ConfigKind::ConfigMap,
                        key,
                        "spec.probe.http.tls.ca.configMapKeyRef",
                    )
                    .await?
                    .expose()
                    .to_owned(),
            ),
        };
        check_ca(tls)?;
    }
    Ok(template)
}

fn check_ca(tls: &TlsOptions) -> Result<(), Unresolved> {
    match &tls.ca_pem {
        Some(pem) if !pem.contains("-----BEGIN CERTIFICATE-----") => Err(Unresolved {
            field: "spec.probe.http.tls.ca".into(),
            problem: KeyProblem::NotPem,
        }),
        _ => Ok(()),
    }
}

/// The ConfigMaps and Secrets a pod mounts or reads into its environment (volumes, and the `env`
/// and `envFrom` of its containers and init containers), sorted, each once, none unnamed.
pub fn referenced(pod: &CachedPod) -> impl Iterator<Item = (ConfigKind, &str)> {
    pod.references.iter().map(|(kind, name)| (*kind, &**name))
}

/// When an object last changed: the latest write recorded in its managedFields (every write
/// through the API server records one), else its creation.
pub fn changed_at(meta: &ObjectMeta) -> Option<Timestamp> {
    meta.managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.time.as_ref().map(|t| t.0))
        .max()
        .or_else(|| meta.creation_timestamp.as_ref().map(|t| t.0))
}

/// When a pod started (its status.startTime, else its creation).
pub fn started_at(pod: &CachedPod) -> Option<Timestamp> {
    pod.start_time
        .or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// Sentences naming the pod's ConfigMaps and Secrets that changed after it started.
pub fn config_changes(
    pod: &CachedPod,
    lookup: impl Fn(ConfigKind, &str) -> Option<ObjectMeta>,
) -> Vec<String> {
    let Some(started) = started_at(pod) else {
        return Vec::new();
    };
    referenced(pod)
        .filter_map(|(kind, name)| {
            let changed = changed_at(&lookup(kind, name)?)?;
            (changed > started).then(|| {
                format!(
                    "{} {name} changed at {changed}, after the pod started at {started}",
                    kind.as_str()
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(created: &str, writes: &[&str]) -> ObjectMeta {
        serde_json::from_value(serde_json::json!({
            "creationTimestamp": created,
            "managedFields": writes.iter().map(|t| serde_json::json!({"manager": "kubectl", "operation": "Update", "time": t})).collect::<Vec<_>>()
        }))
        .unwrap()
    }

    fn pod() -> CachedPod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-a", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {
                "volumes": [{"name": "cfg", "configMap": {"name": "web-config"}},
                            {"name": "tls", "secret": {"secretName": "web-tls"}}],
                "containers": [{"name": "app",
                    "envFrom": [{"secretRef": {"name": "web-env"}}],
                    "env": [{"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "flags", "key": "mode"}}}]}]
            },
            "status": {"startTime": "2026-01-01T00:00:10Z"}
        }))
        .unwrap()
    }

    #[test]
    fn finds_every_kind_of_reference() {
        let pod = pod();
        let refs: Vec<(ConfigKind, &str)> = referenced(&pod).collect();
        assert_eq!(
            refs,
            [
                (ConfigKind::ConfigMap, "flags"),
                (ConfigKind::ConfigMap, "web-config"),
                (ConfigKind::Secret, "web-env"),
                (ConfigKind::Secret, "web-tls"),
            ]
        );
    }

    #[test]
    fn a_change_after_the_pod_started_is_named() {
        let changes = config_changes(&pod(), |kind, name| match (kind, name) {
            (ConfigKind::ConfigMap, "web-config") => {
                Some(meta("2025-12-01T00:00:00Z", &["2026-01-01T00:05:00Z"]))
            }
            (ConfigKind::Secret, "web-tls") => Some(meta("2025-12-01T00:00:00Z", &["2025-12-02T00:00:00Z"])),
            _ => None,
        });
        assert_eq!(
            changes,
            [
                "ConfigMap web-config changed at 2026-01-01T00:05:00Z, after the pod started at 2026-01-01T00:00:10Z"
            ]
        );
    }

    #[test]
    fn without_managed_fields_the_creation_time_counts() {
        let changes = config_changes(&pod(), |kind, _| {
            (kind == ConfigKind::Secret).then(|| meta("2026-01-01T00:01:00Z", &[]))
        });
        assert_eq!(changes.len(), 2, "{changes:?}");
    }
}
