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
use axum::http::{HeaderMap, HeaderValue, Method, header};
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

/// Which `Host`s are answered.
#[derive(Debug, Clone)]
pub struct Hosts {
    /// `None` on a bind that is not loopback: it is reached by names it cannot know.
    names: Option<Vec<String>>,
}

impl Hosts {
    /// On a loopback bind, [`LOOPBACK_NAMES`] and `allowed` (lower case); elsewhere any.
    pub fn new(loopback: bool, allowed: &[String]) -> Self {
        Self {
            names: loopback.then(|| {
                LOOPBACK_NAMES
                    .iter()
                    .map(|n| n.to_string())
                    .chain(allowed.iter().map(|n| n.to_ascii_lowercase()))
                    .collect()
            }),
        }
    }

    /// Whether `host` (a `Host` value: a name, maybe a port) is one this server answers to.
    fn allows(&self, host: &str) -> bool {
        let Some(names) = &self.names else {
            return true;
        };
        let name = strip_port(host).to_ascii_lowercase();
        names.contains(&name)
    }
}

/// `localhost:8080` → `localhost`, `[::1]:8080` → `[::1]`; a name without a port as it is.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Refuses what [`refusal`] finds, then adds the security headers to the answer.
pub async fn guard(State(hosts): State<Arc<Hosts>>, request: Request, next: Next) -> Response {
    let mut response = match refusal(&hosts, request.method(), request.headers()) {
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
fn refusal(hosts: &Hosts, method: &Method, headers: &HeaderMap) -> Option<Response> {
    let text = |name| {
        headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string())
    };
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
    if text(header::HeaderName::from_static("sec-fetch-site")).as_deref() == Some("cross-site") {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_come_off_names() {
        assert_eq!(strip_port("localhost:8080"), "localhost");
        assert_eq!(strip_port("localhost"), "localhost");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
        assert_eq!(strip_port("evil.example:x"), "evil.example:x");
    }

    #[test]
    fn loopback_answers_its_names_only() {
        let hosts = Hosts::new(true, &["Box.Local".to_string()]);
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
        ] {
            assert!(!hosts.allows(refused), "{refused}");
        }
        assert!(Hosts::new(false, &[]).allows("evil.example"));
    }
}
