//! The object store: typed by [`ResourceType`], a global resourceVersion counter, bounded per-type watch
//! history, the last configuration applied by each server-side-apply field manager, `metadata.managedFields`
//! write times per field manager, and the [`Clock`] that stamps them.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use crate::admission::{Admission, Checks};
use crate::convert;
use crate::error::ApiError;
use crate::fields;
use crate::patch;
use crate::registry::{Registry, ResourceType, StoreKey};
use crate::selector::{FieldSelector, LabelSelector};

/// How many events of each resource type are kept for watches that resume from a resourceVersion.
pub const HISTORY_PER_TYPE: usize = 4096;

/// Watch event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Object created.
    Added,
    /// Object changed.
    Modified,
    /// Object deleted.
    Deleted,
}

impl EventKind {
    /// The watch wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Added => "ADDED",
            EventKind::Modified => "MODIFIED",
            EventKind::Deleted => "DELETED",
        }
    }
}

/// A stored change.
#[derive(Debug, Clone)]
pub struct Event {
    /// resourceVersion of the change.
    pub rv: u64,
    /// Type of change.
    pub kind: EventKind,
    /// Which storage.
    pub key: StoreKey,
    /// The object after the change (for deletes: the last state, with the deletion's resourceVersion).
    pub object: Value,
    /// The object before the change (for `Modified`), used to turn selector transitions into ADDED/DELETED.
    pub old: Option<Value>,
}

/// The part of an object a request addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sub {
    /// The object itself.
    Main,
    /// `/status`.
    Status,
    /// `/scale`.
    Scale,
    /// `/resize` of pods: only container `resources` and `resizePolicy` changes are kept, checked like
    /// the API server's resize validation (see `crate::resize`).
    Resize,
}

impl Sub {
    /// The subresource name: "" for the object itself, else `status` / `scale` / `resize` (as in
    /// `managedFields[].subresource`).
    pub fn name(self) -> &'static str {
        match self {
            Sub::Main => "",
            Sub::Status => "status",
            Sub::Scale => "scale",
            Sub::Resize => "resize",
        }
    }
}

/// Patch flavours, by `Content-Type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchType {
    /// `application/merge-patch+json`.
    Merge,
    /// `application/json-patch+json`.
    Json,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply; the field manager is the one of the write).
    /// `force` (the `force=true` parameter) takes over fields other appliers own instead of failing
    /// with a conflict.
    Apply {
        /// Whether conflicts are overridden.
        force: bool,
    },
}

/// Filters of a list or watch.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Namespace, None for all (or cluster-scoped).
    pub namespace: Option<String>,
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
}

impl Filter {
    /// Whether an object passes.
    pub fn matches(&self, obj: &Value) -> bool {
        if let Some(ns) = &self.namespace {
            if obj.pointer("/metadata/namespace").and_then(Value::as_str) != Some(ns.as_str()) {
                return false;
            }
        }
        self.labels.matches(obj) && self.fields.matches(obj)
    }
}

/// What a new watch starts from.
pub struct WatchStart {
    /// Current objects to send as ADDED first (when starting from "now"), as served.
    pub initial: Vec<Value>,
    /// History events to replay (when resuming from a resourceVersion); objects in storage form (see
    /// [`present`]).
    pub replay: Vec<Arc<Event>>,
    /// Live events after the snapshot.
    pub live: broadcast::Receiver<Arc<Event>>,
    /// The resourceVersion of the snapshot.
    pub rv: u64,
}

type ObjKey = (String, String);
type AppliedKey = (StoreKey, String, String, &'static str, String);

#[derive(Clone)]
struct State {
    registry: Registry,
    rv: u64,
    objects: HashMap<StoreKey, BTreeMap<ObjKey, Value>>,
    history: HashMap<StoreKey, VecDeque<Arc<Event>>>,
    compacted: HashMap<StoreKey, u64>,
    applied: HashMap<AppliedKey, Value>,
    rng: u64,
    /// Compiled admission checks by (CRD name, version, the CRD's resourceVersion).
    checks: HashMap<(String, String, String), Arc<Checks>>,
}

/// Who writes, and for a write over HTTP its admission (custom resources are pruned and validated
/// against their CRD); direct writes (a plain manager name) are stored as given.
#[derive(Debug, Clone, Copy)]
pub struct Writer<'a> {
    /// The field manager.
    pub manager: &'a str,
    /// The request's admission, None for a write straight into storage.
    pub admission: Option<&'a Admission>,
}

impl<'a> From<&'a str> for Writer<'a> {
    fn from(manager: &'a str) -> Self {
        Self {
            manager,
            admission: None,
        }
    }
}

impl<'a> From<&'a String> for Writer<'a> {
    fn from(manager: &'a String) -> Self {
        Self::from(manager.as_str())
    }
}

/// The shared store.
pub struct Store {
    state: Mutex<State>,
    events: broadcast::Sender<Arc<Event>>,
    clock: Clock,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

/// A time as the API server writes it: RFC 3339, UTC, second precision.
pub fn rfc3339(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A time source: what "now" is for the server.
pub type ClockFn = Arc<dyn Fn() -> jiff::Timestamp + Send + Sync + 'static>;

#[derive(Default)]
struct ClockState {
    source: Option<ClockFn>,
    offset: jiff::SignedDuration,
}

/// The server's clock, for every time it stamps (`creationTimestamp`, `managedFields[].time`, CRD
/// condition times, metrics timestamps, table ages): the source (default: real time) plus an offset
/// (default zero). Clones share the clock.
#[derive(Clone, Default)]
pub struct Clock(Arc<Mutex<ClockState>>);

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.lock();
        f.debug_struct("Clock")
            .field("custom_source", &st.source.is_some())
            .field("offset", &st.offset)
            .finish()
    }
}

impl Clock {
    fn lock(&self) -> MutexGuard<'_, ClockState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current time: the source's time plus the offset.
    pub fn now(&self) -> jiff::Timestamp {
        let (source, offset) = {
            let st = self.lock();
            (st.source.clone(), st.offset)
        };
        // The source runs without any lock held, so it may read the server.
        let base = source.map_or_else(jiff::Timestamp::now, |f| f());
        base.saturating_add(offset).unwrap_or(base)
    }

    /// [`Self::now`] as the API server writes it (RFC 3339, seconds).
    pub fn now_rfc3339(&self) -> String {
        rfc3339(self.now())
    }

    /// Use `source` for the time from now on, and reset the offset to zero.
    pub fn set(&self, source: ClockFn) {
        let mut st = self.lock();
        st.source = Some(source);
        st.offset = jiff::SignedDuration::ZERO;
    }

    /// Move the clock forward by `by` (cumulative, on top of the source).
    pub fn advance(&self, by: Duration) {
        let by = jiff::SignedDuration::try_from(by).unwrap_or(jiff::SignedDuration::MAX);
        let mut st = self.lock();
        st.offset = st.offset.saturating_add(by);
    }

    /// Back to real time with no offset.
    pub fn reset(&self) {
        *self.lock() = ClockState::default();
    }
}

/// `managedFields[].operation` of server-side apply.
pub const OPERATION_APPLY: &str = "Apply";
/// `managedFields[].operation` of every other write (create, update, patch).
pub const OPERATION_UPDATE: &str = "Update";
/// The field manager of the namespaces that exist from the start (as in a cluster).
pub const BOOTSTRAP_MANAGER: &str = "kube-apiserver";

