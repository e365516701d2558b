//! Where the operator may connect. Every connection to an address that a policy, a pod or a Secret
//! names — probes and webhooks — is opened by [`Reach::connect`], which resolves the host itself and
//! checks each resolved address just before connecting to exactly that address: a name that
//! resolves elsewhere on the next lookup (DNS rebinding) is checked again on the next connect.
//!
//! Never reached: the link-local ranges (169.254.0.0/16 and fe80::/10, where cloud metadata
//! services answer, and the other known metadata addresses), the unspecified and "this network"
//! addresses (connecting to 0.0.0.0 reaches this host), multicast and broadcast, and the
//! Kubernetes API server's own address and port. Loopback only with `--allow-loopback` (tests and
//! demos run "pods" on 127.0.0.0/8). IPv4-mapped IPv6 addresses (`::ffff:169.254.169.254`) are
//! judged as the IPv4 address they carry, and hosts written the way `inet_aton` reads them
//! (`2852039166`, `0251.0376.0251.0376`, `0xa9fea9fe`, `169.254.43518`) as the address they
//! spell, whatever the system resolver would make of them.

use std::{
    collections::BTreeMap,
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use tokio::net::TcpStream;

/// Why an address is never connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 0.0.0.0/8 and `::`: on Linux a connection to them reaches this host.
    Unspecified,
    /// 127.0.0.0/8 and `::1`: allowed only with `--allow-loopback`.
    Loopback,
    /// 169.254.0.0/16 and fe80::/10.
    LinkLocal,
    /// A cloud metadata service outside the link-local ranges.
    CloudMetadata,
    Multicast,
    Broadcast,
    /// The Kubernetes API server's address and port.
    ApiServer,
}

impl Refusal {
    /// What an address refused for this reason is, for people.
    pub fn what(self) -> &'static str {
        match self {
            Self::Unspecified => "the unspecified address (it reaches the operator's own host)",
            Self::Loopback => "loopback",
            Self::LinkLocal => "link-local (cloud metadata services answer there)",
            Self::CloudMetadata => "a cloud metadata service",
            Self::Multicast => "multicast",
            Self::Broadcast => "broadcast",
            Self::ApiServer => "the Kubernetes API server",
        }
    }
}

/// AWS's IPv6 instance metadata endpoint.
const AWS_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);
/// Alibaba Cloud's metadata service (other clouds answer on 169.254.169.254).
const ALIBABA_METADATA: Ipv4Addr = Ipv4Addr::new(100, 100, 100, 200);

/// The IPv4 address an IPv6 one carries and is routed to: IPv4-mapped (`::ffff:a.b.c.d`) and the
/// NAT64 well-known prefix (`64:ff9b::a.b.c.d`).
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = v6.segments();
    (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0]).then(|| {
        let [a, b] = s[6].to_be_bytes();
        let [c, d] = s[7].to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    })
}

/// `ip` as it is compared: an IPv4-mapped IPv6 address as its IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Why `ip` must not be connected to, whatever the flags; None for an ordinary address. Loopback
/// is reported too: whether it is allowed is [`Reach`]'s business.
pub fn classify(ip: IpAddr) -> Option<Refusal> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => classify_v4(v4),
            None => classify_v6(v6),
        },
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Refusal> {
    if ip.octets()[0] == 0 {
        Some(Refusal::Unspecified)
    } else if ip.is_loopback() {
        Some(Refusal::Loopback)
    } else if ip.is_link_local() {
        Some(Refusal::LinkLocal)
    } else if ip == ALIBABA_METADATA {
        Some(Refusal::CloudMetadata)
    } else if ip.is_multicast() {
        Some(Refusal::Multicast)
    } else if ip.is_broadcast() {
        Some(Refusal::Broadcast)
    } else {
        None
    }
}

fn classify_v6(ip: Ipv6Addr) -> Option<Refusal> {
    if ip.is_unspecified() {
        Some(Refusal::Unspecified)
    } else if ip.is_loopback() {
        Some(Refusal::Loopback)
    } else if ip.segments()[0] & 0xffc0 == 0xfe80 {
        Some(Refusal::LinkLocal)
    } else if ip == AWS_METADATA_V6 {
        Some(Refusal::CloudMetadata)
    } else if ip.is_multicast() {
        Some(Refusal::Multicast)
    } else {
        None
    }
}

