//! Status codes and ranges ("200-399"): parsing never panics, accepts only what the schema's
//! pattern admits, and what Display shows parses back to the same codes.
#![no_main]

use std::sync::LazyLock;

use apphealth_operator::api::validate::SuccessCodes;

static PATTERN: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"^[1-5][0-9]{2}(-[1-5][0-9]{2})?$").expect("the schema's pattern compiles")
});

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let codes: Vec<String> = text.split(',').map(str::to_owned).collect();
    let Ok(parsed) = SuccessCodes::parse("codes", &codes) else {
        return;
    };
    for code in &codes {
        assert!(PATTERN.is_match(code), "{code:?} accepted");
    }
    let shown = parsed.to_string();
    let again: Vec<String> = shown.split(", ").map(str::to_owned).collect();
    let again = SuccessCodes::parse("codes", &again).expect("what Display shows parses");
    assert_eq!(again, parsed, "{text:?} → {shown:?}");
    for code in 0..1000u16 {
        let listed = codes.iter().any(|c| match c.split_once('-') {
            Some((lo, hi)) => {
                (lo.parse::<u16>().unwrap_or(0)..=hi.parse::<u16>().unwrap_or(0)).contains(&code)
            }
            None => c.parse::<u16>() == Ok(code),
        });
        assert_eq!(parsed.contains(code), listed, "{code} in {text:?}");
    }
});
