//! What the API server does to a custom resource written over HTTP before storing it: prune the
//! fields its CRD's schema does not declare (refused with `fieldValidation=Strict`, a warning with
//! `Warn`, the default), then validate it against the schema (types, `enum`, bounds, `pattern`,
//! lengths, `required`, …) and the schema's CEL `x-kubernetes-validations` rules, answering 422
//! `Invalid` with the API server's wording. Writes through the [`crate::TestServer`] methods are
//! not admitted: they stand for objects put straight into storage.

use std::sync::{Arc, Mutex, PoisonError};

use jsonschema::error::ValidationErrorKind;
use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::registry::ResourceType;

/// The `fieldValidation` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    /// Unknown fields are dropped silently.
    Ignore,
    /// Unknown fields are dropped and named in `Warning` headers (the API server's default).
    #[default]
    Warn,
    /// Unknown fields fail the request (400).
    Strict,
}

impl FieldValidation {
    /// Parses the parameter (absent: `Warn`).
    pub fn parse(value: Option<&str>) -> Result<Self, ApiError> {
        match value {
            None | Some("" | "Warn") => Ok(Self::Warn),
            Some("Ignore") => Ok(Self::Ignore),
            Some("Strict") => Ok(Self::Strict),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation: Unsupported value: \"{other}\": supported values: \"Ignore\", \"Strict\", \"Warn\""
            ))),
        }
    }
}

/// One HTTP write's admission: how unknown fields are treated, and the warnings it gathered.
#[derive(Debug, Default)]
pub struct Admission {
    /// The request's `fieldValidation`.
    pub validation: FieldValidation,
    warnings: Mutex<Vec<String>>,
}

impl Admission {
    /// Admission with `validation`.
    pub fn new(validation: FieldValidation) -> Self {
        Self {
            validation,
            warnings: Mutex::default(),
        }
    }

    /// The warnings gathered, for `Warning: 299 - "…"` headers.
    pub fn warnings(&self) -> Vec<String> {
        self.warnings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Compiled checks of one CRD version's schema, kept while the CRD is unchanged.
pub struct Checks {
    schema: Value,
    validator: jsonschema::Validator,
    rules: kube_core::cel::CompiledSchema,
}

impl std::fmt::Debug for Checks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checks").finish_non_exhaustive()
    }
}

impl Checks {
    /// The checks of `version` of `crd`, None if that version has no schema.
    pub fn of(crd: &Value, version: &str) -> Option<Arc<Self>> {
        let schema = crd["spec"]["versions"]
            .as_array()?
            .iter()
            .find(|v| v["name"] == version)?
            .pointer("/schema/openAPIV3Schema")?
            .clone();
        let mut nullable = schema.clone();
        allow_null(&mut nullable);
        let validator = jsonschema::options().build(&nullable).ok()?;
        let rules = kube_core::cel::compile_schema(&schema);
        Some(Arc::new(Self {
            schema,
            validator,
            rules,
        }))
    }

    /// Admits `obj` (prunes it in place) or says why not.
    pub fn admit(
        &self,
        rt: &ResourceType,
        obj: &mut Value,
        old: Option<&Value>,
        admission: &Admission,
    ) -> Result<(), ApiError> {
        let before = old.is_some().then(|| obj.clone());
        let mut unknown = Vec::new();
        if let Value::Object(root) = obj {
            prune_root(&self.schema, root, &mut unknown);
        }
        // Unknown fields the stored object already has are not the request's: the API server prunes
        // the request body, so they survive (a status write leaves a spec stored before alone).
        if let (Some(old), Some(before)) = (old, &before) {
            unknown.retain(|field| {
                let at = pointer_of(field, usize::MAX);
                match (old.pointer(&at), before.pointer(&at)) {
                    (Some(was), Some(is)) if was == is => {
                        restore(obj, &at, is.clone());
                        false
                    }
                    _ => true,
                }
            });
        }
        match admission.validation {
            FieldValidation::Strict if !unknown.is_empty() => {
                let fields: Vec<String> = unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect();
                return Err(ApiError::bad_request(format!(
                    "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
                    fields.join(", "),
                    kind = rt.kind,
                    version = rt.version,
                )));
            }
            FieldValidation::Warn => admission
                .warnings
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(unknown.iter().map(|f| format!("unknown field \"{f}\""))),
            _ => {}
        }
        let mut causes: Vec<Cause> = self.validator.iter_errors(obj).map(|e| cause(&e)).collect();
        if causes.is_empty() {
            if let Err(errors) = kube_core::cel::validate_compiled(&self.rules, obj, old) {
                causes = errors
                    .into_vec()
                    .into_iter()
                    .map(|e| Cause {
                        reason: "FieldValueInvalid",
                        field: e.field_path.trim_start_matches('.').to_string(),
                        message: format!("Invalid value: \"object\": {}", e.message),
                        cel: true,
                    })
                    .collect();
            }
        }
        // Ratcheting, as the API server does since 1.30: on update, a value that did not change is
        // not held against the write (a status write to an object whose spec an older schema let in).
        if let Some(old) = old {
            causes.retain(|c| {
                let at = c.pointer();
                obj.pointer(&at) != old.pointer(&at)
            });
        }
        if causes.is_empty() {
            return Ok(());
        }
        Err(invalid(rt, obj, &causes))
    }
}

