//! The store's state behind its lock, and the writes on it: create, update, delete.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use super::managed::{OPERATION_UPDATE, Write, owned_among, ownership_changed, record_manager};
use super::object::{check_type, meta_str, metadata_mut, present, set_path, spec_changed, with_type};
use super::{AppliedKey, Event, EventKind, HISTORY_PER_TYPE, ObjKey, State, Sub};
use crate::admission::Checks;
use crate::error::ApiError;
use crate::registry::{Registry, ResourceType};
use crate::{convert, fields};

impl State {
    pub(super) fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
        m.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn next_random(&mut self) -> u64 {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(super) fn new_uid(&mut self) -> String {
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

    pub(super) fn random_suffix(&mut self) -> String {
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

    pub(super) fn record(&mut self, events: &broadcast::Sender<Arc<Event>>, event: Event) {
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

    pub(super) fn object_key(rt: &ResourceType, ns: Option<&str>, name: &str) -> ObjKey {
        (
            if rt.namespaced {
                ns.unwrap_or("default").to_string()
            } else {
                String::new()
            },
            name.to_string(),
        )
    }

    /// The objects of `rt` that `filter` selects, as served.
    pub(super) fn matching(&self, rt: &ResourceType, filter: &super::Filter) -> Vec<Value> {
        self.objects
            .get(&rt.store_key())
            .map(|m| {
                m.values()
                    .map(|o| present(rt, o.clone()))
                    .filter(|o| filter.matches(o))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(super) fn current(&self, rt: &ResourceType, ns: Option<&str>, name: &str) -> Result<Value, ApiError> {
        self.objects
            .get(&rt.store_key())
            .and_then(|m| m.get(&Self::object_key(rt, ns, name)))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.qualified(), name))
    }

    /// Side effects of writing a CRD or namespace: status and type registration. `old` is the stored
    /// object of an update (None when creating); `now` the time of the write.
    pub(super) fn prepare_special(
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
    pub(super) fn admit(
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

    pub(super) fn after_write(&mut self, rt: &ResourceType, obj: &Value) -> Result<(), ApiError> {
        if rt.crd.is_none() && rt.group == "apiextensions.k8s.io" && rt.plural == "customresourcedefinitions"
        {
            let name = meta_str(obj, "name").unwrap_or_default().to_string();
            let types = Registry::types_from_crd(obj)?;
            self.registry.register_crd(&name, types)?;
        }
        Ok(())
    }

    /// The name of a new object: its own, or `generateName` with a random suffix no object of the
    /// type and namespace has.
    fn name_for(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: String,
        generate: &str,
    ) -> Result<String, ApiError> {
        if !name.is_empty() {
            return Ok(name);
        }
        if generate.is_empty() {
            return Err(ApiError::invalid(format!(
                "{} \"\" is invalid: metadata.name: Required value: name or generateName is required",
                rt.kind
            )));
        }
        let key = rt.store_key();
        loop {
            let candidate = format!("{generate}{}", self.random_suffix());
            let exists = self
                .objects
                .get(&key)
                .is_some_and(|m| m.contains_key(&Self::object_key(rt, ns, &candidate)));
            if !exists {
                return Ok(candidate);
            }
        }
    }

    pub(super) fn create(
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
        let name = meta_str(&obj, "name").unwrap_or_default().to_string();
        let generate = meta_str(&obj, "generateName").unwrap_or_default().to_string();
        let name = self.name_for(rt, url_ns.as_deref(), name, &generate)?;
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
    pub(super) fn update(
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
        let candidate = checked_candidate(rt, name, &old, candidate, sub)?;
        let mut new = merged(rt, name, &old, candidate, sub)?;
        // Server-managed metadata always comes from the stored object.
        let old_meta = old
            .get("metadata")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        keep_server_metadata(&mut new, &old_meta, sub)?;
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
    pub(super) fn disowned(
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

    pub(super) fn delete(
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
        let before = obj.clone();
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
                old: Some(before),
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

/// The body of an update, checked against the URL and the stored object (`resourceVersion` as a
/// precondition) and in storage form.
fn checked_candidate(
    rt: &ResourceType,
    name: &str,
    old: &Value,
    candidate: Value,
    sub: Sub,
) -> Result<Value, ApiError> {
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
        if Some(body_rv) != meta_str(old, "resourceVersion") {
            return Err(ApiError::conflict(&rt.qualified(), name));
        }
    }
    Ok(candidate)
}

/// The object an update of `sub` makes of `old`: the main resource keeps its status, the status
/// subresource changes only status, resize only resources, scale only the replicas.
fn merged(rt: &ResourceType, name: &str, old: &Value, candidate: Value, sub: Sub) -> Result<Value, ApiError> {
    Ok(match sub {
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
        Sub::Resize => crate::resize::apply(old, &candidate, name)?,
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
    })
}

/// Server-managed metadata (identity, times, generation, resourceVersion, managedFields) as stored;
/// a subresource write keeps all of the stored metadata.
fn keep_server_metadata(new: &mut Value, old_meta: &Map<String, Value>, sub: Sub) -> Result<(), ApiError> {
    let meta = metadata_mut(new)?;
    if sub != Sub::Main {
        *meta = old_meta.clone();
    }
    // managedFields is server-owned too: what a body says is ignored, so a write that would only
    // refresh a time is a no-op.
    for f in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "generation",
        "resourceVersion",
        "managedFields",
    ] {
        match old_meta.get(f) {
            Some(v) => meta.insert(f.into(), v.clone()),
            None => meta.remove(f),
        };
    }
    Ok(())
}
