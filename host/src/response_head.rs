//! The guest's response head, checked before hyper sends it.
//!
//! A WASI 0.2 guest may set any status from 100 to 999, with any headers
//! and body. HTTP allows fewer combinations, and given one it cannot send,
//! hyper closes the connection or resets the HTTP/2 stream, while the access
//! log would record the guest's status as if it had been answered. So:
//!
//! - an informational status (1xx) is not a final response, and HTTP has no
//!   status above 599: the guest failed, and the client gets a 500;
//! - a 2xx answer to `CONNECT` would turn the connection into a tunnel,
//!   which wasi:http cannot carry: a 500 as well;
//! - responses to `HEAD`, and 204 and 304 responses, go without a body,
//!   whatever the guest writes. 204 and 304 also go without
//!   `content-length` and `transfer-encoding`, which HTTP forbids on a 204
//!   and HTTP/2 refuses on both; `HEAD` keeps the length a `GET` would have.

use anyhow::bail;
use http::{Method, StatusCode, header};

/// Whether the guest's response body is sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Body {
    Send,
    Drop,
}

/// Checks `response`, the guest's answer to a `method` request, and makes
/// its head one HTTP allows; fails if there is none.
pub fn check<B>(method: &Method, response: &mut http::Response<B>) -> anyhow::Result<Body> {
    let status = response.status();
    if status.is_informational() {
        bail!("guest answered with status {status}, which is not a final response");
    }
    if status.as_u16() > 599 {
        bail!("guest answered with status {status}; HTTP's statuses end at 599");
    }
    if method == Method::CONNECT && status.is_success() {
        bail!(
            "guest answered CONNECT with {status}, which would open a tunnel; wasi:http has none"
        );
    }
    if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        let headers = response.headers_mut();
        headers.remove(header::CONTENT_LENGTH);
        headers.remove(header::TRANSFER_ENCODING);
        return Ok(Body::Drop);
    }
    Ok(if method == Method::HEAD {
        Body::Drop
    } else {
        Body::Send
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, headers: &[(&str, &str)]) -> http::Response<()> {
        let mut builder = http::Response::builder().status(status);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn informational_statuses_are_refused() {
        for status in [100, 101, 103, 199] {
            let err = check(&Method::GET, &mut response(status, &[])).unwrap_err();
            assert!(err.to_string().contains("not a final response"), "{err}");
        }
    }

    #[test]
    fn statuses_past_599_are_refused() {
        for status in [600, 700, 999] {
            let err = check(&Method::GET, &mut response(status, &[])).unwrap_err();
            assert!(err.to_string().contains("end at 599"), "{err}");
        }
    }

    #[test]
    fn connect_gets_no_tunnel_but_may_be_refused() {
        for status in [200, 204, 299] {
            let err = check(&Method::CONNECT, &mut response(status, &[])).unwrap_err();
            assert!(err.to_string().contains("tunnel"), "{err}");
        }
        for status in [403, 405, 502] {
            let mut refused = response(status, &[("content-length", "9")]);
            assert_eq!(check(&Method::CONNECT, &mut refused).unwrap(), Body::Send);
            assert_eq!(refused.headers()["content-length"], "9");
        }
    }

    #[test]
    fn no_content_and_not_modified_lose_body_and_length() {
        for status in [204, 304] {
            for method in [Method::GET, Method::POST, Method::HEAD] {
                let mut answer = response(
                    status,
                    &[
                        ("content-length", "10"),
                        ("transfer-encoding", "chunked"),
                        ("etag", "\"x\""),
                    ],
                );
                assert_eq!(check(&method, &mut answer).unwrap(), Body::Drop);
                assert!(!answer.headers().contains_key("content-length"));
                assert!(!answer.headers().contains_key("transfer-encoding"));
                assert_eq!(answer.headers()["etag"], "\"x\"");
            }
        }
    }

    #[test]
    fn head_keeps_its_length_and_other_answers_are_sent() {
        let mut head = response(200, &[("content-length", "13")]);
        assert_eq!(check(&Method::HEAD, &mut head).unwrap(), Body::Drop);
        assert_eq!(head.headers()["content-length"], "13");
        for status in [200, 201, 301, 404, 500, 599] {
            let mut answer = response(status, &[("content-length", "4")]);
            assert_eq!(check(&Method::GET, &mut answer).unwrap(), Body::Send);
            assert_eq!(answer.headers()["content-length"], "4");
        }
    }
}
