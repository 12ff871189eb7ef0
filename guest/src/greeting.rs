//! What the greeter answers, as a pure function of the method and the request
//! target. No I/O here: `lib.rs` turns a [`Reply`] into a `wasi:http` response.
//!
//! Nothing here can panic with a formatted message, nor does any other
//! formatting: `core::fmt` would put its code, tables of function pointers
//! and strings into the component, and every instance would carry them (the
//! host copies the data into each fresh instance, and fills its function
//! table). Numbers are written by `itoa`; slices are taken with `get`.

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;

/// The name greeted when the path names nobody (`GET /`).
pub const DEFAULT_NAME: &str = "Anonymous";

/// The request methods the greeter tells apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    /// `GET`
    Get,
    /// `HEAD`: the `GET` headers without the body.
    Head,
    /// Anything else.
    Other,
}

/// A complete answer: every response is `text/plain; charset=utf-8`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// The body a `GET` would carry; its length is the `Content-Length`.
    pub body: String,
    /// Whether the body is sent (`false` for `HEAD`).
    pub send_body: bool,
    /// Set on 405, for the `Allow` header.
    pub allow: Option<&'static str>,
}

impl Reply {
    /// The response's header fields, as wasi:http takes them: every answer
    /// is `text/plain; charset=utf-8` with its exact length (the GET body's,
    /// for HEAD too), `nosniff`, and `Allow` on a 405.
    pub fn headers(&self) -> Vec<(String, Vec<u8>)> {
        let mut headers = alloc::vec![
            ("content-type".into(), b"text/plain; charset=utf-8".to_vec()),
            (
                "content-length".into(),
                itoa::Buffer::new()
                    .format(self.body.len())
                    .as_bytes()
                    .to_vec()
            ),
            ("x-content-type-options".into(), b"nosniff".to_vec()),
        ];
        if let Some(allow) = self.allow {
            headers.push(("allow".into(), allow.as_bytes().to_vec()));
        }
        headers
    }
}

/// Answers `verb path_with_query`.
///
/// A greeting path is `/` or exactly one non-empty segment (`/World`); the
/// query string is ignored. Other paths are 404 whatever the method; a
/// greeting path answers 405 to methods other than `GET` and `HEAD`.
pub fn respond(verb: Verb, path_with_query: &str) -> Reply {
    let path = path_with_query
        .split_once('?')
        .map_or(path_with_query, |(path, _query)| path);
    let Some(name) = greeting_name(path) else {
        return plain(verb, 404, String::from("404: Not Found"));
    };
    match verb {
        Verb::Get | Verb::Head => plain(verb, 200, greeting(&name)),
        Verb::Other => Reply {
            allow: Some("GET, HEAD"),
            ..plain(verb, 405, String::from("405: Method Not Allowed"))
        },
    }
}

/// `Hello, {name}!`
fn greeting(name: &str) -> String {
    let mut text = String::with_capacity(name.len() + 8);
    text.push_str("Hello, ");
    text.push_str(name);
    text.push('!');
    text
}

fn plain(verb: Verb, status: u16, body: String) -> Reply {
    Reply {
        status,
        body,
        send_body: verb != Verb::Head,
        allow: None,
    }
}

/// The decoded name a greeting path asks for, or `None` if `path` is not a
/// greeting path.
fn greeting_name(path: &str) -> Option<Cow<'_, str>> {
    let segment = path.strip_prefix('/')?;
    if segment.is_empty() {
        return Some(Cow::Borrowed(DEFAULT_NAME));
    }
    if segment.contains('/') {
        return None;
    }
    Some(percent_decode(segment))
}

