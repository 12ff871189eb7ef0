//! An answer sent before the request body was read (here 413) reaches a
//! client that is still sending that body, over HTTP/1.1 and HTTP/2.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::support::{STEP, TestServer, get, test_guests};

/// The upload each client sends: far past the 1 KiB limit, and past the
/// socket buffers and HTTP/2's initial window, so it cannot all be sent
/// before the server answers.
const UPLOAD: usize = 1 << 20;
const PIECE: usize = 16 << 10;

/// Over HTTP/1.1 the server answers 413 and closes the connection while the
/// client is still writing. The client writes its whole body, then reads:
/// without a lingering close the kernel would answer its writes with RST and
/// the 413 would be lost.
#[tokio::test(flavor = "multi_thread")]
async fn a_413_reaches_an_http1_client_still_sending() {
    for guest in test_guests() {
        let server = TestServer::with_flags(&guest, &["--max-request-body", "1KiB"]).await;
        for chunked in [false, true] {
            let mut stream = TcpStream::connect(server.addr).await.unwrap();
            let head = if chunked {
                "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_string()
            } else {
                format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {UPLOAD}\r\n\r\n")
            };
            stream.write_all(head.as_bytes()).await.unwrap();
            let piece = if chunked {
                let mut piece = format!("{:x}\r\n", PIECE - 8).into_bytes();
                piece.resize(piece.len() + PIECE - 8, b'a');
                piece.extend_from_slice(b"\r\n");
                piece
            } else {
                vec![b'a'; PIECE]
            };
            for sent in 0..UPLOAD / PIECE {
                let written = tokio::time::timeout(STEP, stream.write_all(&piece)).await;
                assert!(
                    matches!(written, Ok(Ok(()))),
                    "chunked={chunked}: write {sent} failed: {written:?}"
                );
            }
            let mut raw = Vec::new();
            let read = tokio::time::timeout(STEP, stream.read_to_end(&mut raw)).await;
            assert!(matches!(read, Ok(Ok(_))), "chunked={chunked}: {read:?}");
            let raw = String::from_utf8_lossy(&raw);
            assert!(
                raw.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
                "chunked={chunked}: {raw}"
            );
            assert!(raw.ends_with("413: Payload Too Large"), "{raw}");
        }
        assert_eq!(get(server.addr, "/after").await.body, "Howdy, after!");
    }
}

/// An upload that counts how much of it the client sent, and says when it
/// has all been sent.
struct Upload {
    left: usize,
    sent: Arc<AtomicUsize>,
    done: Arc<Notify>,
}

impl Body for Upload {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.left == 0 {
            this.done.notify_one();
            return Poll::Ready(None);
        }
        this.left -= PIECE;
        this.sent.fetch_add(PIECE, Ordering::Relaxed);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'a'; PIECE])))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left as u64)
    }
}

/// Over HTTP/2 a body declared too large is answered 413 from the head, and
/// the host then reads and throws away the rest of the upload: the client
/// sends all of it and the stream ends normally, rather than with a
/// `RST_STREAM` in the middle of the upload (which curl 7.88 reports as an
/// error, losing the 413).
#[tokio::test(flavor = "multi_thread")]
async fn a_413_reaches_an_http2_client_still_sending() {
    for guest in test_guests() {
        let server = TestServer::with_flags(&guest, &["--max-request-body", "1KiB"]).await;
        let stream = TcpStream::connect(server.addr).await.unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(connection);
        let sent = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(Notify::new());
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!("http://{}/echo", server.addr))
            .header("content-length", UPLOAD)
            .body(Upload {
                left: UPLOAD,
                sent: sent.clone(),
                done: done.clone(),
            })
            .unwrap();
        let response = tokio::time::timeout(STEP, sender.send_request(request))
            .await
            .expect("an answer in time")
            .expect("an answer");
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "413: Payload Too Large");
        let finished = tokio::time::timeout(STEP, done.notified()).await;
        assert!(
            finished.is_ok(),
            "the upload was cut off after {} of {UPLOAD} bytes",
            sent.load(Ordering::Relaxed)
        );
        assert_eq!(get(server.addr, "/after").await.body, "Howdy, after!");
    }
}
