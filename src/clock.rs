//! The one clock that serves the engine, status timestamps and annotations, injected so tests run
//! on virtual time.

use std::sync::{Arc, Mutex};

use jiff::{SignedDuration, Timestamp};

/// A source of wall-clock time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The system clock, for production.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock offset from another by an adjustable amount: real time for probes and timers, plus a jump
/// the test controls (e.g. "an hour later", to step past a cooldown).
#[derive(Clone)]
pub struct OffsetClock<C> {
    inner: C,
    offset: Arc<Mutex<SignedDuration>>,
}

impl<C: Clock> OffsetClock<C> {
    pub fn new(inner: C) -> Self {
        Self {
            inner,
            offset: Arc::new(Mutex::new(SignedDuration::ZERO)),
        }
    }

    pub fn jump(&self, by: std::time::Duration) {
        let by = SignedDuration::try_from(by).unwrap_or(SignedDuration::MAX);
        let mut offset = self
            .offset
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *offset = offset.saturating_add(by);
    }
}

impl<C: Clock> Clock for OffsetClock<C> {
    fn now(&self) -> Timestamp {
        let offset = *self
            .offset
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.inner.now().saturating_add(offset).unwrap_or(Timestamp::MAX)
    }
}

/// `t` truncated to whole seconds: the precision of Kubernetes `Time` in status, so a value
/// written there reads back equal (marks such as `apphealth.io/restartedAt` are compared that way).
pub fn whole_seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// `now + d`, saturating.
pub fn after(now: Timestamp, d: std::time::Duration) -> Timestamp {
    let d = SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX);
    now.saturating_add(d).unwrap_or(Timestamp::MAX)
}

/// How long from `now` until `then`, zero if it has passed.
pub fn until(now: Timestamp, then: Timestamp) -> std::time::Duration {
    std::time::Duration::try_from(then.duration_since(now)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Timestamp);

    impl Clock for Fixed {
        fn now(&self) -> Timestamp {
            self.0
        }
    }

    #[test]
    fn an_offset_clock_jumps_when_told() {
        let start: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let clock = OffsetClock::new(Fixed(start));
        assert_eq!(clock.now(), start);
        clock.jump(std::time::Duration::from_secs(3601));
        assert_eq!(clock.now(), "2026-01-01T01:00:01Z".parse().unwrap());
    }

    #[test]
    fn whole_seconds_survive_a_round_trip_through_status() {
        let t: Timestamp = "2026-01-01T00:00:01.987654321Z".parse().unwrap();
        let truncated = whole_seconds(t);
        assert_eq!(truncated.to_string(), "2026-01-01T00:00:01Z");
        let json =
            serde_json::to_value(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(truncated)).unwrap();
        let back: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time =
            serde_json::from_value(json).unwrap();
        assert_eq!(back.0, truncated);
    }

    #[test]
    fn until_is_zero_once_passed() {
        let now: Timestamp = "2026-01-01T00:00:10Z".parse().unwrap();
        let earlier: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(until(now, earlier), std::time::Duration::ZERO);
        assert_eq!(until(earlier, now), std::time::Duration::from_secs(10));
    }
}