/// Who writes and when: what a write records in `metadata.managedFields`.
struct Write<'a> {
    manager: &'a str,
    operation: &'static str,
    time: String,
    /// `fieldsV1` of the entry: what an apply owns (its applied configuration); `{}` for other writes.
    fields: Option<Value>,
    /// Other appliers' Apply entries whose fields a forced apply took over: (manager, subresource,
    /// their `fieldsV1` now; an entry left owning nothing is dropped).
    transferred: Vec<(String, &'static str, Value)>,
    /// Admission of a write over HTTP; None for a write straight into storage.
    admission: Option<&'a Admission>,
}

/// The paths an applier's configuration owns that are among `paths`.
fn owned_among(config: &Value, paths: &BTreeSet<fields::FieldPath>) -> Vec<fields::FieldPath> {
    fields::owned_paths(&fields::fields_v1(config))
        .into_iter()
        .filter(|p| paths.contains(p))
        .collect()
}

fn str_of<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get(field).and_then(Value::as_str).unwrap_or_default()
}

/// Set or refresh the `managedFields` entry of the writer's (manager, operation, subresource) in `meta`,
/// then sort the entries like the API server (operation, time, manager, apiVersion, subresource).
/// Only appliers' ownership is tracked: `fieldsV1` of other writes is `{}`.
fn record_manager(
    meta: &mut Map<String, Value>,
    w: &Write<'_>,
    disowned: &[(String, &'static str, Value)],
    api_version: &str,
    sub: Sub,
) {
    let mut entries: Vec<Value> = meta
        .get("managedFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    entries.retain(|e| {
        !(str_of(e, "manager") == w.manager
            && str_of(e, "operation") == w.operation
            && str_of(e, "subresource") == sub.name())
    });
    for (manager, subresource, fields) in w.transferred.iter().chain(disowned) {
        let theirs = |e: &Value| {
            str_of(e, "manager") == manager
                && str_of(e, "operation") == OPERATION_APPLY
                && str_of(e, "subresource") == *subresource
        };
        if fields.as_object().is_none_or(Map::is_empty) {
            entries.retain(|e| !theirs(e));
        } else if let Some(e) = entries.iter_mut().find(|e| theirs(e)) {
            e["fieldsV1"] = fields.clone();
        }
    }
    let mut entry = Map::new();
    entry.insert("manager".into(), json!(w.manager));
    entry.insert("operation".into(), json!(w.operation));
    entry.insert("apiVersion".into(), json!(api_version));
    entry.insert("time".into(), json!(w.time));
    entry.insert("fieldsType".into(), json!("FieldsV1"));
    entry.insert("fieldsV1".into(), w.fields.clone().unwrap_or_else(|| json!({})));
    if !sub.name().is_empty() {
        entry.insert("subresource".into(), json!(sub.name()));
    }
    // As in structured-merge-diff, an applier that owns nothing has no entry.
    let owns_nothing = w
        .fields
        .as_ref()
        .is_some_and(|f| f.as_object().is_none_or(Map::is_empty));
    if !(w.operation == OPERATION_APPLY && owns_nothing) {
        entries.push(Value::Object(entry));
    }
    let seconds = |e: &Value| {
        e.get("time")
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .map_or(0, |t| t.as_second())
    };
    entries.sort_by(|p, q| {
        str_of(p, "operation")
            .cmp(str_of(q, "operation"))
            .then_with(|| seconds(p).cmp(&seconds(q)))
            .then_with(|| str_of(p, "manager").cmp(str_of(q, "manager")))
            .then_with(|| str_of(p, "apiVersion").cmp(str_of(q, "apiVersion")))
            .then_with(|| str_of(p, "subresource").cmp(str_of(q, "subresource")))
    });
    meta.insert("managedFields".into(), Value::Array(entries));
}

/// Whether an apply changes what its manager owns (its entry's `fieldsV1`, or a first entry): then the
/// write is recorded even if the object stays the same, as in Kubernetes.
fn ownership_changed(meta: &Map<String, Value>, w: &Write<'_>, sub: Sub) -> bool {
    let Some(fields) = &w.fields else { return false };
    let entries = meta.get("managedFields").and_then(Value::as_array);
    let entry = entries.into_iter().flatten().find(|e| {
        str_of(e, "manager") == w.manager
            && str_of(e, "operation") == w.operation
            && str_of(e, "subresource") == sub.name()
    });
    let owns_nothing = fields.as_object().is_none_or(Map::is_empty);
    match entry {
        Some(e) => e.get("fieldsV1") != Some(fields) || owns_nothing,
        None => !owns_nothing,
    }
}

/// Apply conflicts, as structured-merge-diff finds them: the fields the apply adds or changes
/// (`before` → `after`) that other appliers of the same object (any subresource) own. Without
/// `force` they fail the apply (409); with it they pass to the applier: the other appliers'
/// configurations without those fields are returned, to be stored once the write succeeds. Fields
/// set by `Update` writes are not tracked, so they never conflict.
fn apply_conflicts(
    applied: &HashMap<AppliedKey, Value>,
    akey: &AppliedKey,
    before: &Value,
    after: &Value,
    force: bool,
) -> Result<Vec<(AppliedKey, Value)>, ApiError> {
    let changed = fields::changed(before, after);
    if changed.is_empty() {
        return Ok(Vec::new());
    }
    let mut others: Vec<(&AppliedKey, &Value)> = applied
        .iter()
        .filter(|(k, _)| k.0 == akey.0 && k.1 == akey.1 && k.2 == akey.2 && *k != akey)
        .collect();
    others.sort_by(|p, q| p.0.4.cmp(&q.0.4).then(p.0.3.cmp(q.0.3)));
    let mut conflicts: Vec<(String, String)> = Vec::new();
    let mut taken = Vec::new();
    for (key, config) in others {
        let lost = owned_among(config, &changed);
        if lost.is_empty() {
            continue;
        }
        let mut config = config.clone();
        for path in &lost {
            conflicts.push((key.4.clone(), fields::path_string(path)));
            fields::remove_path(&mut config, path);
        }
        taken.push((key.clone(), config));
    }
    if !conflicts.is_empty() && !force {
        return Err(ApiError::apply_conflict(&conflicts));
    }
    Ok(taken)
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
}

fn metadata_mut(obj: &mut Value) -> Result<&mut Map<String, Value>, ApiError> {
    let map = obj
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("object must be a JSON object"))?;
    let meta = map.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        return Err(ApiError::bad_request("metadata must be an object"));
    }
    meta.as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata must be an object"))
}

/// `.a.b` dotted path lookup.
pub fn get_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    path.trim_start_matches('.')
        .split('.')
        .filter(|s| !s.is_empty())
        .try_fold(obj, |cur, seg| cur.get(seg))
}

fn set_path(obj: &mut Value, path: &str, value: Value) {
    let segs: Vec<&str> = path
        .trim_start_matches('.')
        .split('.')
        .filter(|s| !s.is_empty())
        .collect();
    let mut cur = obj;
    for seg in segs.iter().take(segs.len().saturating_sub(1)) {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let Value::Object(m) = cur else { return };
        cur = m
            .entry(seg.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if let (Some(last), true) = (segs.last(), cur.is_object() || cur.is_null()) {
        if cur.is_null() {
            *cur = Value::Object(Map::new());
        }
        if let Value::Object(m) = cur {
            m.insert(last.to_string(), value);
        }
    }
}

/// Everything except `metadata` and `status`: a change here bumps `metadata.generation`.
fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| -> Map<String, Value> {
        v.as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "metadata" | "status" | "apiVersion" | "kind"))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    strip(old) != strip(new)
}

