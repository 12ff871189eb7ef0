//! What a request asks for, read from its method and target, and the shape of
//! every answer. No WASI here, so all of it is unit-tested natively; `lib.rs`
//! carries a [`Route`] out.

/// The name `GET /` greets.
pub const DEFAULT_NAME: &str = "World";

/// The request methods the routes tell apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Get,
    Put,
    Post,
    Delete,
    /// Anything else, `HEAD` included: no route answers it.
    Other,
}

/// A request that passed parsing: everything decoded and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /{name}`: greet and count the visit.
    Greet { name: String },
    /// `GET /static/{path}`
    ReadFile { path: String },
    /// `PUT /static/{path}`: the request body is the file.
    WriteFile { path: String },
    /// `GET /config/{key}`
    Config { key: String },
    /// `/kv…` and `/kv-batch`, on the bucket `?bucket=` names (`""`, the
    /// default bucket, when absent).
    Kv { bucket: String, op: KvOp },
}

/// A key-value operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvOp {
    /// `GET /kv/{key}`
    Get(String),
    /// `PUT /kv/{key}`: the request body is the value.
    Set(String),
    /// `DELETE /kv/{key}`
    Delete(String),
    /// `POST /kv/{key}/increment[?by=N]`
    Increment { key: String, by: u64 },
    /// `GET /kv`
    List,
    /// `POST /kv-batch`: the request body holds `key=value` lines.
    SetMany,
    /// `GET /kv-batch?k1,k2`
    GetMany(Vec<String>),
}

impl Route {
    /// Whether carrying the route out needs the request body.
    pub fn takes_body(&self) -> bool {
        matches!(
            self,
            Route::WriteFile { .. }
                | Route::Kv {
                    op: KvOp::Set(_) | KvOp::SetMany,
                    ..
                }
        )
    }
}

/// A complete answer. Errors are answers too, so they share the type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    /// Set on 405, for the `Allow` header.
    pub allow: Option<&'static str>,
}

impl Reply {
    /// A one-line message; the newline is added here.
    pub fn text(status: u16, line: impl Into<String>) -> Reply {
        let mut body = line.into().into_bytes();
        body.push(b'\n');
        Reply::bytes(status, body)
    }

    /// Bytes sent exactly as given: stored values and files.
    pub fn bytes(status: u16, body: Vec<u8>) -> Reply {
        Reply {
            status,
            body,
            allow: None,
        }
    }

    /// 204, which by definition has no body.
    pub fn no_content() -> Reply {
        Reply::bytes(204, Vec::new())
    }

    pub fn bad_request(line: impl Into<String>) -> Reply {
        Reply::text(400, line)
    }

    pub fn not_found() -> Reply {
        Reply::text(404, "not found")
    }

    fn method_not_allowed(allow: &'static str) -> Reply {
        Reply {
            allow: Some(allow),
            ..Reply::text(405, "method not allowed")
        }
    }

    /// The header fields, as wasi:http takes them. Every body is plain text
    /// (files too: this example does not guess types), with `nosniff` so a
    /// browser does not guess either. A 204 carries no body headers at all:
    /// HTTP forbids its `Content-Length`.
    pub fn headers(&self) -> Vec<(String, Vec<u8>)> {
        let mut headers = Vec::new();
        if self.status != 204 {
            headers.push(("content-type".into(), b"text/plain; charset=utf-8".to_vec()));
            headers.push((
                "content-length".into(),
                self.body.len().to_string().into_bytes(),
            ));
            headers.push(("x-content-type-options".into(), b"nosniff".to_vec()));
        }
        if let Some(allow) = self.allow {
            headers.push(("allow".into(), allow.as_bytes().to_vec()));
        }
        headers
    }
}

