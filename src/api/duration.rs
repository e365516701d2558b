//! Durations as users write them in a policy: `90s`, `5m`, `1h30m`.

use std::{borrow::Cow, fmt, str::FromStr, sync::LazyLock, time};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The pattern the CRD schema enforces, so `kubectl apply` rejects `5 minutes` or `-1s` up front.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";

/// A duration in the spec, kept as the string the user wrote.
///
/// Deserializing never fails on the value itself: a bad string becomes a validation error that
/// names the field (`Ready=False`), instead of an object the watch cannot decode.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Duration(String);

impl Duration {
    /// Parses the string into a non-negative duration.
    pub fn parse(&self) -> Result<time::Duration, String> {
        if !matches_pattern(&self.0) {
            return Err(format!("{:?} is not a duration such as 90s, 5m or 1h30m", self.0));
        }
        let parsed = kube::core::Duration::from_str(&self.0)
            .map_err(|e| format!("{:?} is not a duration such as 90s, 5m or 1h30m: {e}", self.0))?;
        if parsed.is_negative() {
            return Err(format!("{:?} must not be negative", self.0));
        }
        Ok(parsed.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Duration {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::generate::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "maxLength": 32,
            "pattern": DURATION_PATTERN,
        })
    }
}

/// Whether `s` matches [`DURATION_PATTERN`], the grammar the schema enforces.
fn matches_pattern(s: &str) -> bool {
    static PATTERN: LazyLock<Option<regex::Regex>> =
        LazyLock::new(|| regex::Regex::new(DURATION_PATTERN).ok());
    PATTERN.as_ref().is_some_and(|p| p.is_match(s))
}

/// Formats a duration the way the spec writes them (`1h30m`, `1m30s`, `250ms`, `1.5s`).
pub fn format(d: time::Duration) -> String {
    let total_ms = d.as_millis();
    if total_ms == 0 {
        return "0s".into();
    }
    let (h, m) = (total_ms / 3_600_000, (total_ms / 60_000) % 60);
    let (s, ms) = ((total_ms / 1000) % 60, total_ms % 1000);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    match (s, ms) {
        (_, 0) if s > 0 => out.push_str(&format!("{s}s")),
        (_, 0) => {}
        (0, _) if out.is_empty() => out.push_str(&format!("{ms}ms")),
        _ => out.push_str(&format!("{}s", format!("{s}.{ms:03}").trim_end_matches('0'))),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_users_write() {
        let cases = [
            ("90s", 90_000),
            ("5m", 300_000),
            ("1h30m", 5_400_000),
            ("250ms", 250),
            ("1.5s", 1500),
        ];
        for (text, ms) in cases {
            assert_eq!(
                Duration::from(text).parse(),
                Ok(time::Duration::from_millis(ms)),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_what_the_schema_rejects() {
        for text in ["", "5", "m", "5 m", "-1s", "1d", "1.s", "5mm", "1h 30m"] {
            let err = Duration::from(text).parse().expect_err(text);
            assert!(err.contains("not a duration"), "{text}: {err}");
        }
    }

    #[test]
    fn formats_like_the_spec() {
        assert_eq!(format(time::Duration::from_secs(90)), "1m30s");
        assert_eq!(format(time::Duration::from_secs(5400)), "1h30m");
        assert_eq!(format(time::Duration::from_millis(250)), "250ms");
        assert_eq!(format(time::Duration::from_millis(1500)), "1.5s");
        assert_eq!(format(time::Duration::ZERO), "0s");
    }
}
