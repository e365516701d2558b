//! Each component's command line, as kwokctl's binary runtime and controller-runtime's envtest run
//! them: plain processes bound to 127.0.0.1 on free ports, talking to each other over loopback.

use std::path::{Path, PathBuf};

use crate::{Layout, pki};

/// The components, in start order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    Etcd,
    KubeApiserver,
    KubeControllerManager,
    KubeScheduler,
    Kwok,
}

impl Component {
    pub const ALL: [Component; 5] = [
        Component::Etcd,
        Component::KubeApiserver,
        Component::KubeControllerManager,
        Component::KubeScheduler,
        Component::Kwok,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Component::Etcd => "etcd",
            Component::KubeApiserver => "kube-apiserver",
            Component::KubeControllerManager => "kube-controller-manager",
            Component::KubeScheduler => "kube-scheduler",
            Component::Kwok => "kwok",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// The loopback ports, each chosen free when the cluster starts.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
pub struct Ports {
    pub etcd: u16,
    pub etcd_peer: u16,
    pub apiserver: u16,
    pub controller_manager: u16,
    pub scheduler: u16,
    /// kwok's kubelet endpoint (logs, exec), for every node.
    pub kubelet: u16,
}

impl Ports {
    /// Six distinct free ports, taken below the kernel's ephemeral range
    /// (`net.ipv4.ip_local_port_range`), where no outgoing connection takes its source port: a
    /// port chosen free there stays free until its component binds it, even while thousands of
    /// probes open connections (an ephemeral port can be taken in between). The search starts at
    /// a random port, so that two checkouts starting at once seldom try the same ones; each port
    /// is bound to be sure it is free. Falls back to ports the kernel picks if none is free there.
    pub fn free() -> std::io::Result<Self> {
        let (below, end) = (FIRST_PORT, ephemeral_start());
        let span = end.saturating_sub(below);
        let offset = random_u16(span);
        // All held at once, so that no two are the same.
        let mut listeners = Vec::with_capacity(6);
        for i in 0..span {
            if listeners.len() == 6 {
                break;
            }
            let port = below + (offset + i) % span;
            if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) {
                listeners.push(listener);
            }
        }
        while listeners.len() < 6 {
            listeners.push(std::net::TcpListener::bind(("127.0.0.1", 0))?);
        }
        let port = |i: usize| listeners[i].local_addr().map(|a| a.port());
        Ok(Self {
            etcd: port(0)?,
            etcd_peer: port(1)?,
            apiserver: port(2)?,
            controller_manager: port(3)?,
            scheduler: port(4)?,
            kubelet: port(5)?,
        })
    }
}

/// The lowest port [`Ports::free`] takes (below it are the well-known and registered services
/// people run by hand).
const FIRST_PORT: u16 = 10_000;

/// The first port of the kernel's ephemeral range (32768 where it cannot be read).
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| parse_port_range_start(&s))
        .unwrap_or(32_768)
}

fn parse_port_range_start(text: &str) -> Option<u16> {
    text.split_whitespace().next()?.parse().ok()
}

/// A random number below `span` (0 when `span` is 0), from the standard library's random hash
/// keys: enough to spread concurrent starts, no random-number crate needed.
fn random_u16(span: u16) -> u16 {
    use std::hash::{BuildHasher, Hasher};
    if span == 0 {
        return 0;
    }
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    (hasher.finish() % u64::from(span)) as u16
}

/// The address the apiserver advertises as the `kubernetes` Service's endpoint. It must not be
/// loopback; with `--endpoint-reconciler-type=none` nothing is ever sent to it. 192.0.2.1 is
/// TEST-NET-1 (RFC 5737): documentation only, never routed, never this machine's.
pub const ADVERTISE_ADDRESS: &str = "192.0.2.1";

/// The Service network (ClusterIPs are allocated from it; nothing routes them here).
pub const SERVICE_CIDR: &str = "10.96.0.0/16";

pub fn program(bin: &Path, component: Component) -> PathBuf {
    bin.join(component.name())
}

