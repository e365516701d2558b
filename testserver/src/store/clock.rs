//! The server's clock: what "now" is for every time the store stamps.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// A time as the API server writes it: RFC 3339, UTC, second precision.
pub fn rfc3339(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A time source: what "now" is for the server.
pub type ClockFn = Arc<dyn Fn() -> jiff::Timestamp + Send + Sync + 'static>;

#[derive(Default)]
struct ClockState {
    source: Option<ClockFn>,
    offset: jiff::SignedDuration,
}

/// The server's clock, for every time it stamps (`creationTimestamp`, `managedFields[].time`, CRD
/// condition times, metrics timestamps, table ages): the source (default: real time) plus an offset
/// (default zero). Clones share the clock.
#[derive(Clone, Default)]
pub struct Clock(Arc<Mutex<ClockState>>);

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.lock();
        f.debug_struct("Clock")
            .field("custom_source", &st.source.is_some())
            .field("offset", &st.offset)
            .finish()
    }
}

impl Clock {
    fn lock(&self) -> MutexGuard<'_, ClockState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current time: the source's time plus the offset.
    pub fn now(&self) -> jiff::Timestamp {
        let (source, offset) = {
            let st = self.lock();
            (st.source.clone(), st.offset)
        };
        // The source runs without any lock held, so it may read the server.
        let base = source.map_or_else(jiff::Timestamp::now, |f| f());
        base.saturating_add(offset).unwrap_or(base)
    }

    /// [`Self::now`] as the API server writes it (RFC 3339, seconds).
    pub fn now_rfc3339(&self) -> String {
        rfc3339(self.now())
    }

    /// Use `source` for the time from now on, and reset the offset to zero.
    pub fn set(&self, source: ClockFn) {
        let mut st = self.lock();
        st.source = Some(source);
        st.offset = jiff::SignedDuration::ZERO;
    }

    /// Move the clock forward by `by` (cumulative, on top of the source).
    pub fn advance(&self, by: Duration) {
        let by = jiff::SignedDuration::try_from(by).unwrap_or(jiff::SignedDuration::MAX);
        let mut st = self.lock();
        st.offset = st.offset.saturating_add(by);
    }

    /// Back to real time with no offset.
    pub fn reset(&self) {
        *self.lock() = ClockState::default();
    }
}
