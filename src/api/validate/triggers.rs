//! The triggers' part of validation: each trigger parsed, with its name and a line for people.

use std::time::Duration as StdDuration;

use super::{InvalidSpec, SuccessCodes, at_least_one, duration, invalid, path, positive_duration, window};

/// A parsed trigger.
#[derive(Debug, Clone, PartialEq)]
pub enum TriggerSettings {
    ConsecutiveFailures {
        threshold: u32,
    },
    StatusCodes {
        codes: SuccessCodes,
        count: u32,
        window: StdDuration,
        path: String,
    },
    SlowResponses {
        threshold: StdDuration,
        count: u32,
        window: StdDuration,
    },
    ErrorRate {
        percent: u32,
        window: StdDuration,
        min_samples: u32,
    },
    Memory {
        threshold: MemoryThreshold,
        for_: StdDuration,
    },
    Cpu {
        percent_of_limit: u32,
        for_: StdDuration,
    },
    Restarts {
        count: u32,
        window: StdDuration,
    },
    OomKilled {
        within: StdDuration,
    },
    CertificateExpiresWithin {
        within: StdDuration,
    },
    ConfigChanged,
}

impl TriggerSettings {
    /// The trigger's name as users write it in the spec (and read it in evidence).
    pub fn name(&self) -> &'static str {
        match self {
            Self::ConsecutiveFailures { .. } => "consecutiveFailures",
            Self::StatusCodes { .. } => "statusCodes",
            Self::SlowResponses { .. } => "slowResponses",
            Self::ErrorRate { .. } => "errorRate",
            Self::Memory { .. } => "memory",
            Self::Cpu { .. } => "cpu",
            Self::Restarts { .. } => "restarts",
            Self::OomKilled { .. } => "oomKilled",
            Self::CertificateExpiresWithin { .. } => "certificateExpiresWithin",
            Self::ConfigChanged => "configChanged",
        }
    }

    /// The sliding window of probe samples this trigger looks at, if any.
    pub fn sample_window(&self) -> Option<StdDuration> {
        match self {
            Self::StatusCodes { window, .. }
            | Self::SlowResponses { window, .. }
            | Self::ErrorRate { window, .. } => Some(*window),
            _ => None,
        }
    }

    /// Whether it needs the metrics.k8s.io API.
    pub fn needs_metrics(&self) -> bool {
        matches!(self, Self::Memory { .. } | Self::Cpu { .. })
    }
}

