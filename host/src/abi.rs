//! The two handler ABIs a component may export, behind one small interface:
//! WASI 0.2's `wasi:http/incoming-handler` (world `wasi:http/proxy`) and
//! WASI 0.3's asynchronous `wasi:http/handler` (world `wasi:http/service`).
//! Which one a component has is read from the component itself.
//!
//! The request flow ([`crate::proxy`]) prepares a call, runs it in a fresh
//! store under its timeout, and gets the response head on a oneshot; only
//! how the guest is called differs.

use std::future::poll_fn;
use std::pin::Pin;
use std::time::Instant;

use anyhow::{Result, bail};
use http::uri::{Authority, Scheme};
use tokio::sync::oneshot;
use wasmtime::component::{Accessor, Component, InstancePre, Resource};
use wasmtime::{Engine, PoolConcurrencyLimitError, Store};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme as P2Scheme;
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wasmtime_wasi_http::{WasiBody, WasiHttpView};

use crate::metrics::Metrics;
use crate::state::GuestState;

/// The guest's response head, its body still streaming, or why the guest
/// answered without one.
pub type Answer = Result<hyper::Response<WasiBody>>;

/// The WASI release a component's handler belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WasiVersion {
    /// `wasi:http/incoming-handler@0.2.x`.
    P2,
    /// `wasi:http/handler@0.3.x`.
    P3,
}

impl WasiVersion {
    /// `0.2` or `0.3`, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::P2 => "0.2",
            Self::P3 => "0.3",
        }
    }
}

/// What `wasi-serve` serves, for error messages.
const ACCEPTED: &str = "wasi-serve serves components that export \
    `wasi:http/incoming-handler@0.2.x` (world wasi:http/proxy) or \
    `wasi:http/handler@0.3.x` (world wasi:http/service)";

/// Explains, in one line, why a component built against a WASI release
/// candidate (`wasi:http/handler@0.3.0-rc-…`) did not link or has no
/// usable handler: this host serves the released interfaces (and the drafts it
/// links, such as `wasi:keyvalue@0.2.0-draft`), and the linker's own message
/// would name one missing import without saying why. Called only once
/// linking, or finding or typing the handler, failed.
pub fn refuse_release_candidates(component: &Component, engine: &Engine) -> Result<()> {
    let ty = component.component_type();
    let exports = ty.exports(engine).map(|(name, _)| ("exports", name));
    let imports = ty.imports(engine).map(|(name, _)| ("imports", name));
    for (what, name) in exports.chain(imports) {
        let pre_release = name
            .strip_prefix("wasi:")
            .and_then(|name| name.split_once('@'))
            .is_some_and(|(_, version)| version.contains('-'));
        if pre_release {
            bail!(
                "it {what} `{name}`, from a WASI release candidate; {ACCEPTED}: rebuild it against WASI 0.3.0 or later"
            );
        }
    }
    Ok(())
}

