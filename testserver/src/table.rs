//! `meta.k8s.io/v1` `Table` output, as `kubectl get` asks for it.

use serde_json::{Value, json};

use crate::convert;
use crate::registry::ResourceType;

/// What each row carries in `object` (`includeObject` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    /// No object.
    None,
    /// `PartialObjectMetadata` (the default).
    Metadata,
    /// The full object.
    Object,
}

impl IncludeObject {
    /// Parse the query parameter (default Metadata).
    pub fn parse(v: Option<&str>) -> Self {
        match v {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

/// kubectl's `HumanDuration` (k8s.io/apimachinery/pkg/util/duration).
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// Age of an RFC 3339 timestamp, kubectl-style; `<unknown>` if unparsable.
pub fn age(timestamp: &str, now: jiff::Timestamp) -> String {
    match timestamp.parse::<jiff::Timestamp>() {
        Ok(t) => human_duration(now.as_second() - t.as_second()),
        Err(_) => "<unknown>".into(),
    }
}

fn column(name: &str, type_: &str, format: &str, description: &str, priority: i64) -> Value {
    json!({"name": name, "type": type_, "format": format, "description": description, "priority": priority})
}

fn has_age_column(rt: &ResourceType) -> bool {
    rt.printer_columns
        .iter()
        .any(|c| c.name.eq_ignore_ascii_case("age"))
}

/// The columns of the API server's event printer (both event APIs).
fn event_columns() -> Vec<Value> {
    vec![
        column("Last Seen", "string", "", "Time of the last occurrence.", 0),
        column("Type", "string", "", "Type of this event (Normal, Warning).", 0),
        column("Reason", "string", "", "Why the action was taken.", 0),
        column("Object", "string", "", "The object this Event is about.", 0),
        column(
            "Subobject",
            "string",
            "",
            "The field of the object this Event is about.",
            1,
        ),
        column("Source", "string", "", "The component reporting this event.", 1),
        column(
            "Message",
            "string",
            "",
            "A human-readable description of the status of this operation.",
            0,
        ),
        column("First Seen", "string", "", "Time of the first occurrence.", 1),
        column(
            "Count",
            "string",
            "",
            "The number of times this event has occurred.",
            1,
        ),
        column(
            "Name",
            "string",
            "name",
            "Name must be unique within a namespace.",
            1,
        ),
    ]
}

/// The cells of the API server's event printer (`printEvent`, wide), from core v1 field names.
fn event_cells(ev: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let s = |ptr: &str| ev.pointer(ptr).and_then(Value::as_str).unwrap_or_default();
    let since = |ptr: &str| -> Option<String> {
        ev.pointer(ptr)
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(|t| age(t, now))
    };
    let first = since("/firstTimestamp")
        .or_else(|| since("/eventTime"))
        .unwrap_or_else(|| "<unknown>".into());
    let mut last = since("/lastTimestamp").unwrap_or_else(|| first.clone());
    let mut count = ev.get("count").and_then(Value::as_i64).unwrap_or(0);
    if ev.get("series").is_some_and(Value::is_object) {
        last = since("/series/lastObservedTime").unwrap_or_else(|| "<unknown>".into());
        count = ev.pointer("/series/count").and_then(Value::as_i64).unwrap_or(0);
    } else if count == 0 {
        count = 1;
    }
    let kind = s("/involvedObject/kind").to_lowercase();
    let target = match s("/involvedObject/name") {
        "" => kind,
        name => format!("{kind}/{name}"),
    };
    let component = Some(s("/source/component"))
        .filter(|c| !c.is_empty())
        .unwrap_or(s("/reportingComponent"));
    let instance = Some(s("/source/host"))
        .filter(|c| !c.is_empty())
        .unwrap_or(s("/reportingInstance"));
    let source = if instance.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {instance}")
    };
    vec![
        json!(last),
        json!(s("/type")),
        json!(s("/reason")),
        json!(target),
        json!(s("/involvedObject/fieldPath")),
        json!(source),
        json!(s("/message").trim()),
        json!(first),
        json!(count),
        json!(s("/metadata/name")),
    ]
}

/// Column definitions: Name, the CRD's printer columns, Age (unless the CRD already has an Age column);
/// the event printer's columns for events.
pub fn columns(rt: &ResourceType) -> Vec<Value> {
    if convert::is_core_event(rt) || convert::is_events_api(rt) {
        return event_columns();
    }
    let mut cols = vec![column(
        "Name",
        "string",
        "name",
        "Name must be unique within a namespace. Cannot be updated.",
        0,
    )];
    for c in &rt.printer_columns {
        cols.push(column(&c.name, &c.type_, &c.format, &c.description, c.priority));
    }
    if !has_age_column(rt) {
        cols.push(column(
            "Age",
            "string",
            "",
            "CreationTimestamp is a timestamp representing the server time when this object was created.",
            0,
        ));
    }
    cols
}

fn cell(type_: &str, value: Option<&Value>, now: jiff::Timestamp) -> Value {
    let Some(v) = value.filter(|v| !v.is_null()) else {
        return Value::Null;
    };
    match type_ {
        "date" => match v.as_str() {
            Some(s) => Value::String(age(s, now)),
            None => Value::String("<invalid>".into()),
        },
        "integer" if v.is_i64() || v.is_u64() => v.clone(),
        "number" if v.is_number() => v.clone(),
        "boolean" if v.is_boolean() => v.clone(),
        "integer" | "number" | "boolean" => Value::Null,
        _ => match v {
            Value::String(s) => Value::String(s.clone()),
            other => Value::String(other.to_string()),
        },
    }
}

/// One row for an object.
pub fn row(rt: &ResourceType, obj: &Value, include: IncludeObject, now: jiff::Timestamp) -> Value {
    let name = obj.pointer("/metadata/name").cloned().unwrap_or(Value::Null);
    let event = convert::is_core_event(rt) || convert::is_events_api(rt);
    let mut cells = if event {
        event_cells(&convert::event_as_core(rt, obj), now)
    } else {
        vec![name]
    };
    for c in &rt.printer_columns {
        let v = c.path.as_ref().and_then(|p| p.first(obj));
        cells.push(cell(&c.type_, v, now));
    }
    if !event && !has_age_column(rt) {
        let created = obj
            .pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str)
            .unwrap_or_default();
        cells.push(Value::String(age(created, now)));
    }
    let object = match include {
        IncludeObject::None => Value::Null,
        IncludeObject::Object => obj.clone(),
        IncludeObject::Metadata => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
        }),
    };
    json!({"cells": cells, "object": object})
}

