//! What every request passes before a route sees it, and what every answer carries: the
//! browser protections Jupyter and MLflow have (docs/serve.md, "Security").
//!
//! A page on another site that the user visits can reach a server on loopback: through a DNS
//! name it points at 127.0.0.1 (DNS rebinding: the browser then sends that name as `Host`), or
//! by sending requests that need no permission (a `no-cors` POST, whose body arrives without a
//! `Content-Type`). So on a loopback bind only loopback names are answered; a cross-site
//! request, a foreign `Origin` and a POST without `Content-Type` are refused; and the answers
//! tell the browser not to frame the page, guess media types, send referrers or run scripts
//! other than the page's own.

use super::json::error;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, Uri, header};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;

/// The page's scripts and styles are its own files; the charts are inline SVG and the pad's
/// pictures `data:`/`blob:` URLs; it fetches only from this server.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// The names a loopback server answers to, with any port, besides `--allow-host` ones.
const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// Which `Host`s are answered, on every bind.
#[derive(Debug, Clone)]
pub struct Hosts {
    names: Vec<String>,
}

impl Hosts {
    /// [`LOOPBACK_NAMES`], the address `bound` (unless it is every address, 0.0.0.0 or [::],
    /// which no client names) and `allowed` (lower case). A server bound elsewhere than
    /// loopback is reached by names it cannot know: those are given with `--allow-host`.
    pub fn new(bound: std::net::IpAddr, allowed: &[String]) -> Self {
        let address = match bound {
            _ if bound.is_unspecified() => None,
            std::net::IpAddr::V4(ip) => Some(ip.to_string()),
            std::net::IpAddr::V6(ip) => Some(format!("[{ip}]")),
        };
        Self {
            names: LOOPBACK_NAMES
                .iter()
                .map(|n| n.to_string())
                .chain(address)
                .chain(allowed.iter().map(|n| n.to_ascii_lowercase()))
                .collect(),
        }
    }

    /// Whether `host` (a `Host` value: a name, maybe a port) is one this server answers to.
    fn allows(&self, host: &str) -> bool {
        strip_port(host).is_some_and(|name| self.names.contains(&name.to_ascii_lowercase()))
    }
}

/// Whether `ip` is loopback, an IPv4-mapped one (`::ffff:127.0.0.1`) included.
pub fn is_loopback(ip: std::net::IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// `localhost:8080` → `localhost`, `[::1]:8080` → `[::1]`; a name without a port as it is;
/// `None` when what follows the name is not a port (`[::1]evil.example`, `localhost:x`).
fn strip_port(host: &str) -> Option<&str> {
    let (name, rest) = match host.starts_with('[') {
        true => host.split_at(host.find(']')? + 1),
        false => host.split_at(host.find(':').unwrap_or(host.len())),
    };
    let port = match rest.strip_prefix(':') {
        Some(port) => port,
        None if rest.is_empty() => return Some(name),
        None => return None,
    };
    (!port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())).then_some(name)
}

/// Refuses what [`refusal`] finds, then adds the security headers to the answer.
pub async fn guard(State(hosts): State<Arc<Hosts>>, request: Request, next: Next) -> Response {
    let mut response = match refusal(&hosts, request.method(), request.uri(), request.headers()) {
        Some(refused) => refused,
        None => next.run(request).await,
    };
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The answer to a request that may not reach the routes, if it is one.
fn refusal(hosts: &Hosts, method: &Method, uri: &Uri, headers: &HeaderMap) -> Option<Response> {
    let text = |name| {
        headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string())
    };
    for name in [header::HOST, header::ORIGIN, SEC_FETCH_SITE] {
        if headers.get_all(&name).iter().count() > 1 {
            // Which one counts would be a guess, and a proxy may guess otherwise.
            return Some(error(400, &format!("the request has two {name} headers")));
        }
    }
    let Some(host) = text(header::HOST) else {
        // HTTP/1.1 requires it (RFC 9112, 3.2); without it the name cannot be checked.
        return Some(error(400, "the request has no Host header"));
    };
    if !hosts.allows(&host) {
        return Some(error(
            403,
            &format!(
                "Host {host:?} is not a name of this server (DNS rebinding?); \
                 serve --allow-host NAME answers to NAME too"
            ),
        ));
    }
    // An absolute-form target (`GET http://other/ HTTP/1.1`) names the host too: the same one.
    if let Some(authority) = uri.authority()
        && !authority.as_str().eq_ignore_ascii_case(&host)
    {
        return Some(error(
            400,
            &format!(
                "the target names {:?}, the Host header {host:?}",
                authority.as_str()
            ),
        ));
    }
    if text(SEC_FETCH_SITE).is_some_and(|site| site.eq_ignore_ascii_case("cross-site")) {
        return Some(error(403, "cross-site requests are refused"));
    }
    if let Some(origin) = text(header::ORIGIN)
        && !origin.eq_ignore_ascii_case(&format!("http://{host}"))
    {
        return Some(error(
            403,
            &format!("requests from the page of {origin:?} are refused"),
        ));
    }
    if method == Method::POST && !headers.contains_key(header::CONTENT_TYPE) {
        // What a cross-site `no-cors` fetch sends: it must not be read as JSON.
        return Some(error(
            415,
            "a POST needs a Content-Type: application/json or image/png",
        ));
    }
    None
}

const SEC_FETCH_SITE: header::HeaderName = header::HeaderName::from_static("sec-fetch-site");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_come_off_names() {
        assert_eq!(strip_port("localhost:8080"), Some("localhost"));
        assert_eq!(strip_port("localhost"), Some("localhost"));
        assert_eq!(strip_port("[::1]:80"), Some("[::1]"));
        assert_eq!(strip_port("[::1]"), Some("[::1]"));
        for odd in [
            "evil.example:x",
            "[::1]evil.example",
            "[::1]:",
            "a:1:2",
            "[::1",
        ] {
            assert_eq!(strip_port(odd), None, "{odd}");
        }
    }

    #[test]
    fn every_bind_answers_its_names_only() {
        let v4 = |a, b, c, d| std::net::IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d));
        let hosts = Hosts::new(v4(127, 0, 0, 1), &["Box.Local".to_string()]);
        for ok in [
            "localhost",
            "127.0.0.1:9",
            "[::1]:8080",
            "LOCALHOST",
            "box.local:1",
        ] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for refused in [
            "evil.example",
            "evil.example:8080",
            "127.0.0.2",
            "localhost.evil",
            "[::1]evil.example",
        ] {
            assert!(!hosts.allows(refused), "{refused}");
        }
        let everywhere = Hosts::new(v4(0, 0, 0, 0), &[]);
        assert!(everywhere.allows("localhost:80"));
        assert!(!everywhere.allows("evil.example"));
        assert!(!everywhere.allows("0.0.0.0"));
        let lan = Hosts::new(v4(192, 168, 1, 5), &[]);
        assert!(lan.allows("192.168.1.5:8080"));
        assert!(!lan.allows("evil.example"));
        let mapped: std::net::IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert!(is_loopback(mapped));
        assert!(Hosts::new(mapped, &[]).allows("[::ffff:127.0.0.1]:1"));
    }
}
