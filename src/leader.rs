//! Leader election on a `coordination.k8s.io` Lease, with the kube-lease-manager crate (kube 5,
//! server-side apply, configurable duration and grace): only the leader probes, acts and writes
//! status; a standby waits for the lease and takes over within its duration, or at once when the
//! leader releases it on shutdown.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::{sync::watch, task::JoinHandle};

/// Where the lease lives and who this replica is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderElection {
    /// The operator's namespace (`POD_NAMESPACE` from the downward API, or `--lease-namespace`).
    pub namespace: String,
    pub lease_name: String,
    /// This replica's identity: the `--instance` name (the pod name in a cluster).
    pub identity: String,
    /// How long a lease holds without renewal; a standby takes over after it at the latest.
    pub duration: Duration,
    /// How long before expiry the holder renews.
    pub grace: Duration,
}

impl LeaderElection {
    /// The defaults: lease `apphealth-operator`, 15s, renewed 5s before it expires.
    pub fn new(namespace: impl Into<String>, identity: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            lease_name: "apphealth-operator".into(),
            identity: identity.into(),
            duration: Duration::from_secs(15),
            grace: Duration::from_secs(5),
        }
    }
}

/// The lease, held.
pub struct Leadership {
    state: watch::Receiver<bool>,
    task: JoinHandle<kube_lease_manager::Result<LeaseManager>>,
}

#[derive(Debug, thiserror::Error)]
#[error("leader election on Lease {namespace}/{name}: {message}")]
pub struct LeaseError {
    namespace: String,
    name: String,
    message: String,
}

impl LeaderElection {
    fn error(&self, message: impl std::fmt::Display) -> LeaseError {
        LeaseError {
            namespace: self.namespace.clone(),
            name: self.lease_name.clone(),
            message: message.to_string(),
        }
    }

    /// Waits until this replica holds the lease.
    pub async fn acquire(&self, client: Client) -> Result<Leadership, LeaseError> {
        let seconds = |d: Duration| d.as_secs().max(1);
        let (duration, grace) = (seconds(self.duration), seconds(self.grace));
        if grace >= duration {
            return Err(self.error("the grace period must be shorter than the lease duration"));
        }
        let manager = LeaseManagerBuilder::new(client, &self.lease_name)
            .with_namespace(&self.namespace)
            .with_identity(&self.identity)
            .with_duration(duration)
            .with_grace(grace)
            .build()
            .await
            .map_err(|e| self.error(e))?;
        let (mut state, task) = manager.watch().await;
        tracing::info!(identity = %self.identity, lease = %self.lease_name, "waiting to lead");
        state
            .wait_for(|leading| *leading)
            .await
            .map_err(|_| self.error("the lease manager stopped"))?;
        tracing::info!(identity = %self.identity, "leading");
        Ok(Leadership { state, task })
    }
}

impl Leadership {
    /// Resolves when the lease is lost (not renewed in time, taken over).
    pub fn lost(&self) -> impl std::future::Future<Output = ()> + Send + Sync + 'static {
        let mut state = self.state.clone();
        async move {
            let _ = state.wait_for(|leading| !*leading).await;
        }
    }

    /// Whether the lease is still held.
    pub fn held(&self) -> bool {
        *self.state.borrow()
    }

    /// Gives the lease up, so a standby takes over at once.
    pub async fn release(self) {
        drop(self.state);
        match self.task.await {
            Ok(Ok(_)) => tracing::info!("lease released"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not release the lease; a standby takes over when it expires")
            }
            Err(e) => tracing::warn!(error = %e, "the lease task failed"),
        }
    }
}
