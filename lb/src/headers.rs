//! Header rules of a well-behaved proxy: hop-by-hop headers stay on their hop, forwarding headers
//! tell the upstream who the client is without letting the client lie about it, and every request
//! carries an id the logs of the lb and the API can be joined on.
//!
//! Forwarding policy (`SEATGATE_LB_TRUSTED_PROXIES`, empty by default):
//! - From an untrusted peer (the default: every client), `X-Forwarded-For`, `X-Forwarded-Proto`,
//!   `X-Forwarded-Host`, `X-Real-IP` and `Forwarded` are discarded and the lb writes
//!   `X-Forwarded-For: <peer IP>` and `X-Forwarded-Proto: http`. The upstream can take the first
//!   (only) entry as the client.
//! - From a trusted peer (another proxy in front of the lb), its `X-Forwarded-For` is kept and the
//!   peer IP appended (`<existing>, <peer>`), and its `X-Forwarded-Proto` is kept. The client IP
//!   used for rate limiting is then the right-most entry that is not itself a trusted proxy.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::config::IpNet;

/// `X-Request-Id`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `X-Forwarded-For`.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Hop-by-hop headers of RFC 9110 §7.6.1 (plus the legacy `Proxy-Connection` and `Keep-Alive`),
/// removed in both directions. Other `Proxy-*` headers and those named in `Connection` go too.
fn fixed_hop_by_hop() -> [&'static HeaderName; 9] {
    [
        &header::CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::PROXY_AUTHENTICATE,
        &header::PROXY_AUTHORIZATION,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
    ]
}

/// Removes hop-by-hop headers: the fixed list, every `Proxy-*`, and each header that
/// `Connection` names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in fixed_hop_by_hop() {
        headers.remove(name);
    }
    if headers.keys().any(|k| k.as_str().starts_with("proxy-")) {
        let proxy: Vec<HeaderName> = headers.keys().filter(|k| k.as_str().starts_with("proxy-")).cloned().collect();
        for name in proxy {
            headers.remove(name);
        }
    }
}

/// Whether `peer` is a configured trusted proxy.
pub fn is_trusted(peer: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(peer))
}

/// The client's IP: the peer, or behind trusted proxies the right-most untrusted
/// `X-Forwarded-For` entry.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    if trusted.is_empty() || !is_trusted(peer, trusted) {
        return peer;
    }
    let mut client = peer;
    let entries: Vec<&str> =
        headers.get_all(&X_FORWARDED_FOR).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).collect();
    for entry in entries.into_iter().rev() {
        match entry.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(ip, trusted) {
                    break;
                }
            }
            // A garbled entry ends the chain we can vouch for.
            Err(_) => break,
        }
    }
    client
}

/// Writes the forwarding headers for a request from `peer` (see the module docs for the policy).
pub fn set_forwarded(headers: &mut HeaderMap, peer: IpAddr, trusted: &[IpNet]) {
    let peer = canonical(peer);
    let peer_value = ip_header_value(peer);
    if !trusted.is_empty() && is_trusted(peer, trusted) {
        let existing: Vec<&str> = headers.get_all(&X_FORWARDED_FOR).iter().filter_map(|v| v.to_str().ok()).collect();
        let value = if existing.is_empty() {
            peer_value
        } else {
            let joined = format!("{}, {}", existing.join(", "), peer);
            HeaderValue::from_str(&joined).unwrap_or(peer_value)
        };
        headers.insert(X_FORWARDED_FOR.clone(), value);
        if !headers.contains_key(&X_FORWARDED_PROTO) {
            headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
        }
    } else {
        for name in [&X_FORWARDED_HOST, &X_REAL_IP, &FORWARDED] {
            headers.remove(name);
        }
        headers.insert(X_FORWARDED_FOR.clone(), peer_value);
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    }
}

/// The incoming `X-Request-Id` if it is sane (1–128 characters of `[A-Za-z0-9._:-]`: safe to
/// log and to echo), else a new random UUID.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(&X_REQUEST_ID) {
        let bytes = v.as_bytes();
        if (1..=128).contains(&bytes.len())
            && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        {
            return v.clone();
        }
    }
    let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    let mut buf = uuid::Uuid::encode_buffer();
    HeaderValue::from_str(id.hyphenated().encode_lower(&mut buf)).unwrap_or(HeaderValue::from_static("invalid"))
}

/// IPv4-mapped IPv6 peers are shown as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn ip_header_value(ip: IpAddr) -> HeaderValue {
    // An IP's text form is always a valid header value.
    HeaderValue::from_str(&ip.to_string()).unwrap_or(HeaderValue::from_static("unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).expect("name"), HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    #[test]
    fn hop_by_hop_headers_and_those_named_in_connection_are_removed() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic Zm9v"),
            ("proxy-foo", "bar"),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("content-type", "text/plain"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("content-type"));
    }

    #[test]
    fn an_untrusted_client_cannot_forge_its_forwarded_for() {
        let trusted: Vec<IpNet> = vec![];
        let mut h = map(&[("x-forwarded-for", "6.6.6.6"), ("x-forwarded-proto", "https"), ("x-real-ip", "6.6.6.6")]);
        let peer: IpAddr = "192.0.2.7".parse().expect("ip");
        assert_eq!(client_ip(peer, &h, &trusted), peer);
        set_forwarded(&mut h, peer, &trusted);
        assert_eq!(h.get("x-forwarded-for").expect("xff"), "192.0.2.7");
        assert_eq!(h.get("x-forwarded-proto").expect("xfp"), "http");
        assert!(!h.contains_key("x-real-ip"));
    }

    #[test]
    fn a_trusted_proxy_chain_is_extended_and_its_client_believed() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("cidr")];
        let mut h = map(&[("x-forwarded-for", "6.6.6.6, 203.0.113.5"), ("x-forwarded-for", "10.0.0.3")]);
        let peer: IpAddr = "10.0.0.2".parse().expect("ip");
        assert_eq!(client_ip(peer, &h, &trusted), "203.0.113.5".parse::<IpAddr>().expect("ip"));
        set_forwarded(&mut h, peer, &trusted);
        assert_eq!(h.get("x-forwarded-for").expect("xff"), "6.6.6.6, 203.0.113.5, 10.0.0.3, 10.0.0.2");
    }

    #[test]
    fn a_sane_request_id_is_kept_and_a_bad_one_replaced() {
        let kept = request_id(&map(&[("x-request-id", "abc-123_x.y:z")]));
        assert_eq!(kept, "abc-123_x.y:z");
        let replaced = request_id(&map(&[("x-request-id", "bad id; drop table")]));
        assert!(uuid::Uuid::parse_str(replaced.to_str().expect("ascii")).is_ok());
        let generated = request_id(&HeaderMap::new());
        assert_eq!(generated.len(), 36);
    }
}
