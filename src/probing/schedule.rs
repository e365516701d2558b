//! When each endpoint is probed: pure bookkeeping over time offsets, so it is tested with plain
//! numbers. Every (endpoint, path) has its own due time, at a fixed phase within the period
//! (derived from a hash of the policy and the endpoint, so probes spread over the whole period and
//! an endpoint keeps its phase when its siblings come and go). An endpoint whose previous probe is
//! still running when it falls due again is skipped for that round rather than probed twice.

use std::{
    collections::{BTreeSet, HashMap},
    hash::{DefaultHasher, Hash, Hasher},
    sync::Arc,
    time::Duration,
};

use crate::observe::request::ProbeRequest;

/// What identifies a probe across job updates.
pub type ProbeKey = (String, String);

fn key_of(req: &ProbeRequest) -> ProbeKey {
    (req.endpoint.clone(), req.path.clone())
}

struct Entry {
    request: Arc<ProbeRequest>,
    due: Duration,
    /// A probe of this entry is in flight.
    busy: bool,
}

/// A probe that fell due.
#[derive(Debug, Clone)]
pub struct Due {
    pub key: ProbeKey,
    pub request: Arc<ProbeRequest>,
    /// When it was due (offset from the schedule's epoch), to measure how late it starts.
    pub at: Duration,
}

/// What fell due at one instant: probes to start, and rounds that could not be probed.
#[derive(Debug, Default)]
pub struct Round {
    pub start: Vec<Due>,
    /// Rounds skipped because the endpoint's previous probe was still running (the endpoint is
    /// slow, not the operator).
    pub busy: u32,
    /// Rounds skipped because the schedule was woken more than a period late (the operator is).
    pub late: u32,
}

/// Due times of one policy's probes, as offsets from an epoch the caller keeps.
pub struct Schedule {
    period: Duration,
    seed: u64,
    entries: HashMap<ProbeKey, Entry>,
    queue: BTreeSet<(Duration, ProbeKey)>,
}

