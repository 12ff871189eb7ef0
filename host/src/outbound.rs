//! Outgoing HTTP from guests: denied unless the origin is on the allow-list
//! given with `--allow-outbound`.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// One allowed origin: `scheme://host[:port]`, where the host may be
/// `*.example.com` to allow every subdomain of `example.com` (not
/// `example.com` itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPattern {
    scheme: String,
    host: HostPattern,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    /// The suffix, with its leading dot: `.example.com`.
    Subdomains(String),
}

impl OriginPattern {
    /// Whether a request to `uri` is allowed by this pattern.
    pub fn matches(&self, uri: &http::Uri) -> bool {
        let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
            return false;
        };
        let Some(port) = uri.port_u16().or_else(|| default_port(scheme)) else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        scheme.eq_ignore_ascii_case(&self.scheme)
            && port == self.port
            && match &self.host {
                HostPattern::Exact(exact) => host == *exact,
                HostPattern::Subdomains(suffix) => {
                    host.len() > suffix.len() && host.ends_with(suffix.as_str())
                }
            }
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme.to_ascii_lowercase().as_str() {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl FromStr for OriginPattern {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!("`{text}` is not an origin like `https://api.example.com[:port]`: {why}")
        };
        let (scheme, rest) = text.split_once("://").ok_or_else(|| bad("no `://`"))?;
        let scheme = scheme.to_ascii_lowercase();
        let default =
            default_port(&scheme).ok_or_else(|| bad("the scheme must be http or https"))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(bad("only scheme, host and port are allowed"));
        }
        let (host, port) = match rest.rsplit_once(':') {
            // `[::1]:8080` has a port; `[::1]` alone does not.
            Some((host, port)) if !rest.starts_with('[') || host.ends_with(']') => (
                host,
                port.parse().map_err(|_| bad("the port is not a number"))?,
            ),
            _ => (rest, default),
        };
        let host = host.to_ascii_lowercase();
        let host = match host.strip_prefix("*.") {
            Some(suffix) if !suffix.is_empty() && !suffix.contains('*') => {
                HostPattern::Subdomains(format!(".{suffix}"))
            }
            _ if host.is_empty() => return Err(bad("no host")),
            _ if host.contains('*') => {
                return Err(bad("`*` is only allowed as a leading `*.`"));
            }
            _ => HostPattern::Exact(host),
        };
        Ok(Self { scheme, host, port })
    }
}

impl fmt::Display for OriginPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = match &self.host {
            HostPattern::Exact(host) => host.clone(),
            HostPattern::Subdomains(suffix) => format!("*{suffix}"),
        };
        write!(f, "{}://{host}:{}", self.scheme, self.port)
    }
}

/// The `wasi:http` hooks every store gets: outgoing requests to an allowed
/// origin are sent; all others fail with `HTTP-request-denied`, and the guest
/// decides what to answer.
#[derive(Clone, Default)]
pub struct Outbound {
    allowed: Arc<[OriginPattern]>,
}

impl Outbound {
    /// A policy allowing exactly `allowed`.
    pub fn new(allowed: Vec<OriginPattern>) -> Self {
        Self {
            allowed: allowed.into(),
        }
    }

