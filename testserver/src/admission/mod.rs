//! What the API server does to a custom resource written over HTTP before storing it: prune the
//! fields its CRD's schema does not declare (refused with `fieldValidation=Strict`, a warning with
//! `Warn`, the default), then validate it against the schema (types, `enum`, bounds, `pattern`,
//! lengths, `required`, …) and the schema's CEL `x-kubernetes-validations` rules, answering 422
//! `Invalid` with the API server's wording. Writes through the [`crate::TestServer`] methods are
//! not admitted: they stand for objects put straight into storage.

use std::sync::{Arc, Mutex, PoisonError};

use jsonschema::JsonType;
use jsonschema::error::{TypeKind, ValidationErrorKind};
use serde_json::Value;

mod prune;

use prune::{allow_null, prune_root};

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
        // Ratcheting, as the API server does since 1.30: on update, a value that did not change is
        // not held against the write (a status write to an object whose spec an older schema let in).
        let held = |c: &Cause| {
            old.is_none_or(|old| {
                let at = c.pointer();
                obj.pointer(&at) != old.pointer(&at)
            })
        };
        // A violation's first cause is the one about its field (the others ratchet with it).
        let mut causes: Vec<Cause> = self
            .validator
            .iter_errors(obj)
            .map(|e| causes_of(&e, &self.schema))
            .filter(|c| c.first().is_some_and(held))
            .flatten()
            .collect();
        if causes.iter().any(Cause::blocking) {
            // As the API server: the CEL rules of an object with such errors are not evaluated,
            // and the answer says so. Beside the other schema errors (bounds, patterns) they are.
            causes.push(Cause {
                reason: "FieldValueInvalid",
                field: "<nil>".into(),
                message: "Invalid value: null: some validation rules were not checked because the object was invalid; \
                          correct the existing errors to complete validation"
                    .into(),
                cel: false,
            });
        } else if let Err(errors) = kube_core::cel::validate_compiled(&self.rules, obj, old) {
            let failed = errors.into_vec().into_iter().map(|e| Cause {
                reason: "FieldValueInvalid",
                field: e.field_path.trim_start_matches('.').to_string(),
                // Kubernetes 1.36 words a rule's failure without the value.
                message: format!("Invalid value: {}", e.message),
                cel: true,
            });
            causes.extend(failed.filter(held));
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
    /// Whether it keeps the API server from evaluating the CEL rules: a wrong type, an unsupported
    /// or missing value, or a string or list too long.
    fn blocking(&self) -> bool {
        matches!(
            self.reason,
            "FieldValueTypeInvalid"
                | "FieldValueNotSupported"
                | "FieldValueRequired"
                | "FieldValueTooLong"
                | "FieldValueTooMany"
        )
    }

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

/// A number as Go's `%v` prints a float64 (bounds): `1`, not `1.0`.
fn number(n: &Value) -> String {
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        _ => n.to_string(),
    }
}

/// A value as the API server's messages show it: strings quoted as Go's `%q` quotes them
/// (`"web\u200b"`), anything else as JSON.
fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => go_quote(s),
        other => other.to_string(),
    }
}

/// `s` quoted as Go's `strconv.Quote` quotes it: escapes for `"`, `\`, control characters and
/// what Go does not print (format and private-use characters, whitespace but the space; the
/// Unicode tables are approximated by the ranges that occur in practice).
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if unprintable(c) && (c as u32) <= 0xffff => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if unprintable(c) => out.push_str(&format!("\\U{:08x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn unprintable(c: char) -> bool {
    let u = c as u32;
    c.is_control()
        || (c.is_whitespace() && c != ' ')
        || matches!(u, 0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x180e | 0x200b..=0x200f | 0x202a..=0x202e
            | 0x2060..=0x2064 | 0x2066..=0x206f | 0xfeff | 0xfff9..=0xfffb | 0xe0001 | 0xe0020..=0xe007f)
        || matches!(u, 0xe000..=0xf8ff | 0xf0000..=0xffffd | 0x100000..=0x10fffd)
}

/// The JSON type of a value as the API server names it: whole numbers are `integer`.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0) => {
            "integer"
        }
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The causes of one schema violation, worded as the API server words them. `schema` is the
/// schema validated against, for what the violated subschema says besides (an integer's format).
fn causes_of(e: &jsonschema::ValidationError<'_>, schema: &Value) -> Vec<Cause> {
    let field = field_of(e.instance_path().as_str());
    let value = shown(e.instance());
    let invalid = |what: String| Cause {
        reason: "FieldValueInvalid",
        field: field.clone(),
        message: format!("Invalid value: {value}: {what}"),
        cel: false,
    };
    let one = match e.kind() {
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
                .map(|o| o.iter().map(shown).collect())
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
            "{field} in body should be greater than or equal to {}",
            number(limit)
        )),
        ValidationErrorKind::Maximum { limit } => invalid(format!(
            "{field} in body should be less than or equal to {}",
            number(limit)
        )),
        ValidationErrorKind::ExclusiveMinimum { limit } => invalid(format!(
            "{field} in body should be greater than {}",
            number(limit)
        )),
        ValidationErrorKind::ExclusiveMaximum { limit } => {
            invalid(format!("{field} in body should be less than {}", number(limit)))
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
        ValidationErrorKind::Type { kind } => {
            let expected = match kind {
                TypeKind::Single(t) => t.as_str(),
                TypeKind::Multiple(set) => set
                    .iter()
                    .find(|t| *t != JsonType::Null)
                    .map_or("null", JsonType::as_str),
            };
            let actual = type_name(e.instance());
            // An integer with a format is named by its format, and a fraction by Go's float64
            // (the API server decodes into Go values first).
            let format = integer_format(schema, e.schema_path().as_str());
            let fraction = expected == "integer" && actual == "number";
            let (expected, actual) = match format {
                Some(f) if fraction => (f, "float64"),
                _ => (expected, actual),
            };
            let mut causes = vec![Cause {
                reason: "FieldValueTypeInvalid",
                field: field.clone(),
                message: format!(
                    "Invalid value: \"{actual}\": {field} in body must be of type {expected}: \"{actual}\""
                ),
                cel: false,
            }];
            // The API server's format check of integers speaks up too.
            if fraction {
                let checked = format.map_or("(default format)".to_owned(), |f| format!("with format {f}"));
                causes.push(Cause {
                    reason: "FieldValueInvalid",
                    field: "<nil>".into(),
                    message: format!(
                        "Invalid value: \"\": Checked value must be of type integer {checked} in {field}"
                    ),
                    cel: false,
                });
            }
            return causes;
        }
        _ => invalid(e.to_string()),
    };
    vec![one]
}

/// The `format` (int32, int64) of the integer subschema whose `type` keyword `schema_path` points
/// at (`/properties/spec/.../type`), if it has one.
fn integer_format<'a>(schema: &'a Value, schema_path: &str) -> Option<&'a str> {
    let subschema = schema.pointer(schema_path.strip_suffix("/type")?)?;
    subschema["format"]
        .as_str()
        .filter(|f| matches!(*f, "int32" | "int64"))
}

/// 422 `Invalid`, worded as the API server words it.
fn invalid(rt: &ResourceType, obj: &Value, causes: &[Cause]) -> ApiError {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    ApiError::invalid_fields(
        &format!("{}.{}", rt.kind, rt.group),
        (name, &rt.group, &rt.kind),
        causes
            .iter()
            .map(|c| (c.reason, c.field.as_str(), c.message.as_str())),
    )
}
