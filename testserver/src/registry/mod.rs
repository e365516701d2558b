//! The resource types the server knows: built-ins plus every registered CRD, and the discovery documents.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::error::ApiError;
use crate::jsonpath::JsonPath;

mod builtins;

use builtins::{BUILTINS, builtin_type};

/// Where the `scale` subresource reads and writes in the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleSpec {
    /// JSONPath-like dotted path of the desired replicas, e.g. `.spec.replicas`.
    pub spec_replicas_path: String,
    /// Dotted path of the observed replicas, e.g. `.status.replicas`.
    pub status_replicas_path: String,
    /// Dotted path of the label selector string, if any.
    pub label_selector_path: Option<String>,
}

/// One additional printer column of a CRD.
#[derive(Debug, Clone)]
pub struct PrinterColumn {
    /// Column header.
    pub name: String,
    /// OpenAPI type: `string`, `integer`, `number`, `boolean`, `date`.
    pub type_: String,
    /// Optional format.
    pub format: String,
    /// Description.
    pub description: String,
    /// Priority (0 = shown by default).
    pub priority: i64,
    /// The parsed JSONPath (None when outside the supported subset: cells are empty).
    pub path: Option<JsonPath>,
}

/// A resource type, served at one group/version.
#[derive(Debug, Clone)]
pub struct ResourceType {
    /// API group, "" for core.
    pub group: String,
    /// Version, e.g. `v1`.
    pub version: String,
    /// Plural resource name (the URL segment).
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Kind.
    pub kind: String,
    /// List kind.
    pub list_kind: String,
    /// Short names (`po`, `deploy`, ...).
    pub short_names: Vec<String>,
    /// Categories (`all`, ...).
    pub categories: Vec<String>,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Whether it has the `status` subresource.
    pub has_status: bool,
    /// The `scale` subresource, if any.
    pub scale: Option<ScaleSpec>,
    /// CRD printer columns (empty for built-ins).
    pub printer_columns: Vec<PrinterColumn>,
    /// Name of the CRD that registered it, None for built-ins.
    pub crd: Option<String>,
    /// The fields a CRD version lets field selectors name (`selectableFields`, as `spec.x`);
    /// empty for built-ins.
    pub selectable_fields: Vec<String>,
}

/// Identity of the storage of a resource (shared by all versions of a CRD).
pub type StoreKey = (String, String);

