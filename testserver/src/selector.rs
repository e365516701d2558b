//! Label selectors (equality-, set- and existence-based) and field selectors.

use serde_json::Value;

use crate::error::ApiError;

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelRequirement {
    /// `key=value` or `key==value`.
    Equals(String, String),
    /// `key!=value` (also matches objects without the label).
    NotEquals(String, String),
    /// `key in (a,b)`.
    In(String, Vec<String>),
    /// `key notin (a,b)` (also matches objects without the label).
    NotIn(String, Vec<String>),
    /// `key`.
    Exists(String),
    /// `!key`.
    DoesNotExist(String),
    /// `key>n` (integer comparison).
    GreaterThan(String, i64),
    /// `key<n` (integer comparison).
    LessThan(String, i64),
}

/// A parsed label selector: all requirements must hold. Empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    /// The requirements, ANDed.
    pub requirements: Vec<LabelRequirement>,
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/')
}

/// Split at commas that are not inside parentheses.
fn split_top_level(s: &str) -> Result<Vec<&str>, ApiError> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err(ApiError::bad_request(format!(
                        "unable to parse selector {s:?}: unbalanced ')'"
                    )));
                }
            }
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(ApiError::bad_request(format!(
            "unable to parse selector {s:?}: unbalanced '('"
        )));
    }
    parts.push(&s[start..]);
    Ok(parts)
}

fn parse_set(rest: &str, whole: &str) -> Result<Vec<String>, ApiError> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "unable to parse requirement {whole:?}: expected (values)"
            ))
        })?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

fn parse_int(rest: &str, whole: &str) -> Result<i64, ApiError> {
    rest.trim().parse().map_err(|_| {
        ApiError::bad_request(format!(
            "unable to parse requirement {whole:?}: expected an integer"
        ))
    })
}

