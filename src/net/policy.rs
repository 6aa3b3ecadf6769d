//! The network policy: which addresses a page and a stream output may reach. Public
//! addresses are allowed; loopback, link-local (cloud metadata), private, CGNAT, multicast and
//! reserved ranges are refused unless `network.allow` names them; `network.deny` refuses
//! whatever it names, and wins over `allow`. Rules are CIDRs, addresses or host names
//! (`*.example.com` for a domain), each optionally with a `:port`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// One `allow`/`deny` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Rule {
    target: Target,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Net(IpNet),
    /// A lower-case host name; a leading `.` matches the domain and every name below it.
    Name(String),
}

impl FromStr for Rule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty network rule".into());
        }
        // `[v6]:port`, `v4:port`, `name:port`; a bare v6 address or net has several colons.
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (h, tail) = rest.split_once(']').ok_or_else(|| format!("network rule {s:?}: missing ']'"))?;
            let port = match tail.strip_prefix(':') {
                Some(p) => Some(p.parse::<u16>().map_err(|_| format!("network rule {s:?}: bad port"))?),
                None if tail.is_empty() => None,
                None => return Err(format!("network rule {s:?}: text after ']'")),
            };
            (h.to_string(), port)
        } else if s.matches(':').count() == 1 {
            let (h, p) = s.split_once(':').unwrap_or((s, ""));
            (h.to_string(), Some(p.parse::<u16>().map_err(|_| format!("network rule {s:?}: bad port"))?))
        } else {
            (s.to_string(), None)
        };
        let target = if let Ok(net) = host.parse::<IpNet>() {
            Target::Net(net.trunc())
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            Target::Net(IpNet::from(canonical(ip)))
        } else {
            let name = host.to_ascii_lowercase();
            let name = name.strip_prefix('*').unwrap_or(&name).to_string();
            let bare = name.trim_start_matches('.');
            if bare.is_empty()
                || !bare.split('.').all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            {
                return Err(format!("network rule {s:?}: not a CIDR, an address or a host name"));
            }
            Target::Name(name)
        };
        Ok(Rule { target, port })
    }
}

impl TryFrom<String> for Rule {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Rule> for String {
    fn from(r: Rule) -> String {
        r.to_string()
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = match &self.target {
            Target::Net(n) if n.prefix_len() == n.max_prefix_len() => n.addr().to_string(),
            Target::Net(n) => n.to_string(),
            Target::Name(n) if n.starts_with('.') => format!("*{n}"),
            Target::Name(n) => n.clone(),
        };
        match self.port {
            Some(p) if host.contains(':') => write!(f, "[{host}]:{p}"),
            Some(p) => write!(f, "{host}:{p}"),
            None => f.write_str(&host),
        }
    }
}

impl Rule {
    fn port_ok(&self, port: u16) -> bool {
        self.port.is_none_or(|p| p == port)
    }

    fn matches_ip(&self, ip: IpAddr, port: u16) -> bool {
        matches!(&self.target, Target::Net(n) if n.contains(&ip)) && self.port_ok(port)
    }

    fn matches_name(&self, name: &str, port: u16) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let hit = match &self.target {
            Target::Name(n) if n.starts_with('.') => name.ends_with(n.as_str()) || name == n[1..],
            Target::Name(n) => name == *n,
            Target::Net(_) => false,
        };
        hit && self.port_ok(port)
    }
}

/// Why an address is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What was asked for (`host:port`).
    pub target: String,
    /// The address refused (the resolved one for a name).
    pub addr: Option<IpAddr>,
    pub why: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            Some(ip) if !self.target.starts_with(&ip.to_string()) && !self.target.starts_with(&format!("[{ip}]")) => {
                write!(f, "{} resolves to {ip}, {}", self.target, self.why)
            }
            _ => write!(f, "{} is {}", self.target, self.why),
        }
    }
}

/// The policy as the service holds it and hands it to each worker.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    pub allow: Vec<Rule>,
    pub deny: Vec<Rule>,
    /// DNS servers names are resolved with (`ip` or `ip:port`); empty: the system's
    /// (/etc/resolv.conf).
    #[serde(default)]
    pub nameservers: Vec<String>,
}

