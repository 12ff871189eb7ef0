//! One request: a fresh store and instance, the guest's handler called on its
//! own task, the response handed back on a oneshot.

use http::StatusCode;
use hyper::body::Incoming;
use tokio::sync::oneshot;
use wasmtime::Store;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::runtime::Runtime;
use crate::state::GuestState;

/// Why a request got no response from the guest. Turned into an HTTP
/// response, and logged, by the server.
#[derive(Debug)]
pub enum ProxyError {
    /// The request cannot be handed to a guest (e.g. it has no host).
    BadRequest(anyhow::Error),
    /// The guest trapped, failed, or returned without answering. Its error
    /// was logged where it happened when `logged` is set.
    Guest {
        /// What went wrong, for the log.
        error: anyhow::Error,
        /// Set when the guest task already logged `error`.
        logged: bool,
    },
}

impl ProxyError {
    /// The status the client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Guest { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Runs `request` through a fresh instance of the runtime's component.
///
/// The guest keeps running on its task after the response head is returned,
/// to stream the body; its instance slot is released when it finishes.
pub async fn handle(
    runtime: &Runtime,
    request: hyper::Request<Incoming>,
) -> Result<hyper::Response<HyperOutgoingBody>, ProxyError> {
    let slot = runtime
        .slots()
        .clone()
        .acquire_owned()
        .await
        .expect("the slot semaphore is never closed");

    let method = request.method().clone();
    let uri = request.uri().clone();
    let pre = runtime.pre().clone();
    let mut store = Store::new(pre.engine(), GuestState::new());
    let (sender, receiver) = oneshot::channel();
    let request = store
        .data_mut()
        .http()
        .new_incoming_request(Scheme::Http, request)
        .map_err(|err| ProxyError::BadRequest(err.into()))?;
    let out = store
        .data_mut()
        .http()
        .new_response_outparam(sender)
        .map_err(|err| ProxyError::Guest {
            error: err.into(),
            logged: false,
        })?;

    let guest = tokio::spawn(async move {
        let _slot = slot;
        let result = async {
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, request, out)
                .await
        }
        .await
        .map_err(anyhow::Error::from);
        if let Err(err) = &result {
            tracing::error!(%method, path = uri.path(), "guest failed: {}", one_line(err));
        }
        result
    });

    match receiver.await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(code)) => Err(ProxyError::Guest {
            error: anyhow::anyhow!("guest answered with error code {code:?}"),
            logged: false,
        }),
        // The guest dropped the outparam without setting it: it trapped or
        // returned early. Its task says which.
        Err(_) => Err(match guest.await {
            Ok(Ok(())) => ProxyError::Guest {
                error: anyhow::anyhow!("guest returned without setting a response"),
                logged: false,
            },
            Ok(Err(error)) => ProxyError::Guest {
                error,
                logged: true,
            },
            Err(join) => ProxyError::Guest {
                error: anyhow::Error::new(join).context("guest task failed"),
                logged: false,
            },
        }),
    }
}

/// `err` and its causes on one line. Trap messages carry a multi-line wasm
/// backtrace; a log line should stay a line.
pub fn one_line(err: &anyhow::Error) -> String {
    format!("{err:#}")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}
