//! Each trigger as a pure function of an endpoint's state and the time: fired, with an observation
//! against its threshold ("7 × 503 in the last 2m, threshold 5"), or not.

use std::{collections::BTreeMap, time::Duration};

use jiff::Timestamp;

use super::{EndpointState, Fired, Kept};
use crate::{
    api::{
        format_duration, quantity,
        validate::{MemoryThreshold, SuccessCodes, TriggerSettings},
    },
    clock,
    observation::{ContainerLimits, ContainerUsage},
};

/// Samples of `path` taken within `window` before `now` (a sample exactly `window` old is out; a
/// sample from the future, after a clock jump back, is in).
fn in_window<'a>(
    state: &'a EndpointState,
    path: &'a str,
    window: Duration,
    now: Timestamp,
) -> impl Iterator<Item = &'a Kept> + 'a {
    let start = window_start(now, window);
    state
        .samples
        .iter()
        .filter(move |s| *s.path == *path && start.is_none_or(|start| s.at > start))
}

/// The start of a window ending at `now` (None: before the representable past, so everything is in).
fn window_start(now: Timestamp, window: Duration) -> Option<Timestamp> {
    now.checked_sub(jiff::SignedDuration::try_from(window).ok()?).ok()
}

fn on_path(path: &str, primary: &str) -> String {
    if path == primary {
        String::new()
    } else {
        format!(" on {path}")
    }
}

/// Every trigger that fires for this endpoint at `now`.
pub(super) fn fired(
    triggers: &[TriggerSettings],
    state: &EndpointState,
    now: Timestamp,
    primary: &str,
) -> Vec<Fired> {
    triggers
        .iter()
        .filter_map(|t| {
            fire(t, state, now, primary).map(|observation| Fired {
                trigger: t.name(),
                observation,
                since: now,
            })
        })
        .collect()
}

fn fire(trigger: &TriggerSettings, state: &EndpointState, now: Timestamp, primary: &str) -> Option<String> {
    match trigger {
        TriggerSettings::ConsecutiveFailures { threshold } => (state.consecutive_failures >= *threshold)
            .then(|| {
                format!(
                    "{} failed probes in a row (last: {}), threshold {threshold}",
                    state.consecutive_failures,
                    state.last_failure.as_deref().unwrap_or("unknown")
                )
            }),
        TriggerSettings::StatusCodes {
            codes,
            count,
            window,
            path,
        } => status_codes(state, codes, *count, *window, path, primary, now),
        TriggerSettings::SlowResponses {
            threshold,
            count,
            window,
        } => slow_responses(state, *threshold, *count, *window, primary, now),
        TriggerSettings::ErrorRate {
            percent,
            window,
            min_samples,
        } => error_rate(state, *percent, *window, *min_samples, primary, now),
        TriggerSettings::Memory { threshold, for_ } => {
            pressure(&state.memory, *for_, now).map(|(obs, held)| {
                let limit = match threshold {
                    MemoryThreshold::PercentOfLimit(p) => format!("{p}% of the limit"),
                    MemoryThreshold::Bytes(b) => quantity::format_bytes(*b),
                };
                format!(
                    "{obs} for {held}, threshold {limit} for {}",
                    format_duration(*for_)
                )
            })
        }
        TriggerSettings::Cpu {
            percent_of_limit,
            for_,
        } => pressure(&state.cpu, *for_, now).map(|(obs, held)| {
            format!(
                "{obs} for {held}, threshold {percent_of_limit}% of the limit for {}",
                format_duration(*for_)
            )
        }),
        TriggerSettings::Restarts { count, window } => restarts(state, *count, *window, now),
        TriggerSettings::OomKilled { within } => state
            .oom_killed
            .iter()
            .filter(|(_, at)| clock::until(*at, now) < *within)
            .max_by_key(|(_, at)| *at)
            .map(|(container, at)| format!("container {container} was OOMKilled at {at}")),
        TriggerSettings::CertificateExpiresWithin { within } => certificate(state, *within, now),
        TriggerSettings::ConfigChanged => {
            (!state.config_changed.is_empty()).then(|| state.config_changed.join("; "))
        }
    }
}

/// `count` answers with one of `codes` on `path` within `window`, tallied by code.
fn status_codes(
    state: &EndpointState,
    codes: &SuccessCodes,
    count: u32,
    window: Duration,
    path: &str,
    primary: &str,
    now: Timestamp,
) -> Option<String> {
    let mut seen: BTreeMap<u16, u32> = BTreeMap::new();
    for code in in_window(state, path, window, now)
        .filter_map(Kept::code)
        .filter(|c| codes.contains(*c))
    {
        *seen.entry(code).or_default() += 1;
    }
    let total: u32 = seen.values().sum();
    (total >= count).then(|| {
        let parts: Vec<String> = seen.iter().map(|(code, n)| format!("{n} × {code}")).collect();
        let tally = if seen.len() > 1 {
            format!(" ({total} in all)")
        } else {
            String::new()
        };
        format!(
            "{}{} in the last {}{tally}, threshold {count}",
            parts.join(", "),
            on_path(path, primary),
            format_duration(window)
        )
    })
}

