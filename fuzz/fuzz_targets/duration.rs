//! Durations as policies write them: parsing never panics, accepts only what the schema admits
//! (its pattern and length) and at most the longest duration, and format → parse round-trips to
//! the millisecond that format keeps.
#![no_main]

use std::{sync::LazyLock, time};

use apphealth_operator::api::{DURATION_PATTERN, Duration, MAX_DURATION, format_duration};

static PATTERN: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(DURATION_PATTERN).expect("the schema's pattern compiles"));

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(d) = Duration::from(text).parse()
    {
        assert!(PATTERN.is_match(text) && text.len() <= 32, "{text:?} parsed");
        assert!(d <= MAX_DURATION, "{text:?} is {d:?}");
        let kept = time::Duration::from_millis(u64::try_from(d.as_millis()).expect("at most MAX"));
        let shown = format_duration(d);
        assert_eq!(
            Duration::from(shown.as_str()).parse(),
            Ok(kept),
            "{text:?} → {shown:?}"
        );
    }
    if let Some(bytes) = data.get(..8) {
        let ms =
            u64::from_le_bytes(bytes.try_into().expect("8 bytes")) % (MAX_DURATION.as_millis() as u64 + 1);
        let d = time::Duration::from_millis(ms);
        assert_eq!(
            Duration::from(format_duration(d).as_str()).parse(),
            Ok(d),
            "{ms}ms"
        );
    }
});
