//! Kubernetes quantities (memory and CPU): parsing never panics and gives finite, non-negative
//! values; bytes formatted for people parse back within the rounding of one decimal.
#![no_main]

use apphealth_operator::api::quantity;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(v) = quantity::parse(text) {
            assert!(v.is_finite() && v >= 0.0, "{text:?} is {v}");
        }
        let _ = quantity::bytes(text);
        let _ = quantity::millicores(text);
    }
    if let Some(bytes) = data.get(..8) {
        let b = u64::from_le_bytes(bytes.try_into().expect("8 bytes"));
        let shown = quantity::format_bytes(b);
        let back = quantity::bytes(&shown).expect("what format_bytes shows parses");
        let error = (back as f64 - b as f64).abs();
        assert!(error <= b as f64 * 0.05 + 0.5, "{b} → {shown:?} → {back}");
    }
});