/// An IPv4 address written any way `inet_aton` accepts: one to four parts separated by dots, each
/// decimal, octal (a leading 0) or hexadecimal (0x), the last filling the remaining bytes
/// (`127.1`, `169.254.43518`, `2852039166`, `0xa9.0376.43518`). A single trailing dot is allowed,
/// as URL parsers allow it. None for anything else, including names.
pub fn parse_ipv4(host: &str) -> Option<Ipv4Addr> {
    let host = host.strip_suffix('.').unwrap_or(host);
    let parts: Vec<u32> = host.split('.').map(number).collect::<Option<_>>()?;
    let (last, leading) = parts.split_last()?;
    if leading.len() > 3 || leading.iter().any(|p| *p > 0xff) {
        return None;
    }
    let rest_bits = 32 - 8 * u32::try_from(leading.len()).ok()?;
    if rest_bits < 32 && *last >> rest_bits != 0 {
        return None;
    }
    let high = leading
        .iter()
        .enumerate()
        .fold(0u32, |acc, (i, p)| acc | p << (24 - 8 * i));
    Some(Ipv4Addr::from(high | last))
}

/// One part of an `inet_aton` address: decimal, octal with a leading 0, hexadecimal with 0x.
fn number(part: &str) -> Option<u32> {
    let (digits, radix) = if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
        (hex, 16)
    } else if part.len() > 1 && part.starts_with('0') {
        (&part[1..], 8)
    } else {
        (part, 10)
    };
    // "0x" alone is 0 to inet_aton; an empty part otherwise is not a number.
    if digits.is_empty() {
        return (radix == 16).then_some(0);
    }
    if !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(digits, radix).ok()
}

/// The address a host stands for without asking a resolver: an IPv4 or IPv6 address (brackets
/// allowed) or an IPv4 address in an `inet_aton` spelling. None for a name.
pub fn literal(host: &str) -> Option<IpAddr> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse().ok().or_else(|| parse_ipv4(bare).map(IpAddr::V4))
}

/// An address the operator will not connect to, and why. Shows the address, never a host name (a
/// webhook's host is part of a URL kept in a Secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub addr: SocketAddr,
    pub why: Refusal,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ip = canonical(self.addr.ip());
        match self.why {
            Refusal::ApiServer => write!(
                f,
                "refused: {} is {}; the operator never connects to it",
                SocketAddr::new(ip, self.addr.port()),
                self.why.what()
            ),
            Refusal::Loopback => write!(
                f,
                "refused: {ip} is loopback; the operator connects to it only with --allow-loopback"
            ),
            why => write!(
                f,
                "refused: {ip} is {}; the operator never connects to it",
                why.what()
            ),
        }
    }
}

/// Why a connection was not made.
#[derive(Debug)]
pub enum Unreachable {
    /// The deny-list refused an address the host stands for.
    Refused(Refused),
    /// The name did not resolve (the error never names it).
    Unresolved(std::io::Error),
    /// Connecting failed.
    Connect(std::io::Error),
}

impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused(r) => r.fmt(f),
            Self::Unresolved(e) => write!(f, "name resolution failed: {e}"),
            Self::Connect(e) => f.write_str(&describe_io(e)),
        }
    }
}

impl std::error::Error for Unreachable {}

/// What the operator may connect to: everything but what [`classify`] refuses and the API
/// server's own addresses, plus loopback when allowed. Cheap to clone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reach {
    allow_loopback: bool,
    /// The API server's (address, port) pairs, IPv4-mapped addresses as IPv4. Denied by socket
    /// address rather than by IP: the API server's IP may be a node's, whose other ports (a pod on
    /// the host network) are fair to probe, and in tests it is 127.0.0.1 beside the "pods".
    api_server: Arc<[SocketAddr]>,
    /// Names resolved from this table instead of the system resolver (tests: no DNS query leaves
    /// the machine, and a name can be made not to resolve); None: the system resolver.
    hosts: Option<Arc<BTreeMap<String, Vec<IpAddr>>>>,
}

impl Reach {
    pub fn new(allow_loopback: bool, api_server: impl IntoIterator<Item = SocketAddr>) -> Self {
        Self {
            allow_loopback,
            api_server: api_server
                .into_iter()
                .map(|a| SocketAddr::new(canonical(a.ip()), a.port()))
                .collect(),
            hosts: None,
        }
    }

    /// Resolves names from `hosts` only: a name not in it does not resolve.
    pub fn with_hosts<S: Into<String>>(self, hosts: impl IntoIterator<Item = (S, Vec<IpAddr>)>) -> Self {
        Self {
            hosts: Some(Arc::new(hosts.into_iter().map(|(k, v)| (k.into(), v)).collect())),
            ..self
        }
    }

