//! Just enough of the Prometheus text format: samples with labels, sums over series, and
//! histograms (aggregated over their other labels) with quantiles from bucket deltas.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

#[derive(Debug, Clone, Default)]
pub struct Exposition {
    samples: Vec<Sample>,
}

impl Exposition {
    pub fn parse(text: &str) -> Exposition {
        Exposition {
            samples: text.lines().filter_map(parse_line).collect(),
        }
    }

    /// Every series of `name`.
    pub fn samples<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.name == name)
    }

    /// The sum of every series of `name` whose labels include `with` (None: no such series).
    pub fn sum(&self, name: &str, with: &[(&str, &str)]) -> Option<f64> {
        let mut found = false;
        let mut total = 0.0;
        for s in self.samples(name) {
            let matches = with
                .iter()
                .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v));
            if matches {
                found = true;
                total += s.value;
            }
        }
        found.then_some(total)
    }

    /// Histogram `name` (the `_bucket` series), summed over its labels other than `le`.
    pub fn histogram(&self, name: &str) -> Option<Histogram> {
        let bucket = format!("{name}_bucket");
        let mut buckets: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        for s in self.samples.iter().filter(|s| s.name == bucket) {
            let Some(le) = s.labels.iter().find(|(k, _)| k == "le").map(|(_, v)| v) else {
                continue;
            };
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                match le.parse::<f64>() {
                    Ok(b) => b,
                    Err(_) => continue,
                }
            };
            // Keyed by the bound's bits so equal bounds of different series add up; positive
            // floats order like their bits.
            buckets.entry(bound.to_bits()).or_insert((bound, 0.0)).1 += s.value;
        }
        (!buckets.is_empty()).then(|| Histogram {
            buckets: buckets.into_values().collect(),
        })
    }
}

/// Cumulative buckets `(upper bound, count)`, by bound.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub buckets: Vec<(f64, f64)>,
}

impl Histogram {
    /// The observations made since `earlier`.
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let buckets = self
            .buckets
            .iter()
            .map(|&(bound, count)| {
                let before = earlier
                    .buckets
                    .iter()
                    .find(|(b, _)| *b == bound)
                    .map_or(0.0, |(_, c)| *c);
                (bound, (count - before).max(0.0))
            })
            .collect();
        Histogram { buckets }
    }

    pub fn count(&self) -> f64 {
        self.buckets.last().map_or(0.0, |(_, c)| *c)
    }

    /// The `q` quantile, interpolated linearly inside its bucket as Prometheus'
    /// `histogram_quantile` does (the lowest bucket from 0; in the +Inf bucket, the highest finite
    /// bound). None without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let mut lower_bound = 0.0;
        let mut lower_count = 0.0;
        for &(bound, count) in &self.buckets {
            if count >= rank {
                if bound.is_infinite() {
                    return Some(lower_bound);
                }
                let in_bucket = count - lower_count;
                if in_bucket <= 0.0 {
                    return Some(bound);
                }
                return Some(lower_bound + (bound - lower_bound) * (rank - lower_count) / in_bucket);
            }
            lower_bound = bound;
            lower_count = count;
        }
        Some(lower_bound)
    }
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let close = line.rfind('}')?;
            (
                &line[..open],
                parse_labels(&line[open + 1..close]),
                &line[close + 1..],
            )
        }
        None => {
            let space = line.find(char::is_whitespace)?;
            (&line[..space], Vec::new(), &line[space..])
        }
    };
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            return labels;
        }
        if chars.next() != Some('"') {
            return labels;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => break,
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.push((key.trim().to_string(), value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP apphealth_probes Probes sent, by result (ok, fail).
# TYPE apphealth_probes counter
apphealth_probes_total{result="ok"} 120
apphealth_probes_total{result="fail"} 3
# TYPE apphealth_probe_lag_seconds histogram
apphealth_probe_lag_seconds_sum 1.5
apphealth_probe_lag_seconds_count 100
apphealth_probe_lag_seconds_bucket{le="0.01"} 50
apphealth_probe_lag_seconds_bucket{le="0.1"} 90
apphealth_probe_lag_seconds_bucket{le="1.0"} 100
apphealth_probe_lag_seconds_bucket{le="+Inf"} 100
apphealth_leader 1
odd{a="x\"y",b="z"} 2 1700000000
"#;

    #[test]
    fn sums_series_by_label() {
        let e = Exposition::parse(TEXT);
        assert_eq!(e.sum("apphealth_probes_total", &[]), Some(123.0));
        assert_eq!(e.sum("apphealth_probes_total", &[("result", "fail")]), Some(3.0));
        assert_eq!(e.sum("apphealth_probes_delayed_total", &[]), None);
        assert_eq!(e.sum("apphealth_leader", &[]), Some(1.0));
        assert_eq!(e.sum("odd", &[("a", "x\"y"), ("b", "z")]), Some(2.0));
    }

    #[test]
    fn histogram_quantiles_from_deltas() {
        let e = Exposition::parse(TEXT);
        let h = e.histogram("apphealth_probe_lag_seconds").unwrap();
        assert_eq!(h.count(), 100.0);
        assert_eq!(h.quantile(0.5), Some(0.01));
        let p99 = h.quantile(0.99).unwrap();
        assert!((p99 - 0.91).abs() < 1e-9, "{p99}");
        let earlier = Histogram {
            buckets: vec![(0.01, 50.0), (0.1, 50.0), (1.0, 50.0), (f64::INFINITY, 50.0)],
        };
        let d = h.since(&earlier);
        assert_eq!(d.count(), 50.0);
        assert!((d.quantile(0.5).unwrap() - 0.06625).abs() < 1e-9);
        assert!(e.histogram("apphealth_absent").is_none());
    }
}