pub fn args(component: Component, layout: &Layout, ports: &Ports, stages: &[PathBuf]) -> Vec<String> {
    let pki = &layout.pki;
    let p = |path: PathBuf| path.display().to_string();
    let mut a: Vec<String> = match component {
        Component::Etcd => vec![
            "--name=local".into(),
            format!("--data-dir={}", p(layout.data.join("etcd"))),
            format!("--listen-client-urls=http://127.0.0.1:{}", ports.etcd),
            format!("--advertise-client-urls=http://127.0.0.1:{}", ports.etcd),
            format!("--listen-peer-urls=http://127.0.0.1:{}", ports.etcd_peer),
            format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{}",
                ports.etcd_peer
            ),
            format!("--initial-cluster=local=http://127.0.0.1:{}", ports.etcd_peer),
            // A throw-away cluster: durability is not worth an fsync per write.
            "--unsafe-no-fsync=true".into(),
            "--log-level=warn".into(),
        ],
        Component::KubeApiserver => vec![
            format!("--etcd-servers=http://127.0.0.1:{}", ports.etcd),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={}", ports.apiserver),
            format!("--advertise-address={ADVERTISE_ADDRESS}"),
            "--endpoint-reconciler-type=none".into(),
            format!("--cert-dir={}", p(pki.dir.clone())),
            format!("--tls-cert-file={}", p(pki.cert("apiserver"))),
            format!("--tls-private-key-file={}", p(pki.key("apiserver"))),
            format!("--client-ca-file={}", p(pki.ca())),
            "--authorization-mode=RBAC".into(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!(
                "--service-account-key-file={}",
                p(pki.service_account_public_key())
            ),
            format!(
                "--service-account-signing-key-file={}",
                p(pki.service_account_key())
            ),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            format!(
                "--kubelet-client-certificate={}",
                p(pki.cert(pki::APISERVER_KUBELET_CLIENT.file))
            ),
            format!(
                "--kubelet-client-key={}",
                p(pki.key(pki::APISERVER_KUBELET_CLIENT.file))
            ),
            format!("--kubelet-certificate-authority={}", p(pki.ca())),
            "--kubelet-preferred-address-types=InternalIP".into(),
            "--allow-privileged=true".into(),
            "--profiling=false".into(),
        ],
        Component::KubeControllerManager => {
            let kubeconfig = p(layout.kubeconfig_for(pki::CONTROLLER_MANAGER));
            vec![
                format!("--kubeconfig={kubeconfig}"),
                format!("--authentication-kubeconfig={kubeconfig}"),
                format!("--authorization-kubeconfig={kubeconfig}"),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={}", ports.controller_manager),
                "--leader-elect=false".into(),
                // Each controller under a ServiceAccount of its own, as in a kubeadm cluster.
                "--use-service-account-credentials=true".into(),
                format!(
                    "--service-account-private-key-file={}",
                    p(pki.service_account_key())
                ),
                format!("--root-ca-file={}", p(pki.ca())),
                format!("--service-cluster-ip-range={SERVICE_CIDR}"),
                // A test cluster makes pods by the thousand at times (the bench); the default
                // client limit (20/s) would make that take minutes.
                "--kube-api-qps=500".into(),
                "--kube-api-burst=1000".into(),
                "--profiling=false".into(),
            ]
        }
        Component::KubeScheduler => {
            let kubeconfig = p(layout.kubeconfig_for(pki::SCHEDULER));
            vec![
                format!("--kubeconfig={kubeconfig}"),
                format!("--authentication-kubeconfig={kubeconfig}"),
                format!("--authorization-kubeconfig={kubeconfig}"),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={}", ports.scheduler),
                "--leader-elect=false".into(),
                "--kube-api-qps=500".into(),
                "--kube-api-burst=1000".into(),
                "--profiling=false".into(),
            ]
        }
        Component::Kwok => vec![
            format!("--kubeconfig={}", p(layout.kubeconfig_for(pki::ADMIN))),
            "--manage-all-nodes=false".into(),
            format!(
                "--manage-nodes-with-annotation-selector={}={}",
                crate::kwok::NODE_ANNOTATION,
                "fake"
            ),
            // Nodes without a podCIDR of their own; the nodes made here each have one.
            "--cidr=127.1.0.0/16".into(),
            "--node-ip=127.0.0.1".into(),
            format!("--node-port={}", ports.kubelet),
            format!("--server-address=127.0.0.1:{}", ports.kubelet),
            format!("--tls-cert-file={}", p(pki.cert("kwok"))),
            format!("--tls-private-key-file={}", p(pki.key("kwok"))),
            "--node-lease-duration-seconds=40".into(),
        ],
    };
    if component == Component::Kwok {
        a.extend(stages.iter().map(|s| format!("--config={}", p(s.clone()))));
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_and_below_the_ephemeral_range() {
        let ports = Ports::free().unwrap();
        let all = [
            ports.etcd,
            ports.etcd_peer,
            ports.apiserver,
            ports.controller_manager,
            ports.scheduler,
            ports.kubelet,
        ];
        let distinct: std::collections::BTreeSet<u16> = all.into_iter().collect();
        assert_eq!(distinct.len(), 6, "{all:?}");
        for port in all {
            assert!(
                (FIRST_PORT..ephemeral_start()).contains(&port),
                "{port} in {all:?}"
            );
            // Free: it can be bound now.
            std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        }
    }

    #[test]
    fn port_range_start_is_parsed() {
        assert_eq!(parse_port_range_start("32768\t60999\n"), Some(32768));
        assert_eq!(parse_port_range_start("1024 65535"), Some(1024));
        assert_eq!(parse_port_range_start(""), None);
        assert_eq!(parse_port_range_start("x 1"), None);
    }

    #[test]
    fn random_offset_stays_in_span() {
        assert_eq!(random_u16(0), 0);
        for _ in 0..100 {
            assert!(random_u16(7) < 7);
        }
    }
}
