//! Names resolved the way the policy sees them: one lookup whose answers are judged and then
//! connected to, so a name cannot pass the check with one address and be reached at another
//! (DNS rebinding). Resolution uses `network.nameservers`, else the system's configuration
//! (/etc/resolv.conf and /etc/hosts).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use hickory_resolver::TokioAsyncResolver;

use super::policy::{Policy, Refusal, Verdict};

/// How long a connection attempt to one address may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a destination cannot be reached.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Blocked {
    #[error("refused by the network policy: {0}")]
    Refused(Refusal),
    #[error("{0}")]
    Unreachable(String),
}

/// The policy and the resolver it resolves names with.
#[derive(Clone)]
pub struct Checker {
    pub policy: Arc<Policy>,
    resolver: Arc<TokioAsyncResolver>,
}

impl Checker {
    pub fn new(policy: Policy) -> Result<Self> {
        let resolver = if policy.nameservers.is_empty() {
            TokioAsyncResolver::tokio_from_system_conf().context("reading the system's DNS configuration (/etc/resolv.conf)")?
        } else {
            // Grouped by port: each group is one set of plain DNS servers (UDP, then TCP).
            let mut by_port: BTreeMap<u16, Vec<IpAddr>> = BTreeMap::new();
            for ns in &policy.nameservers {
                let addr = parse_nameserver(ns)?;
                by_port.entry(addr.port()).or_default().push(addr.ip());
            }
            let mut group = NameServerConfigGroup::new();
            for (port, ips) in by_port {
                group.merge(NameServerConfigGroup::from_ips_clear(&ips, port, true));
            }
            TokioAsyncResolver::tokio(ResolverConfig::from_parts(None, vec![], group), ResolverOpts::default())
        };
        Ok(Self { policy: Arc::new(policy), resolver: Arc::new(resolver) })
    }

    /// The addresses `host:port` may be reached at, every one judged; refused if any answer is
    /// refused (a name that also points inside is not trusted with its other answers).
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Blocked> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let verdict = self.policy.judge_host(bare, port);
        if let Verdict::Refused(r) = verdict {
            return Err(Blocked::Refused(r));
        }
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let answers = self.resolver.lookup_ip(bare).await.map_err(|e| Blocked::Unreachable(format!("resolving {bare}: {e}")))?;
        let mut addrs = Vec::new();
        for ip in answers.iter() {
            if verdict != Verdict::Allowed {
                self.policy.judge_resolved(bare, ip, port).map_err(Blocked::Refused)?;
            }
            addrs.push(SocketAddr::new(ip, port));
        }
        if addrs.is_empty() {
            return Err(Blocked::Unreachable(format!("{bare} has no address")));
        }
        Ok(addrs)
    }

    /// A TCP connection to `host:port` through the policy: to the judged addresses only.
    pub async fn connect(&self, host: &str, port: u16) -> Result<tokio::net::TcpStream, Blocked> {
        let addrs = self.resolve(host, port).await?;
        let mut last = String::new();
        for addr in addrs {
            match tokio::time::timeout(DEFAULT_CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    return Ok(s);
                }
                Ok(Err(e)) => last = format!("connecting to {addr}: {e}"),
                Err(_) => last = format!("connecting to {addr}: no answer within {DEFAULT_CONNECT_TIMEOUT:?}"),
            }
        }
        Err(Blocked::Unreachable(last))
    }
}

/// `ip` or `ip:port` (`[v6]:port`); port 53 by default.
fn parse_nameserver(s: &str) -> Result<SocketAddr> {
    if let Ok(ip) = s.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    s.parse::<SocketAddr>().with_context(|| format!("network.nameservers: {s:?} is not an address (ip or ip:port)"))
}

/// Checks the nameservers of a policy (at config load).
pub fn check_nameservers(policy: &Policy) -> Result<()> {
    for ns in &policy.nameservers {
        parse_nameserver(ns)?;
    }
    Ok(())
}