/// A stored object as served at the version of `rt`: converted (core v1 ↔ events.k8s.io events), with
/// `apiVersion` and `kind`.
pub fn present(rt: &ResourceType, obj: Value) -> Value {
    with_type(rt, convert::from_storage(rt, obj))
}

/// Set `apiVersion` and `kind` for the version the object is served at.
pub fn with_type(rt: &ResourceType, mut obj: Value) -> Value {
    if let Value::Object(m) = &mut obj {
        m.insert("apiVersion".into(), Value::String(rt.api_version()));
        m.insert("kind".into(), Value::String(rt.kind.clone()));
    }
    obj
}

fn label_selector_string(obj: &Value) -> Option<String> {
    let labels = obj.pointer("/spec/selector/matchLabels")?.as_object()?;
    Some(
        labels
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(","),
    )
}

impl State {
    fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
        m.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn next_random(&mut self) -> u64 {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn new_uid(&mut self) -> String {
        let a = self.next_random();
        let b = self.next_random();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            ((b >> 48) & 0x3fff) | 0x8000,
            b & 0xffff_ffff_ffff
        )
    }

    fn random_suffix(&mut self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut r = self.next_random();
        (0..5)
            .map(|_| {
                let i = (r % ALPHABET.len() as u64) as usize;
                r /= ALPHABET.len() as u64;
                ALPHABET.get(i).map_or('x', |&c| c as char)
            })
            .collect()
    }

    fn record(&mut self, events: &broadcast::Sender<Arc<Event>>, event: Event) {
        let event = Arc::new(event);
        let hist = self.history.entry(event.key.clone()).or_default();
        hist.push_back(event.clone());
        while hist.len() > HISTORY_PER_TYPE {
            if let Some(old) = hist.pop_front() {
                self.compacted.insert(old.key.clone(), old.rv);
            }
        }
        // No receivers is fine.
        let _ = events.send(event);
    }

    fn object_key(rt: &ResourceType, ns: Option<&str>, name: &str) -> ObjKey {
        (
            if rt.namespaced {
                ns.unwrap_or("default").to_string()
            } else {
                String::new()
            },
            name.to_string(),
        )
    }