impl ResourceType {
    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural.group` (or `plural` for the core group), as used in error messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Where its objects are stored (all versions of a CRD share one storage, and so do core v1 and
    /// `events.k8s.io/v1` events).
    pub fn store_key(&self) -> StoreKey {
        crate::convert::storage_key(self)
    }

    /// Whether strategic merge patch is accepted (built-ins only, like the real API server).
    pub fn supports_strategic_merge(&self) -> bool {
        self.crd.is_none()
    }

    fn discovery_entries(&self) -> Vec<Value> {
        let mut out = vec![json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            "shortNames": self.short_names,
            "categories": self.categories,
        })];
        if self.has_status {
            out.push(json!({
                "name": format!("{}/status", self.plural),
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        if self.crd.is_none() && self.group.is_empty() && self.plural == "pods" {
            out.extend(
                POD_SUBRESOURCES
                    .iter()
                    .map(|(name, group, version, kind, verbs)| {
                        let mut e = json!({
                            "name": format!("pods/{name}"), "singularName": "", "namespaced": true,
                            "kind": kind, "verbs": verbs,
                        });
                        if let (false, Value::Object(m)) = (group.is_empty(), &mut e) {
                            m.insert("group".into(), json!(group));
                            m.insert("version".into(), json!(version));
                        }
                        e
                    }),
            );
        }
        if self.scale.is_some() {
            out.push(json!({
                "name": format!("{}/scale", self.plural),
                "singularName": "",
                "namespaced": self.namespaced,
                "group": "autoscaling",
                "version": "v1",
                "kind": "Scale",
                "verbs": ["get", "patch", "update"],
            }));
        }
        out
    }
}

/// The pod subresources served besides `status` (see `crate::pods`): name, group and version of the kind
/// (empty: the pod's), kind, verbs; as the API server lists them.
const POD_SUBRESOURCES: &[(&str, &str, &str, &str, &[&str])] = &[
    ("eviction", "policy", "v1", "Eviction", &["create"]),
    ("exec", "", "", "PodExecOptions", &["create", "get"]),
    ("log", "", "", "Pod", &["get"]),
    ("resize", "", "", "Pod", &["get", "patch", "update"]),
];

/// All known resource types, keyed by (group, version, plural).
#[derive(Debug, Clone)]
pub struct Registry {
    types: BTreeMap<(String, String, String), ResourceType>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

fn str_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

/// Kubernetes version priority: GA > beta > alpha > other; higher numbers first.
fn version_priority(v: &str) -> (u8, u64, u8, u64) {
    let Some(rest) = v.strip_prefix('v') else {
        return (0, 0, 0, 0);
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let Ok(major) = digits.parse::<u64>() else {
        return (0, 0, 0, 0);
    };
    let tail = &rest[digits.len()..];
    if tail.is_empty() {
        return (3, major, 0, 0);
    }
    for (prefix, class) in [("beta", 2u8), ("alpha", 1u8)] {
        if let Some(n) = tail.strip_prefix(prefix).and_then(|n| n.parse::<u64>().ok()) {
            return (class, major, 0, n);
        }
    }
    (0, 0, 0, 0)
}

impl Registry {
    /// The built-in types only.
    pub fn new() -> Self {
        let mut types = BTreeMap::new();
        for b in BUILTINS {
            let t = builtin_type(b);
            types.insert((t.group.clone(), t.version.clone(), t.plural.clone()), t);
        }
        Registry { types }
    }

    /// Look up by URL parts.
    pub fn by_resource(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
    }

    /// Look up by `apiVersion` and `kind`.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<&ResourceType> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        self.types
            .values()
            .find(|t| t.group == group && t.version == version && t.kind == kind)
    }

    /// Every type served.
    pub fn types(&self) -> impl Iterator<Item = &ResourceType> {
        self.types.values()
    }

    /// Whether any type is served under `group/version`.
    pub fn has_group_version(&self, group: &str, version: &str) -> bool {
        self.types
            .values()
            .any(|t| t.group == group && t.version == version)
    }

    /// Validate a CRD object and turn it into its resource types (one per served version).
    pub fn types_from_crd(crd: &Value) -> Result<Vec<ResourceType>, ApiError> {
        let name = str_at(crd, "/metadata/name").unwrap_or_default();
        let invalid = |m: &str| {
            ApiError::invalid(format!(
                "CustomResourceDefinition.apiextensions.k8s.io \"{name}\" is invalid: {m}"
            ))
        };
        let group = str_at(crd, "/spec/group")
            .filter(|g| !g.is_empty())
            .ok_or_else(|| invalid("spec.group: Required value"))?;
        let plural = str_at(crd, "/spec/names/plural")
            .filter(|g| !g.is_empty())
            .ok_or_else(|| invalid("spec.names.plural: Required value"))?;
        let kind = str_at(crd, "/spec/names/kind")
            .filter(|g| !g.is_empty())
            .ok_or_else(|| invalid("spec.names.kind: Required value"))?;
        if name != format!("{plural}.{group}") {
            return Err(invalid(&format!(
                "metadata.name: Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"
            )));
        }
        let singular =
            str_at(crd, "/spec/names/singular").map_or_else(|| kind.to_lowercase(), str::to_string);
        let list_kind =
            str_at(crd, "/spec/names/listKind").map_or_else(|| format!("{kind}List"), str::to_string);
        let namespaced = match str_at(crd, "/spec/scope") {
            Some("Namespaced") => true,
            Some("Cluster") => false,
            _ => {
                return Err(invalid(
                    "spec.scope: Unsupported value: must be Namespaced or Cluster",
                ));
            }
        };
        let versions = crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| invalid("spec.versions: Required value"))?;
        let mut out = Vec::new();
        for v in versions {
            let vname = str_at(v, "/name").ok_or_else(|| invalid("spec.versions[].name: Required value"))?;
            if v.get("served").and_then(Value::as_bool) == Some(false) {
                continue;
            }
            let sub = v.get("subresources");
            let scale = sub.and_then(|s| s.get("scale")).map(|s| ScaleSpec {
                spec_replicas_path: str_at(s, "/specReplicasPath")
                    .unwrap_or(".spec.replicas")
                    .to_string(),
                status_replicas_path: str_at(s, "/statusReplicasPath")
                    .unwrap_or(".status.replicas")
                    .to_string(),
                label_selector_path: str_at(s, "/labelSelectorPath").map(str::to_string),
            });
            let printer_columns = v
                .get("additionalPrinterColumns")
                .and_then(Value::as_array)
                .map(|cols| {
                    cols.iter()
                        .map(|c| PrinterColumn {
                            name: str_at(c, "/name").unwrap_or_default().to_string(),
                            type_: str_at(c, "/type").unwrap_or("string").to_string(),
                            format: str_at(c, "/format").unwrap_or_default().to_string(),
                            description: str_at(c, "/description").unwrap_or_default().to_string(),
                            priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                            path: str_at(c, "/jsonPath").and_then(JsonPath::parse),
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(ResourceType {
                group: group.to_string(),
                version: vname.to_string(),
                plural: plural.to_string(),
                singular: singular.clone(),
                kind: kind.to_string(),
                list_kind: list_kind.clone(),
                short_names: str_list(crd.pointer("/spec/names/shortNames")),
                categories: str_list(crd.pointer("/spec/names/categories")),
                namespaced,
                has_status: sub.and_then(|s| s.get("status")).is_some(),
                scale,
                printer_columns,
                crd: Some(name.to_string()),
                selectable_fields: v
                    .get("selectableFields")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|f| str_at(f, "/jsonPath"))
                    .map(|p| p.trim_start_matches('.').to_string())
                    .collect(),
            });
        }
        Ok(out)
    }

    /// Register (or re-register) the types of a CRD. Fails if the names clash with another type.
    pub fn register_crd(&mut self, crd_name: &str, types: Vec<ResourceType>) -> Result<(), ApiError> {
        for t in &types {
            if let Some(existing) = self.by_resource(&t.group, &t.version, &t.plural) {
                if existing.crd.as_deref() != Some(crd_name) {
                    return Err(ApiError::invalid(format!(
                        "resource {}/{} {} is already served",
                        t.group, t.version, t.plural
                    )));
                }
            }
        }
        self.unregister_crd(crd_name);
        for t in types {
            self.types
                .insert((t.group.clone(), t.version.clone(), t.plural.clone()), t);
        }
        Ok(())
    }

    /// Remove a CRD's types; returns the store keys they used.
    pub fn unregister_crd(&mut self, crd_name: &str) -> Vec<StoreKey> {
        let mut keys = Vec::new();
        self.types.retain(|_, t| {
            if t.crd.as_deref() == Some(crd_name) {
                let k = t.store_key();
                if !keys.contains(&k) {
                    keys.push(k);
                }
                false
            } else {
                true
            }
        });
        keys
    }

    fn group_versions(&self) -> BTreeMap<String, Vec<String>> {
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for t in self.types.values() {
            let vs = groups.entry(t.group.clone()).or_default();
            if !vs.contains(&t.version) {
                vs.push(t.version.clone());
            }
        }
        for vs in groups.values_mut() {
            vs.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        }
        groups
    }

    /// `/api`.
    pub fn api_versions(&self, server_address: &str) -> Value {
        json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
        })
    }

    fn group_entry(name: &str, versions: &[String]) -> Value {
        let vs: Vec<Value> = versions
            .iter()
            .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
            .collect();
        let preferred = vs.first().cloned().unwrap_or(Value::Null);
        json!({"name": name, "versions": vs, "preferredVersion": preferred})
    }

    /// `/apis`.
    pub fn api_group_list(&self) -> Value {
        let groups: Vec<Value> = self
            .group_versions()
            .iter()
            .filter(|(g, _)| !g.is_empty())
            .map(|(g, vs)| Self::group_entry(g, vs))
            .collect();
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    }

    /// `/apis/{group}`.
    pub fn api_group(&self, group: &str) -> Option<Value> {
        let gv = self.group_versions();
        let vs = gv.get(group).filter(|_| !group.is_empty())?;
        let mut g = Self::group_entry(group, vs);
        if let Value::Object(m) = &mut g {
            m.insert("kind".into(), json!("APIGroup"));
            m.insert("apiVersion".into(), json!("v1"));
        }
        Some(g)
    }

    /// `/api/v1` or `/apis/{group}/{version}`.
    pub fn api_resource_list(&self, group: &str, version: &str) -> Option<Value> {
        if !self.has_group_version(group, version) {
            return None;
        }
        let resources: Vec<Value> = self
            .types
            .values()
            .filter(|t| t.group == group && t.version == version)
            .flat_map(ResourceType::discovery_entries)
            .collect();
        let gv = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        Some(
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
        )
    }
}

#[cfg(test)]
mod tests;