/// Reads `verb path_with_query` as a [`Route`], or the answer refusing it:
/// 404 for an unknown path, then 405 for a method the path does not take,
/// then 400 for a name that does not decode.
pub fn route(verb: Verb, target: &str) -> Result<Route, Reply> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let path = path.strip_prefix('/').unwrap_or(path);
    let (first, rest) = match path.split_once('/') {
        Some((first, rest)) => (first, Some(rest)),
        None => (path, None),
    };
    match (first, rest) {
        ("static", rest) => {
            let path = || required(rest.unwrap_or(""), "path");
            match verb {
                Verb::Get => Ok(Route::ReadFile { path: path()? }),
                Verb::Put => Ok(Route::WriteFile { path: path()? }),
                _ => Err(Reply::method_not_allowed("GET, PUT")),
            }
        }
        ("config", rest) => match verb {
            Verb::Get => Ok(Route::Config {
                key: required(rest.unwrap_or(""), "key")?,
            }),
            _ => Err(Reply::method_not_allowed("GET")),
        },
        ("kv", None) => match verb {
            Verb::Get => kv(query, KvOp::List),
            _ => Err(Reply::method_not_allowed("GET")),
        },
        ("kv", Some(rest)) => match rest.split_once('/') {
            None => {
                let key = || required(rest, "key");
                match verb {
                    Verb::Get => kv(query, KvOp::Get(key()?)),
                    Verb::Put => kv(query, KvOp::Set(key()?)),
                    Verb::Delete => kv(query, KvOp::Delete(key()?)),
                    _ => Err(Reply::method_not_allowed("GET, PUT, DELETE")),
                }
            }
            Some((key, "increment")) => match verb {
                Verb::Post => {
                    let by = match param(query, "by") {
                        None => 1,
                        Some(by) => by.parse().map_err(|_| {
                            Reply::bad_request("`by` must be a non-negative integer")
                        })?,
                    };
                    let key = required(key, "key")?;
                    kv(query, KvOp::Increment { key, by })
                }
                _ => Err(Reply::method_not_allowed("POST")),
            },
            Some(_) => Err(Reply::not_found()),
        },
        ("kv-batch", None) => match verb {
            Verb::Get => kv(query, KvOp::GetMany(batch_keys(query)?)),
            Verb::Post => kv(query, KvOp::SetMany),
            _ => Err(Reply::method_not_allowed("GET, POST")),
        },
        (name, None) => match verb {
            Verb::Get if name.is_empty() => Ok(Route::Greet {
                name: DEFAULT_NAME.into(),
            }),
            Verb::Get => Ok(Route::Greet {
                name: decode(name, "name")?,
            }),
            _ => Err(Reply::method_not_allowed("GET")),
        },
        (_, Some(_)) => Err(Reply::not_found()),
    }
}

/// A key-value route on the bucket the query names.
fn kv(query: &str, op: KvOp) -> Result<Route, Reply> {
    let bucket = decode(param(query, "bucket").unwrap_or(""), "bucket")?;
    Ok(Route::Kv { bucket, op })
}

/// The raw value of the query parameter `name`; the first one wins.
fn param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

/// The keys of `GET /kv-batch?k1,k2`: the query items that are not
/// `name=value` parameters, split at commas. A key holding `,`, `&` or `=`
/// is written escaped.
fn batch_keys(query: &str) -> Result<Vec<String>, Reply> {
    let keys = query
        .split('&')
        .filter(|item| !item.contains('='))
        .flat_map(|item| item.split(','))
        .filter(|key| !key.is_empty())
        .map(|key| decode(key, "key"))
        .collect::<Result<Vec<_>, _>>()?;
    if keys.is_empty() {
        return Err(Reply::bad_request("no keys: ask for /kv-batch?k1,k2"));
    }
    Ok(keys)
}

/// Parses a `POST /kv-batch` body: one `key=value` per line, split at the
/// first `=`, so values may hold `=` but not newlines. A trailing `\r` is
/// dropped and blank lines are skipped; keys are taken as written, not
/// percent-decoded.
pub fn parse_batch(body: &[u8]) -> Result<Vec<(String, Vec<u8>)>, Reply> {
    let mut pairs = Vec::new();
    for (number, line) in body.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let bad = |what: &str| Reply::bad_request(format!("line {}: {what}", number + 1));
        let eq = line
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| bad("expected key=value"))?;
        let key = std::str::from_utf8(&line[..eq]).map_err(|_| bad("key is not UTF-8"))?;
        if key.is_empty() {
            return Err(bad("empty key"));
        }
        if key.chars().any(char::is_control) {
            return Err(bad("control character in key"));
        }
        pairs.push((key.to_owned(), line[eq + 1..].to_vec()));
    }
    Ok(pairs)
}

/// [`decode`], refusing an empty result.
fn required(raw: &str, what: &str) -> Result<String, Reply> {
    let value = decode(raw, what)?;
    if value.is_empty() {
        return Err(Reply::bad_request(format!("empty {what}")));
    }
    Ok(value)
}

