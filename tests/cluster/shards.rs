//! Three operator processes with the chart's sharding (`sharding.shards=3`) on real Leases: each
//! holds one shard and says so on /metrics; the one holding a workload mid-remediation (its
//! eviction held by a PodDisruptionBudget) is killed, its shard is taken over once the Lease
//! expires, the remediation is finished once (not repeated, not lost), and the other workloads of
//! that shard are probed again within the lease duration. A selector policy's workloads spread over
//! the three: each shard's part of its status is owned by that shard's field manager (as the API
//! server records it), and the replica that takes a shard over remediates its workloads.

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
    selector::{create_fleet, label},
    support::get,
};

const SHARDS: u32 = 3;
/// The chart's lease duration (`--lease-duration-seconds`, default 15), one keeper round (a fifth
/// of it) and the probe period.
const LEASE: Duration = Duration::from_secs(15);
const ROUND: Duration = Duration::from_secs(3);
const PERIOD: Duration = Duration::from_secs(2);

/// Deployment names `<prefix>-<i>` in `namespace`, two in each shard.
fn two_per_shard(namespace: &str, prefix: &str) -> BTreeMap<u32, Vec<String>> {
    let mut by_shard: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for i in 0.. {
        if by_shard.len() == SHARDS as usize && by_shard.values().all(|w| w.len() == 2) {
            break;
        }
        let name = format!("{prefix}-{i}");
        let workloads = by_shard
            .entry(shard_of(namespace, "Deployment", &name, SHARDS))
            .or_default();
        if workloads.len() < 2 {
            workloads.push(name);
        }
    }
    by_shard
}

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
    let by_shard = two_per_shard(&s.ns, "svc");
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

/// The shards' parts of a policy's status: shard → workloads selected in it.
fn parts(policy: &serde_json::Value) -> BTreeMap<u64, u64> {
    policy["status"]["shards"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p["shard"].as_u64()?, p["fleet"]["selected"].as_u64()?)))
        .collect()
}

