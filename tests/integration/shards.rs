//! Three operator instances share the work by shard Leases: each holds one shard and probes only
//! the workloads that hash to it; an instance that dies has its shard taken over once its Lease
//! expires, one that stops gives its shard back at once, and every workload stays probed.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use serde_json::Value;

use apphealth_operator::{
    controller,
    fleet::{keeper::ShardConfig, shard::shard_of},
    metrics::Metrics,
};

use crate::{
    flaky::Flaky,
    harness::{Harness, NS, PATIENCE, Running, client, direct_client},
    support::wait_until,
};

const LEASE_NS: &str = "apphealth-system";
const SHARDS: u32 = 3;
const LEASE: Duration = Duration::from_secs(3);

struct Instance {
    metrics: Arc<Metrics>,
    running: Running,
}

impl Instance {
    fn start(h: &Harness, identity: &str) -> Self {
        let metrics = Arc::new(Metrics::default());
        let config = controller::Config {
            namespaces: vec![NS.into()],
            instance: Some(identity.into()),
            metrics: metrics.clone(),
            direct_client: Some(direct_client(&h.server)),
            shards: Some(ShardConfig {
                shards: SHARDS,
                namespace: LEASE_NS.into(),
                prefix: "apphealth-operator".into(),
                identity: identity.into(),
                duration: LEASE,
            }),
            ..h.config()
        };
        Self {
            metrics,
            running: Running::spawn(h, client(&h.server), config),
        }
    }

    /// The shards this instance says it holds, from its metrics.
    fn held(&self) -> Vec<u32> {
        (0..SHARDS)
            .filter(|s| {
                self.metrics
                    .render()
                    .contains(&format!("apphealth_shard_held{{shard=\"{s}\"}} 1"))
            })
            .collect()
    }