    fn current(&self, rt: &ResourceType, ns: Option<&str>, name: &str) -> Result<Value, ApiError> {
        self.objects
            .get(&rt.store_key())
            .and_then(|m| m.get(&Self::object_key(rt, ns, name)))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.qualified(), name))
    }

    /// Side effects of writing a CRD or namespace: status and type registration. `old` is the stored
    /// object of an update (None when creating); `now` the time of the write.
    fn prepare_special(
        &mut self,
        rt: &ResourceType,
        obj: &mut Value,
        old: Option<&Value>,
        now: &str,
    ) -> Result<(), ApiError> {
        let creating = old.is_none();
        if rt.crd.is_none() && rt.group == "apiextensions.k8s.io" && rt.plural == "customresourcedefinitions"
        {
            let types = Registry::types_from_crd(obj)?;
            let name = meta_str(obj, "name").unwrap_or_default().to_string();
            let mut test = self.registry.clone();
            test.register_crd(&name, types)?;
            let storage: Vec<Value> = obj
                .pointer("/spec/versions")
                .and_then(Value::as_array)
                .map(|vs| {
                    vs.iter()
                        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                        .filter_map(|v| v.get("name").cloned())
                        .collect()
                })
                .unwrap_or_default();
            let names = obj.pointer("/spec/names").cloned().unwrap_or(Value::Null);
            // The conditions never change once set: keep their transition times.
            let conditions = old
                .and_then(|o| o.pointer("/status/conditions"))
                .filter(|c| c.as_array().is_some_and(|a| !a.is_empty()))
                .cloned()
                .unwrap_or_else(|| {
                    json!([
                        {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                         "message": "no conflicts found", "lastTransitionTime": now},
                        {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                         "message": "the initial names have been accepted", "lastTransitionTime": now}
                    ])
                });
            if let Value::Object(m) = obj {
                m.insert(
                    "status".into(),
                    json!({
                        "acceptedNames": names,
                        "storedVersions": storage,
                        "conditions": conditions,
                    }),
                );
            }
        } else if creating && rt.crd.is_none() && rt.group.is_empty() && rt.plural == "namespaces" {
            if let Value::Object(m) = obj {
                m.insert("status".into(), json!({"phase": "Active"}));
            }
        }
        Ok(())
    }

    /// Prunes and validates a custom resource written over HTTP against its CRD (see
    /// [`crate::admission`]); anything else passes as it is.
    fn admit(
        &mut self,
        rt: &ResourceType,
        obj: &mut Value,
        old: Option<&Value>,
        w: &Write<'_>,
    ) -> Result<(), ApiError> {
        let (Some(admission), Some(crd_name)) = (w.admission, rt.crd.as_deref()) else {
            return Ok(());
        };
        let Some(crd_rt) = self
            .registry
            .by_kind("apiextensions.k8s.io/v1", "CustomResourceDefinition")
            .cloned()
        else {
            return Ok(());
        };
        let Ok(crd) = self.current(&crd_rt, None, crd_name) else {
            return Ok(());
        };
        let key = (
            crd_name.to_string(),
            rt.version.clone(),
            meta_str(&crd, "resourceVersion").unwrap_or_default().to_string(),
        );
        let checks = match self.checks.get(&key) {
            Some(c) => c.clone(),
            None => {
                let Some(c) = Checks::of(&crd, &rt.version) else {
                    return Ok(());
                };
                self.checks.retain(|k, _| k.0 != key.0 || k.1 != key.1);
                self.checks.insert(key, c.clone());
                c
            }
        };
        checks.admit(rt, obj, old, admission)
    }

    fn after_write(&mut self, rt: &ResourceType, obj: &Value) -> Result<(), ApiError> {
        if rt.crd.is_none() && rt.group == "apiextensions.k8s.io" && rt.plural == "customresourcedefinitions"
        {
            let name = meta_str(obj, "name").unwrap_or_default().to_string();
            let types = Registry::types_from_crd(obj)?;
            self.registry.register_crd(&name, types)?;
        }
        Ok(())
    }

    fn create(
        &mut self,
        events: &broadcast::Sender<Arc<Event>>,
        rt: &ResourceType,
        ns: Option<&str>,
        obj: Value,
        w: &Write<'_>,
    ) -> Result<Value, ApiError> {
        check_type(rt, &obj)?;
        let mut obj = convert::to_storage(rt, obj);
        let url_ns = if rt.namespaced {
            Some(ns.unwrap_or("default").to_string())
        } else {
            None
        };
        let key = rt.store_key();
        let meta = metadata_mut(&mut obj)?;
        match (meta.get("namespace").and_then(Value::as_str), &url_ns) {
            (Some(body_ns), Some(u)) if !body_ns.is_empty() && body_ns != u => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {}
        }
        let mut name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let generate = meta
            .get("generateName")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if name.is_empty() {
            if generate.is_empty() {
                return Err(ApiError::invalid(format!(
                    "{} \"\" is invalid: metadata.name: Required value: name or generateName is required",
                    rt.kind
                )));
            }
            loop {
                let candidate = format!("{generate}{}", self.random_suffix());
                let exists = self
                    .objects
                    .get(&key)
                    .is_some_and(|m| m.contains_key(&Self::object_key(rt, url_ns.as_deref(), &candidate)));
                if !exists {
                    name = candidate;
                    break;
                }
            }
        }
        let okey = Self::object_key(rt, url_ns.as_deref(), &name);
        if self.objects.get(&key).is_some_and(|m| m.contains_key(&okey)) {
            return Err(ApiError::already_exists(&rt.qualified(), &name));
        }
        let uid = self.new_uid();
        let rv = self.rv + 1;
        let meta = metadata_mut(&mut obj)?;
        meta.insert("name".into(), json!(name));
        match &url_ns {
            Some(n) => meta.insert("namespace".into(), json!(n)),
            None => meta.remove("namespace"),
        };
        meta.insert("uid".into(), json!(uid));
        meta.insert("creationTimestamp".into(), json!(w.time));
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        meta.insert("generation".into(), json!(1));
        meta.remove("deletionTimestamp");
        meta.remove("managedFields");
        record_manager(meta, w, &[], &rt.api_version(), Sub::Main);
        if rt.has_status {
            if let Value::Object(m) = &mut obj {
                m.remove("status");
            }
        }
        self.prepare_special(rt, &mut obj, None, &w.time)?;
        self.admit(rt, &mut obj, None, w)?;
        let obj = with_type(rt, obj);
        self.after_write(rt, &obj)?;
        self.rv = rv;
        self.objects
            .entry(key.clone())
            .or_default()
            .insert(okey, obj.clone());
        self.record(
            events,
            Event {
                rv,
                kind: EventKind::Added,
                key,
                object: obj.clone(),
                old: None,
            },
        );
        Ok(present(rt, obj))
    }

    /// The common update pipeline: `candidate` is the full new object (main/status) or Scale (scale).
    #[allow(clippy::too_many_arguments)]
    fn update(
        &mut self,
        events: &broadcast::Sender<Arc<Event>>,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        sub: Sub,
        candidate: Value,
        w: &Write<'_>,
    ) -> Result<Value, ApiError> {
        let old = self.current(rt, ns, name)?;
        if !candidate.is_object() {
            return Err(ApiError::bad_request("object must be a JSON object"));
        }
        let candidate = if sub == Sub::Scale {
            candidate
        } else {
            check_type(rt, &candidate)?;
            convert::to_storage(rt, candidate)
        };
        if let Some(body_name) = meta_str(&candidate, "name").filter(|n| !n.is_empty()) {
            if body_name != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({body_name}) does not match the name on the URL ({name})"
                )));
            }
        }
        if let Some(body_rv) = meta_str(&candidate, "resourceVersion").filter(|r| !r.is_empty()) {
            if Some(body_rv) != meta_str(&old, "resourceVersion") {
                return Err(ApiError::conflict(&rt.qualified(), name));
            }
        }
        let mut new = match sub {
            Sub::Main => {
                let mut new = candidate;
                if rt.has_status {
                    if let Value::Object(m) = &mut new {
                        match old.get("status") {
                            Some(s) => m.insert("status".into(), s.clone()),
                            None => m.remove("status"),
                        };
                    }
                }
                new
            }
            Sub::Status => {
                let mut new = old.clone();
                if let Value::Object(m) = &mut new {
                    match candidate.get("status") {
                        Some(s) if !s.is_null() => m.insert("status".into(), s.clone()),
                        _ => m.remove("status"),
                    };
                }
                new
            }
            Sub::Resize => crate::resize::apply(&old, &candidate, name)?,
            Sub::Scale => {
                let spec = rt
                    .scale
                    .as_ref()
                    .ok_or_else(|| ApiError::not_found(&rt.qualified(), name))?;
                let replicas = candidate
                    .pointer("/spec/replicas")
                    .filter(|r| r.is_u64())
                    .cloned()
                    .ok_or_else(|| ApiError::invalid("Scale is invalid: spec.replicas: Required value"))?;
                let mut new = old.clone();
                set_path(&mut new, &spec.spec_replicas_path, replicas);
                new
            }
        };
        // Server-managed metadata always comes from the stored object.
        let old_meta = old
            .get("metadata")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        {
            let meta = metadata_mut(&mut new)?;
            if sub != Sub::Main {
                *meta = old_meta.clone();
            }
            for f in [
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "generation",
                "resourceVersion",
            ] {
                match old_meta.get(f) {
                    Some(v) => meta.insert(f.into(), v.clone()),
                    None => meta.remove(f),
                };
            }
            // Server-owned too: managedFields in the body are ignored, so a write that would only
            // refresh a time is a no-op.
            match old_meta.get("managedFields") {
                Some(v) => meta.insert("managedFields".into(), v.clone()),
                None => meta.remove("managedFields"),
            };
        }
        self.prepare_special(rt, &mut new, Some(&old), &w.time)?;
        self.admit(rt, &mut new, Some(&old), w)?;
        let new = with_type(rt, new);
        let old_typed = with_type(rt, old.clone());
        if new == old_typed && !ownership_changed(&old_meta, w, sub) {
            return Ok(present(rt, new));
        }
        let mut new = new;
        let rv = self.rv + 1;
        let generation = old_meta.get("generation").and_then(Value::as_i64).unwrap_or(1);
        let bump = spec_changed(&old, &new);
        let disowned = if w.operation == OPERATION_UPDATE {
            self.disowned(rt, ns, name, &old, &new)
        } else {
            Default::default()
        };
        {
            let meta = metadata_mut(&mut new)?;
            meta.insert("resourceVersion".into(), json!(rv.to_string()));
            meta.insert(
                "generation".into(),
                json!(if bump { generation + 1 } else { generation }),
            );
            record_manager(meta, w, &disowned.1, &rt.api_version(), sub);
        }
        self.after_write(rt, &new)?;
        self.applied.extend(disowned.0);
        self.rv = rv;
        let key = rt.store_key();
        self.objects
            .entry(key.clone())
            .or_default()
            .insert(Self::object_key(rt, ns, name), new.clone());
        self.record(
            events,
            Event {
                rv,
                kind: EventKind::Modified,
                key,
                object: new.clone(),
                old: Some(old),
            },
        );
        Ok(present(rt, new))
    }

    /// What an `Update` write (`old` → `new`) takes from the appliers of the object, as in
    /// structured-merge-diff, where updates always force: every field it changes, adds or removes
    /// leaves their applied configurations (so dropping it from a later apply removes nothing, and
    /// applying it again conflicts with nobody). Returns the configurations to store once the write
    /// succeeds and, for `managedFields`, their appliers' `fieldsV1` now.
    #[allow(clippy::type_complexity)]
    fn disowned(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        old: &Value,
        new: &Value,
    ) -> (Vec<(AppliedKey, Value)>, Vec<(String, &'static str, Value)>) {
        let okey = Self::object_key(rt, ns, name);
        let store_key = rt.store_key();
        let appliers: Vec<(&AppliedKey, &Value)> = self
            .applied
            .iter()
            .filter(|(k, _)| k.0 == store_key && k.1 == okey.0 && k.2 == okey.1)
            .collect();
        if appliers.is_empty() {
            return Default::default();
        }
        let before = fields::leaves(old);
        let after = fields::leaves(new);
        let touched: BTreeSet<fields::FieldPath> = before
            .iter()
            .filter(|(p, v)| after.get(*p) != Some(*v))
            .map(|(p, _)| p.clone())
            .chain(after.keys().filter(|p| !before.contains_key(*p)).cloned())
            .collect();
        let mut configs = Vec::new();
        let mut entries = Vec::new();
        for (key, config) in appliers {
            let lost = owned_among(config, &touched);
            if lost.is_empty() {
                continue;
            }
            let mut config = config.clone();
            for path in &lost {
                fields::remove_path(&mut config, path);
            }
            entries.push((key.4.clone(), key.3, fields::fields_v1(&config)));
            configs.push((key.clone(), config));
        }
        (configs, entries)
    }

    fn delete(
        &mut self,
        events: &broadcast::Sender<Arc<Event>>,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        let key = rt.store_key();
        let okey = Self::object_key(rt, ns, name);
        let mut obj = self
            .objects
            .get_mut(&key)
            .and_then(|m| m.remove(&okey))
            .ok_or_else(|| ApiError::not_found(&rt.qualified(), name))?;
        self.rv += 1;
        let rv = self.rv;
        if let Ok(meta) = metadata_mut(&mut obj) {
            meta.insert("resourceVersion".into(), json!(rv.to_string()));
        }
        self.applied
            .retain(|(k, n, o, _, _), _| !(k == &key && n == &okey.0 && o == &okey.1));
        self.record(
            events,
            Event {
                rv,
                kind: EventKind::Deleted,
                key,
                object: obj.clone(),
                old: None,
            },
        );
        if rt.crd.is_none() && rt.group == "apiextensions.k8s.io" && rt.plural == "customresourcedefinitions"
        {
            for store in self.registry.unregister_crd(name) {
                let objs = self.objects.remove(&store).unwrap_or_default();
                for (okey, mut o) in objs {
                    self.rv += 1;
                    let rv = self.rv;
                    if let Ok(meta) = metadata_mut(&mut o) {
                        meta.insert("resourceVersion".into(), json!(rv.to_string()));
                    }
                    self.applied
                        .retain(|(k, n, on, _, _), _| !(k == &store && n == &okey.0 && on == &okey.1));
                    self.record(
                        events,
                        Event {
                            rv,
                            kind: EventKind::Deleted,
                            key: store.clone(),
                            object: o,
                            old: None,
                        },
                    );
                }
            }
        }
        Ok(present(rt, obj))
    }
}

