//! The probe tasks on paused time with a scripted prober: the schedule holds whatever the number
//! of endpoints, a hanging endpoint delays no other, a failing pod is judged on its own probes, and
//! an operator that cannot keep up says so.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use jiff::Timestamp;
use tokio::{sync::mpsc, time::Instant};

use super::*;
use crate::{
    api::Health,
    fixtures::{PolicyExt, at, policy},
    observe::request::ProbeTarget,
};

/// Wall time that follows tokio's (paused) clock.
struct TokioClock {
    start: Instant,
    epoch: Timestamp,
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        let elapsed = jiff::SignedDuration::try_from(self.start.elapsed()).unwrap();
        self.epoch + elapsed
    }
}

/// Answers from a script: per endpoint, fail or hang (for a duration), else succeed after `took`.
#[derive(Default)]
struct Script {
    failing: Mutex<HashSet<String>>,
    hanging: Mutex<HashMap<String, Duration>>,
    took: Duration,
    /// Every probe sent: endpoint and when (tokio time).
    sent: Mutex<Vec<(String, Instant)>>,
}

impl SendProbe for Script {
    fn send<'a>(&'a self, req: &'a ProbeRequest, clock: &'a dyn Clock) -> BoxFuture<'a, Sample> {
        Box::pin(async move {
            self.sent
                .lock()
                .unwrap()
                .push((req.endpoint.clone(), Instant::now()));
            let hang = self.hanging.lock().unwrap().get(&req.endpoint).copied();
            tokio::time::sleep(hang.unwrap_or(self.took)).await;
            let ok = hang.is_none() && !self.failing.lock().unwrap().contains(&req.endpoint);
            let mut s = crate::fixtures::sample(&req.endpoint, clock.now(), ok);
            s.path = req.path.clone();
            s
        })
    }
}

struct NoUsage;

impl crate::observe::signals::UsageSource for NoUsage {
    fn pod_usage<'a>(
        &'a self,
        _: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Usage> + Send + 'a>> {
        Box::pin(async { Usage::Available(Default::default()) })
    }
}

const PERIOD: Duration = Duration::from_secs(10);

fn job(pods: usize) -> ProbeJob {
    let settings = policy()
        .with_spec(serde_json::json!({"probe": {"periodSeconds": 10, "http": {"timeoutSeconds": 2}}}))
        .settings();
    ProbeJob {
        settings: Arc::new(settings),
        namespace: "shop".into(),
        requests: (0..pods)
            .map(|i| ProbeRequest {
                endpoint: format!("web-{i}"),
                path: "/healthz".into(),
                timeout: Duration::from_secs(2),
                target: ProbeTarget::Tcp {
                    addr: "127.0.0.1:1".into(),
                },
            })
            .collect(),
        signals: Vec::new(),
    }
}

struct Rig {
    tasks: ProbeTasks<String>,
    script: Arc<Script>,
    metrics: Arc<Metrics>,
    nudges: mpsc::UnboundedReceiver<String>,
}

fn rig(script: Script, slots: usize) -> Rig {
    let script = Arc::new(script);
    let metrics = Arc::new(Metrics::default());
    let (nudge, nudges) = mpsc::unbounded_channel();
    let tasks = ProbeTasks::new(Probing {
        prober: script.clone(),
        slots: Arc::new(Semaphore::new(slots)),
        clock: Arc::new(TokioClock {
            start: Instant::now(),
            epoch: at("2026-01-01T00:00:00Z"),
        }),
        usage: Arc::new(NoUsage),
        nudge,
        alive: Arc::new(|_: &String| true),
        metrics: metrics.clone(),
    });
    Rig {
        tasks,
        script,
        metrics,
        nudges,
    }
}

/// Probes per endpoint sent in [from, to).
fn probes_between(script: &Script, from: Instant, to: Instant) -> HashMap<String, usize> {
    let mut per = HashMap::new();
    for (endpoint, when) in script.sent.lock().unwrap().iter() {
        if *when >= from && *when < to {
            *per.entry(endpoint.clone()).or_default() += 1;
        }
    }
    per
}

