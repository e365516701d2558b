//! What a cluster-wide scope adds to serve ClusterAppHealthPolicies: whether this install serves
//! them at all, and the probe tasks' nudges routed to the controller of the policy they belong to.

use futures::stream;
use kube::{Api, Client, api::ListParams, runtime::reflector};
use tokio::sync::mpsc;

use super::{PolicyRef, unit};
use crate::api::watched::WatchedCluster;

/// Whether this cluster-wide install serves ClusterAppHealthPolicies: their CRD is installed and
/// the operator may list them and namespaces. If not (an older chart's CRDs or rights), it says so
/// and serves AppHealthPolicies as before.
pub(super) async fn serves_cluster_policies(client: &Client) -> bool {
    let probe = ListParams::default().limit(1);
    let policies: Api<WatchedCluster> = Api::all(client.clone());
    let namespaces: Api<kube::core::PartialObjectMeta<k8s_openapi::api::core::v1::Namespace>> =
        Api::all(client.clone());
    let problem = match policies.list_metadata(&probe).await {
        Ok(_) => match namespaces.list(&probe).await {
            Ok(_) => return true,
            Err(e) => e,
        },
        Err(e) => e,
    };
    tracing::warn!(
        error = %problem,
        "ClusterAppHealthPolicies are not served: their CRD is not installed or the operator may not \
         list them and namespaces (install this version's CRDs and chart to serve them)"
    );
    false
}

/// What a channel receives, as a stream.
fn receive<T: Send + 'static>(
    rx: mpsc::UnboundedReceiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
}

/// Probe tasks' nudges, to the policy each belongs to: a namespaced policy's to its controller, a
/// cluster policy's (a key of no namespace) to the cluster policies' controller.
pub(super) fn route_nudges(
    mut rx: mpsc::UnboundedReceiver<PolicyRef>,
) -> (
    impl futures::Stream<Item = PolicyRef> + Send + 'static,
    impl futures::Stream<Item = reflector::ObjectRef<WatchedCluster>> + Send + 'static,
) {
    let (ns_tx, ns_rx) = mpsc::unbounded_channel::<PolicyRef>();
    let (cluster_tx, cluster_rx) = mpsc::unbounded_channel::<reflector::ObjectRef<WatchedCluster>>();
    tokio::spawn(async move {
        // Until every probe task is gone; a controller that stopped first is no longer told.
        while let Some(key) = rx.recv().await {
            let policy = unit::policy(&key);
            if unit::is_cluster(&policy) {
                let _ = cluster_tx.send(reflector::ObjectRef::new(&policy.name));
            } else {
                let _ = ns_tx.send(policy);
            }
        }
    });
    (receive(ns_rx), receive(cluster_rx))
}