impl LabelSelector {
    /// Parse the `labelSelector` query parameter syntax.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let mut requirements = Vec::new();
        if s.trim().is_empty() {
            return Ok(LabelSelector { requirements });
        }
        for part in split_top_level(s)? {
            let part = part.trim();
            if part.is_empty() {
                return Err(ApiError::bad_request(format!(
                    "unable to parse selector {s:?}: empty requirement"
                )));
            }
            if let Some(key) = part.strip_prefix('!') {
                let key = key.trim();
                if key.is_empty() || !key.chars().all(is_key_char) {
                    return Err(ApiError::bad_request(format!(
                        "unable to parse requirement {part:?}"
                    )));
                }
                requirements.push(LabelRequirement::DoesNotExist(key.to_string()));
                continue;
            }
            let key_end = part.find(|c: char| !is_key_char(c)).unwrap_or(part.len());
            let key = &part[..key_end];
            if key.is_empty() {
                return Err(ApiError::bad_request(format!(
                    "unable to parse requirement {part:?}: missing key"
                )));
            }
            let rest = part[key_end..].trim_start();
            let key = key.to_string();
            let req = if rest.is_empty() {
                LabelRequirement::Exists(key)
            } else if let Some(v) = rest.strip_prefix("==") {
                LabelRequirement::Equals(key, v.trim().to_string())
            } else if let Some(v) = rest.strip_prefix("!=") {
                LabelRequirement::NotEquals(key, v.trim().to_string())
            } else if let Some(v) = rest.strip_prefix('=') {
                LabelRequirement::Equals(key, v.trim().to_string())
            } else if let Some(v) = rest.strip_prefix('>') {
                LabelRequirement::GreaterThan(key, parse_int(v, part)?)
            } else if let Some(v) = rest.strip_prefix('<') {
                LabelRequirement::LessThan(key, parse_int(v, part)?)
            } else if let Some(v) = rest.strip_prefix("notin") {
                LabelRequirement::NotIn(key, parse_set(v, part)?)
            } else if let Some(v) = rest.strip_prefix("in") {
                LabelRequirement::In(key, parse_set(v, part)?)
            } else {
                return Err(ApiError::bad_request(format!(
                    "unable to parse requirement {part:?}"
                )));
            };
            requirements.push(req);
        }
        Ok(LabelSelector { requirements })
    }

    /// The selector of a `metav1.LabelSelector` object (`matchLabels` and `matchExpressions` with
    /// `In`, `NotIn`, `Exists`, `DoesNotExist`), as in a PodDisruptionBudget's `spec.selector`. Fails
    /// on an unknown operator or a malformed requirement, like `LabelSelectorAsSelector`.
    pub fn from_object(selector: &Value) -> Result<Self, ApiError> {
        let invalid = |m: String| ApiError::invalid(format!("invalid label selector: {m}"));
        let mut requirements = Vec::new();
        if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in labels {
                let v = v
                    .as_str()
                    .ok_or_else(|| invalid(format!("matchLabels[{k}] must be a string")))?;
                requirements.push(LabelRequirement::Equals(k.clone(), v.to_string()));
            }
        }
        let expressions = selector
            .get("matchExpressions")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for e in expressions {
            let key = e
                .get("key")
                .and_then(Value::as_str)
                .filter(|k| !k.is_empty())
                .ok_or_else(|| invalid("matchExpressions[].key: Required value".into()))?
                .to_string();
            let values: Vec<String> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|vs| vs.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default();
            let op = e.get("operator").and_then(Value::as_str).unwrap_or_default();
            requirements.push(match (op, values.is_empty()) {
                ("In", false) => LabelRequirement::In(key, values),
                ("NotIn", false) => LabelRequirement::NotIn(key, values),
                ("Exists", true) => LabelRequirement::Exists(key),
                ("DoesNotExist", true) => LabelRequirement::DoesNotExist(key),
                ("In" | "NotIn", true) => {
                    return Err(invalid(format!("values: Required value: for 'in', 'notin' operators ({key})")));
                }
                ("Exists" | "DoesNotExist", false) => {
                    return Err(invalid(format!(
                        "values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist' ({key})"
                    )));
                }
                (other, _) => return Err(invalid(format!("{other:?} is not a valid label selector operator"))),
            });
        }
        Ok(LabelSelector { requirements })
    }

    /// Whether there are no requirements (matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether an object's labels (`metadata.labels`) satisfy every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.requirements.iter().all(|r| match r {
            LabelRequirement::Equals(k, v) => get(k) == Some(v.as_str()),
            LabelRequirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            LabelRequirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            LabelRequirement::NotIn(k, vs) => get(k).is_none_or(|x| vs.iter().all(|v| v != x)),
            LabelRequirement::Exists(k) => get(k).is_some(),
            LabelRequirement::DoesNotExist(k) => get(k).is_none(),
            LabelRequirement::GreaterThan(k, n) => {
                get(k).and_then(|x| x.parse::<i64>().ok()).is_some_and(|x| x > *n)
            }
            LabelRequirement::LessThan(k, n) => {
                get(k).and_then(|x| x.parse::<i64>().ok()).is_some_and(|x| x < *n)
            }
        })
    }
}

/// One requirement of a field selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    /// Dotted field path, e.g. `metadata.name`.
    pub field: String,
    /// The value compared against.
    pub value: String,
    /// `true` for `!=`.
    pub negated: bool,
}

