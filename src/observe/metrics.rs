//! Resource use from the metrics.k8s.io API (metrics-server), read by list, never watched.

use std::{collections::BTreeMap, future::Future, pin::Pin};

use kube::{
    Api, Client,
    api::ListParams,
    core::{ApiResource, DynamicObject, GroupVersionKind},
};

use super::signals::UsageSource;
use crate::api::quantity;
use crate::observation::{ContainerUsage, Usage};

/// Reads PodMetrics through the Kubernetes API.
#[derive(Clone)]
pub struct MetricsApi {
    client: Client,
    resource: ApiResource,
}

impl MetricsApi {
    pub fn new(client: Client) -> Self {
        let gvk = GroupVersionKind::gvk("metrics.k8s.io", "v1beta1", "PodMetrics");
        Self {
            client,
            resource: ApiResource::from_gvk_with_plural(&gvk, "pods"),
        }
    }
}

/// Usage per pod from a PodMetrics list.
pub fn parse_pod_metrics(items: &[DynamicObject]) -> BTreeMap<String, Vec<ContainerUsage>> {
    items
        .iter()
        .filter_map(|item| {
            let pod = item.metadata.name.clone()?;
            let containers = item.data.get("containers")?.as_array()?;
            let usage = containers
                .iter()
                .filter_map(|c| {
                    let usage = c.get("usage")?;
                    Some(ContainerUsage {
                        container: c.get("name")?.as_str()?.to_owned(),
                        memory_bytes: usage
                            .get("memory")
                            .and_then(|q| q.as_str())
                            .and_then(quantity::bytes)
                            .unwrap_or(0),
                        cpu_millis: usage
                            .get("cpu")
                            .and_then(|q| q.as_str())
                            .and_then(quantity::millicores)
                            .unwrap_or(0),
                    })
                })
                .collect();
            Some((pod, usage))
        })
        .collect()
}

impl UsageSource for MetricsApi {
    fn pod_usage<'a>(&'a self, namespace: &'a str) -> Pin<Box<dyn Future<Output = Usage> + Send + 'a>> {
        Box::pin(async move {
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.client.clone(), namespace, &self.resource);
            match api.list(&ListParams::default()).await {
                Ok(list) => Usage::Available(parse_pod_metrics(&list.items)),
                Err(kube::Error::Api(status)) if status.is_not_found() => Usage::Unavailable(
                    "the metrics.k8s.io API is not available (is metrics-server installed?)".into(),
                ),
                Err(kube::Error::Api(status)) if status.is_forbidden() => {
                    Usage::Unavailable("the operator may not read metrics.k8s.io pods (RBAC)".into())
                }
                Err(e) => Usage::Unavailable(format!("reading metrics.k8s.io failed: {e}")),
            }
        })
    }
}