/// Percent-decodes `raw` (`what` names it in refusals).
///
/// Only `%XX` escapes are decoded; a malformed one (`%zz`, a trailing `%4`)
/// stays as written, and `+` is not a space. The result must be UTF-8 and
/// free of control characters: names end up in keys, file paths and
/// response lines, where a newline or NUL would mislead.
pub fn decode(raw: &str, what: &str) -> Result<String, Reply> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = match bytes[i..] {
            [b'%', hi, lo, ..] => hex(hi).zip(hex(lo)),
            _ => None,
        };
        match escape {
            Some((hi, lo)) => {
                out.push(hi << 4 | lo);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    let text =
        String::from_utf8(out).map_err(|_| Reply::bad_request(format!("{what} is not UTF-8")))?;
    if text.chars().any(char::is_control) {
        return Err(Reply::bad_request(format!("control character in {what}")));
    }
    Ok(text)
}

fn hex(digit: u8) -> Option<u8> {
    char::from(digit).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(target: &str) -> Result<Route, Reply> {
        route(Verb::Get, target)
    }

    fn status(result: Result<Route, Reply>) -> u16 {
        result.expect_err("a refusal").status
    }

    fn on(bucket: &str, op: KvOp) -> Route {
        Route::Kv {
            bucket: bucket.into(),
            op,
        }
    }

    /// `/` greets the default name; one segment greets that name, decoded.
    #[test]
    fn greeting_paths() {
        let greet = |name: &str| Route::Greet { name: name.into() };
        assert_eq!(get("/"), Ok(greet("World")));
        assert_eq!(get("/Ada"), Ok(greet("Ada")));
        assert_eq!(get("/J%C3%BCrgen%20S"), Ok(greet("Jürgen S")));
        assert_eq!(get("/a%2Fb?x=1"), Ok(greet("a/b")));
        assert_eq!(status(get("/a/b")), 404);
        assert_eq!(status(get("/Ada/")), 404);
    }

    /// Names carrying a newline, NUL or other control character are refused,
    /// as are escapes that do not form UTF-8.
    #[test]
    fn refuses_control_characters_and_bad_utf8() {
        assert_eq!(status(get("/a%0Ab")), 400);
        assert_eq!(status(get("/a%00")), 400);
        assert_eq!(status(get("/a%7F")), 400);
        assert_eq!(status(get("/kv/a%0D")), 400);
        assert_eq!(status(get("/static/x%09y")), 400);
        assert_eq!(status(get("/kv?bucket=b%0A")), 400);
        assert_eq!(status(get("/a%FF")), 400);
    }

    /// Only well-formed `%XX` escapes decode; the rest stays as written.
    #[test]
    fn decoding_is_minimal() {
        assert_eq!(decode("100%", "n"), Ok("100%".into()));
        assert_eq!(decode("%zz%4", "n"), Ok("%zz%4".into()));
        assert_eq!(decode("a+b", "n"), Ok("a+b".into()));
        assert_eq!(decode("%41%62", "n"), Ok("Ab".into()));
        assert_eq!(decode("%2e%2E", "n"), Ok("..".into()));
    }

    /// File paths pass through as given, `..` included: the host's sandbox,
    /// not this guest, keeps them inside the directory.
    #[test]
    fn static_paths_pass_through() {
        let read = |path: &str| Route::ReadFile { path: path.into() };
        assert_eq!(get("/static/a/b.txt"), Ok(read("a/b.txt")));
        assert_eq!(get("/static/../secret"), Ok(read("../secret")));
        assert_eq!(get("/static/%2e%2e/secret"), Ok(read("../secret")));
        assert_eq!(
            route(Verb::Put, "/static/new.txt"),
            Ok(Route::WriteFile {
                path: "new.txt".into()
            })
        );
        assert_eq!(status(get("/static/")), 400);
        assert_eq!(status(get("/static")), 400);
        assert_eq!(status(route(Verb::Delete, "/static/a")), 405);
    }

    #[test]
    fn config_keys() {
        assert_eq!(
            get("/config/greeting"),
            Ok(Route::Config {
                key: "greeting".into()
            })
        );
        assert_eq!(status(get("/config/")), 400);
        assert_eq!(status(route(Verb::Put, "/config/x")), 405);
    }

    /// Every key-value route, on the default bucket unless one is named.
    #[test]
    fn key_value_routes() {
        assert_eq!(get("/kv"), Ok(on("", KvOp::List)));
        assert_eq!(get("/kv?bucket=b"), Ok(on("b", KvOp::List)));
        assert_eq!(get("/kv/k"), Ok(on("", KvOp::Get("k".into()))));
        assert_eq!(
            route(Verb::Put, "/kv/a%2Fb?bucket=x%20y"),
            Ok(on("x y", KvOp::Set("a/b".into())))
        );
        assert_eq!(
            route(Verb::Delete, "/kv/k"),
            Ok(on("", KvOp::Delete("k".into())))
        );
        assert_eq!(status(get("/kv/")), 400);
        assert_eq!(status(get("/kv/a/b")), 404);
        assert_eq!(status(route(Verb::Post, "/kv/k")), 405);
        assert_eq!(status(route(Verb::Post, "/kv")), 405);
    }

    #[test]
    fn increment_takes_an_optional_step() {
        let inc = |by| KvOp::Increment {
            key: "n".into(),
            by,
        };
        assert_eq!(route(Verb::Post, "/kv/n/increment"), Ok(on("", inc(1))));
        assert_eq!(
            route(Verb::Post, "/kv/n/increment?by=5&bucket=c"),
            Ok(on("c", inc(5)))
        );
        assert_eq!(status(route(Verb::Post, "/kv/n/increment?by=-1")), 400);
        assert_eq!(status(route(Verb::Post, "/kv/n/increment?by=x")), 400);
        assert_eq!(status(get("/kv/n/increment")), 405);
    }

    /// `GET /kv-batch` names its keys in the query, beside any `bucket=`.
    #[test]
    fn batch_routes() {
        let many = |keys: &[&str]| KvOp::GetMany(keys.iter().map(|k| k.to_string()).collect());
        assert_eq!(get("/kv-batch?a,b%2Cc"), Ok(on("", many(&["a", "b,c"]))));
        assert_eq!(
            get("/kv-batch?a,b&bucket=x"),
            Ok(on("x", many(&["a", "b"])))
        );
        assert_eq!(status(get("/kv-batch")), 400);
        assert_eq!(status(get("/kv-batch?bucket=x")), 400);
        assert_eq!(route(Verb::Post, "/kv-batch"), Ok(on("", KvOp::SetMany)));
        assert_eq!(status(route(Verb::Put, "/kv-batch")), 405);
        assert_eq!(status(get("/kv-batch/x")), 404);
    }

    /// A 405 says which methods the path does take.
    #[test]
    fn wrong_method_names_the_right_ones() {
        let reply = route(Verb::Post, "/Ada").expect_err("405");
        assert_eq!(reply.status, 405);
        assert_eq!(reply.allow, Some("GET"));
        assert!(reply.headers().contains(&("allow".into(), b"GET".to_vec())));
        assert_eq!(status(route(Verb::Other, "/")), 405);
    }

    #[test]
    fn only_writes_take_a_body() {
        assert!(route(Verb::Put, "/static/f").unwrap().takes_body());
        assert!(route(Verb::Put, "/kv/k").unwrap().takes_body());
        assert!(route(Verb::Post, "/kv-batch").unwrap().takes_body());
        assert!(!get("/kv/k").unwrap().takes_body());
        assert!(!route(Verb::Post, "/kv/k/increment").unwrap().takes_body());
    }

    #[test]
    fn batch_bodies() {
        assert_eq!(
            parse_batch(b"a=1\r\n\nb=x=y\nc=\n"),
            Ok(vec![
                ("a".into(), b"1".to_vec()),
                ("b".into(), b"x=y".to_vec()),
                ("c".into(), Vec::new()),
            ])
        );
        assert_eq!(parse_batch(b""), Ok(Vec::new()));
        assert_eq!(
            parse_batch(b"a=1\nnope\n").unwrap_err().body,
            b"line 2: expected key=value\n"
        );
        assert_eq!(parse_batch(b"=1").unwrap_err().status, 400);
        assert_eq!(parse_batch(b"a\tb=1").unwrap_err().status, 400);
    }

    /// Text answers end in a newline and say their length; a 204 carries no
    /// body headers.
    #[test]
    fn reply_headers() {
        let reply = Reply::text(200, "hi");
        assert_eq!(reply.body, b"hi\n");
        let headers = reply.headers();
        assert!(headers.contains(&("content-length".into(), b"3".to_vec())));
        assert!(headers.contains(&("content-type".into(), b"text/plain; charset=utf-8".to_vec())));
        assert!(Reply::no_content().headers().is_empty());
    }
}
