//! Durations as users write them in a policy: `90s`, `5m`, `1h30m`.

use std::{borrow::Cow, fmt, sync::LazyLock, time};

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

/// The longest duration a policy may give: ten years (87600h). Longer ones are refused rather than
/// carried into timestamps and timers that cannot hold them.
pub const MAX: time::Duration = time::Duration::from_secs(87_600 * 3600);

/// The longest duration string the schema admits (`maxLength`).
pub const MAX_LENGTH: usize = 32;

impl Duration {
    /// Parses the string into a non-negative duration, at most [`MAX`].
    pub fn parse(&self) -> Result<time::Duration, DurationError> {
        parse(&self.0)
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
            "maxLength": MAX_LENGTH,
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

/// Why a string is not a duration the spec admits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("is {0} characters long; a duration has at most {MAX_LENGTH}")]
    TooManyCharacters(usize),
    /// The string, bounded.
    #[error("{0:?} is not a duration such as 90s, 5m or 1h30m")]
    NotADuration(String),
    #[error("{0:?} is longer than {max}, the longest duration allowed", max = format(MAX))]
    TooLong(String),
}

/// Parses what [`DURATION_PATTERN`] admits, exactly and with checked arithmetic: `1.5s` is 1500ms,
/// and a value too large for a duration (`99999999999999999999h` fits the schema's 32 characters)
/// is an error, never a panic.
pub fn parse(s: &str) -> Result<time::Duration, DurationError> {
    let not_a_duration = || DurationError::NotADuration(super::bounded(s, 64));
    if s.len() > MAX_LENGTH && s.chars().count() > MAX_LENGTH {
        return Err(DurationError::TooManyCharacters(s.chars().count()));
    }
    if !matches_pattern(s) {
        return Err(not_a_duration());
    }
    let too_long = || DurationError::TooLong(s.to_owned());
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(not_a_duration)?;
        let (number, tail) = rest.split_at(number_end);
        let (unit_nanos, unit_len): (u128, usize) = if tail.starts_with("ms") {
            (1_000_000, 2)
        } else if tail.starts_with('s') {
            (1_000_000_000, 1)
        } else if tail.starts_with('m') {
            (60_000_000_000, 1)
        } else if tail.starts_with('h') {
            (3_600_000_000_000, 1)
        } else {
            return Err(not_a_duration());
        };
        rest = &tail[unit_len..];
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        let mut nanos = whole
            .parse::<u128>()
            .ok()
            .and_then(|w| w.checked_mul(unit_nanos))
            .ok_or_else(too_long)?;
        // The fraction's digits beyond nanosecond precision change nothing.
        let mut scale = unit_nanos;
        for digit in fraction.bytes() {
            scale /= 10;
            if scale == 0 {
                break;
            }
            nanos = nanos
                .checked_add(u128::from(digit - b'0') * scale)
                .ok_or_else(too_long)?;
        }
        total = total.checked_add(nanos).ok_or_else(too_long)?;
    }
    if total > MAX.as_nanos() {
        return Err(too_long());
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| too_long())?;
    // Below a second, so it fits.
    let nanos = (total % 1_000_000_000) as u32;
    Ok(time::Duration::new(secs, nanos))
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
            assert_eq!(err, DurationError::NotADuration(text.into()));
            assert!(err.to_string().contains("not a duration"), "{text}: {err}");
        }
    }

    /// kube's parser, used before, multiplied in floating point and panicked when the product did
    /// not fit a duration, on strings the schema admits (`fuzz/fuzz_targets/duration.rs` keeps
    /// checking that nothing panics).
    #[test]
    fn huge_durations_are_errors_not_panics() {
        for text in [
            "99999999999999999999h",
            "18446744073709551615s",
            "9999999999999999999999999999999h",
            "87600h1ms",
            "5256000m1s",
        ] {
            let err = Duration::from(text).parse().expect_err(text);
            assert_eq!(err, DurationError::TooLong(text.into()));
            assert!(
                err.to_string().contains("longest duration allowed"),
                "{text}: {err}"
            );
        }
        assert_eq!(Duration::from("87600h").parse(), Ok(MAX));
        let err = Duration::from(&*"1".repeat(40)).parse().unwrap_err();
        assert_eq!(
            err.to_string(),
            "is 40 characters long; a duration has at most 32"
        );
    }

    #[test]
    fn fractions_are_exact() {
        let cases = [
            ("0.1s", 100_000_000),
            ("1.000000001s", 1_000_000_001),
            ("0.0000000001s", 0),
            ("0.5ms", 500_000),
            ("1.25h", 4_500_000_000_000),
            ("1m0.5s", 60_500_000_000),
            ("0s", 0),
            ("00000000000000000000000001s", 1_000_000_000),
        ];
        for (text, nanos) in cases {
            assert_eq!(
                Duration::from(text).parse(),
                Ok(time::Duration::from_nanos(nanos)),
                "{text}"
            );
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Whatever a policy says, parsing returns; what parses is at most MAX.
        #[test]
        fn parsing_never_panics(text in "[0-9.hms]{0,32}|\\PC{0,40}") {
            if let Ok(d) = Duration::from(text.as_str()).parse() {
                proptest::prop_assert!(d <= MAX);
            }
        }

        /// format → parse gives the duration back, to the millisecond format keeps.
        #[test]
        fn format_then_parse_round_trips(ms in 0u64..=MAX.as_millis() as u64) {
            let d = time::Duration::from_millis(ms);
            proptest::prop_assert_eq!(Duration::from(format(d).as_str()).parse(), Ok(d));
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
