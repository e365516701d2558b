//! The JSONPath subset used by CRD `additionalPrinterColumns`: `.a.b`, `.a[0].b`, `.a[*].b`, `['a.b']`,
//! `.a[?(@.type=="Healthy")].status` (also `!=`), optionally wrapped in `{...}`.

use serde_json::Value;

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Field(String),
    Index(usize),
    All,
    /// `[?(@.path=="value")]`, or `!=` when `negated`.
    Filter {
        path: Vec<String>,
        value: String,
        negated: bool,
    },
}

/// A parsed JSONPath expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    steps: Vec<Step>,
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    for q in ['"', '\''] {
        if let Some(inner) = s.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner.to_string();
        }
    }
    s.to_string()
}

impl JsonPath {
    /// Parse an expression; `None` if it is outside the supported subset.
    pub fn parse(expr: &str) -> Option<JsonPath> {
        let mut s = expr.trim();
        if let Some(inner) = s.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
            s = inner.trim();
        }
        s = s.strip_prefix('$').unwrap_or(s);
        let mut steps = Vec::new();
        let bytes: Vec<char> = s.chars().collect();
        let mut i = 0;
        while i < bytes.len() {
            match bytes.get(i) {
                Some('.') => {
                    i += 1;
                    let mut name = String::new();
                    while let Some(&c) = bytes.get(i) {
                        if c == '.' || c == '[' {
                            break;
                        }
                        if c == '\\' {
                            if let Some(&next) = bytes.get(i + 1) {
                                name.push(next);
                                i += 2;
                                continue;
                            }
                        }
                        name.push(c);
                        i += 1;
                    }
                    if name.is_empty() {
                        return None;
                    }
                    steps.push(Step::Field(name));
                }
                Some('[') => {
                    let close = find_close(&bytes, i)?;
                    let inner: String = bytes.get(i + 1..close)?.iter().collect();
                    i = close + 1;
                    let inner = inner.trim();
                    if inner == "*" {
                        steps.push(Step::All);
                    } else if let Ok(n) = inner.parse::<usize>() {
                        steps.push(Step::Index(n));
                    } else if let Some(filter) = inner.strip_prefix("?(").and_then(|r| r.strip_suffix(')')) {
                        let (lhs, rhs, negated) = if let Some((l, r)) = filter.split_once("!=") {
                            (l, r, true)
                        } else if let Some((l, r)) = filter.split_once("==") {
                            (l, r, false)
                        } else {
                            return None;
                        };
                        let lhs = lhs.trim().strip_prefix("@.")?;
                        let path = lhs.split('.').map(str::to_string).collect();
                        steps.push(Step::Filter {
                            path,
                            value: unquote(rhs),
                            negated,
                        });
                    } else if inner.starts_with('\'') || inner.starts_with('"') {
                        steps.push(Step::Field(unquote(inner)));
                    } else {
                        return None;
                    }
                }
                _ => return None,
            }
        }
        Some(JsonPath { steps })
    }

    /// Every value the path selects, in document order.
    pub fn find<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        let mut cur = vec![root];
        for step in &self.steps {
            let mut next = Vec::new();
            for v in cur {
                match step {
                    Step::Field(f) => next.extend(v.get(f)),
                    Step::Index(n) => next.extend(v.get(*n)),
                    Step::All => match v {
                        Value::Array(a) => next.extend(a.iter()),
                        Value::Object(m) => next.extend(m.values()),
                        _ => {}
                    },
                    Step::Filter { path, value, negated } => {
                        if let Value::Array(a) = v {
                            next.extend(a.iter().filter(|e| {
                                let mut f = Some(*e);
                                for p in path {
                                    f = f.and_then(|x| x.get(p));
                                }
                                let actual = match f {
                                    Some(Value::String(s)) => Some(s.clone()),
                                    Some(Value::Null) | None => None,
                                    Some(other) => Some(other.to_string()),
                                };
                                (actual.as_deref() == Some(value.as_str())) != *negated
                            }));
                        }
                    }
                }
            }
            cur = next;
        }
        cur
    }

    /// The first selected value.
    pub fn first<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        self.find(root).into_iter().next()
    }
}

fn find_close(chars: &[char], open: usize) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut depth = 0;
    for (j, &c) in chars.iter().enumerate().skip(open) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[') => depth += 1,
            (None, ']') => {
                depth -= 1;
                if depth == 0 {
                    return Some(j);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({
            "metadata": {"name": "x", "labels": {"app.kubernetes.io/name": "web"}},
            "spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}], "replicas": 3},
            "status": {"conditions": [
                {"type": "Ready", "status": "False"},
                {"type": "Healthy", "status": "True", "reason": "ProbesPassing"}
            ]}
        })
    }

    fn eval(p: &str) -> Option<Value> {
        JsonPath::parse(p).unwrap().first(&doc()).cloned()
    }

    #[test]
    fn subset() {
        assert_eq!(eval(".metadata.name"), Some(json!("x")));
        assert_eq!(eval("{.spec.replicas}"), Some(json!(3)));
        assert_eq!(eval(".spec.containers[1].image"), Some(json!("b:1")));
        assert_eq!(eval(".spec.containers[*].name"), Some(json!("a")));
        assert_eq!(
            eval(r#".status.conditions[?(@.type=="Healthy")].status"#),
            Some(json!("True"))
        );
        assert_eq!(
            eval(".status.conditions[?(@.type=='Healthy')].reason"),
            Some(json!("ProbesPassing"))
        );
        assert_eq!(
            eval(r#".status.conditions[?(@.type!="Ready")].type"#),
            Some(json!("Healthy"))
        );
        assert_eq!(eval(r#".status.conditions[?(@.type=="Nope")].status"#), None);
        assert_eq!(
            eval(r".metadata.labels.app\.kubernetes\.io/name"),
            Some(json!("web"))
        );
        assert_eq!(
            eval(".metadata.labels['app.kubernetes.io/name']"),
            Some(json!("web"))
        );
        assert_eq!(eval(".spec.missing.deeper"), None);
        assert_eq!(eval(".spec.containers[9]"), None);
        let all = JsonPath::parse(".spec.containers[*].name").unwrap();
        assert_eq!(all.find(&doc()).len(), 2);
    }

    #[test]
    fn rejects_outside_subset() {
        for bad in ["spec", ".a[", ".a[?(@.x>1)]", "..a", ".a[1:2]"] {
            assert!(JsonPath::parse(bad).is_none(), "{bad}");
        }
    }
}