/// Tells from `component`'s exports which handler it has; explains in one
/// line when it has neither.
pub fn detect(component: &Component, engine: &Engine) -> Result<WasiVersion> {
    let ty = component.component_type();
    let exports: Vec<&str> = ty.exports(engine).map(|(name, _)| name).collect();
    let version_of = |interface: &str| {
        exports.iter().find_map(|name| {
            let version = name.strip_prefix(interface)?.strip_prefix('@')?;
            Some((*name, version))
        })
    };
    if let Some((_, version)) = version_of("wasi:http/handler")
        && version.starts_with("0.3.")
    {
        return Ok(WasiVersion::P3);
    }
    if let Some((_, version)) = version_of("wasi:http/incoming-handler")
        && version.starts_with("0.2.")
    {
        return Ok(WasiVersion::P2);
    }
    let listed = if exports.is_empty() {
        "nothing".to_string()
    } else {
        exports
            .iter()
            .map(|name| format!("`{name}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    bail!("it exports {listed}, no wasi:http handler; {ACCEPTED}")
}

/// A linked component, ready to be instantiated for each request.
#[derive(Clone)]
pub enum HandlerPre {
    /// WASI 0.2.
    P2(ProxyPre<GuestState>),
    /// WASI 0.3.
    P3(ServicePre<GuestState>),
}

/// One request, turned into what the guest's handler takes.
pub enum Call {
    /// WASI 0.2: the request and the outparam the response comes back on.
    P2 {
        request: Resource<HostIncomingRequest>,
        out: Resource<HostResponseOutparam>,
    },
    /// WASI 0.3: the request, the result of sending its body to the guest,
    /// and where the response goes.
    P3 {
        request: wasmtime_wasi_http::p3::Request,
        body_sent: BodySent,
        answer: oneshot::Sender<Answer>,
    },
}

type BodySent = Pin<Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>>;

impl HandlerPre {
    /// The handler of `version` in `pre`.
    pub fn new(version: WasiVersion, pre: InstancePre<GuestState>) -> Result<Self> {
        Ok(match version {
            WasiVersion::P2 => Self::P2(ProxyPre::new(pre)?),
            WasiVersion::P3 => Self::P3(ServicePre::new(pre)?),
        })
    }

    /// The WASI release of the handler.
    pub fn version(&self) -> WasiVersion {
        match self {
            Self::P2(_) => WasiVersion::P2,
            Self::P3(_) => WasiVersion::P3,
        }
    }

    /// Turns `request` into a call in `store`; the response head will come
    /// back on `answer`. Fails when the request cannot be handed to a guest
    /// (it names no host).
    pub fn prepare(
        &self,
        store: &mut Store<GuestState>,
        request: hyper::Request<WasiBody>,
        scheme: Scheme,
        answer: oneshot::Sender<Answer>,
    ) -> Result<Call> {
        match self {
            Self::P2(_) => {
                let scheme = if scheme == Scheme::HTTPS {
                    P2Scheme::Https
                } else {
                    P2Scheme::Http
                };
                let mut http = store.data_mut().http();
                let request = http.new_incoming_request(scheme, request)?;
                let out = http.new_response_outparam_from_callback(move |response| {
                    let _ = answer.send(response.map_err(|code| {
                        anyhow::anyhow!("guest answered with error code {code:?}")
                    }));
                })?;
                Ok(Call::P2 { request, out })
            }
            Self::P3(_) => {
                let request = with_scheme_and_authority(request, scheme)?;
                let http = store.data_mut().http();
                let (request, body_sent) =
                    wasmtime_wasi_http::p3::Request::from_http(http.hooks, request);
                Ok(Call::P3 {
                    request,
                    body_sent: Box::pin(body_sent),
                    answer,
                })
            }
        }
    }

    /// Instantiates the component in `store` (timed into `metrics`) and runs
    /// `call` through it until the guest is done, its response body
    /// included. `false` when the instance pool had no room.
    pub async fn run(
        &self,
        store: &mut Store<GuestState>,
        call: Call,
        metrics: &Metrics,
    ) -> wasmtime::Result<bool> {
        let started = Instant::now();
        match (self, call) {
            (Self::P2(pre), Call::P2 { request, out }) => {
                let Some(proxy) = room(pre.instantiate_async(&mut *store).await)? else {
                    return Ok(false);
                };
                metrics.instantiated(started.elapsed());
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut *store, request, out)
                    .await?;
                if store.data().response_body_open() {
                    wasmtime::bail!("guest returned without finishing its response body");
                }
                Ok(true)
            }
            (
                Self::P3(pre),
                Call::P3 {
                    request,
                    body_sent,
                    answer,
                },
            ) => {
                let Some(service) = room(pre.instantiate_async(&mut *store).await)? else {
                    return Ok(false);
                };
                metrics.instantiated(started.elapsed());
                store
                    .run_concurrent(async move |accessor: &Accessor<GuestState>| {
                        let response = match service.handle(accessor, request).await? {
                            Ok(response) => accessor
                                .with(|mut access| response.into_http(&mut access, body_sent))
                                .map_err(anyhow::Error::from),
                            Err(code) => {
                                Err(anyhow::anyhow!("guest answered with error code {code:?}"))
                            }
                        };
                        let _ = answer.send(response);
                        // The body streams from guest tasks still running.
                        poll_fn(|cx| accessor.poll_no_interesting_tasks(cx)).await;
                        wasmtime::Result::<()>::Ok(())
                    })
                    .await??;
                Ok(true)
            }
            _ => unreachable!("a call is prepared by the handler that runs it"),
        }
    }
}

/// An instantiation's result, with `None` for a pool out of room: a
/// component needing more of some pool resource than admission assumed,
/// which is no failure of the guest.
fn room<T>(instantiated: wasmtime::Result<T>) -> wasmtime::Result<Option<T>> {
    match instantiated {
        Ok(instance) => Ok(Some(instance)),
        Err(err) if err.is::<PoolConcurrencyLimitError>() => Ok(None),
        Err(err) => Err(err),
    }
}

/// WASI 0.3 hands the guest the request's scheme and authority from its
/// URI (and drops `Host` as a forbidden header); an HTTP/1.1 request in
/// origin form carries them only in the connection and its `Host` header.
fn with_scheme_and_authority(
    request: hyper::Request<WasiBody>,
    scheme: Scheme,
) -> Result<hyper::Request<WasiBody>> {
    let (mut parts, body) = request.into_parts();
    if parts.uri.scheme().is_none() || parts.uri.authority().is_none() {
        let authority = match parts.uri.authority() {
            Some(authority) => authority.clone(),
            None => {
                let Some(host) = parts.headers.get(http::header::HOST) else {
                    bail!("the request names no host");
                };
                Authority::try_from(host.as_bytes())
                    .map_err(|err| anyhow::anyhow!("invalid `Host` header: {err}"))?
            }
        };
        let mut uri = std::mem::take(&mut parts.uri).into_parts();
        uri.scheme = Some(uri.scheme.unwrap_or(scheme));
        uri.authority = Some(authority);
        if uri.path_and_query.is_none() {
            uri.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        parts.uri = http::Uri::from_parts(uri)?;
    }
    Ok(hyper::Request::from_parts(parts, body))
}
