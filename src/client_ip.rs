//! The client's IP address, for per-client limits (login throttle, live stream caps).
//!
//! The connection's peer is the client unless it is a trusted proxy (`SEATGATE_TRUSTED_PROXIES`,
//! loopback by default: seatgate-lb on the same host). Behind a trusted proxy, the client is the
//! right-most `X-Forwarded-For` entry that is not itself a trusted proxy: entries to its left
//! were written by the client and prove nothing (seatgate-lb discards them from untrusted
//! peers anyway). IPv6 clients are keyed by their /64, as in seatgate-lb.

use std::net::IpAddr;
use std::str::FromStr;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use anyhow::Context;

use crate::state::AppState;

/// An IP network (`10.0.0.0/8`, `::1/128`, or a bare address meaning one host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `ip` lies inside this network (an IPv4-mapped IPv6 address matches IPv4 nets).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, unmap(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = anyhow::Error;

    fn from_str(raw: &str) -> anyhow::Result<Self> {
        let raw = raw.trim();
        let (addr, prefix) = raw.split_once('/').map_or((raw, None), |(a, p)| (a, Some(p)));
        let addr: IpAddr = addr.parse().with_context(|| format!("`{raw}` is not an IP address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).with_context(|| format!("`{raw}`: bad prefix"))?,
            None => max,
        };
        Ok(Self { addr, prefix })
    }
}

/// A comma-separated list of networks (empty entries ignored).
pub fn parse_nets(raw: &str) -> anyhow::Result<Vec<IpNet>> {
    raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(IpNet::from_str).collect()
}

fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The client of a request whose connection comes from `peer`.
pub fn client_of(peer: IpAddr, forwarded_for: &[&str], trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return key(peer);
    }
    let hops: Vec<IpAddr> =
        forwarded_for.iter().flat_map(|v| v.split(',')).filter_map(|s| s.trim().parse().ok()).collect();
    let client = hops.iter().rev().copied().find(|ip| !is_trusted(*ip)).or_else(|| hops.first().copied());
    key(client.unwrap_or(peer))
}

/// IPv4 by address, IPv6 by /64 (one host usually owns a whole /64).
fn key(ip: IpAddr) -> IpAddr {
    match unmap(ip) {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

/// The caller's IP (see the module docs); never fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientIp(pub IpAddr);

impl FromRequest for ClientIp {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, actix_web::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let peer = req.peer_addr().map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
        let trusted =
            req.app_data::<web::Data<AppState>>().map(|s| s.config.http.trusted_proxies.clone()).unwrap_or_default();
        let forwarded: Vec<&str> = req.headers().get_all("x-forwarded-for").filter_map(|v| v.to_str().ok()).collect();
        std::future::ready(Ok(Self(client_of(peer, &forwarded, &trusted))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let trusted = parse_nets("127.0.0.0/8").expect("nets");
        assert_eq!(client_of(ip("192.0.2.7"), &["6.6.6.6"], &trusted), ip("192.0.2.7"));
    }

    #[test]
    fn behind_a_trusted_proxy_the_right_most_untrusted_hop_is_the_client() {
        let trusted = parse_nets("127.0.0.1, 10.0.0.0/8").expect("nets");
        assert_eq!(client_of(ip("127.0.0.1"), &["6.6.6.6, 203.0.113.5", "10.0.0.3"], &trusted), ip("203.0.113.5"));
        assert_eq!(client_of(ip("127.0.0.1"), &[], &trusted), ip("127.0.0.1"));
    }

    #[test]
    fn ipv6_clients_share_their_slash_64() {
        assert_eq!(client_of(ip("2001:db8::1"), &[], &[]), client_of(ip("2001:db8::2"), &[], &[]));
        assert!(parse_nets("10.0.0.0/33").is_err());
    }
}