/// A Table of objects; ages are relative to `now`.
pub fn table(
    rt: &ResourceType,
    objs: &[Value],
    rv: Option<String>,
    include: IncludeObject,
    now: jiff::Timestamp,
) -> Value {
    let rows: Vec<Value> = objs.iter().map(|o| row(rt, o, include, now)).collect();
    let mut metadata = json!({});
    if let (Some(rv), Value::Object(m)) = (rv, &mut metadata) {
        m.insert("resourceVersion".into(), Value::String(rv));
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns(rt),
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    #[test]
    fn durations_like_kubectl() {
        for (s, want) in [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (150, "2m30s"),
            (600, "10m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 120, "3h2m"),
            (10 * 3600, "10h"),
            (50 * 3600, "2d2h"),
            (10 * 86400, "10d"),
            (3 * 365 * 86400 + 86400, "3y1d"),
            (9 * 365 * 86400, "9y"),
        ] {
            assert_eq!(human_duration(s), want, "{s}");
        }
    }

    #[test]
    fn crd_table() {
        let crd = json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget"},
                "versions": [{"name": "v1", "served": true, "storage": true, "additionalPrinterColumns": [
                    {"name": "Healthy", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Healthy\")].status"},
                    {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
                    {"name": "Seen", "type": "date", "jsonPath": ".status.lastSeen"}
                ]}]}
        });
        let rt = Registry::types_from_crd(&crd).unwrap().remove(0);
        let now = jiff::Timestamp::now();
        let five_min_ago = now
            .checked_sub(jiff::SignedDuration::from_secs(300))
            .unwrap()
            .to_string();
        let obj = json!({"metadata": {"name": "w", "creationTimestamp": five_min_ago},
            "spec": {"replicas": 2},
            "status": {"lastSeen": five_min_ago, "conditions": [{"type": "Healthy", "status": "True"}]}});
        let t = table(&rt, &[obj], Some("5".into()), IncludeObject::Metadata, now);
        let names: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Name", "Healthy", "Replicas", "Seen", "Age"]);
        assert_eq!(t["rows"][0]["cells"], json!(["w", "True", 2, "5m", "5m"]));
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    }
}