impl std::fmt::Display for TriggerSettings {
    /// One line for people: what makes this trigger fire.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::api::format_duration as d;
        match self {
            Self::ConsecutiveFailures { threshold } => write!(f, "{threshold} failed probes in a row"),
            Self::StatusCodes {
                codes,
                count,
                window,
                path,
            } => {
                write!(
                    f,
                    "{count} responses with status {codes} within {} (path {path})",
                    d(*window)
                )
            }
            Self::SlowResponses {
                threshold,
                count,
                window,
            } => {
                write!(
                    f,
                    "{count} responses slower than {} within {}",
                    d(*threshold),
                    d(*window)
                )
            }
            Self::ErrorRate {
                percent,
                window,
                min_samples,
            } => {
                write!(
                    f,
                    "{percent}% of probes failing within {} (at least {min_samples} probes)",
                    d(*window)
                )
            }
            Self::Memory {
                threshold: MemoryThreshold::PercentOfLimit(p),
                for_,
            } => {
                write!(f, "memory at {p}% of a container's limit for {}", d(*for_))
            }
            Self::Memory {
                threshold: MemoryThreshold::Bytes(b),
                for_,
            } => {
                write!(
                    f,
                    "memory above {} for {}",
                    crate::api::quantity::format_bytes(*b),
                    d(*for_)
                )
            }
            Self::Cpu {
                percent_of_limit,
                for_,
            } => {
                write!(
                    f,
                    "CPU at {percent_of_limit}% of a container's limit for {}",
                    d(*for_)
                )
            }
            Self::Restarts { count, window } => {
                write!(f, "{count} restarts within {} or a CrashLoopBackOff", d(*window))
            }
            Self::OomKilled { within } => write!(f, "an OOM kill within the last {}", d(*within)),
            Self::CertificateExpiresWithin { within } => {
                write!(f, "a certificate expiring within {}", d(*within))
            }
            Self::ConfigChanged => f.write_str("a ConfigMap or Secret changed after the pod started"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryThreshold {
    PercentOfLimit(u32),
    Bytes(u64),
}

pub(super) fn trigger(
    i: usize,
    t: &crate::api::Trigger,
    primary_path: &str,
) -> Result<TriggerSettings, InvalidSpec> {
    let f = |name: &str| format!("spec.triggers[{i}].{name}");
    let max_window = StdDuration::from_secs(3600);
    exactly_one_kind(i, t)?;
    Ok(if let Some(cf) = &t.consecutive_failures {
        TriggerSettings::ConsecutiveFailures {
            threshold: at_least_one(&f("consecutiveFailures.threshold"), cf.threshold)?,
        }
    } else if let Some(sc) = &t.status_codes {
        TriggerSettings::StatusCodes {
            codes: SuccessCodes::parse(&f("statusCodes.codes"), &sc.codes)?,
            count: at_least_one(&f("statusCodes.count"), sc.count)?,
            window: window(&f("statusCodes.window"), &sc.window, max_window)?,
            path: match &sc.path {
                Some(p) => path(&f("statusCodes.path"), p)?,
                None => primary_path.to_owned(),
            },
        }
    } else if let Some(sr) = &t.slow_responses {
        TriggerSettings::SlowResponses {
            threshold: positive_duration(&f("slowResponses.threshold"), &sr.threshold)?,
            count: at_least_one(&f("slowResponses.count"), sr.count)?,
            window: window(&f("slowResponses.window"), &sr.window, max_window)?,
        }
    } else if let Some(er) = &t.error_rate {
        if !(1..=100).contains(&er.percent) {
            return Err(invalid(f("errorRate.percent"), "must be between 1 and 100"));
        }
        TriggerSettings::ErrorRate {
            percent: er.percent,
            window: window(&f("errorRate.window"), &er.window, max_window)?,
            min_samples: at_least_one(&f("errorRate.minSamples"), er.min_samples)?,
        }
    } else if let Some(m) = &t.memory {
        let threshold = memory_threshold(i, m)?;
        TriggerSettings::Memory {
            threshold,
            for_: duration(&f("memory.for"), &m.for_)?,
        }
    } else if let Some(c) = &t.cpu {
        if !(1..=100).contains(&c.percent_of_limit) {
            return Err(invalid(f("cpu.percentOfLimit"), "must be between 1 and 100"));
        }
        TriggerSettings::Cpu {
            percent_of_limit: c.percent_of_limit,
            for_: duration(&f("cpu.for"), &c.for_)?,
        }
    } else if let Some(r) = &t.restarts {
        TriggerSettings::Restarts {
            count: at_least_one(&f("restarts.count"), r.count)?,
            window: window(
                &f("restarts.window"),
                &r.window,
                StdDuration::from_secs(24 * 3600),
            )?,
        }
    } else if let Some(o) = &t.oom_killed {
        TriggerSettings::OomKilled {
            within: positive_duration(&f("oomKilled.within"), &o.within)?,
        }
    } else if let Some(c) = &t.certificate_expires_within {
        TriggerSettings::CertificateExpiresWithin {
            within: positive_duration(&f("certificateExpiresWithin.duration"), &c.duration)?,
        }
    } else {
        TriggerSettings::ConfigChanged
    })
}

/// A trigger sets exactly one kind.
fn exactly_one_kind(i: usize, t: &crate::api::Trigger) -> Result<(), InvalidSpec> {
    let set = [
        t.consecutive_failures.is_some(),
        t.status_codes.is_some(),
        t.slow_responses.is_some(),
        t.error_rate.is_some(),
        t.memory.is_some(),
        t.cpu.is_some(),
        t.restarts.is_some(),
        t.oom_killed.is_some(),
        t.certificate_expires_within.is_some(),
        t.config_changed.is_some(),
    ];
    if set.iter().filter(|s| **s).count() != 1 {
        return Err(invalid(
            format!("spec.triggers[{i}]"),
            "must set exactly one of: consecutiveFailures, statusCodes, slowResponses, errorRate, memory, cpu, \
             restarts, oomKilled, certificateExpiresWithin, configChanged",
        ));
    }
    Ok(())
}

fn memory_threshold(i: usize, m: &crate::api::MemoryTrigger) -> Result<MemoryThreshold, InvalidSpec> {
    let f = |name: &str| format!("spec.triggers[{i}].{name}");
    Ok(match (m.percent_of_limit, &m.bytes) {
        (Some(p), None) if (1..=100).contains(&p) => MemoryThreshold::PercentOfLimit(p),
        (Some(_), None) => return Err(invalid(f("memory.percentOfLimit"), "must be between 1 and 100")),
        (None, Some(b)) => MemoryThreshold::Bytes(
            crate::api::quantity::bytes(b)
                .filter(|b| *b > 0)
                .ok_or_else(|| invalid(f("memory.bytes"), format!("{b:?} is not a size such as 512Mi")))?,
        ),
        _ => {
            return Err(invalid(
                f("memory"),
                "must set exactly one of: percentOfLimit, bytes",
            ));
        }
    })
}