fn check_type(rt: &ResourceType, obj: &Value) -> Result<(), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ));
    }
    if let Some(kind) = obj.get("kind").and_then(Value::as_str) {
        if kind != rt.kind {
            return Err(ApiError::bad_request(format!(
                "the kind of the object ({kind}) does not match the kind of the request ({})",
                rt.kind
            )));
        }
    }
    if let Some(av) = obj.get("apiVersion").and_then(Value::as_str) {
        let group = av.rsplit_once('/').map_or("", |(g, _)| g);
        if group != rt.group {
            return Err(ApiError::bad_request(format!(
                "the API version of the object ({av}) does not match the group of the request ({})",
                rt.api_version()
            )));
        }
    }
    Ok(())
}

/// The `autoscaling/v1` Scale view of an object.
pub fn scale_view(rt: &ResourceType, obj: &Value) -> Option<Value> {
    let spec = rt.scale.as_ref()?;
    let meta = obj.get("metadata").and_then(Value::as_object);
    let pick = |f: &str| meta.and_then(|m| m.get(f)).cloned().unwrap_or(Value::Null);
    let selector = match &spec.label_selector_path {
        Some(p) => get_path(obj, p).and_then(Value::as_str).map(str::to_string),
        None => label_selector_string(obj),
    };
    let mut metadata = json!({
        "name": pick("name"), "namespace": pick("namespace"), "uid": pick("uid"),
        "resourceVersion": pick("resourceVersion"), "creationTimestamp": pick("creationTimestamp"),
    });
    if !rt.namespaced {
        if let Value::Object(m) = &mut metadata {
            m.remove("namespace");
        }
    }
    let mut status =
        json!({"replicas": get_path(obj, &spec.status_replicas_path).cloned().unwrap_or(json!(0))});
    if let (Some(sel), Value::Object(m)) = (selector, &mut status) {
        m.insert("selector".into(), json!(sel));
    }
    Some(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": get_path(obj, &spec.spec_replicas_path).cloned().unwrap_or(json!(0))},
        "status": status,
    }))
}

impl Store {
    /// An empty store with the built-in types and namespaces `default`, `kube-system`, `kube-public`.
    pub fn new() -> Self {
        Self::with_clock(Clock::default())
    }

    /// An empty store (see [`Self::new`]) that stamps times from `clock`.
    pub fn with_clock(clock: Clock) -> Self {
        let seed = jiff::Timestamp::now().as_nanosecond() as u64;
        let (events, _) = broadcast::channel(8192);
        let store = Store {
            state: Mutex::new(State {
                registry: Registry::new(),
                rv: 0,
                objects: HashMap::new(),
                history: HashMap::new(),
                compacted: HashMap::new(),
                applied: HashMap::new(),
                rng: seed,
                checks: HashMap::new(),
            }),
            events,
            clock,
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            // Cannot fail on an empty store; ignore to stay panic-free.
            let _ = store.create_by_kind(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
                BOOTSTRAP_MANAGER,
            );
        }
        store
    }

    /// The clock that stamps times.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The current time of [`Self::clock`].
    pub fn now(&self) -> jiff::Timestamp {
        self.clock.now()
    }

