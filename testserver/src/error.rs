//! Kubernetes `Status` errors.

use serde_json::{Value, json};

/// An API error, answered over HTTP as a Kubernetes `Status` object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    /// HTTP status code, e.g. 404.
    pub code: u16,
    /// Kubernetes `StatusReason`, e.g. `NotFound`.
    pub reason: String,
    /// Human-readable message, phrased like the real API server's.
    pub message: String,
    /// `details.causes` of the `Status` (each with `reason`, `message`, `field`); most errors have none.
    pub causes: Vec<Value>,
    /// `details.name`, `details.group` and `details.kind` of the object concerned, when they are
    /// told (kubectl words a 422 as `The Kind "name" is invalid: …` with them).
    pub object: Option<Box<(String, String, String)>>,
}

impl ApiError {
    /// A new error from its parts.
    pub fn new(code: u16, reason: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason: reason.into(),
            message: message.into(),
            causes: Vec::new(),
            object: None,
        }
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 404 NotFound for a named object; `resource` is `plural[.group]`.
    pub fn not_found(resource: &str, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{resource} \"{name}\" not found")).about(resource, name)
    }

    /// 404 NotFound for anything else (unknown path or resource type).
    pub fn not_found_message(message: impl Into<String>) -> Self {
        Self::new(404, "NotFound", message)
    }

    /// 409 AlreadyExists.
    pub fn already_exists(resource: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{resource} \"{name}\" already exists"),
        )
        .about(resource, name)
    }

    /// 409 Conflict for a stale `metadata.resourceVersion`.
    pub fn conflict(resource: &str, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again"
            ),
        )
        .about(resource, name)
    }

    /// With `details` naming the object as the API server does for errors about one object
    /// (NotFound, AlreadyExists, Conflict): its name, and `resource` (`plural[.group]`) split into
    /// `kind` (the plural) and `group`.
    fn about(self, resource: &str, name: &str) -> Self {
        let (plural, group) = resource.split_once('.').unwrap_or((resource, ""));
        self.naming(name, group, plural)
    }

    /// With `details.name`, `details.group` and `details.kind`.
    fn naming(mut self, name: &str, group: &str, kind: &str) -> Self {
        self.object = Some(Box::new((name.to_string(), group.to_string(), kind.to_string())));
        self
    }

    /// 409 Conflict of a server-side apply that would change fields other appliers own, as the API
    /// server words it: `conflicts` are (manager, field path such as `.spec.x`), sorted by manager
    /// then path, where a manager of a subresource is named `"mgr" with subresource "status"`
    /// (see [`ApiError::conflicting_manager`]); one `FieldManagerConflict` cause each.
    pub fn apply_conflict(conflicts: &[(String, String)]) -> Self {
        let message = match conflicts {
            [(manager, field)] => format!("Apply failed with 1 conflict: conflict with {manager}: {field}"),
            _ => {
                let mut lines: Vec<String> = Vec::new();
                let mut last: Option<&str> = None;
                for (manager, field) in conflicts {
                    if last != Some(manager.as_str()) {
                        lines.push(format!("conflicts with {manager}:"));
                        last = Some(manager);
                    }
                    lines.push(format!("- {field}"));
                }
                format!(
                    "Apply failed with {} conflicts: {}",
                    conflicts.len(),
                    lines.join("\n")
                )
            }
        };
        let mut e = Self::new(409, "Conflict", message);
        e.causes = conflicts
            .iter()
            .map(|(manager, field)| {
                json!({"reason": "FieldManagerConflict", "message": format!("conflict with {manager}"), "field": field})
            })
            .collect();
        e
    }

    /// A manager as conflict messages name it: `"mgr"`, or `"mgr" with subresource "status"` for
    /// one that wrote through a subresource.
    pub fn conflicting_manager(manager: &str, subresource: &str) -> String {
        if subresource.is_empty() {
            format!("{manager:?}")
        } else {
            format!("{manager:?} with subresource {subresource:?}")
        }
    }

    /// 410 Gone for a watch or list from a resourceVersion older than the kept history.
    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    /// 415 UnsupportedMediaType.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(415, "UnsupportedMediaType", message)
    }

    /// 422 Invalid.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(422, "Invalid", message)
    }

    /// 422 Invalid about object `name` (of `group` and `kind`, as `details` names them), worded as
    /// the API server words it: `{subject} "{name}" is invalid: field: message`, several as
    /// `[field: message, field: message]`, with one `details.causes` entry per
    /// `(reason, field, message)` of `causes`.
    pub fn invalid_fields<'a>(
        subject: &str,
        (name, group, kind): (&str, &str, &str),
        causes: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
    ) -> Self {
        let causes: Vec<_> = causes.into_iter().collect();
        let lines: Vec<String> = causes
            .iter()
            .map(|(_, field, message)| format!("{field}: {message}"))
            .collect();
        let list = match lines.as_slice() {
            [one] => one.clone(),
            many => format!("[{}]", many.join(", ")),
        };
        let mut e =
            Self::invalid(format!("{subject} \"{name}\" is invalid: {list}")).naming(name, group, kind);
        e.causes = causes
            .iter()
            .map(|(reason, field, message)| json!({"reason": reason, "message": message, "field": field}))
            .collect();
        e
    }

    /// 500 InternalError.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// The `Status` object (`kind: Status`, `status: Failure`) for this error.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if !self.causes.is_empty() {
            status["details"] = json!({"causes": self.causes});
        }
        if let Some((name, group, kind)) = self.object.as_deref() {
            // Empty ones are left out, as the API server's `omitempty` does (the core group).
            for (key, value) in [("name", name), ("group", group), ("kind", kind)] {
                if !value.is_empty() {
                    status["details"][key] = json!(value);
                }
            }
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_shape() {
        let s = ApiError::not_found("pods", "x").to_status();
        assert_eq!(s["kind"], "Status");
        assert_eq!(s["status"], "Failure");
        assert_eq!(s["code"], 404);
        assert_eq!(s["reason"], "NotFound");
        assert_eq!(s["message"], "pods \"x\" not found");
    }

    #[test]
    fn apply_conflicts_as_the_api_server_words_them() {
        let one = ApiError::apply_conflict(&[("\"mgr\"".into(), ".spec.x".into())]).to_status();
        assert_eq!(one["code"], 409);
        assert_eq!(one["reason"], "Conflict");
        assert_eq!(
            one["message"],
            "Apply failed with 1 conflict: conflict with \"mgr\": .spec.x"
        );
        assert_eq!(
            one["details"],
            json!({"causes": [{"reason": "FieldManagerConflict", "message": "conflict with \"mgr\"", "field": ".spec.x"}]})
        );
        let a = ApiError::conflicting_manager("a", "");
        let c = ApiError::conflicting_manager("c", "status");
        let several = ApiError::apply_conflict(&[
            (a.clone(), ".spec.size".into()),
            (a, ".spec.x".into()),
            (c, ".status.c".into()),
        ]);
        assert_eq!(
            several.message,
            "Apply failed with 3 conflicts: conflicts with \"a\":\n- .spec.size\n- .spec.x\nconflicts with \"c\" with subresource \"status\":\n- .status.c"
        );
        assert_eq!(several.causes.len(), 3);
        assert_eq!(
            ApiError::not_found("pods", "x").to_status()["details"],
            json!({"name": "x", "kind": "pods"})
        );
        assert_eq!(
            ApiError::conflict("deployments.apps", "web").to_status()["details"],
            json!({"name": "web", "group": "apps", "kind": "deployments"})
        );
    }
}
