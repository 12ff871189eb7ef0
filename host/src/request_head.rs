//! The rules for an HTTP/1 request head that hyper leaves to the server:
//! the `Host` field (RFC 9112 §3.2) and the form of the request target
//! (§3.2). A head that breaks them gets 400 before any guest sees it.
//! (Heads hyper cannot parse at all get its own automatic answer, which
//! [`answered_by_hyper`] tells, so that they are logged and counted too.)

use std::net::SocketAddr;

use http::header::HOST;
use http::uri::Authority;
use http::{HeaderValue, Method, StatusCode, Version};

/// The status hyper answered with, on its own, when an HTTP/1 connection
/// ended with `error`: a head it could not parse gets 400, 414 or 431 (hyper's
/// `on_error` for servers) and the connection is closed. `None` for any
/// other end of a connection (a timeout, a reset, an HTTP/2 error), which
/// answered nothing.
pub fn answered_by_hyper(error: &(dyn std::error::Error + 'static)) -> Option<StatusCode> {
    let error = error.downcast_ref::<hyper::Error>()?;
    if error.is_parse_version_h2() || error.is_parse_status() || !error.is_parse() {
        return None;
    }
    if !error.is_parse_too_large() {
        return Some(StatusCode::BAD_REQUEST);
    }
    // hyper's public API joins the two; its message tells them apart.
    Some(if error.to_string().contains("URI") {
        StatusCode::URI_TOO_LONG
    } else {
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    })
}

/// Checks `request`'s head; an HTTP/1.0 request without `Host` is given the
/// address it came in on (`local`), as HTTP/1.0 does not require the field.
/// `Err` says why the request is a 400.
pub fn check<B>(request: &mut hyper::Request<B>, local: SocketAddr) -> Result<(), &'static str> {
    if !matches!(request.version(), Version::HTTP_10 | Version::HTTP_11) {
        return Ok(());
    }
    check_target(request.method(), request.uri())?;
    let mut hosts = request.headers().get_all(HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => Err("more than one `Host` field"),
        (Some(host), None) if !valid_host(host) => Err("an invalid `Host` field"),
        (Some(_), None) => Ok(()),
        (None, _) if request.version() == Version::HTTP_11 => Err("no `Host` field"),
        (None, _) => {
            if request.uri().authority().is_none() {
                let local = HeaderValue::try_from(local.to_string())
                    .expect("a socket address is a valid header value");
                request.headers_mut().insert(HOST, local);
            }
            Ok(())
        }
    }
}

/// `host[:port]`, with a port that fits in 16 bits if there is one.
fn valid_host(value: &HeaderValue) -> bool {
    Authority::try_from(value.as_bytes()).is_ok_and(|authority| {
        let text = authority.as_str();
        // `http` reads no port from `t:99999`: look for the colon itself
        // (after the brackets of an IPv6 address).
        let has_port = text
            .rsplit_once(']')
            .map_or(text, |(_, rest)| rest)
            .contains(':');
        !authority.host().is_empty() && (!has_port || authority.port_u16().is_some())
    })
}

/// The request target must be in origin form (`/path?query`) or absolute
/// form (`http://host/path`); `CONNECT` takes the authority form and
/// `OPTIONS` may take `*`.
fn check_target(method: &Method, uri: &http::Uri) -> Result<(), &'static str> {
    let target = uri.path_and_query().map_or("", |target| target.as_str());
    let allowed = uri.scheme().is_some()
        || target.starts_with('/')
        || (method == Method::CONNECT && uri.authority().is_some())
        || (method == Method::OPTIONS && target == "*");
    if allowed {
        Ok(())
    } else {
        Err("a request target that is not a path (origin form) or an absolute URL")
    }
}