/// What can be said of a host before resolving it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Refused(Refusal),
    /// A name the rules do not settle: its addresses decide.
    Resolve,
}

impl Policy {
    /// `host` (a name or an address literal, IPv6 with or without brackets) and `port`, as
    /// far as they can be judged without DNS.
    pub fn judge_host(&self, host: &str, port: u16) -> Verdict {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let target = if bare.contains(':') { format!("[{bare}]:{port}") } else { format!("{bare}:{port}") };
        if let Ok(ip) = bare.parse::<IpAddr>() {
            let ip = canonical(ip);
            return match self.judge_ip(ip, port, false) {
                Ok(()) => Verdict::Allowed,
                Err(why) => Verdict::Refused(Refusal { target, addr: Some(ip), why }),
            };
        }
        if self.deny.iter().any(|r| r.matches_name(bare, port)) {
            return Verdict::Refused(Refusal { target, addr: None, why: "denied by network.deny".into() });
        }
        if self.allow.iter().any(|r| r.matches_name(bare, port)) {
            return Verdict::Allowed;
        }
        // Names that are loopback by definition (RFC 6761), whatever a resolver says.
        let lower = bare.trim_end_matches('.').to_ascii_lowercase();
        if lower == "localhost" || lower.ends_with(".localhost") {
            return Verdict::Refused(Refusal { target, addr: None, why: "loopback (localhost)".into() });
        }
        Verdict::Resolve
    }

    /// Whether a name's resolved address may be reached: `deny` always applies; a name
    /// `allow` names passes whatever it resolves to.
    pub fn judge_resolved(&self, host: &str, ip: IpAddr, port: u16) -> Result<(), Refusal> {
        let named = self.allow.iter().any(|r| r.matches_name(host, port));
        let ip = canonical(ip);
        self.judge_ip(ip, port, named).map_err(|why| Refusal { target: format!("{host}:{port}"), addr: Some(ip), why })
    }

    /// A canonical address: `deny` first, then `allow` (or a name `allow` named: `trusted`),
    /// then the default-refused ranges.
    fn judge_ip(&self, ip: IpAddr, port: u16, trusted: bool) -> Result<(), String> {
        if self.deny.iter().any(|r| r.matches_ip(ip, port)) {
            return Err("denied by network.deny".into());
        }
        if trusted || self.allow.iter().any(|r| r.matches_ip(ip, port)) {
            return Ok(());
        }
        match refused_class(ip) {
            Some(class) => Err(format!("{class}, refused unless network.allow names it")),
            None => Ok(()),
        }
    }

    /// A URL's host as far as it can be judged now (no DNS): `Err` with the reason when it is
    /// refused for certain.
    pub fn judge_url(&self, url: &url::Url) -> Result<(), Refusal> {
        let Some(host) = url.host_str() else { return Ok(()) };
        match self.judge_host(host, url_port(url)) {
            Verdict::Refused(r) => Err(r),
            Verdict::Allowed | Verdict::Resolve => Ok(()),
        }
    }
}

/// The port a URL connects to: its own, else its scheme's (http(s), and RTMP's 1935 and RTMPS's
/// 443, which the url crate does not know); 0 for a scheme without one (SRT needs a port).
pub fn url_port(url: &url::Url) -> u16 {
    url.port_or_known_default().unwrap_or(match url.scheme() {
        "rtmp" => 1935,
        "rtmps" => 443,
        _ => 0,
    })
}

/// IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The default-refused range an address is in, if any.
pub fn refused_class(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => v4_class(v4),
        IpAddr::V6(v6) => v6_class(v6),
    }
}

fn v4_class(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    Some(match o {
        [127, ..] => "loopback",
        [0, ..] => "unspecified",
        [169, 254, ..] => "link-local (cloud metadata lives here)",
        [10, ..] | [192, 168, ..] => "private",
        [172, b, ..] if (16..32).contains(&b) => "private",
        [100, b, ..] if (64..128).contains(&b) => "carrier-grade NAT",
        [a, ..] if (224..240).contains(&a) => "multicast",
        [a, ..] if a >= 240 => "reserved",
        _ => return None,
    })
}