/// Percent-decodes `raw` once.
///
/// Each run of `%XX` escapes is decoded as UTF-8; bytes of a run that are not
/// valid UTF-8 stay exactly as written, as do malformed escapes (`%zz`, a
/// trailing `%4`). `+` is not a space in a path. Hand-written because common
/// decoders treat invalid UTF-8 all-or-nothing (or replace it with U+FFFD),
/// where we keep it escape by escape.
pub fn percent_decode(raw: &str) -> Cow<'_, str> {
    if !raw.contains('%') {
        return Cow::Borrowed(raw);
    }
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut run = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        // Collect a run of consecutive well-formed escapes.
        let start = i;
        run.clear();
        while let Some(byte) = escape_at(bytes, i) {
            run.push(byte);
            i += 3;
        }
        if run.is_empty() {
            // A plain character (or a malformed escape): copy it through.
            // `i` is on a character boundary, so there is one.
            let Some(ch) = raw.get(i..).and_then(|rest| rest.chars().next()) else {
                break;
            };
            out.push(ch);
            i += ch.len_utf8();
        } else {
            push_decoded_run(&mut out, &run, raw.get(start..i).unwrap_or_default());
        }
    }
    Cow::Owned(out)
}

/// Appends the UTF-8 text of `run` to `out`; bytes that are not valid UTF-8
/// are appended as their original escapes, taken from `written` (three
/// characters per byte).
fn push_decoded_run(out: &mut String, mut run: &[u8], mut written: &str) {
    while !run.is_empty() {
        match core::str::from_utf8(run) {
            Ok(text) => {
                out.push_str(text);
                return;
            }
            Err(err) => {
                let valid = err.valid_up_to();
                let bad = err.error_len().unwrap_or(run.len() - valid);
                // The first `valid` bytes were checked by the call above;
                // `written` holds three characters for each byte of `run`.
                let text = run.get(..valid).unwrap_or_default();
                out.push_str(core::str::from_utf8(text).unwrap_or_default());
                out.push_str(
                    written
                        .get(3 * valid..3 * (valid + bad))
                        .unwrap_or_default(),
                );
                run = run.get(valid + bad..).unwrap_or_default();
                written = written.get(3 * (valid + bad)..).unwrap_or_default();
            }
        }
    }
}

/// The byte that a well-formed escape at `bytes[i..]` stands for.
fn escape_at(bytes: &[u8], i: usize) -> Option<u8> {
    match bytes.get(i..i + 3)? {
        [b'%', hi, lo] => Some(hex(*hi)? << 4 | hex(*lo)?),
        _ => None,
    }
}