    fn write<'a>(&self, by: Writer<'a>, apply: bool) -> Write<'a> {
        Write {
            manager: by.manager,
            admission: by.admission,
            operation: if apply { OPERATION_APPLY } else { OPERATION_UPDATE },
            time: self.clock.now_rfc3339(),
            fields: None,
            transferred: Vec::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        State::lock(&self.state)
    }

    /// An independent copy of the current state (for `dryRun`: writes to it change nothing here and
    /// reach no watcher).
    pub fn snapshot(&self) -> Store {
        let (events, _) = broadcast::channel(16);
        Store {
            state: Mutex::new(self.lock().clone()),
            events,
            clock: self.clock.clone(),
        }
    }

    /// A snapshot of the registry.
    pub fn registry(&self) -> Registry {
        self.lock().registry.clone()
    }

    /// Resolve by URL parts.
    pub fn resolve(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        self.lock().registry.by_resource(group, version, plural).cloned()
    }

    /// Resolve by apiVersion + kind.
    pub fn resolve_kind(&self, api_version: &str, kind: &str) -> Result<ResourceType, ApiError> {
        self.lock()
            .registry
            .by_kind(api_version, kind)
            .cloned()
            .ok_or_else(|| {
                ApiError::not_found_message(format!(
                    "the server could not find the requested resource ({kind} {api_version})"
                ))
            })
    }

    /// Get one object.
    pub fn get(&self, rt: &ResourceType, ns: Option<&str>, name: &str) -> Result<Value, ApiError> {
        self.lock().current(rt, ns, name).map(|o| present(rt, o))
    }

    /// List matching objects, and the current resourceVersion.
    pub fn list(&self, rt: &ResourceType, filter: &Filter) -> (Vec<Value>, u64) {
        let st = self.lock();
        let items = st
            .objects
            .get(&rt.store_key())
            .map(|m| {
                m.values()
                    .map(|o| present(rt, o.clone()))
                    .filter(|o| filter.matches(o))
                    .collect()
            })
            .unwrap_or_default();
        (items, st.rv)
    }

    /// Create, recording an `Update` by `manager` in `managedFields`.
    pub fn create<'a>(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        obj: Value,
        by: impl Into<Writer<'a>>,
    ) -> Result<Value, ApiError> {
        let w = self.write(by.into(), false);
        self.lock().create(&self.events, rt, ns, obj, &w)
    }

    /// Create by the object's apiVersion/kind/metadata.namespace.
    pub fn create_by_kind(&self, obj: Value, manager: &str) -> Result<Value, ApiError> {
        let (rt, ns) = self.locate(&obj)?;
        self.create(&rt, ns.as_deref(), obj, manager)
    }

    /// Find type and namespace of an object from its own fields.
    pub fn locate(&self, obj: &Value) -> Result<(ResourceType, Option<String>), ApiError> {
        let av = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::bad_request("apiVersion is required"))?;
        let kind = obj
            .get("kind")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::bad_request("kind is required"))?;
        let rt = self.resolve_kind(av, kind)?;
        let ns = rt
            .namespaced
            .then(|| meta_str(obj, "namespace").unwrap_or("default").to_string());
        Ok((rt, ns))
    }

    /// Replace (PUT) the object or a subresource; a change records an `Update` by `manager`.
    pub fn replace<'a>(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        sub: Sub,
        obj: Value,
        by: impl Into<Writer<'a>>,
    ) -> Result<Value, ApiError> {
        let w = self.write(by.into(), false);
        self.lock().update(&self.events, rt, ns, name, sub, obj, &w)
    }

    /// Read the object or a subresource view (Scale for `Sub::Scale`).
    pub fn get_sub(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        sub: Sub,
    ) -> Result<Value, ApiError> {
        let obj = self.get(rt, ns, name)?;
        match sub {
            Sub::Scale => scale_view(rt, &obj).ok_or_else(|| ApiError::not_found(&rt.qualified(), name)),
            _ => Ok(obj),
        }
    }

    /// Patch the object or a subresource; a change records an `Update` by `manager` (an `Apply` for
    /// [`PatchType::Apply`], which also creates a missing object).
    #[allow(clippy::too_many_arguments)]
    pub fn patch<'a>(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        sub: Sub,
        ptype: &PatchType,
        body: &Value,
        by: impl Into<Writer<'a>>,
    ) -> Result<Value, ApiError> {
        if *ptype == PatchType::Strategic && !rt.supports_strategic_merge() {
            return Err(ApiError::unsupported_media_type(
                "the body of the request was in an unknown format - accepted media types include: \
                 application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
            ));
        }
        let mut w = self.write(by.into(), matches!(ptype, PatchType::Apply { .. }));
        let mut st = self.lock();
        let current = match st.current(rt, ns, name) {
            Ok(c) => present(rt, c),
            Err(e) => {
                if let (PatchType::Apply { .. }, Sub::Main) = (ptype, sub) {
                    let mut applied = body.clone();
                    if rt.has_status {
                        if let Value::Object(m) = &mut applied {
                            m.remove("status");
                        }
                    }
                    if let Ok(meta) = metadata_mut(&mut applied) {
                        meta.entry("name").or_insert_with(|| json!(name));
                    }
                    w.fields = Some(fields::fields_v1(&applied));
                    let created = st.create(&self.events, rt, ns, applied.clone(), &w)?;
                    let okey = State::object_key(rt, ns, name);
                    st.applied.insert(
                        (rt.store_key(), okey.0, okey.1, sub.name(), w.manager.to_string()),
                        applied,
                    );
                    return Ok(created);
                }
                return Err(e);
            }
        };
        let view = match sub {
            Sub::Scale => {
                scale_view(rt, &current).ok_or_else(|| ApiError::not_found(&rt.qualified(), name))?
            }
            _ => current.clone(),
        };
        let candidate = match ptype {
            PatchType::Merge => {
                let mut v = view;
                patch::merge_patch(&mut v, body);
                v
            }
            PatchType::Strategic => {
                let mut v = view;
                patch::strategic_merge(&mut v, body);
                v
            }
            PatchType::Json => patch::json_patch(&view, body)?,
            PatchType::Apply { force } => {
                if !body.is_object() {
                    return Err(ApiError::bad_request("apply configuration must be an object"));
                }
                let mut applied = body.clone();
                if let Value::Object(m) = &mut applied {
                    match sub {
                        Sub::Main if rt.has_status => {
                            m.remove("status");
                        }
                        Sub::Status => m.retain(|k, _| {
                            matches!(k.as_str(), "status" | "apiVersion" | "kind" | "metadata")
                        }),
                        _ => {}
                    }
                }
                let okey = State::object_key(rt, ns, name);
                let akey = (rt.store_key(), okey.0, okey.1, sub.name(), w.manager.to_string());
                let previous = st.applied.get(&akey).cloned().unwrap_or(Value::Null);
                let others: Vec<&Value> = st
                    .applied
                    .iter()
                    .filter(|(k, _)| k.0 == akey.0 && k.1 == akey.1 && k.2 == akey.2 && **k != akey)
                    .map(|(_, v)| v)
                    .collect();
                let mut v = view.clone();
                patch::remove_unapplied(&mut v, &previous, &applied, &others);
                w.fields = Some(fields::fields_v1(&applied));
                patch::apply_merge(&mut v, &applied);
                let taken = apply_conflicts(&st.applied, &akey, &view, &v, *force)?;
                for (key, config) in &taken {
                    w.transferred
                        .push((key.4.clone(), key.3, fields::fields_v1(config)));
                }
                let result = st.update(&self.events, rt, ns, name, sub, v, &w)?;
                st.applied.insert(akey, applied);
                st.applied.extend(taken);
                return Ok(result);
            }
        };
        let updated = st.update(&self.events, rt, ns, name, sub, candidate, &w)?;
        match sub {
            Sub::Scale => scale_view(rt, &updated).ok_or_else(|| ApiError::not_found(&rt.qualified(), name)),
            _ => Ok(updated),
        }
    }

    /// Delete.
    pub fn delete(&self, rt: &ResourceType, ns: Option<&str>, name: &str) -> Result<Value, ApiError> {
        self.lock().delete(&self.events, rt, ns, name)
    }

    /// Delete if `precondition` accepts the object as it is (as served); checked and deleted atomically.
    pub fn delete_if(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        precondition: impl FnOnce(&Value) -> Result<(), ApiError>,
    ) -> Result<Value, ApiError> {
        let mut st = self.lock();
        precondition(&present(rt, st.current(rt, ns, name)?))?;
        st.delete(&self.events, rt, ns, name)
    }

    /// Start a watch: from "now" with the current objects as ADDED (`from_rv` None), or resuming after
    /// `from_rv` from the kept history (410 Gone if it is older than the history).
    pub fn watch(
        &self,
        rt: &ResourceType,
        filter: &Filter,
        from_rv: Option<u64>,
    ) -> Result<WatchStart, ApiError> {
        let st = self.lock();
        let key = rt.store_key();
        let live = self.events.subscribe();
        match from_rv {
            None => {
                let initial = st
                    .objects
                    .get(&key)
                    .map(|m| {
                        m.values()
                            .map(|o| present(rt, o.clone()))
                            .filter(|o| filter.matches(o))
                            .collect()
                    })
                    .unwrap_or_default();
                Ok(WatchStart {
                    initial,
                    replay: Vec::new(),
                    live,
                    rv: st.rv,
                })
            }
            Some(n) => {
                if st.compacted.get(&key).is_some_and(|&c| n < c) {
                    return Err(ApiError::gone(format!(
                        "too old resource version: {n} ({})",
                        st.compacted.get(&key).copied().unwrap_or(0) + 1
                    )));
                }
                let replay = st
                    .history
                    .get(&key)
                    .map(|h| h.iter().filter(|e| e.rv > n).cloned().collect())
                    .unwrap_or_default();
                Ok(WatchStart {
                    initial: Vec::new(),
                    replay,
                    live,
                    rv: st.rv,
                })
            }
        }
    }

    /// Forget all watch history: every watch resuming from an earlier resourceVersion then gets 410 Gone.
    pub fn compact(&self) {
        let mut st = self.lock();
        let rv = st.rv;
        let keys: Vec<StoreKey> = st
            .history
            .keys()
            .cloned()
            .chain(st.objects.keys().cloned())
            .collect();
        for k in keys {
            st.compacted.insert(k, rv);
        }
        st.history.clear();
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy(name: &str, replicas: u64) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "ns"},
               "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}},
               "status": {"replicas": 7}})
    }

    fn rt(store: &Store) -> ResourceType {
        store.resolve("apps", "v1", "deployments").unwrap()
    }

    #[test]
    fn create_sets_metadata_and_drops_status() {
        let s = Store::new();
        let d = s.create_by_kind(deploy("a", 1), "t").unwrap();
        assert_eq!(d["metadata"]["generation"], 1);
        assert!(d["metadata"]["uid"].as_str().unwrap().len() == 36);
        assert!(
            d["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap()
                .ends_with('Z')
        );
        assert!(d.get("status").is_none());
        assert_eq!(s.create_by_kind(deploy("a", 1), "t").unwrap_err().code, 409);
        let mut g = deploy("", 1);
        g["metadata"]["generateName"] = json!("web-");
        let g = s.create_by_kind(g, "t").unwrap();
        assert!(g["metadata"]["name"].as_str().unwrap().starts_with("web-"));
        assert_eq!(g["metadata"]["name"].as_str().unwrap().len(), 9);
        assert_eq!(s.create_by_kind(deploy("", 1), "t").unwrap_err().code, 422);
    }

    #[test]
    fn generation_bumps_on_spec_change_only() {
        let s = Store::new();
        let t = rt(&s);
        let d = s.create_by_kind(deploy("a", 1), "t").unwrap();
        let rv0 = d["metadata"]["resourceVersion"].clone();
        // Label change: rv bumps, generation does not.
        let d = s
            .patch(
                &t,
                Some("ns"),
                "a",
                Sub::Main,
                &PatchType::Merge,
                &json!({"metadata": {"labels": {"x": "y"}}}),
                "t",
            )
            .unwrap();
        assert_eq!(d["metadata"]["generation"], 1);
        assert_ne!(d["metadata"]["resourceVersion"], rv0);
        // Spec change bumps.
        let d = s
            .patch(
                &t,
                Some("ns"),
                "a",
                Sub::Main,
                &PatchType::Merge,
                &json!({"spec": {"replicas": 3}}),
                "t",
            )
            .unwrap();
        assert_eq!(d["metadata"]["generation"], 2);
        // No-op: nothing changes, not even rv.
        let rv = d["metadata"]["resourceVersion"].clone();
        let d = s
            .patch(
                &t,
                Some("ns"),
                "a",
                Sub::Main,
                &PatchType::Merge,
                &json!({"spec": {"replicas": 3}}),
                "t",
            )
            .unwrap();
        assert_eq!(d["metadata"]["resourceVersion"], rv);
        // Status: no generation bump, spec untouched; main writes ignore status.
        let d = s
            .patch(
                &t,
                Some("ns"),
                "a",
                Sub::Status,
                &PatchType::Merge,
                &json!({"spec": {"replicas": 9}, "status": {"replicas": 3}}),
                "t",
            )
            .unwrap();
        assert_eq!(d["metadata"]["generation"], 2);
        assert_eq!(d["spec"]["replicas"], 3);
        assert_eq!(d["status"]["replicas"], 3);
        let d = s
            .patch(
                &t,
                Some("ns"),
                "a",
                Sub::Main,
                &PatchType::Merge,
                &json!({"status": {"replicas": 1}}),
                "t",
            )
            .unwrap();
        assert_eq!(d["status"]["replicas"], 3);
    }

    #[test]
    fn conflicts_and_scale() {
        let s = Store::new();
        let t = rt(&s);
        let d = s.create_by_kind(deploy("a", 1), "t").unwrap();
        let mut stale = d.clone();
        s.patch(
            &t,
            Some("ns"),
            "a",
            Sub::Main,
            &PatchType::Merge,
            &json!({"spec": {"replicas": 2}}),
            "t",
        )
        .unwrap();
        stale["spec"]["replicas"] = json!(5);
        assert_eq!(
            s.replace(&t, Some("ns"), "a", Sub::Main, stale.clone(), "t")
                .unwrap_err()
                .code,
            409
        );
        let rv_patch = json!({"metadata": {"resourceVersion": d["metadata"]["resourceVersion"]}, "spec": {"replicas": 4}});
        assert_eq!(
            s.patch(&t, Some("ns"), "a", Sub::Main, &PatchType::Merge, &rv_patch, "t")
                .unwrap_err()
                .code,
            409
        );
        let sc = s
            .patch(
                &t,
                Some("ns"),
                "a",
                Sub::Scale,
                &PatchType::Merge,
                &json!({"spec": {"replicas": 6}}),
                "t",
            )
            .unwrap();
        assert_eq!(sc["kind"], "Scale");
        assert_eq!(sc["spec"]["replicas"], 6);
        assert_eq!(sc["status"]["selector"], "app=a");
        assert_eq!(s.get(&t, Some("ns"), "a").unwrap()["spec"]["replicas"], 6);
    }

    #[test]
    fn apply_tracks_managers_per_subresource() {
        let s = Store::new();
        let t = rt(&s);
        let apply = |sub, body: Value, m: &str| {
            s.patch(
                &t,
                Some("ns"),
                "a",
                sub,
                &PatchType::Apply { force: false },
                &body,
                m,
            )
        };
        assert_eq!(
            apply(Sub::Status, json!({"status": {}}), "m").unwrap_err().code,
            404
        );
        let d = apply(Sub::Main, json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a", "labels": {"a": "1", "b": "2"}}, "spec": {"replicas": 1}}), "m").unwrap();
        assert_eq!(d["metadata"]["namespace"], "ns");
        let d = apply(
            Sub::Main,
            json!({"metadata": {"name": "a", "labels": {"a": "1"}}, "spec": {"replicas": 1}}),
            "m",
        )
        .unwrap();
        assert_eq!(d["metadata"]["labels"], json!({"a": "1"}));
        apply(Sub::Status, json!({"status": {"conditions": [{"type": "A", "status": "True"}, {"type": "B", "status": "True"}]}}), "m").unwrap();
        apply(
            Sub::Status,
            json!({"status": {"conditions": [{"type": "C", "status": "True"}]}}),
            "other",
        )
        .unwrap();
        let d = apply(
            Sub::Status,
            json!({"status": {"conditions": [{"type": "A", "status": "False"}]}}),
            "m",
        )
        .unwrap();
        assert_eq!(
            d["status"]["conditions"],
            json!([{"type": "A", "status": "False"}, {"type": "C", "status": "True"}])
        );
        assert_eq!(d["spec"]["replicas"], 1);
    }

    /// A store whose clock reads `secs` (seconds since the epoch).
    fn clocked() -> (Store, Arc<std::sync::atomic::AtomicI64>) {
        let secs = Arc::new(std::sync::atomic::AtomicI64::new(1_700_000_000));
        let clock = Clock::default();
        let read = secs.clone();
        clock.set(Arc::new(move || {
            jiff::Timestamp::from_second(read.load(std::sync::atomic::Ordering::SeqCst)).unwrap()
        }));
        (Store::with_clock(clock), secs)
    }

    fn cm_rt(s: &Store) -> ResourceType {
        s.resolve("", "v1", "configmaps").unwrap()
    }

    fn managed(obj: &Value) -> &[Value] {
        obj["metadata"]["managedFields"]
            .as_array()
            .map_or(&[], Vec::as_slice)
    }

    #[test]
    fn writes_record_managers_and_times() {
        let (s, secs) = clocked();
        let t = cm_rt(&s);
        let c = s
            .create_by_kind(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ns",
                       "managedFields": [{"manager": "forged"}]}, "data": {"a": "1"}}),
                "creator",
            )
            .unwrap();
        assert_eq!(c["metadata"]["creationTimestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(
            managed(&c),
            [
                json!({"manager": "creator", "operation": "Update", "apiVersion": "v1",
                    "time": "2023-11-14T22:13:20Z", "fieldsType": "FieldsV1", "fieldsV1": {}})
            ]
        );
        // An update by another manager adds its entry, later entries sort after earlier ones.
        secs.fetch_add(60, std::sync::atomic::Ordering::SeqCst);
        let merge =
            |body: Value, m: &str| s.patch(&t, Some("ns"), "c", Sub::Main, &PatchType::Merge, &body, m);
        let c = merge(json!({"data": {"a": "2"}}), "editor").unwrap();
        let names: Vec<&str> = managed(&c)
            .iter()
            .map(|e| e["manager"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["creator", "editor"]);
        assert_eq!(managed(&c)[1]["time"], "2023-11-14T22:14:20Z");
        // The creator writes again: its one entry is refreshed; creationTimestamp stays.
        secs.fetch_add(60, std::sync::atomic::Ordering::SeqCst);
        let mut body = c.clone();
        body["data"]["a"] = json!("3");
        body["metadata"]["managedFields"] = json!([]);
        let c = s
            .replace(&t, Some("ns"), "c", Sub::Main, body, "creator")
            .unwrap();
        let entries = managed(&c);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0]["manager"], "editor");
        assert_eq!(entries[1]["manager"], "creator");
        assert_eq!(entries[1]["time"], "2023-11-14T22:15:20Z");
        assert_eq!(c["metadata"]["creationTimestamp"], "2023-11-14T22:13:20Z");
        // A no-op write (only the time would change) changes nothing, not even resourceVersion.
        secs.fetch_add(60, std::sync::atomic::Ordering::SeqCst);
        let rv = s.resource_version();
        let same = merge(json!({"data": {"a": "3"}}), "editor").unwrap();
        assert_eq!(same, c);
        let same = s
            .replace(&t, Some("ns"), "c", Sub::Main, c.clone(), "third")
            .unwrap();
        assert_eq!(same, c);
        assert_eq!(s.resource_version(), rv);
        assert_eq!(s.get(&t, Some("ns"), "c").unwrap(), c);
        // Server-side apply: operation Apply, its own entry beside the same manager's Update.
        let c = s
            .patch(
                &t,
                Some("ns"),
                "c",
                Sub::Main,
                &PatchType::Apply { force: false },
                &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"b": "1"}}),
                "editor",
            )
            .unwrap();
        let ops: Vec<(&str, &str)> = managed(&c)
            .iter()
            .map(|e| (e["manager"].as_str().unwrap(), e["operation"].as_str().unwrap()))
            .collect();
        assert_eq!(
            ops,
            [("editor", "Apply"), ("editor", "Update"), ("creator", "Update")]
        );
        assert_eq!(managed(&c)[0]["time"], "2023-11-14T22:16:20Z");
    }

    #[test]
    fn apply_create_status_and_scale_entries() {
        let (s, _) = clocked();
        let t = rt(&s);
        let apply = |sub, body: Value| {
            s.patch(
                &t,
                Some("ns"),
                "a",
                sub,
                &PatchType::Apply { force: false },
                &body,
                "ssa",
            )
        };
        let d = apply(
            Sub::Main,
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a"}, "spec": {"replicas": 1}}),
        )
        .unwrap();
        assert_eq!(managed(&d).len(), 1);
        assert_eq!(managed(&d)[0]["operation"], "Apply");
        assert_eq!(managed(&d)[0]["apiVersion"], "apps/v1");
        assert!(managed(&d)[0].get("subresource").is_none());
        let d = apply(Sub::Status, json!({"status": {"replicas": 1}})).unwrap();
        assert_eq!(managed(&d).len(), 2);
        assert_eq!(managed(&d)[1]["operation"], "Apply");
        assert_eq!(managed(&d)[1]["subresource"], "status");
        let d = s
            .patch(
                &t,
                Some("ns"),
                "a",
                Sub::Status,
                &PatchType::Merge,
                &json!({"status": {"replicas": 2}}),
                "ctl",
            )
            .unwrap();
        let ctl = managed(&d).iter().find(|e| e["manager"] == "ctl").unwrap();
        assert_eq!(
            (&ctl["operation"], &ctl["subresource"]),
            (&json!("Update"), &json!("status"))
        );
        s.patch(
            &t,
            Some("ns"),
            "a",
            Sub::Scale,
            &PatchType::Merge,
            &json!({"spec": {"replicas": 3}}),
            "ctl",
        )
        .unwrap();
        let d = s.get(&t, Some("ns"), "a").unwrap();
        let subs: Vec<&str> = managed(&d)
            .iter()
            .filter(|e| e["manager"] == "ctl")
            .map(|e| e["subresource"].as_str().unwrap())
            .collect();
        assert_eq!(subs, ["scale", "status"]);
        assert_eq!(d["metadata"]["generation"], 2);
    }

    #[test]
    fn clock_offsets_and_crd_conditions_keep_times() {
        let (s, _) = clocked();
        s.clock().advance(Duration::from_secs(3600));
        assert_eq!(s.clock().now_rfc3339(), "2023-11-14T23:13:20Z");
        let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                     "names": {"plural": "widgets", "kind": "Widget"},
                     "versions": [{"name": "v1", "served": true, "storage": true}]}});
        let created = s.create_by_kind(crd.clone(), "t").unwrap();
        assert_eq!(created["metadata"]["creationTimestamp"], "2023-11-14T23:13:20Z");
        assert_eq!(
            created["status"]["conditions"][1]["lastTransitionTime"],
            "2023-11-14T23:13:20Z"
        );
        // Rewriting the same CRD later is a no-op: the conditions keep their times.
        s.clock().advance(Duration::from_secs(60));
        let crt = s
            .resolve("apiextensions.k8s.io", "v1", "customresourcedefinitions")
            .unwrap();
        let again = s
            .replace(&crt, None, "widgets.example.com", Sub::Main, crd, "t")
            .unwrap();
        assert_eq!(again, created);
        s.clock().reset();
        let real = jiff::Timestamp::now().as_second();
        assert!((s.now().as_second() - real).abs() < 5);
    }

    #[test]
    fn watch_history_and_gone() {
        let s = Store::new();
        let t = rt(&s);
        s.create_by_kind(deploy("a", 1), "t").unwrap();
        let rv = s.resource_version();
        s.create_by_kind(deploy("b", 1), "t").unwrap();
        s.delete(&t, Some("ns"), "a").unwrap();
        let w = s.watch(&t, &Filter::default(), Some(rv)).unwrap();
        let kinds: Vec<EventKind> = w.replay.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [EventKind::Added, EventKind::Deleted]);
        let w = s.watch(&t, &Filter::default(), None).unwrap();
        assert_eq!(w.initial.len(), 1);
        s.compact();
        assert_eq!(
            s.watch(&t, &Filter::default(), Some(rv)).err().map(|e| e.code),
            Some(410)
        );
        assert!(
            s.watch(&t, &Filter::default(), Some(s.resource_version()))
                .is_ok()
        );
    }
}