fn v6_class(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    Some(match s[0] {
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_unspecified() => "unspecified",
        x if x & 0xffc0 == 0xfe80 => "link-local",
        x if x & 0xffc0 == 0xfec0 => "site-local",
        x if x & 0xfe00 == 0xfc00 => "private (unique local)",
        x if x & 0xff00 == 0xff00 => "multicast",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str], deny: &[&str]) -> Policy {
        Policy {
            allow: allow.iter().map(|s| s.parse().unwrap()).collect(),
            deny: deny.iter().map(|s| s.parse().unwrap()).collect(),
            nameservers: vec![],
        }
    }

    #[test]
    fn rules_parse_and_print() {
        for s in ["10.0.0.0/8", "10.1.2.3", "10.1.2.3:8080", "[::1]:80", "fd00::/8", "example.com", "*.example.com", "live.example:1935"] {
            assert_eq!(s.parse::<Rule>().unwrap().to_string(), s, "{s}");
        }
        for bad in ["", "a b", "10.0.0.0/33", "host:port", "[::1", "..", "*."] {
            assert!(bad.parse::<Rule>().is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_refuse_internal_ranges() {
        let p = Policy::default();
        for host in [
            "127.0.0.1",
            "169.254.169.254",
            "10.0.0.1",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "224.0.0.1",
            "0.0.0.0",
            "::1",
            "[fe80::1]",
            "fd12::1",
            "::ffff:127.0.0.1",
            "255.255.255.255",
        ] {
            assert!(matches!(p.judge_host(host, 80), Verdict::Refused(_)), "{host}");
        }
        for host in ["8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700::1111"] {
            assert_eq!(p.judge_host(host, 80), Verdict::Allowed, "{host}");
        }
        assert!(matches!(p.judge_host("localhost", 80), Verdict::Refused(_)));
        assert!(matches!(p.judge_host("a.LOCALHOST.", 80), Verdict::Refused(_)));
        assert_eq!(p.judge_host("example.com", 80), Verdict::Resolve);
        let Verdict::Refused(r) = p.judge_host("169.254.169.254", 80) else { unreachable!() };
        assert!(r.to_string().contains("169.254.169.254:80 is link-local"), "{r}");
    }

    #[test]
    fn allow_and_deny() {
        let p = policy(&["10.77.0.0/24", "127.0.0.1:7890", "*.corp.example"], &["10.77.0.9", "8.8.4.4", "bad.example"]);
        assert_eq!(p.judge_host("10.77.0.2", 80), Verdict::Allowed);
        assert!(matches!(p.judge_host("10.77.0.9", 80), Verdict::Refused(_)), "deny wins");
        assert_eq!(p.judge_host("127.0.0.1", 7890), Verdict::Allowed);
        assert!(matches!(p.judge_host("127.0.0.1", 7891), Verdict::Refused(_)), "the port is part of the rule");
        assert!(matches!(p.judge_host("8.8.4.4", 53), Verdict::Refused(_)));
        assert!(matches!(p.judge_host("BAD.example", 80), Verdict::Refused(_)));
        assert_eq!(p.judge_host("db.corp.example", 5432), Verdict::Allowed);
        assert_eq!(p.judge_host("corp.example", 5432), Verdict::Allowed);
        // A name allow names passes whatever it resolves to; deny still holds.
        assert!(p.judge_resolved("db.corp.example", "10.9.9.9".parse().unwrap(), 80).is_ok());
        assert!(p.judge_resolved("db.corp.example", "10.77.0.9".parse().unwrap(), 80).is_err());
        let r = p.judge_resolved("evil.example", "127.0.0.1".parse().unwrap(), 80).unwrap_err();
        assert_eq!(r.to_string(), "evil.example:80 resolves to 127.0.0.1, loopback, refused unless network.allow names it");
    }

    #[test]
    fn urls_are_judged_with_their_default_ports() {
        let p = policy(&["127.0.0.1:1935"], &[]);
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert!(p.judge_url(&u("rtmp://127.0.0.1/live/key")).is_ok());
        assert!(p.judge_url(&u("rtmp://127.0.0.1:1936/live/key")).is_err());
        assert!(p.judge_url(&u("http://[::1]:8080/")).is_err());
        assert!(p.judge_url(&u("https://example.com/")).is_ok());
    }
}