    /// The policies this instance reconciles (and so probes), from its metrics.
    fn policies(&self) -> i64 {
        self.metrics
            .render()
            .lines()
            .filter(|l| l.starts_with("apphealth_policies{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
            .sum()
    }

    async fn stop(self) {
        self.running.stop().await;
    }
}

/// Two workloads in each shard, each with a policy of its own.
async fn workloads(h: &mut Harness) -> BTreeMap<String, (u32, Flaky)> {
    let mut by_shard = BTreeMap::<u32, usize>::new();
    let mut out = BTreeMap::new();
    for i in 0.. {
        if by_shard.len() == SHARDS as usize && by_shard.values().all(|n| *n >= 2) {
            break;
        }
        let name = format!("svc-{i}");
        let shard = shard_of(NS, "Deployment", &name, SHARDS);
        if by_shard.get(&shard).copied().unwrap_or(0) >= 2 {
            continue;
        }
        *by_shard.entry(shard).or_default() += 1;
        let app = h.add_workload(&name).await;
        h.create_policy(&name, serde_json::json!({"targetRef": {"name": name}}));
        out.insert(name, (shard, app));
    }
    out
}

/// Waits until every workload has answered more probes than it had.
async fn all_probed(workloads: &BTreeMap<String, (u32, Flaky)>, what: &str) {
    let before: Vec<u64> = workloads.values().map(|(_, app)| app.hits()).collect();
    wait_until(what, PATIENCE, || async {
        workloads
            .values()
            .zip(&before)
            .all(|((_, app), hits)| app.hits() > *hits + 1)
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_split_the_shards_and_take_over_a_dead_ones() {
    let mut h = Harness::new(0).await;
    let workloads = workloads(&mut h).await;
    let mut instances: Vec<Instance> = ["op-a", "op-b", "op-c"]
        .into_iter()
        .map(|id| Instance::start(&h, id))
        .collect();

    // Each holds one shard, and every workload is probed (once each: by its shard's holder).
    wait_until("one shard each", PATIENCE, || async {
        let held: Vec<Vec<u32>> = instances.iter().map(Instance::held).collect();
        held.iter().all(|h| h.len() == 1).then_some(())
    })
    .await;
    all_probed(&workloads, "every workload probed").await;
    for name in workloads.keys() {
        h.wait_condition(name, "Ready", "True", None).await;
    }
    // Each instance reconciles (and probes) the two workloads of its shard, and no other.
    for instance in &instances {
        wait_until("two policies each", PATIENCE, || async {
            (instance.policies() == 2).then_some(())
        })
        .await;
    }

    // op-c dies without a word: its Lease runs out, and its shard is taken over.
    let dead = instances.pop().expect("three instances");
    let orphan = dead.held()[0];
    dead.running.kill();
    let took_over = wait_until("the dead instance's shard taken over", PATIENCE, || async {
        instances.iter().position(|i| i.held().contains(&orphan))
    })
    .await;
    let survivors: usize = instances.iter().map(|i| i.held().len()).sum();
    assert_eq!(survivors, SHARDS as usize, "the survivors hold every shard");
    all_probed(&workloads, "every workload probed after the takeover").await;

    // The other stops gracefully: its shards are given back and taken at once.
    let stopping = instances.remove(1 - took_over.min(1));
    stopping.stop().await;
    wait_until("the last instance holds every shard", PATIENCE, || async {
        (instances[0].held().len() == SHARDS as usize).then_some(())
    })
    .await;
    all_probed(&workloads, "every workload probed by the last instance").await;
    for instance in instances {
        instance.stop().await;
    }
}

/// A replica whose Lease writes fail drops its shards and stops probing them, and takes them up
/// again once it can renew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_cannot_renew_drops_its_shards_and_takes_them_up_again() {
    let mut h = Harness::new(0).await;
    let workloads = workloads(&mut h).await;
    let instance = Instance::start(&h, "op-a");
    wait_until("every shard held", PATIENCE, || async {
        (instance.held().len() == SHARDS as usize).then_some(())
    })
    .await;
    all_probed(&workloads, "every workload probed").await;

    // The API server refuses every Lease write from now on.
    h.server.set_fault_hook(|r| {
        (r.path.contains("/leases/") && r.is_write()).then(|| apphealth_testserver::Fault::Status {
            code: 503,
            reason: "ServiceUnavailable".into(),
            message: "etcd is unavailable".into(),
        })
    });
    wait_until("every shard dropped", PATIENCE, || async {
        instance.held().is_empty().then_some(())
    })
    .await;
    // (That no work starts after a shard's deadline, whatever the keeper's timing, is checked on
    // the clock in `fleet::keeper`'s tests.)
    // Nothing is probed by it any more (a probe in flight lands first).
    wait_until("probing stopped", PATIENCE, || async {
        (instance.policies() == 0).then_some(())
    })
    .await;
    let stopped: Vec<u64> = workloads.values().map(|(_, app)| app.hits()).collect();
    // Five more refused rounds of the keeper (a fifth of the lease each): longer than a probe period.
    let refused = || {
        h.server
            .requests()
            .iter()
            .filter(|r| r.path.contains("/leases/") && r.status == 503)
            .count()
    };
    let seen = refused();
    wait_until("five more refused rounds", PATIENCE, || async {
        (refused() >= seen + 5).then_some(())
    })
    .await;
    let after: Vec<u64> = workloads.values().map(|(_, app)| app.hits()).collect();
    assert!(
        stopped.iter().zip(&after).all(|(a, b)| b <= &(a + 1)),
        "probes went on: {stopped:?} → {after:?}"
    );

    // The API server recovers: the shards are taken up again and probing resumes.
    h.server.clear_fault_hook();
    wait_until("every shard held again", PATIENCE, || async {
        (instance.held().len() == SHARDS as usize).then_some(())
    })
    .await;
    all_probed(&workloads, "every workload probed again").await;
    instance.stop().await;
}

/// The units of selector policy `policy` this instance judges, from its health gauges.
fn units_judged(instance: &Instance, policy: &str) -> Vec<String> {
    let prefix = format!("apphealth_policy_health{{policy=\"{NS}/{policy}/Deployment/");
    let mut units: Vec<String> = instance
        .metrics
        .render()
        .lines()
        .filter_map(|l| Some(l.strip_prefix(&prefix)?.split_once('"')?.0.to_owned()))
        .collect();
    units.sort();
    units
}

/// The shards' parts of a policy's status, by shard: (selected, listed workload names).
fn parts(h: &Harness, policy: &str) -> BTreeMap<u64, (u64, Vec<String>)> {
    let status = h.policy(policy)["status"].clone();
    status["shards"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let listed = p["workloads"].as_array().into_iter().flatten();
            let names = listed
                .filter_map(|w| Some(w["name"].as_str()?.to_owned()))
                .collect();
            Some((p["shard"].as_u64()?, (p["fleet"]["selected"].as_u64()?, names)))
        })
        .collect()
}

/// A selector policy's workloads spread over the shards as single-target policies do: each
/// instance judges (probes, remediates) the workloads of its shard only and writes its shard's
/// part of the status as that shard's field manager; the holder of the policy's own shard sums
/// the parts. A dead instance's shard is taken over with its part: the record of a remediation
/// is resumed, not repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selector_policys_workloads_spread_over_the_shards() {
    let mut h = Harness::new(0).await;
    let workloads = workloads(&mut h).await;
    for name in workloads.keys() {
        let mut deployment = h.server.get("apps/v1", "Deployment", Some(NS), name).unwrap();
        deployment["metadata"]["labels"] = serde_json::json!({"tier": "web"});
        h.server.replace(deployment).unwrap();
    }
    // Only the selector policy: the harness's single-target ones go.
    for name in workloads.keys() {
        h.server
            .delete("apphealth.io/v1alpha1", "AppHealthPolicy", Some(NS), name)
            .unwrap();
    }
    h.create_policy(
        "fleet",
        serde_json::json!({
            "targetRef": null,
            "targetSelector": {"matchLabels": {"tier": "web"}},
            "remediation": {"steps": [{"action": "RestartPods", "timeout": "1h"}]}
        }),
    );
    let mut instances: Vec<Instance> = ["op-a", "op-b", "op-c"]
        .into_iter()
        .map(|id| Instance::start(&h, id))
        .collect();
    wait_until("one shard each", PATIENCE, || async {
        instances.iter().all(|i| i.held().len() == 1).then_some(())
    })
    .await;

    // Each instance judges the two workloads of its shard, and no other.
    for instance in &instances {
        let shard = instance.held()[0];
        let mut expected: Vec<String> = workloads
            .iter()
            .filter(|(_, (s, _))| *s == shard)
            .map(|(name, _)| name.clone())
            .collect();
        expected.sort();
        wait_until("each instance judges its shard's workloads", PATIENCE, || async {
            (units_judged(instance, "fleet") == expected).then_some(())
        })
        .await;
    }
    // Three parts of two workloads each, summed into the policy's counts.
    h.wait_state("three parts summed", || {
        let parts = parts(&h, "fleet");
        let fleet = h.policy("fleet")["status"]["fleet"].clone();
        (parts.len() == 3 && parts.values().all(|(n, _)| *n == 2) && fleet["healthy"] == 6).then_some(())
    })
    .await;
    // Steady: nothing changes, nothing is written (by any of the three).
    let status_path = "/apphealthpolicies/fleet/status";
    let writes = h.writes_to(status_path);
    all_probed(&workloads, "two more probe rounds").await;
    all_probed(&workloads, "and another").await;
    assert_eq!(h.writes_to(status_path), writes, "a steady fleet writes nothing");
    let policy = h.policy("fleet");
    let managers: Vec<&str> = policy["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    for shard in 0..SHARDS {
        let manager = format!("apphealth-operator-shard-{shard}");
        assert!(
            managers.contains(&manager.as_str()),
            "{manager} missing in {managers:?}"
        );
    }

    // A workload of one shard fails while a budget holds its eviction: its holder records the
    // step as held, in its part and in the sum.
    let (victim, (victim_shard, victim_app)) = workloads.iter().next().expect("workloads");
    h.server
        .create(serde_json::json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": victim, "namespace": NS},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": victim}}}
        }))
        .unwrap();
    victim_app.set(crate::flaky::Mode::Status(503));
    let record = |h: &Harness| -> Option<Value> {
        let part = h.policy("fleet")["status"]["shards"]
            .as_array()?
            .iter()
            .find(|p| p["shard"] == *victim_shard)?
            .clone();
        part["workloads"]
            .as_array()?
            .iter()
            .find(|w| w["name"] == victim.as_str())
            .cloned()
    };
    // The budget refuses the eviction: the step is held (tried again later), its ladder started.
    let waiting =
        |w: &Value| w["history"][0]["action"] == "RestartPods" && w["history"][0]["result"] == "Held";
    let held = h
        .wait_state(
            "the victim's held restart in its shard's part and in the sum",
            || {
                let summed = h.policy("fleet")["status"]["workloads"]
                    .as_array()?
                    .iter()
                    .any(|w| w["name"] == victim.as_str() && waiting(w));
                let held = record(&h).filter(waiting)?;
                summed.then_some(held)
            },
        )
        .await;

    // Its holder dies: the shard is taken over with its part; the held step is resumed, then
    // finished once when the budget goes.
    let holder = instances
        .iter()
        .position(|i| i.held() == [*victim_shard])
        .expect("a holder of the victim's shard");
    instances.remove(holder).running.kill();
    let new_holder = wait_until("the victim's shard taken over", PATIENCE, || async {
        instances.iter().position(|i| i.held().contains(victim_shard))
    })
    .await;
    wait_until("the new holder judges the victim", PATIENCE, || async {
        units_judged(&instances[new_holder], "fleet")
            .contains(victim)
            .then_some(())
    })
    .await;
    let others: BTreeMap<String, (u32, Flaky)> = workloads
        .iter()
        .filter(|(name, _)| *name != victim)
        .map(|(name, w)| (name.clone(), w.clone()))
        .collect();
    all_probed(&others, "every other workload probed after the takeover").await;
    let resumed = record(&h).expect("the victim's record after the takeover");
    assert_eq!(
        resumed["ladder"]["startedAt"], held["ladder"]["startedAt"],
        "the same ladder, resumed"
    );
    h.server
        .delete("policy/v1", "PodDisruptionBudget", Some(NS), victim)
        .unwrap();
    let done = h
        .wait_state("the held restart finished", || {
            record(&h).filter(|w| w["history"][0]["result"] == "Succeeded")
        })
        .await;
    assert_eq!(
        done["history"][0]["at"], held["history"][0]["at"],
        "the same decision, finished"
    );
    let restarts = done["history"]
        .as_array()
        .map_or(0, |h| h.iter().filter(|r| r["action"] == "RestartPods").count());
    assert_eq!(restarts, 1, "one restart in all: {done}");
    assert!(
        h.server
            .get("v1", "Pod", Some(NS), &format!("{victim}-a"))
            .is_none(),
        "the unhealthy pod was evicted"
    );
    let fleet = h.policy("fleet")["status"]["fleet"].clone();
    assert_eq!(fleet["selected"], 6, "{fleet}");
    for instance in instances {
        instance.stop().await;
    }
}