impl Schedule {
    /// An empty schedule; `seed` (e.g. a hash of the policy's name) decorrelates policies.
    pub fn new(period: Duration, seed: u64) -> Self {
        Self {
            period: period.max(Duration::from_millis(1)),
            seed,
            entries: HashMap::new(),
            queue: BTreeSet::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// This key's fixed offset within the period, in whole milliseconds (the timer's resolution).
    fn phase(&self, key: &ProbeKey) -> Duration {
        let mut h = DefaultHasher::new();
        (self.seed, key).hash(&mut h);
        let period_ms = u64::try_from(self.period.as_millis()).unwrap_or(u64::MAX).max(1);
        Duration::from_millis(h.finish() % period_ms)
    }

    /// The first time at or after `now` that falls on this key's phase.
    fn next_slot(&self, key: &ProbeKey, now: Duration) -> Duration {
        let phase = self.phase(key);
        if now <= phase {
            return phase;
        }
        let period_ns = self.period.as_nanos().max(1);
        let periods = (now - phase).as_nanos().div_ceil(period_ns);
        let periods = u32::try_from(periods).unwrap_or(u32::MAX);
        phase.saturating_add(self.period.saturating_mul(periods))
    }

    /// Adopts the probes to send: new ones are scheduled at their phase's next slot, those that
    /// stay keep their due time (and get the new request), those gone are dropped.
    pub fn set(&mut self, requests: &[ProbeRequest], now: Duration) {
        let mut keep: HashMap<ProbeKey, Arc<ProbeRequest>> = requests
            .iter()
            .map(|r| (key_of(r), Arc::new(r.clone())))
            .collect();
        self.entries.retain(|key, entry| match keep.remove(key) {
            Some(request) => {
                entry.request = request;
                true
            }
            None => {
                self.queue.remove(&(entry.due, key.clone()));
                false
            }
        });
        for (key, request) in keep {
            let due = self.next_slot(&key, now);
            self.queue.insert((due, key.clone()));
            self.entries.insert(
                key,
                Entry {
                    request,
                    due,
                    busy: false,
                },
            );
        }
    }

    /// The first round, spread over `within` (from the epoch) instead of the period: each probe at
    /// its phase scaled down, so they keep their order and spacing. Its later rounds follow a
    /// period apart from there. For a schedule just set at the epoch.
    pub fn compress_first_round(&mut self, within: Duration) {
        let (within_ns, period_ns) = (within.as_nanos(), self.period.as_nanos().max(1));
        self.queue.clear();
        for (key, entry) in &mut self.entries {
            let scaled = entry.due.as_nanos().min(period_ns) * within_ns / period_ns;
            entry.due = Duration::from_nanos(u64::try_from(scaled).unwrap_or(u64::MAX));
            self.queue.insert((entry.due, key.clone()));
        }
    }

    /// A new period: every probe moves to its phase's next slot.
    pub fn set_period(&mut self, period: Duration, now: Duration) {
        self.period = period.max(Duration::from_millis(1));
        self.queue.clear();
        let keys: Vec<ProbeKey> = self.entries.keys().cloned().collect();
        for key in keys {
            let due = self.next_slot(&key, now);
            if let Some(entry) = self.entries.get_mut(&key) {
                entry.due = due;
            }
            self.queue.insert((due, key));
        }
    }

    /// When the next probe falls due.
    pub fn next_due(&self) -> Option<Duration> {
        self.queue.first().map(|(due, _)| *due)
    }

    /// Takes every probe due at or before `now` and schedules its next round one period later
    /// (rounds more than a period in the past are skipped, never made up in a burst).
    pub fn take_due(&mut self, now: Duration) -> Round {
        let mut round = Round::default();
        while let Some((due, _)) = self.queue.first()
            && *due <= now
        {
            let Some((due, key)) = self.queue.pop_first() else {
                break;
            };
            let Some(entry) = self.entries.get_mut(&key) else {
                continue;
            };
            let mut next = due.saturating_add(self.period);
            while next <= now {
                next = next.saturating_add(self.period);
                round.late = round.late.saturating_add(1);
            }
            entry.due = next;
            self.queue.insert((next, key.clone()));
            if entry.busy {
                round.busy = round.busy.saturating_add(1);
                continue;
            }
            entry.busy = true;
            round.start.push(Due {
                request: entry.request.clone(),
                key,
                at: due,
            });
        }
        round
    }

    /// The probe of `key` finished.
    pub fn done(&mut self, key: &ProbeKey) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.busy = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::request::ProbeTarget;

    fn req(endpoint: &str) -> ProbeRequest {
        ProbeRequest {
            endpoint: endpoint.into(),
            path: "/healthz".into(),
            timeout: Duration::from_secs(1),
            target: ProbeTarget::Tcp {
                addr: "127.0.0.1:1".into(),
            },
        }
    }

    fn reqs(n: usize) -> Vec<ProbeRequest> {
        (0..n).map(|i| req(&format!("web-{i}"))).collect()
    }

    const PERIOD: Duration = Duration::from_secs(10);

    /// Drives the schedule over `periods` periods (and one step more) in steps of `step`,
    /// finishing every probe at once; returns (due time, start time) of each probe due within them.
    fn drive(s: &mut Schedule, periods: u32, step: Duration) -> Vec<(ProbeKey, Duration, Duration)> {
        let mut started = Vec::new();
        let mut now = Duration::ZERO;
        while now <= PERIOD * periods {
            let round = s.take_due(now);
            assert_eq!(
                (round.busy, round.late),
                (0, 0),
                "nothing is busy and no wake-up is late"
            );
            for due in round.start {
                started.push((due.key.clone(), due.at, now));
                s.done(&due.key);
            }
            now += step;
        }
        started.retain(|(_, at, _)| *at < PERIOD * periods);
        started
    }

    #[test]
    fn every_endpoint_is_probed_once_per_period_whatever_their_number() {
        for n in [1, 16, 500, 10_000] {
            let mut s = Schedule::new(PERIOD, 7);
            s.set(&reqs(n), Duration::ZERO);
            let started = drive(&mut s, 3, Duration::from_millis(100));
            let mut per_key: HashMap<ProbeKey, Vec<Duration>> = HashMap::new();
            for (key, at, _) in &started {
                per_key.entry(key.clone()).or_default().push(*at);
            }
            assert_eq!(per_key.len(), n, "n={n}: every endpoint probed");
            for (key, ats) in per_key {
                assert_eq!(ats.len(), 3, "n={n}: {key:?} probed once per period");
                assert_eq!(ats[1] - ats[0], PERIOD);
                assert_eq!(ats[2] - ats[1], PERIOD);
            }
            // Started no later than one step after being due.
            assert!(
                started
                    .iter()
                    .all(|(_, at, now)| *now >= *at && *now - *at < Duration::from_millis(100))
            );
        }
    }

    #[test]
    fn probes_spread_over_the_whole_period() {
        let mut s = Schedule::new(PERIOD, 1);
        s.set(&reqs(10_000), Duration::ZERO);
        let round = s.take_due(PERIOD - Duration::from_nanos(1));
        assert_eq!(round.start.len(), 10_000);
        // Ten buckets of a second each: every bucket holds roughly a tenth of the probes.
        let mut buckets = [0u32; 10];
        for due in &round.start {
            buckets[usize::try_from(due.at.as_secs()).unwrap()] += 1;
        }
        for (i, b) in buckets.iter().enumerate() {
            assert!((800..=1200).contains(b), "second {i} holds {b} of 10,000 probes");
        }
    }

    #[test]
    fn an_endpoint_keeps_its_phase_when_siblings_come_and_go() {
        let mut s = Schedule::new(PERIOD, 3);
        s.set(&reqs(3), Duration::ZERO);
        let first = s.take_due(PERIOD).start;
        let at_of = |round: &[Due], name: &str| round.iter().find(|d| d.key.0 == name).map(|d| d.at);
        let web0 = at_of(&first, "web-0").unwrap();
        for d in &first {
            s.done(&d.key);
        }
        s.set(
            &reqs(1).into_iter().chain([req("new")]).collect::<Vec<_>>(),
            PERIOD,
        );
        assert_eq!(s.len(), 2, "web-1 and web-2 dropped, new added");
        let second = s.take_due(PERIOD * 2).start;
        assert_eq!(at_of(&second, "web-0"), Some(web0 + PERIOD));
        assert!(at_of(&second, "web-1").is_none());
        let new = at_of(&second, "new").unwrap();
        assert!(
            new > PERIOD && new <= PERIOD * 2,
            "a new endpoint starts within the next period"
        );
    }

    #[test]
    fn a_probe_still_running_skips_its_next_round_and_delays_no_other() {
        let mut s = Schedule::new(PERIOD, 5);
        s.set(&reqs(2), Duration::ZERO);
        let first = s.take_due(PERIOD).start;
        assert_eq!(first.len(), 2);
        // web-0 hangs; web-1 finishes.
        let hanging = first.iter().find(|d| d.key.0 == "web-0").unwrap().key.clone();
        let other = first.iter().find(|d| d.key.0 == "web-1").unwrap().key.clone();
        s.done(&other);
        let second = s.take_due(PERIOD * 2);
        assert_eq!((second.busy, second.late), (1, 0));
        assert_eq!(second.start.len(), 1);
        assert_eq!(second.start[0].key, other);
        s.done(&other);
        s.done(&hanging);
        assert_eq!(
            s.take_due(PERIOD * 3).start.len(),
            2,
            "probed again once it finished"
        );
    }

    #[test]
    fn a_late_wake_up_skips_missed_rounds_instead_of_bursting() {
        let mut s = Schedule::new(PERIOD, 9);
        s.set(&reqs(1), Duration::ZERO);
        let round = s.take_due(PERIOD * 5);
        assert_eq!(round.start.len(), 1, "one probe, not five");
        assert_eq!((round.busy, round.late), (0, 4));
        assert!(s.next_due().unwrap() > PERIOD * 5);
    }

    #[test]
    fn a_new_period_reschedules_every_probe_within_it() {
        let mut s = Schedule::new(PERIOD, 11);
        s.set(&reqs(100), Duration::ZERO);
        s.set_period(Duration::from_secs(2), Duration::from_secs(1));
        let next = s.next_due().unwrap();
        assert!(next >= Duration::from_secs(1) && next < Duration::from_secs(3));
        assert_eq!(s.take_due(Duration::from_secs(3)).start.len(), 100);
    }

    #[test]
    fn a_compressed_first_round_falls_within_its_window_then_keeps_the_period() {
        let mut s = Schedule::new(PERIOD, 7);
        s.set(&reqs(200), Duration::ZERO);
        let phases: Vec<(ProbeKey, Duration)> = s.entries.iter().map(|(k, e)| (k.clone(), e.due)).collect();
        assert!(
            phases.iter().any(|(_, due)| *due > PERIOD / 2),
            "phases spread over the period"
        );
        let within = PERIOD / 10;
        s.compress_first_round(within);
        let first = s.take_due(within);
        assert_eq!(
            first.start.len(),
            200,
            "every probe in the first tenth of the period"
        );
        for due in &first.start {
            let phase = phases.iter().find(|(k, _)| *k == due.key).map(|(_, p)| *p);
            let expected = phase.map(|p| Duration::from_nanos(u64::try_from(p.as_nanos() / 10).unwrap()));
            assert_eq!(
                Some(due.at),
                expected,
                "the phase scaled down: order and spacing kept"
            );
        }
        for due in &first.start {
            s.done(&due.key);
        }
        assert!(
            s.take_due(PERIOD - Duration::from_millis(1)).start.is_empty(),
            "nothing twice in a period"
        );
        assert_eq!(
            s.take_due(PERIOD + within).start.len(),
            200,
            "the next round a period on"
        );
    }
}
