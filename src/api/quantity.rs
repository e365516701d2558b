//! Kubernetes resource quantities ("512Mi", "250m", "1.5G", "12345n"), parsed to plain numbers:
//! bytes for memory, millicores for CPU. Enough of the format for limits and metrics-server output.

/// Parses a quantity into its value in base units (bytes, cores) as f64.
pub fn parse(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let value: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0_f64.powi(4),
        "Pi" => 1024.0_f64.powi(5),
        "Ei" => 1024.0_f64.powi(6),
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    let v = value * factor;
    (v.is_finite() && v >= 0.0).then_some(v)
}

/// A memory quantity in bytes.
pub fn bytes(q: &str) -> Option<u64> {
    // Quantities are non-negative and far below u64::MAX bytes in practice; saturate otherwise.
    parse(q).map(|v| {
        if v >= u64::MAX as f64 {
            u64::MAX
        } else {
            v.round() as u64
        }
    })
}

/// A CPU quantity in millicores.
pub fn millicores(q: &str) -> Option<u64> {
    parse(q).map(|v| {
        let m = v * 1000.0;
        if m >= u64::MAX as f64 {
            u64::MAX
        } else {
            m.round() as u64
        }
    })
}

/// Bytes for people: 512Mi, 1.5Gi, 800Ki.
pub fn format_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["Ki", "Mi", "Gi", "Ti", "Pi"];
    let mut value = b as f64;
    let mut unit = "";
    for u in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = u;
    }
    let text = format!("{value:.1}");
    format!("{}{unit}", text.trim_end_matches('0').trim_end_matches('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_limits_and_metrics_server_report() {
        assert_eq!(bytes("512Mi"), Some(512 * 1024 * 1024));
        assert_eq!(bytes("1G"), Some(1_000_000_000));
        assert_eq!(bytes("123456Ki"), Some(123_456 * 1024));
        assert_eq!(bytes("1e3"), Some(1000));
        assert_eq!(bytes("1.5Gi"), Some(1_610_612_736));
        assert_eq!(millicores("250m"), Some(250));
        assert_eq!(millicores("2"), Some(2000));
        assert_eq!(millicores("12345678n"), Some(12));
        assert_eq!(millicores("500u"), Some(1));
        for bad in ["", "Mi", "12xb", "-1Gi", "1..2"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Whatever the text, parsing returns a finite, non-negative value or nothing.
        #[test]
        fn parsing_never_panics(q in "[0-9.+-]{0,12}(n|u|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|e[0-9+-]{0,4})?|\\PC{0,16}") {
            if let Some(v) = parse(&q) {
                proptest::prop_assert!(v.is_finite() && v >= 0.0);
            }
            let _ = (bytes(&q), millicores(&q));
        }

        /// Bytes shown for people read back within the rounding of one decimal.
        #[test]
        fn formatted_bytes_parse_back(b in proptest::num::u64::ANY) {
            let back = bytes(&format_bytes(b)).expect("parses");
            proptest::prop_assert!((back as f64 - b as f64).abs() <= b as f64 * 0.05 + 0.5);
        }
    }

    #[test]
    fn formats_bytes_for_people() {
        assert_eq!(format_bytes(512 * 1024 * 1024), "512Mi");
        assert_eq!(format_bytes(1_610_612_736), "1.5Gi");
        assert_eq!(format_bytes(900), "900");
    }
}
