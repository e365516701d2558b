//! What this process wrote, so that a reconcile never mistakes its own earlier write, read back
//! from a cache that has not caught up yet, for the current state. The intent a remediation records
//! comes back through the watch while the action runs; the reconcile it queues may start before the
//! final status arrives in the cache. It must not take that Pending intent for the trace of a crash.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
};

use super::PolicyRef;
use crate::api::AppHealthPolicyStatus;

/// Statuses superseded per policy that are still worth recognising.
const KEPT: usize = 4;

#[derive(Default)]
struct Written {
    latest: AppHealthPolicyStatus,
    superseded: Vec<AppHealthPolicyStatus>,
}

/// The statuses this process wrote, per policy.
#[derive(Default)]
pub(super) struct WriteLog {
    by_policy: Mutex<HashMap<PolicyRef, Written>>,
}

impl WriteLog {
    /// The status a reconcile starts from: the cached one, unless it is one this process has since
    /// replaced (the cache lags); then the latest one it wrote. A status nobody here wrote (another
    /// replica, a person, an operator that crashed) is taken as it is.
    pub(super) fn current(&self, key: &PolicyRef, cached: &AppHealthPolicyStatus) -> AppHealthPolicyStatus {
        let mut map = self.by_policy.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(written) = map.get_mut(key) else {
            return cached.clone();
        };
        if written.latest == *cached {
            // Caught up: nothing left to recognise (and nothing kept per policy at steady state).
            map.remove(key);
            return cached.clone();
        }
        if written.superseded.contains(cached) {
            return written.latest.clone();
        }
        map.remove(key);
        cached.clone()
    }

    /// Remembers a status the API server acknowledged.
    pub(super) fn wrote(&self, key: &PolicyRef, status: AppHealthPolicyStatus) {
        let mut map = self.by_policy.lock().unwrap_or_else(PoisonError::into_inner);
        let written = map.entry(key.clone()).or_default();
        let previous = std::mem::replace(&mut written.latest, status);
        written.superseded.push(previous);
        if written.superseded.len() > KEPT {
            written.superseded.remove(0);
        }
    }

    /// Policies with writes the cache has not shown yet.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_policy
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Forgets a policy (deleted).
    pub(super) fn forget(&self, key: &PolicyRef) {
        self.by_policy
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::watched::Watched;

    fn status(generation: i64) -> AppHealthPolicyStatus {
        AppHealthPolicyStatus {
            observed_generation: Some(generation),
            ..AppHealthPolicyStatus::default()
        }
    }

    #[test]
    fn a_lagging_cache_yields_the_latest_write_and_anyone_elses_write_wins() {
        let log = WriteLog::default();
        let key = kube::runtime::reflector::ObjectRef::<Watched>::new("web").within("shop");
        assert_eq!(log.current(&key, &status(1)), status(1), "nothing written yet");
        log.wrote(&key, status(2)); // the intent
        log.wrote(&key, status(3)); // the result
        assert_eq!(
            log.current(&key, &status(2)),
            status(3),
            "the cache still shows the intent"
        );
        assert_eq!(log.current(&key, &status(3)), status(3), "caught up");
        assert_eq!(log.len(), 0, "a log that caught up keeps nothing");
        assert_eq!(
            log.current(&key, &status(2)),
            status(2),
            "once caught up, older states are someone else's"
        );
        log.wrote(&key, status(4));
        assert_eq!(
            log.current(&key, &status(9)),
            status(9),
            "written by someone else"
        );
        assert_eq!(log.current(&key, &status(3)), status(3), "and forgotten");
    }
}
