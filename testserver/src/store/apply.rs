//! Server-side apply: creating an object by applying it, and applying to one that exists.

use serde_json::{Value, json};

use super::managed::{Write, apply_conflicts};
use super::object::metadata_mut;
use super::{Addressed, State, Store, Sub};
use crate::error::ApiError;
use crate::{fields, patch};

impl Store {
    /// Server-side apply of an object that does not exist: it is created, owned by the applier.
    pub(super) fn apply_create(
        &self,
        st: &mut State,
        at: &Addressed<'_>,
        body: &Value,
        w: &mut Write<'_>,
    ) -> Result<Value, ApiError> {
        let Addressed { rt, ns, name, sub } = *at;
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
        let created = st.create(&self.events, rt, ns, applied.clone(), w)?;
        let okey = State::object_key(rt, ns, name);
        st.applied.insert(
            (rt.store_key(), okey.0, okey.1, sub.name(), w.manager.to_string()),
            applied,
        );
        Ok(created)
    }

    /// Server-side apply to an existing object (`view`: as the subresource shows it): fields the
    /// applier applied before and no longer does are removed unless another applier owns them,
    /// the configuration is merged in, and fields other appliers own conflict unless `force`.
    pub(super) fn apply_update(
        &self,
        st: &mut State,
        at: &Addressed<'_>,
        view: Value,
        body: &Value,
        force: bool,
        w: &mut Write<'_>,
    ) -> Result<Value, ApiError> {
        let Addressed { rt, ns, name, sub } = *at;
        if !body.is_object() {
            return Err(ApiError::bad_request("apply configuration must be an object"));
        }
        let mut applied = body.clone();
        if let Value::Object(m) = &mut applied {
            match sub {
                Sub::Main if rt.has_status => {
                    m.remove("status");
                }
                Sub::Status => {
                    m.retain(|k, _| matches!(k.as_str(), "status" | "apiVersion" | "kind" | "metadata"))
                }
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
        let taken = apply_conflicts(&st.applied, &akey, &view, &v, force)?;
        for (key, config) in &taken {
            w.transferred
                .push((key.4.clone(), key.3, fields::fields_v1(config)));
        }
        let result = st.update(&self.events, rt, ns, name, sub, v, w)?;
        st.applied.insert(akey, applied);
        st.applied.extend(taken);
        Ok(result)
    }
}