fn hex(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Reply {
        respond(Verb::Get, path)
    }

    #[test]
    fn greets_the_name_in_the_path() {
        let reply = get("/World");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, "Hello, World!");
        assert!(reply.send_body);
        assert_eq!(reply.allow, None);
    }

    #[test]
    fn root_greets_anonymous() {
        assert_eq!(get("/").body, "Hello, Anonymous!");
        assert_eq!(get("/?name=x").body, "Hello, Anonymous!");
    }

    #[test]
    fn query_is_ignored() {
        assert_eq!(get("/World?x=1&y=%2F").body, "Hello, World!");
    }

    #[test]
    fn other_paths_are_not_found() {
        for path in ["/a/b", "/World/", "//World", "//", "", "World", "/a/b?c"] {
            let reply = get(path);
            assert_eq!(reply.status, 404, "{path}");
            assert_eq!(reply.body, "404: Not Found");
        }
        assert_eq!(respond(Verb::Other, "/a/b").status, 404);
    }

    #[test]
    fn head_has_the_get_body_length_but_sends_none() {
        let reply = respond(Verb::Head, "/World");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, get("/World").body);
        assert!(!reply.send_body);
    }

    #[test]
    fn other_methods_on_a_greeting_path_are_not_allowed() {
        for path in ["/", "/World"] {
            let reply = respond(Verb::Other, path);
            assert_eq!(reply.status, 405);
            assert_eq!(reply.body, "405: Method Not Allowed");
            assert_eq!(reply.allow, Some("GET, HEAD"));
            assert!(reply.send_body);
        }
    }

    #[test]
    fn decodes_escapes_once_as_utf8() {
        assert_eq!(percent_decode("J%C3%BCrgen"), "Jürgen");
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("a%2Fb"), "a/b");
        assert_eq!(percent_decode("%252F"), "%2F", "decoded once only");
        assert_eq!(percent_decode("%e4%B8%96"), "世", "either hex case");
        assert_eq!(get("/a%2Fb").body, "Hello, a/b!");
    }

    #[test]
    fn plus_is_not_a_space() {
        assert_eq!(percent_decode("a+b"), "a+b");
    }

    #[test]
    fn malformed_escapes_are_kept_as_written() {
        for raw in ["%", "%4", "%zz", "a%g1", "100%", "%%41"] {
            let expected = if raw == "%%41" { "%A" } else { raw };
            assert_eq!(percent_decode(raw), expected, "{raw}");
        }
    }

    #[test]
    fn invalid_utf8_escapes_are_kept_and_the_rest_decoded() {
        assert_eq!(percent_decode("%FF"), "%FF");
        assert_eq!(percent_decode("a%FFb%C3%BC"), "a%FFbü");
        assert_eq!(percent_decode("%C3%BC%FF%C3%BC"), "ü%FFü");
        // A truncated sequence: lead byte without its continuation.
        assert_eq!(percent_decode("%C3x"), "%C3x");
        assert_eq!(percent_decode("%E4%B8"), "%E4%B8");
        assert_eq!(percent_decode("%c3%28"), "%c3(");
    }

    #[test]
    fn non_ascii_passes_through() {
        assert_eq!(percent_decode("é%20ü"), "é ü");
    }

    /// Properties of the decoding, over arbitrary input.
    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        /// Every byte of `text` as `%XX`.
        fn encode_all(text: &str) -> String {
            text.bytes().map(|byte| format!("%{byte:02X}")).collect()
        }

        proptest! {
            /// Decoding is total: any input gives a string, and one without
            /// `%` is itself.
            #[test]
            fn decoding_never_fails(raw in any::<String>()) {
                let decoded = percent_decode(&raw);
                if !raw.contains('%') {
                    prop_assert_eq!(decoded.as_ref(), raw.as_str());
                }
            }

            /// Any text, fully percent-encoded (upper or lower case hex),
            /// decodes back to itself.
            #[test]
            fn encoded_text_round_trips(text in any::<String>(), lower in any::<bool>()) {
                let mut encoded = encode_all(&text);
                if lower {
                    encoded = encoded.to_lowercase();
                }
                let decoded = percent_decode(&encoded);
                prop_assert_eq!(decoded.as_ref(), text.as_str());
            }

            /// Decoding happens once: text encoded twice decodes to text
            /// encoded once.
            #[test]
            fn decoding_is_applied_once(text in any::<String>()) {
                let once = encode_all(&text);
                let twice = encode_all(&once);
                let decoded = percent_decode(&twice);
                prop_assert_eq!(decoded.as_ref(), once.as_str());
            }

            /// A `%` not followed by two hex digits is kept as written.
            #[test]
            fn malformed_escapes_are_kept(
                before in "[a-z]{0,8}",
                after in "[g-z%]{0,2}",
            ) {
                let raw = format!("{before}%{after}");
                let decoded = percent_decode(&raw);
                prop_assert_eq!(decoded.as_ref(), raw.as_str());
            }

            /// Whatever the target, the answer is one of the three, HEAD
            /// sends no body, and only a 405 carries `Allow`.
            #[test]
            fn every_target_gets_a_well_formed_answer(
                target in any::<String>(),
                verb in prop_oneof![Just(Verb::Get), Just(Verb::Head), Just(Verb::Other)],
            ) {
                let reply = respond(verb, &target);
                prop_assert!([200, 404, 405].contains(&reply.status));
                prop_assert_eq!(reply.send_body, verb != Verb::Head);
                prop_assert_eq!(reply.allow.is_some(), reply.status == 405);
                if reply.status == 200 {
                    prop_assert!(reply.body.starts_with("Hello, ") && reply.body.ends_with('!'));
                }
            }
        }
    }
}