/// Which field manager owns each shard's part, as the API server records it.
fn part_owners(policy: &serde_json::Value) -> BTreeMap<u64, String> {
    let mut owners = BTreeMap::new();
    for entry in policy["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let Some(parts) = entry["fieldsV1"]["f:status"]["f:shards"].as_object() else {
            continue;
        };
        for key in parts.keys() {
            // k:{"shard":1}
            let shard = key
                .strip_prefix("k:{\"shard\":")
                .and_then(|k| k.strip_suffix('}'))
                .and_then(|k| k.parse().ok());
            if let (Some(shard), Some(manager)) = (shard, entry["manager"].as_str()) {
                owners.insert(shard, manager.to_owned());
            }
        }
    }
    owners
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: make test-cluster"]
async fn a_selector_policys_workloads_spread_over_three_replicas() {
    let install = Install {
        values: vec!["sharding.shards=3".into(), "replicas=3".into()],
        ..Install::default()
    };
    let mut s = Scenario::new("shards-fleet", install).await;
    // Two one-pod workloads in each shard, all labelled tier=web, under one selector policy.
    let by_shard = two_per_shard(&s.ns, "web");
    for name in by_shard.values().flatten() {
        s.deploy(name, 1, json!({})).await;
        label(&s, name, "web").await;
    }
    create_fleet(&s, "fleet").await;
    for _ in 0..SHARDS {
        s.start_operator().await;
    }
    // Each shard's part written by that shard's own field manager, summed into the counts.
    let policy = s
        .wait("three parts of two, summed", || async {
            let policy = s.policy("fleet").await;
            let summed = policy["status"]["fleet"]["healthy"] == 6;
            let split = parts(&policy) == BTreeMap::from([(0, 2), (1, 2), (2, 2)]);
            (summed && split).then_some(policy)
        })
        .await;
    let owners = part_owners(&policy);
    assert_eq!(
        owners,
        (0..u64::from(SHARDS))
            .map(|n| (n, format!("apphealth-operator-shard-{n}")))
            .collect::<BTreeMap<_, _>>(),
        "{}",
        policy["metadata"]["managedFields"]
    );

    // The holder of shard 1 is killed; once its shard is taken over, a workload of that shard
    // fails and is remediated by the new holder (the eviction by Kubernetes, the replacement pod
    // by its Deployment controller), recorded in the shard's part and summed.
    let shard = 1;
    let mut holder = 0;
    for i in 0..SHARDS as usize {
        if held(&s, i).await == [shard] {
            holder = i;
        }
    }
    s.kill_operator(holder).await;
    s.wait("the killed replica's shard taken over", || async {
        for i in (0..SHARDS as usize).filter(|i| *i != holder) {
            if held(&s, i).await.contains(&shard) {
                return Some(());
            }
        }
        None
    })
    .await;
    let victim = &by_shard[&shard][0];
    let victim_pod = s.running_pods(victim).await[0].clone();
    s.app(&victim_pod).set(Mode::Status(503));
    s.wait("the victim's pod evicted and replaced", || async {
        let pods = s.running_pods(victim).await;
        (pods.len() == 1 && pods[0] != victim_pod).then_some(())
    })
    .await;
    let policy = s
        .wait("the restart in the shard's part and in the sum", || async {
            let policy = s.policy("fleet").await;
            let restarted = |w: &serde_json::Value| {
                w["name"] == victim.as_str() && w["history"][0]["action"] == "RestartPods"
            };
            let part = policy["status"]["shards"]
                .as_array()?
                .iter()
                .find(|p| p["shard"] == shard)?
                .clone();
            let in_part = part["workloads"].as_array()?.iter().any(restarted);
            let summed = policy["status"]["workloads"].as_array()?.iter().any(restarted);
            (in_part && summed).then_some(policy)
        })
        .await;
    assert_eq!(policy["status"]["fleet"]["selected"], 6, "{}", policy["status"]);
    assert_eq!(
        part_owners(&policy).get(&u64::from(shard)).map(String::as_str),
        Some("apphealth-operator-shard-1"),
        "the new holder writes the part as the shard's manager"
    );
    s.finish().await;
}

/// Parts a sharded run left (each applied by its shard's field manager) are removed by
/// kube-apiserver once an unsharded operator applies no part as each shard's manager.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local control plane: make test-cluster"]
async fn parts_left_by_a_sharded_run_go_once_the_work_is_not_shared() {
    let mut s = Scenario::new("shards-unshared", Install::default()).await;
    s.deploy("web", 1, json!({})).await;
    label(&s, "web", "web").await;
    create_fleet(&s, "fleet").await;
    for shard in 0..SHARDS {
        let part = json!({
            "apiVersion": "apphealth.io/v1alpha1", "kind": "AppHealthPolicy",
            "status": {"shards": [{"shard": shard, "fleet": {
                "selected": 4, "healthy": 3, "unhealthy": 1, "remediating": 0, "blocked": 0
            }}]}
        });
        let manager = format!("apphealth-operator-shard-{shard}");
        s.policies()
            .patch_status(
                "fleet",
                &kube::api::PatchParams::apply(&manager).force(),
                &kube::api::Patch::Apply(&part),
            )
            .await
            .unwrap();
    }
    assert_eq!(part_owners(&s.policy("fleet").await).len(), SHARDS as usize);

    s.start_operator().await;
    let policy = s
        .wait("the parts gone, the policy's own counts written", || async {
            let policy = s.policy("fleet").await;
            let gone = parts(&policy).is_empty() && part_owners(&policy).is_empty();
            (gone && policy["status"]["fleet"]["selected"] == 1).then_some(policy)
        })
        .await;
    assert_eq!(policy["status"]["fleet"]["unhealthy"], 0, "{}", policy["status"]);
    s.finish().await;
}