/// One `details.causes` entry.
struct Cause {
    reason: &'static str,
    field: String,
    message: String,
    /// From a CEL rule: its field may be one the rule names, not where the rule sits.
    cel: bool,
}

impl Cause {
    /// The JSON pointer of the value whose change it is held against: the field itself (present
    /// or not) for the schema's checks; for a CEL rule, whose error names a field of its choosing,
    /// the whole top-level section (`spec`, `status`), so a rule ratchets only when that section is
    /// unchanged (stricter than the API server, which looks at the rule's own object).
    fn pointer(&self) -> String {
        pointer_of(&self.field, if self.cel { 1 } else { usize::MAX })
    }
}

/// The JSON pointer of a field named as the API server names it (`spec.steps[0].action`), cut
/// after `depth` names.
fn pointer_of(field: &str, depth: usize) -> String {
    let mut out = String::new();
    for part in field.split('.').filter(|p| !p.is_empty()).take(depth) {
        let (name, indexes) = part.split_once('[').unwrap_or((part, ""));
        out.push('/');
        out.push_str(&name.replace('~', "~0").replace('/', "~1"));
        for index in indexes
            .split('[')
            .map(|i| i.trim_end_matches(']'))
            .filter(|i| !i.is_empty())
        {
            out.push('/');
            out.push_str(index);
        }
    }
    out
}

/// Puts `value` back at `pointer` in `obj` (its parent exists: only unknown leaves were pruned).
fn restore(obj: &mut Value, pointer: &str, value: Value) {
    let Some((parent, key)) = pointer.rsplit_once('/') else {
        return;
    };
    if let Some(Value::Object(map)) = obj.pointer_mut(parent) {
        map.insert(key.replace("~1", "/").replace("~0", "~"), value);
    }
}

/// A JSON pointer as the API server names a field: `spec.steps[0].action`.
fn field_of(pointer: &str) -> String {
    let mut out = String::new();
    for part in pointer.split('/').skip(1) {
        let part = part.replace("~1", "/").replace("~0", "~");
        if part.parse::<usize>().is_ok() {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&part);
        }
    }
    out
}

fn cause(e: &jsonschema::ValidationError<'_>) -> Cause {
    let field = field_of(e.instance_path().as_str());
    let value = e.instance().to_string();
    let invalid = |what: String| Cause {
        reason: "FieldValueInvalid",
        field: field.clone(),
        message: format!("Invalid value: {value}: {what}"),
        cel: false,
    };
    match e.kind() {
        ValidationErrorKind::Required { property } => Cause {
            reason: "FieldValueRequired",
            field: match property.as_str() {
                Some(p) if field.is_empty() => p.to_string(),
                Some(p) => format!("{field}.{p}"),
                None => field.clone(),
            },
            message: "Required value".into(),
            cel: false,
        },
        ValidationErrorKind::Enum { options } => {
            let supported: Vec<String> = options
                .as_array()
                .map(|o| o.iter().map(Value::to_string).collect())
                .unwrap_or_default();
            Cause {
                reason: "FieldValueNotSupported",
                field: field.clone(),
                message: format!(
                    "Unsupported value: {value}: supported values: {}",
                    supported.join(", ")
                ),
                cel: false,
            }
        }
        ValidationErrorKind::Minimum { limit } => invalid(format!(
            "{field} in body should be greater than or equal to {limit}"
        )),
        ValidationErrorKind::Maximum { limit } => {
            invalid(format!("{field} in body should be less than or equal to {limit}"))
        }
        ValidationErrorKind::ExclusiveMinimum { limit } => {
            invalid(format!("{field} in body should be greater than {limit}"))
        }
        ValidationErrorKind::ExclusiveMaximum { limit } => {
            invalid(format!("{field} in body should be less than {limit}"))
        }
        ValidationErrorKind::Pattern { pattern } => {
            invalid(format!("{field} in body should match '{pattern}'"))
        }
        ValidationErrorKind::MaxLength { limit } => Cause {
            reason: "FieldValueTooLong",
            field: field.clone(),
            message: format!("Too long: may not be more than {limit} bytes"),
            cel: false,
        },
        ValidationErrorKind::MinLength { limit } => {
            invalid(format!("{field} in body should be at least {limit} chars long"))
        }
        ValidationErrorKind::MaxItems { limit } => Cause {
            reason: "FieldValueTooMany",
            field: field.clone(),
            message: format!(
                "Too many: {}: must have at most {limit} items",
                e.instance().as_array().map_or(0, Vec::len)
            ),
            cel: false,
        },
        ValidationErrorKind::MinItems { limit } => {
            invalid(format!("{field} in body should have at least {limit} items"))
        }
        ValidationErrorKind::Type { .. } => invalid(format!("{field} in body {e}")),
        _ => invalid(e.to_string()),
    }
}