/// Parts a sharded run left in a policy's status (each applied by its shard's field manager) are
/// removed once the work is no longer shared: the replica applies no part as each shard's manager,
/// and the API server drops what that manager owned. The policy's own counts are its own again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_left_by_a_sharded_run_go_once_the_work_is_not_shared() {
    let mut h = Harness::new(0).await;
    h.add_workload("svc-a").await;
    let mut deployment = h.server.get("apps/v1", "Deployment", Some(NS), "svc-a").unwrap();
    deployment["metadata"]["labels"] = serde_json::json!({"tier": "web"});
    h.server.replace(deployment).unwrap();
    h.create_policy(
        "fleet",
        serde_json::json!({"targetRef": null, "targetSelector": {"matchLabels": {"tier": "web"}}}),
    );
    let policies: kube::Api<apphealth_operator::api::AppHealthPolicy> =
        kube::Api::namespaced(client(&h.server), NS);
    for shard in 0..SHARDS {
        let part = serde_json::json!({
            "apiVersion": "apphealth.io/v1alpha1", "kind": "AppHealthPolicy",
            "status": {"shards": [{"shard": shard, "fleet": {
                "selected": 4, "healthy": 3, "unhealthy": 1, "remediating": 0, "blocked": 0
            }}]}
        });
        let manager = format!("apphealth-operator-shard-{shard}");
        policies
            .patch_status(
                "fleet",
                &kube::api::PatchParams::apply(&manager).force(),
                &kube::api::Patch::Apply(&part),
            )
            .await
            .unwrap();
    }
    assert_eq!(
        h.policy("fleet")["status"]["shards"].as_array().map(Vec::len),
        Some(3)
    );

    h.start_operator(Some(NS));
    let status = h
        .wait_state("the parts gone, the policy's own counts written", || {
            let status = h.policy("fleet")["status"].clone();
            let gone = status
                .get("shards")
                .is_none_or(|p| p.as_array().is_some_and(Vec::is_empty));
            (gone && status["fleet"]["selected"] == 1).then_some(status)
        })
        .await;
    assert_eq!(status["fleet"]["unhealthy"], 0, "{status}");
    let managers: Vec<String> = h.policy("fleet")["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["fieldsV1"]["f:status"]["f:shards"].is_object())
        .filter_map(|m| Some(m["manager"].as_str()?.to_owned()))
        .collect();
    assert!(managers.is_empty(), "no manager owns a part: {managers:?}");
}