/// A parsed field selector. Any dotted path is parsed (`metadata.name`, `metadata.namespace`,
/// `status.phase`, `involvedObject.name`, ...), compared as a string; a missing field compares as "".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    /// The requirements, ANDed.
    pub requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Parse the `fieldSelector` query parameter syntax (`a=b`, `a==b`, `a!=b`, comma-separated).
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let mut requirements = Vec::new();
        if s.trim().is_empty() {
            return Ok(FieldSelector { requirements });
        }
        for part in s.split(',') {
            let part = part.trim();
            let (field, value, negated) = if let Some((f, v)) = part.split_once("!=") {
                (f, v, true)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, v, false)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, v, false)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                )));
            };
            let field = field.trim();
            if field.is_empty() {
                return Err(ApiError::bad_request(format!(
                    "invalid field selector {s:?}: empty field"
                )));
            }
            requirements.push(FieldRequirement {
                field: field.to_string(),
                value: value.trim().to_string(),
                negated,
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// Whether the object satisfies every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        self.requirements.iter().all(|r| {
            let mut cur = Some(obj);
            for seg in r.field.split('.') {
                cur = cur.and_then(|c| c.get(seg));
            }
            let actual = match cur {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            };
            (actual == r.value) != r.negated
        })
    }

    /// The value required for `metadata.name` by an `=` requirement, if any.
    pub fn required_name(&self) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == "metadata.name" && !r.negated)
            .map(|r| r.value.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"name": "n1", "namespace": "ns1", "labels": labels}, "status": {"phase": "Running"}})
    }

    #[test]
    fn equality() {
        let o = obj(json!({"app": "web", "tier": "fe"}));
        assert!(LabelSelector::parse("app=web").unwrap().matches(&o));
        assert!(LabelSelector::parse("app==web,tier=fe").unwrap().matches(&o));
        assert!(!LabelSelector::parse("app=db").unwrap().matches(&o));
        assert!(LabelSelector::parse("app!=db").unwrap().matches(&o));
        assert!(LabelSelector::parse("missing!=db").unwrap().matches(&o));
        assert!(!LabelSelector::parse("app!=web").unwrap().matches(&o));
        assert!(LabelSelector::parse("").unwrap().matches(&o));
    }

    #[test]
    fn sets_and_existence() {
        let o = obj(json!({"app": "web", "app.kubernetes.io/name": "x"}));
        assert!(LabelSelector::parse("app in (web, db)").unwrap().matches(&o));
        assert!(!LabelSelector::parse("app in (db)").unwrap().matches(&o));
        assert!(LabelSelector::parse("app notin (db,cache)").unwrap().matches(&o));
        assert!(LabelSelector::parse("other notin (db)").unwrap().matches(&o));
        assert!(!LabelSelector::parse("app notin (web)").unwrap().matches(&o));
        assert!(LabelSelector::parse("app").unwrap().matches(&o));
        assert!(
            LabelSelector::parse("app.kubernetes.io/name=x")
                .unwrap()
                .matches(&o)
        );
        assert!(!LabelSelector::parse("!app").unwrap().matches(&o));
        assert!(
            LabelSelector::parse("!other,app in (web),app")
                .unwrap()
                .matches(&o)
        );
        assert!(!LabelSelector::parse("other").unwrap().matches(&o));
        let none = json!({"metadata": {"name": "x"}});
        assert!(LabelSelector::parse("!app").unwrap().matches(&none));
        assert!(!LabelSelector::parse("app in (web)").unwrap().matches(&none));
    }

    #[test]
    fn numeric() {
        let o = obj(json!({"n": "5"}));
        assert!(LabelSelector::parse("n>4").unwrap().matches(&o));
        assert!(!LabelSelector::parse("n<4").unwrap().matches(&o));
    }

    #[test]
    fn parse_errors() {
        for bad in ["app in web", "app in (web", "=x", "app ~ x", "a,,b", "n>x"] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(LabelSelector::parse("a in (x,y)").unwrap().requirements.len(), 1);
    }

    #[test]
    fn label_selector_objects() {
        let o = obj(json!({"app": "web", "tier": "fe"}));
        let sel = |v: Value| LabelSelector::from_object(&v).unwrap();
        assert!(sel(json!({"matchLabels": {"app": "web"}})).matches(&o));
        assert!(!sel(json!({"matchLabels": {"app": "db"}})).matches(&o));
        assert!(
            sel(json!({"matchLabels": {"app": "web"}, "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["fe", "be"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "app", "operator": "Exists"},
                {"key": "tier", "operator": "NotIn", "values": ["be"]}
            ]}))
            .matches(&o)
        );
        assert!(
            !sel(json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["fe"]}]}))
                .matches(&o)
        );
        assert!(sel(json!({})).is_empty());
        for bad in [
            json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}),
            json!({"matchExpressions": [{"key": "a", "operator": "In"}]}),
            json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
            json!({"matchLabels": {"a": 1}}),
        ] {
            assert!(LabelSelector::from_object(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fields() {
        let o = obj(json!({}));
        assert!(FieldSelector::parse("metadata.name=n1").unwrap().matches(&o));
        assert!(
            FieldSelector::parse("metadata.name==n1,metadata.namespace=ns1")
                .unwrap()
                .matches(&o)
        );
        assert!(!FieldSelector::parse("metadata.name!=n1").unwrap().matches(&o));
        assert!(
            FieldSelector::parse("metadata.namespace!=other")
                .unwrap()
                .matches(&o)
        );
        assert!(FieldSelector::parse("status.phase=Running").unwrap().matches(&o));
        assert!(!FieldSelector::parse("spec.nodeName=a").unwrap().matches(&o));
        assert!(FieldSelector::parse("bogus").is_err());
        assert_eq!(
            FieldSelector::parse("metadata.name=n1").unwrap().required_name(),
            Some("n1")
        );
    }
}