#[tokio::test(start_paused = true)]
async fn every_endpoint_is_probed_once_per_period_even_beside_hanging_ones() {
    for (pods, hanging) in [(16, 0), (1_000, 0), (1_000, 50), (5_000, 200)] {
        let script = Script {
            took: Duration::from_millis(2),
            ..Script::default()
        };
        for i in 0..hanging {
            script
                .hanging
                .lock()
                .unwrap()
                .insert(format!("web-{i}"), Duration::from_secs(2));
        }
        let rig = rig(script, 256);
        let start = Instant::now();
        rig.tasks.ensure(&"web".to_owned(), job(pods), &[], || false);
        tokio::time::sleep(PERIOD * 4).await;
        let per = probes_between(&rig.script, start + PERIOD, start + PERIOD * 3);
        assert_eq!(per.len(), pods, "{pods} pods: every endpoint probed");
        assert!(
            per.values().all(|n| *n == 2),
            "{pods} pods, {hanging} hanging: twice in two periods each"
        );
        assert_eq!(
            rig.metrics.probes_delayed.get(),
            0,
            "{pods} pods: no probe waited for a slot"
        );
        assert_eq!(rig.metrics.probes_skipped.get(), 0);
        // On paused time a probe starts exactly when due: the lag histogram's sum stays at zero.
        let text = rig.metrics.render();
        let lag_sum = text
            .lines()
            .find_map(|l| l.strip_prefix("apphealth_probe_lag_seconds_sum "))
            .unwrap();
        assert_eq!(lag_sum.parse::<f64>().unwrap(), 0.0, "{pods} pods: lag");
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_pod_is_judged_on_its_own_probes_whatever_the_number_of_pods() {
    for pods in [2, 100, 2_000] {
        let mut rig = rig(
            Script {
                took: Duration::from_millis(1),
                ..Script::default()
            },
            1024,
        );
        let key = "web".to_owned();
        rig.tasks.ensure(&key, job(pods), &[], || false);
        tokio::time::sleep(PERIOD * 2).await;
        assert_eq!(rig.tasks.verdict(&key).unwrap().health, Health::Healthy);
        while rig.nudges.try_recv().is_ok() {}
        let t0 = Instant::now();
        rig.script.failing.lock().unwrap().insert("web-1".into());
        // threshold 3: the third failed probe of web-1 turns it Unhealthy, at most three periods on.
        loop {
            let Some(nudged) = rig.nudges.recv().await else {
                panic!("nudges ended");
            };
            assert_eq!(nudged, key);
            if rig.tasks.verdict(&key).unwrap().health == Health::Unhealthy {
                break;
            }
        }
        let detected = t0.elapsed();
        assert!(
            detected <= PERIOD * 3,
            "{pods} pods: judged {detected:?} after the pod began to fail"
        );
        assert!(
            detected > PERIOD * 2,
            "{pods} pods: not before its third failed probe"
        );
        assert_eq!(
            rig.tasks.verdict(&key).unwrap().unhealthy,
            vec!["web-1".to_owned()]
        );
    }
}

#[test]
fn behind_is_said_after_two_late_periods_and_unsaid_after_two_on_time() {
    // Late (true) or on time (false), period after period, and whether the note shows after each.
    let cases: [(&[bool], &[bool]); 5] = [
        (&[true], &[false]),
        (&[true, false, true, false], &[false, false, false, false]),
        (&[true, true], &[false, true]),
        (
            &[true, true, false, true, false, false],
            &[false, true, true, true, true, false],
        ),
        (
            &[false, true, true, true, false, false, true],
            &[false, false, true, true, true, false, false],
        ),
    ];
    for (periods, expected) in cases {
        let (mut run, mut said) = (0, false);
        let mut shown = Vec::new();
        for &late in periods {
            run = streak(run, late);
            said = says_behind(said, run);
            shown.push(said);
        }
        assert_eq!(shown, expected, "periods {periods:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn an_operator_that_cannot_keep_up_says_so() {
    // Two slots, 100 ms a probe: 20 probes/s at most, where 100 pods at 10 s want 10/s (fine) and
    // 1,000 want 100/s (not).
    for (pods, behind) in [(100, false), (1_000, true)] {
        let rig = rig(
            Script {
                took: Duration::from_millis(100),
                ..Script::default()
            },
            2,
        );
        let key = "web".to_owned();
        rig.tasks.ensure(&key, job(pods), &[], || false);
        tokio::time::sleep(PERIOD * 3).await;
        let verdict = rig.tasks.verdict(&key).unwrap();
        assert_eq!(
            verdict.notes.iter().any(|n| n == BEHIND),
            behind,
            "{pods} pods: notes {:?}",
            verdict.notes
        );
        if behind {
            assert!(
                rig.metrics.probes_delayed.get() > 0,
                "{pods} pods: waits are counted"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn new_pods_join_the_schedule_and_gone_ones_leave_it() {
    let rig = rig(Script::default(), 64);
    let key = "web".to_owned();
    rig.tasks.ensure(&key, job(3), &[], || false);
    tokio::time::sleep(PERIOD * 2).await;
    let mut next = job(3);
    next.requests.remove(0);
    next.requests.push(ProbeRequest {
        endpoint: "web-new".into(),
        ..next.requests[0].clone()
    });
    rig.tasks.ensure(&key, next, &[], || false);
    let from = Instant::now();
    tokio::time::sleep(PERIOD * 2).await;
    let per = probes_between(&rig.script, from + PERIOD, from + PERIOD * 2);
    let mut names: Vec<&String> = per.keys().collect();
    names.sort();
    assert_eq!(names, ["web-1", "web-2", "web-new"]);
}