/// 422 `Invalid`, worded as the API server words it.
fn invalid(rt: &ResourceType, obj: &Value, causes: &[Cause]) -> ApiError {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let lines: Vec<String> = causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect();
    let list = if lines.len() == 1 {
        lines.concat()
    } else {
        format!("[{}]", lines.join(", "))
    };
    let message = format!("{}.{} \"{name}\" is invalid: {list}", rt.kind, rt.group);
    let mut e = ApiError::invalid(message);
    e.object = Some(Box::new((name.to_string(), rt.group.clone(), rt.kind.clone())));
    e.causes = causes
        .iter()
        .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
        .collect();
    e
}

/// What `metadata` may hold (everything else is pruned, as for any object).
const OBJECT_META: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

fn prune_root(schema: &Value, root: &mut Map<String, Value>, unknown: &mut Vec<String>) {
    if let Some(Value::Object(meta)) = root.get_mut("metadata") {
        meta.retain(|k, _| {
            let known = OBJECT_META.contains(&k.as_str());
            if !known {
                unknown.push(format!("metadata.{k}"));
            }
            known
        });
    }
    let properties = schema.get("properties").and_then(Value::as_object);
    let keys: Vec<String> = root.keys().cloned().collect();
    for key in keys {
        if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        match properties.and_then(|p| p.get(&key)) {
            Some(sub) => {
                if let Some(value) = root.get_mut(&key) {
                    prune(sub, value, &key, unknown);
                }
            }
            None if preserves(schema) => {}
            None => {
                root.remove(&key);
                unknown.push(key);
            }
        }
    }
}

/// `nullable: true` as JSON Schema says it: `null` joins the allowed types.
fn allow_null(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map.get("nullable") == Some(&Value::Bool(true)) {
                if let Some(Value::String(t)) = map.get("type").cloned() {
                    map.insert("type".into(), json!([t, "null"]));
                }
                if let Some(Value::Array(options)) = map.get_mut("enum") {
                    options.push(Value::Null);
                }
            }
            map.values_mut().for_each(allow_null);
        }
        Value::Array(items) => items.iter_mut().for_each(allow_null),
        _ => {}
    }
}

/// Drops the `null` values of fields that are not `nullable`, as the API server does (silently).
fn drop_nulls(schema: &Value, map: &mut Map<String, Value>) {
    let properties = schema.get("properties").and_then(Value::as_object);
    map.retain(|k, v| {
        !v.is_null()
            || properties
                .and_then(|p| p.get(k))
                .is_some_and(|s| s["nullable"] == true)
    });
}

fn preserves(schema: &Value) -> bool {
    schema["x-kubernetes-preserve-unknown-fields"] == true
}

/// Drops what `schema` does not declare from `value` (at `path`), naming each field dropped.
fn prune(schema: &Value, value: &mut Value, path: &str, unknown: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            drop_nulls(schema, map);
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            if properties.is_none() && additional.is_none() {
                if !preserves(schema) && schema.get("type").and_then(Value::as_str) == Some("object") {
                    unknown.extend(map.keys().map(|k| format!("{path}.{k}")));
                    map.clear();
                }
                return;
            }
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                let sub = properties.and_then(|p| p.get(&key)).or(additional);
                match sub {
                    Some(sub) => {
                        if let Some(v) = map.get_mut(&key) {
                            prune(sub, v, &format!("{path}.{key}"), unknown);
                        }
                    }
                    None if preserves(schema) => {}
                    None => {
                        map.remove(&key);
                        unknown.push(format!("{path}.{key}"));
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune(item_schema, item, &format!("{path}[{i}]"), unknown);
                }
            }
        }
        _ => {}
    }
}