    fn allows(&self, uri: &http::Uri) -> bool {
        self.allowed.iter().any(|pattern| pattern.matches(uri))
    }
}

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), Error>> + Send> {
        if !self.allows(request.uri()) {
            tracing::warn!(uri = %request.uri(), "outgoing request denied");
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        tracing::debug!(uri = %request.uri(), "outgoing request");
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as IoFuture,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(pattern: &str, uri: &str) -> bool {
        let pattern: OriginPattern = pattern.parse().unwrap();
        pattern.matches(&uri.parse().unwrap())
    }

    #[test]
    fn exact_origins_match_scheme_host_and_port() {
        assert!(allows(
            "https://api.example.com",
            "https://api.example.com/v1?q=1"
        ));
        assert!(allows(
            "https://api.example.com",
            "https://API.example.com:443/"
        ));
        assert!(allows("http://127.0.0.1:8080", "http://127.0.0.1:8080/x"));
        assert!(allows("http://[::1]", "http://[::1]/x"));
        assert!(allows("http://[::1]:8080", "http://[::1]:8080/x"));
        assert!(!allows("http://[::1]:8080", "http://[::1]:8081/x"));
        assert!(!allows(
            "https://api.example.com",
            "http://api.example.com/"
        ));
        assert!(!allows(
            "https://api.example.com",
            "https://api.example.com:8443/"
        ));
        assert!(!allows(
            "https://api.example.com",
            "https://evil.com/api.example.com"
        ));
        assert!(!allows("http://127.0.0.1:8080", "http://127.0.0.1:8081/"));
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        assert!(allows("https://*.example.com", "https://a.example.com/"));
        assert!(allows("https://*.example.com", "https://a.b.example.com/"));
        assert!(!allows("https://*.example.com", "https://example.com/"));
        assert!(!allows("https://*.example.com", "https://badexample.com/"));
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for bad in [
            "example.com",
            "ftp://example.com",
            "https://",
            "https://a.*.com",
            "https://example.com/path",
            "https://example.com:http",
            "https://user@example.com",
        ] {
            assert!(bad.parse::<OriginPattern>().is_err(), "{bad}");
        }
        // Each refusal says what is wrong with it.
        for (bad, why) in [
            ("https://", "no host"),
            ("https://:8080", "no host"),
            ("https://a.*.com", "leading `*.`"),
        ] {
            let err = bad.parse::<OriginPattern>().unwrap_err();
            assert!(err.ends_with(why), "{bad}: {err}");
        }
        assert_eq!(
            "HTTPS://Example.com/"
                .parse::<OriginPattern>()
                .unwrap()
                .to_string(),
            "https://example.com:443"
        );
    }

    /// Properties of origin patterns, over generated origins.
    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        fn label() -> impl Strategy<Value = String> {
            "[a-z][a-z0-9-]{0,10}[a-z0-9]"
        }

        proptest! {
            /// Any text parses or is refused with a message; nothing panics.
            #[test]
            fn parsing_never_panics(text in any::<String>()) {
                let _ = text.parse::<OriginPattern>();
            }

            /// A pattern prints as it matches, and parses back to itself.
            #[test]
            fn patterns_round_trip_through_display(
                https in any::<bool>(),
                wildcard in any::<bool>(),
                labels in prop::collection::vec(label(), 1..4),
                port in prop::option::of(1u16..),
            ) {
                let scheme = if https { "https" } else { "http" };
                let host = labels.join(".");
                let host = if wildcard { format!("*.{host}") } else { host };
                let port = port.map(|port| format!(":{port}")).unwrap_or_default();
                let pattern: OriginPattern = format!("{scheme}://{host}{port}").parse().unwrap();
                let again: OriginPattern = pattern.to_string().parse().unwrap();
                prop_assert_eq!(again, pattern);
            }

            /// An exact origin matches its own URLs, whatever the path and
            /// the case of the host, and no other port or subdomain.
            #[test]
            fn exact_origins_match_only_themselves(
                labels in prop::collection::vec(label(), 1..4),
                port in 1u16..,
                path in "(/[a-z0-9]{0,8}){0,3}",
            ) {
                let host = labels.join(".");
                let pattern: OriginPattern = format!("http://{host}:{port}").parse().unwrap();
                let uri = |text: String| text.parse::<http::Uri>().unwrap();
                let upper = host.to_uppercase();
                let own = uri(format!("http://{upper}:{port}{path}"));
                prop_assert!(pattern.matches(&own));
                let other_port = port.wrapping_add(1).max(1);
                if other_port != port {
                    let other = uri(format!("http://{host}:{other_port}/"));
                    prop_assert!(!pattern.matches(&other));
                }
                let https = uri(format!("https://{host}:{port}/"));
                prop_assert!(!pattern.matches(&https));
                let sub = uri(format!("http://sub.{host}:{port}/"));
                prop_assert!(!pattern.matches(&sub));
            }

            /// `*.domain` matches every subdomain, never the domain itself
            /// nor a name that merely ends the same way.
            #[test]
            fn wildcards_match_subdomains_only(
                labels in prop::collection::vec(label(), 1..3),
                sub in label(),
            ) {
                let domain = labels.join(".");
                let pattern: OriginPattern = format!("https://*.{domain}").parse().unwrap();
                let uri = |text: String| text.parse::<http::Uri>().unwrap();
                let subdomain = uri(format!("https://{sub}.{domain}/"));
                prop_assert!(pattern.matches(&subdomain));
                let itself = uri(format!("https://{domain}/"));
                prop_assert!(!pattern.matches(&itself));
                let lookalike = uri(format!("https://{sub}{domain}/"));
                prop_assert!(!pattern.matches(&lookalike));
            }
        }
    }
}