    /// Loopback allowed, no API server known: for tests and `check`, which probes from a person's
    /// own machine what that person could reach anyway.
    pub fn with_loopback() -> Self {
        Self::new(true, [])
    }

    pub fn allows_loopback(&self) -> bool {
        self.allow_loopback
    }

    /// Whether the operator may connect to `addr`.
    pub fn check(&self, addr: SocketAddr) -> Result<(), Refused> {
        let ip = canonical(addr.ip());
        let why = if self.api_server.contains(&SocketAddr::new(ip, addr.port())) {
            Some(Refusal::ApiServer)
        } else {
            classify(ip).filter(|r| !(*r == Refusal::Loopback && self.allow_loopback))
        };
        why.map_or(Ok(()), |why| Err(Refused { addr, why }))
    }

    /// The check of a host that is an address (in any spelling), without resolving anything;
    /// None for a name, which only [`Reach::connect`] can judge.
    pub fn check_literal(&self, host: &str, port: u16) -> Option<Result<(), Refused>> {
        literal(host).map(|ip| self.check(SocketAddr::new(ip, port)))
    }

    /// The addresses `host` stands for, every one allowed: a name that resolves to any refused
    /// address is refused as a whole.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Unreachable> {
        let addrs: Vec<SocketAddr> = match literal(host) {
            Some(ip) => vec![SocketAddr::new(ip, port)],
            None => match &self.hosts {
                Some(table) => table
                    .get(host)
                    .ok_or_else(|| {
                        Unreachable::Unresolved(std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            "no such host",
                        ))
                    })?
                    .iter()
                    .map(|ip| SocketAddr::new(*ip, port))
                    .collect(),
                None => tokio::net::lookup_host((host, port))
                    .await
                    .map_err(Unreachable::Unresolved)?
                    .collect(),
            },
        };
        if let Some(refused) = addrs.iter().find_map(|a| self.check(*a).err()) {
            return Err(Unreachable::Refused(refused));
        }
        Ok(addrs)
    }

    /// Connects to `host` (an address or a name) on `port`: resolves it, checks every address, and
    /// connects to the checked addresses in turn — the only way the operator opens a connection to
    /// an address it was told about.
    pub async fn connect(&self, host: &str, port: u16) -> Result<TcpStream, Unreachable> {
        let mut last = None;
        for addr in self.resolve(host, port).await? {
            match TcpStream::connect(addr).await {
                Ok(stream) => return Ok(stream),
                Err(e) => last = Some(e),
            }
        }
        Err(Unreachable::Connect(last.unwrap_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "the name has no address")
        })))
    }
}

/// Where the API server listens, as (host, port) pairs to resolve: the host and port of the kube
/// configuration's URL, and in a pod the `kubernetes` Service's address from the environment.
pub fn api_server_endpoints(
    cluster_url: &http::Uri,
    service_host: Option<&str>,
    service_port: Option<&str>,
) -> Vec<(String, u16)> {
    let mut endpoints = Vec::new();
    if let Some(host) = cluster_url.host() {
        let https = cluster_url.scheme_str() != Some("http");
        let port = cluster_url.port_u16().unwrap_or(if https { 443 } else { 80 });
        endpoints.push((
            host.trim_start_matches('[').trim_end_matches(']').to_owned(),
            port,
        ));
    }
    if let (Some(host), Some(port)) = (service_host, service_port.and_then(|p| p.parse().ok())) {
        endpoints.push((host.to_owned(), port));
    }
    endpoints
}

/// The API server's socket addresses, resolved once at startup. A name that does not resolve is
/// skipped with a warning.
pub async fn api_server_addresses(endpoints: &[(String, u16)]) -> Vec<SocketAddr> {
    let mut addrs = Vec::new();
    for (host, port) in endpoints {
        match literal(host) {
            Some(ip) => addrs.push(SocketAddr::new(ip, *port)),
            None => match tokio::net::lookup_host((host.as_str(), *port)).await {
                Ok(found) => addrs.extend(found),
                Err(e) => {
                    tracing::warn!(host = %host, error = %e, "the API server's name does not resolve; its address is not on the deny-list")
                }
            },
        }
    }
    addrs.sort();
    addrs.dedup();
    addrs
}

/// A connection's I/O error for people: "connection refused", "connection reset", ….
pub fn describe_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::ConnectionReset => "connection reset".into(),
        std::io::ErrorKind::ConnectionAborted => "connection aborted".into(),
        std::io::ErrorKind::UnexpectedEof => "connection closed before a response".into(),
        _ => format!("I/O error: {e}"),
    }
}

#[cfg(test)]
mod tests;