/// `count` probes of the primary path slower than `threshold` (or timed out) within `window`.
fn slow_responses(
    state: &EndpointState,
    threshold: Duration,
    count: u32,
    window: Duration,
    primary: &str,
    now: Timestamp,
) -> Option<String> {
    let slow: Vec<&Kept> = in_window(state, primary, window, now)
        .filter(|s| s.timed_out || s.latency() > threshold)
        .collect();
    let n = u32::try_from(slow.len()).unwrap_or(u32::MAX);
    (n >= count).then(|| {
        let timeouts = slow.iter().filter(|s| s.timed_out).count();
        let slowest = slow.iter().filter(|s| !s.timed_out).map(|s| s.latency()).max();
        let mut detail = Vec::new();
        if let Some(slowest) = slowest {
            detail.push(format!("slowest {}", format_duration(round_ms(slowest))));
        }
        if timeouts > 0 {
            detail.push(format!("{timeouts} timed out"));
        }
        format!(
            "{n} responses slower than {} in the last {} ({}), threshold {count}",
            format_duration(threshold),
            format_duration(window),
            detail.join(", ")
        )
    })
}

/// At least `percent` of the primary path's probes within `window` failed, over `min_samples`.
fn error_rate(
    state: &EndpointState,
    percent: u32,
    window: Duration,
    min_samples: u32,
    primary: &str,
    now: Timestamp,
) -> Option<String> {
    let (mut total, mut failed) = (0u32, 0u32);
    for s in in_window(state, primary, window, now) {
        total += 1;
        failed += u32::from(!s.ok);
    }
    let rate = (failed * 100).checked_div(total).unwrap_or(0);
    (total >= min_samples && total > 0 && failed * 100 >= percent * total).then(|| {
        format!(
            "{rate}% of {total} probes failed in the last {} ({failed} failed), threshold {percent}%",
            format_duration(window)
        )
    })
}

/// A container in CrashLoopBackOff, or `count` restarts within `window`.
fn restarts(state: &EndpointState, count: u32, window: Duration, now: Timestamp) -> Option<String> {
    if let Some(container) = state.crash_looping.first() {
        return Some(format!("container {container} is in CrashLoopBackOff"));
    }
    let start = window_start(now, window);
    let n = u32::try_from(
        state
            .restarts
            .iter()
            .filter(|t| start.is_none_or(|s| **t > s))
            .count(),
    )
    .unwrap_or(u32::MAX);
    (n >= count).then(|| {
        format!(
            "{n} restarts in the last {}, threshold {count}",
            format_duration(window)
        )
    })
}

/// The serving certificate expired, or expires within `within`.
fn certificate(state: &EndpointState, within: Duration, now: Timestamp) -> Option<String> {
    let not_after = state.certificate_not_after?;
    let left = clock::until(now, not_after);
    if not_after <= now {
        Some(format!("the certificate expired at {not_after}"))
    } else {
        (left < within).then(|| {
            format!(
                "the certificate expires at {not_after} (in {}), threshold {}",
                format_duration(Duration::from_secs(left.as_secs())),
                format_duration(within)
            )
        })
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Pressure that has lasted at least `for_`: the observation and how long it has lasted.
fn pressure(p: &super::Pressure, for_: Duration, now: Timestamp) -> Option<(String, String)> {
    let held = clock::until(p.since?, now);
    (held >= for_).then(|| {
        (
            p.observation.clone(),
            format_duration(Duration::from_secs(held.as_secs())),
        )
    })
}

/// The container furthest over a memory threshold, described, if any is over.
pub(super) fn memory_over(
    threshold: MemoryThreshold,
    limits: &[ContainerLimits],
    usage: &[ContainerUsage],
) -> Option<String> {
    usage
        .iter()
        .filter_map(|u| {
            let limit = limits
                .iter()
                .find(|l| l.container == u.container)
                .and_then(|l| l.memory_bytes);
            match threshold {
                MemoryThreshold::PercentOfLimit(p) => {
                    let limit = limit.filter(|l| *l > 0)?;
                    let pct = u.memory_bytes.saturating_mul(100) / limit;
                    (pct >= u64::from(p)).then(|| {
                        (
                            pct,
                            format!(
                                "container {} uses {} of its {} memory limit ({pct}%)",
                                u.container,
                                quantity::format_bytes(u.memory_bytes),
                                quantity::format_bytes(limit)
                            ),
                        )
                    })
                }
                MemoryThreshold::Bytes(b) => (u.memory_bytes >= b).then(|| {
                    (
                        u.memory_bytes,
                        format!(
                            "container {} uses {} of memory",
                            u.container,
                            quantity::format_bytes(u.memory_bytes)
                        ),
                    )
                }),
            }
        })
        .max_by_key(|(rank, _)| *rank)
        .map(|(_, text)| text)
}

/// The container furthest over a CPU threshold, described, if any is over.
pub(super) fn cpu_over(percent: u32, limits: &[ContainerLimits], usage: &[ContainerUsage]) -> Option<String> {
    usage
        .iter()
        .filter_map(|u| {
            let limit = limits
                .iter()
                .find(|l| l.container == u.container)
                .and_then(|l| l.cpu_millis)
                .filter(|l| *l > 0)?;
            let pct = u.cpu_millis.saturating_mul(100) / limit;
            (pct >= u64::from(percent)).then(|| {
                (
                    pct,
                    format!(
                        "container {} uses {}m of its {limit}m CPU limit ({pct}%)",
                        u.container, u.cpu_millis
                    ),
                )
            })
        })
        .max_by_key(|(rank, _)| *rank)
        .map(|(_, text)| text)
}
