//! Version conversion between resource types that share one storage.
//!
//! Core v1 `events` and `events.k8s.io/v1` `events` are one storage, as in a real cluster. Objects are
//! kept with the core v1 field names and renamed on the way in and out, like
//! `k8s.io/kubernetes/pkg/apis/events/v1` does (`regarding`↔`involvedObject`, `note`↔`message`,
//! `deprecatedSource`↔`source`, `deprecatedFirstTimestamp`/`deprecatedLastTimestamp`↔
//! `firstTimestamp`/`lastTimestamp`, `deprecatedCount`↔`count`, `reportingController`↔
//! `reportingComponent`; `eventTime`, `series`, `action`, `reason`, `related`, `reportingInstance` and
//! `type` are the same in both). Like the real conversion it does not derive one field from another:
//! an event written through events.k8s.io with a `series` has no core `count` (kubectl reads `series`).

use serde_json::{Map, Value};

use crate::registry::{ResourceType, StoreKey};

/// (core v1 name, events.k8s.io/v1 name).
const EVENT_RENAMES: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
];

/// `events.k8s.io` events (served from the core events storage).
pub fn is_events_api(rt: &ResourceType) -> bool {
    rt.crd.is_none() && rt.group == "events.k8s.io" && rt.plural == "events"
}

/// Core v1 events.
pub fn is_core_event(rt: &ResourceType) -> bool {
    rt.crd.is_none() && rt.group.is_empty() && rt.plural == "events"
}

/// Where objects of `rt` are stored: both event APIs share the core storage.
pub fn storage_key(rt: &ResourceType) -> StoreKey {
    if is_events_api(rt) {
        (String::new(), "events".into())
    } else {
        (rt.group.clone(), rt.plural.clone())
    }
}

/// An object written at the version of `rt`, in storage form. Fields the written version does not
/// have are dropped (the real API server's decoder ignores them), so that both views stay consistent.
pub fn to_storage(rt: &ResourceType, mut obj: Value) -> Value {
    let Value::Object(m) = &mut obj else {
        return obj;
    };
    if is_events_api(rt) {
        for (core, _) in EVENT_RENAMES {
            m.remove(*core);
        }
        for (core, events) in EVENT_RENAMES {
            if let Some(v) = m.remove(*events) {
                m.insert((*core).to_string(), v);
            }
        }
    } else if is_core_event(rt) {
        for (_, events) in EVENT_RENAMES {
            m.remove(*events);
        }
    }
    obj
}

/// A stored object as served at the version of `rt` (without `apiVersion`/`kind`, see
/// [`crate::store::present`]).
pub fn from_storage(rt: &ResourceType, mut obj: Value) -> Value {
    let Value::Object(m) = &mut obj else {
        return obj;
    };
    if is_events_api(rt) {
        for (core, events) in EVENT_RENAMES {
            if let Some(v) = m.remove(*core) {
                m.insert((*events).to_string(), v);
            }
        }
        // A struct in Go: always served, if only as `{}` (seen by the referee).
        m.entry("deprecatedSource")
            .or_insert_with(|| Value::Object(Map::new()));
    } else if is_core_event(rt) {
        // Not optional in core v1 (clients such as k8s-openapi require it); `source` is a struct
        // and the reporting fields are strings without `omitempty` in Go, so the API server
        // always serves them too.
        for (field, empty) in [
            ("involvedObject", Value::Object(Map::new())),
            ("source", Value::Object(Map::new())),
            ("reportingComponent", Value::String(String::new())),
            ("reportingInstance", Value::String(String::new())),
        ] {
            m.entry(field).or_insert(empty);
        }
    }
    obj
}

/// A core-v1-named copy of an event served at the version of `rt` (for the Table of either API).
pub fn event_as_core(rt: &ResourceType, obj: &Value) -> Value {
    if is_events_api(rt) {
        let mut m = obj.as_object().cloned().unwrap_or_default();
        for (core, events) in EVENT_RENAMES {
            if let Some(v) = m.remove(*events) {
                m.insert((*core).to_string(), v);
            }
        }
        Value::Object(m)
    } else {
        obj.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;
    use serde_json::json;

    #[test]
    fn events_round_trip_between_versions() {
        let r = Registry::new();
        let core = r.by_resource("", "v1", "events").unwrap().clone();
        let ev = r.by_resource("events.k8s.io", "v1", "events").unwrap().clone();
        assert_eq!(storage_key(&core), storage_key(&ev));
        let written = json!({
            "metadata": {"name": "e", "namespace": "ns"},
            "regarding": {"kind": "Pod", "name": "p"}, "note": "hello", "reason": "Started",
            "reportingController": "ctl", "reportingInstance": "ctl-1", "type": "Normal",
            "eventTime": "2025-01-01T00:00:00.000000Z", "series": {"count": 2, "lastObservedTime": "2025-01-01T00:00:05.000000Z"},
            "deprecatedCount": 3, "involvedObject": {"name": "ignored"}
        });
        let stored = to_storage(&ev, written.clone());
        assert_eq!(stored["involvedObject"], json!({"kind": "Pod", "name": "p"}));
        assert_eq!(stored["message"], "hello");
        assert_eq!(stored["reportingComponent"], "ctl");
        assert_eq!(stored["count"], 3);
        assert_eq!(stored["series"]["count"], 2);
        assert!(stored.get("regarding").is_none() && stored.get("note").is_none());
        let mut back = written;
        back.as_object_mut().unwrap().remove("involvedObject");
        back["deprecatedSource"] = json!({});
        assert_eq!(from_storage(&ev, stored.clone()), back);
        let mut as_core = stored.clone();
        as_core["source"] = json!({});
        assert_eq!(from_storage(&core, stored.clone()), as_core);
        assert_eq!(event_as_core(&ev, &back), as_core);
        // Core writes drop events.k8s.io-only names; involvedObject, source and the reporting
        // fields are always served.
        let stored = to_storage(&core, json!({"message": "m", "note": "x"}));
        assert_eq!(stored, json!({"message": "m"}));
        assert_eq!(
            from_storage(&core, stored),
            json!({"message": "m", "involvedObject": {}, "source": {}, "reportingComponent": "", "reportingInstance": ""})
        );
    }
}
