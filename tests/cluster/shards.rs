//! Three operator processes with the chart's sharding (`sharding.shards=3`) on real Leases: each
//! holds one shard and says so on /metrics; the one holding a workload mid-remediation (its
//! eviction held by a PodDisruptionBudget) is killed, its shard is taken over once the Lease
//! expires, the remediation is finished once (not repeated, not lost), and the other workloads of
//! that shard are probed again within the lease duration.

use std::{collections::BTreeMap, time::Duration};

use apphealth_operator::fleet::shard::shard_of;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::{
    Api,
    api::{DeleteParams, PostParams},
};
use serde_json::json;

use crate::{
    flaky::Mode,
    scenario::{Install, Scenario},
    support::get,
};

const SHARDS: u32 = 3;
/// The chart's lease duration (`--lease-duration-seconds`, default 15), one keeper round (a fifth
/// of it) and the probe period.
const LEASE: Duration = Duration::from_secs(15);
const ROUND: Duration = Duration::from_secs(3);
const PERIOD: Duration = Duration::from_secs(2);

/// The shards operator `i` says it holds.
async fn held(s: &Scenario, i: usize) -> Vec<u32> {
    let Some((200, text)) = get(&s.operator(i).http.to_string(), "/metrics").await else {
        return Vec::new();
    };
    (0..SHARDS)
        .filter(|n| text.contains(&format!("apphealth_shard_held{{shard=\"{n}\"}} 1")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: make test-cluster"]
async fn three_replicas_share_the_shards_and_one_killed_mid_remediation_loses_nothing() {
    let install = Install {
        values: vec!["sharding.shards=3".into(), "replicas=3".into()],
        ..Install::default()
    };
    let mut s = Scenario::new("shards", install).await;
    // Two one-pod workloads in each shard, each with a policy.
    let mut by_shard: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for i in 0.. {
        if by_shard.len() == SHARDS as usize && by_shard.values().all(|w| w.len() == 2) {
            break;
        }
        let name = format!("svc-{i}");
        let shard = shard_of(&s.ns, "Deployment", &name, SHARDS);
        let workloads = by_shard.entry(shard).or_default();
        if workloads.len() < 2 {
            workloads.push(name);
        }
    }
    let restart = json!({"remediation": {"maxUnhealthyPercent": 100, "steps": [
        {"action": "RestartPods", "timeout": "1h"}
    ]}});
    for name in by_shard.values().flatten() {
        s.deploy(name, 1, json!({})).await;
        s.create_policy(name, name, restart.clone()).await;
    }
    for _ in 0..SHARDS {
        s.start_operator().await;
    }
    s.wait("one shard each", || async {
        let mut all = Vec::new();
        for i in 0..SHARDS as usize {
            let shards = held(&s, i).await;
            if shards.len() != 1 {
                return None;
            }
            all.extend(shards);
        }
        all.sort();
        (all == [0, 1, 2]).then_some(())
    })
    .await;
    for name in by_shard.values().flatten() {
        s.wait_condition(name, "Healthy", "True", None).await;
    }

    // The victim's eviction is held by its budget: its holder is killed mid-remediation (SIGKILL).
    let victim_shard = 0;
    let (victim, bystander) = (&by_shard[&victim_shard][0], &by_shard[&victim_shard][1]);
    let mut holder = 0;
    for i in 0..SHARDS as usize {
        if held(&s, i).await == [victim_shard] {
            holder = i;
        }
    }
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(s.client.clone(), &s.ns);
    let budget = json!({"metadata": {"name": victim},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": victim}}}});
    budgets
        .create(&PostParams::default(), &serde_json::from_value(budget).unwrap())
        .await
        .unwrap();
    let victim_pod = s.running_pods(victim).await[0].clone();
    s.app(&victim_pod).set(Mode::Status(503));
    let held_record = s.wait_record(victim, "RestartPods", "Held").await;
    s.kill_operator(holder).await;
    let killed = tokio::time::Instant::now();
    let bystander_pod = s.running_pods(bystander).await[0].clone();
    let hits = s.app(&bystander_pod).hits();

    // Another replica takes the shard over, and probes its workloads again.
    let new_holder = s
        .wait("the killed replica's shard taken over", || async {
            for i in (0..SHARDS as usize).filter(|i| *i != holder) {
                if held(&s, i).await.contains(&victim_shard) {
                    return Some(i);
                }
            }
            None
        })
        .await;
    s.wait("the bystander probed again", || async {
        (s.app(&bystander_pod).hits() > hits).then_some(())
    })
    .await;
    let gap = killed.elapsed();
    assert!(
        gap <= LEASE + ROUND + PERIOD,
        "the bystander went {gap:?} without a probe (lease {LEASE:?})"
    );
    let mut shards: Vec<u32> = Vec::new();
    for i in (0..SHARDS as usize).filter(|i| *i != holder) {
        shards.extend(held(&s, i).await);
    }
    shards.sort();
    assert_eq!(
        shards,
        [0, 1, 2],
        "the survivors hold every shard ({new_holder} took {victim_shard})"
    );

    // The budget goes: the eviction decided before the kill happens once, by the new holder.
    budgets.delete(victim, &DeleteParams::default()).await.unwrap();
    let done = s.wait_record(victim, "RestartPods", "Succeeded").await;
    assert_eq!(done["at"], held_record["at"], "the same decision, finished");
    let policy = s.policy(victim).await;
    let history = policy["status"]["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "one action in all: {history:?}");
    let running = s.running_pods(victim).await;
    assert!(
        !running.contains(&victim_pod),
        "the unhealthy pod was evicted: {running:?}"
    );
    eprintln!("shards: takeover gap {gap:?}");
    s.finish().await;
}
