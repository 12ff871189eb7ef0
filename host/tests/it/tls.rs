//! HTTPS: a certificate made at test time with the `openssl` tool, and
//! `curl` as the client, negotiating HTTP/1.1 and HTTP/2 by ALPN.

use std::path::PathBuf;
use std::process::Command;

use crate::support::{TestServer, greeter, run_to_exit};

/// A self-signed certificate for `localhost`; returns (cert, key) paths.
fn certificate() -> (PathBuf, PathBuf) {
    let dir = crate::support::scratch("tls");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("the openssl tool runs");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    (cert, key)
}

/// `curl` over HTTPS with `version_flag`; returns body and negotiated version.
fn curl(cert: &PathBuf, version_flag: &str, url: &str) -> (String, String) {
    let output = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            version_flag,
            "-w",
            "\n%{http_version}",
            "--cacert",
        ])
        .arg(cert)
        .arg(url)
        .output()
        .expect("curl runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let (body, version) = text.rsplit_once('\n').unwrap();
    (body.to_owned(), version.to_owned())
}

/// `--tls-cert`/`--tls-key` serve HTTPS: HTTP/1.1 and HTTP/2 are both
/// negotiated by ALPN, and the certificate verifies. In-process.
#[tokio::test(flavor = "multi_thread")]
async fn https_serves_http1_and_http2_by_alpn() {
    let (cert, key) = certificate();
    let serve = TestServer::with_flags(
        &greeter(),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    )
    .await;
    let url = format!("https://localhost:{}/World", serve.addr.port());
    let cert2 = cert.clone();
    let url2 = url.clone();
    let (h1, h2) = tokio::task::spawn_blocking(move || {
        (
            curl(&cert2, "--http1.1", &url2),
            curl(&cert2, "--http2", &url2),
        )
    })
    .await
    .unwrap();
    assert_eq!(h1, ("Hello, World!".to_owned(), "1.1".to_owned()));
    assert_eq!(h2, ("Hello, World!".to_owned(), "2".to_owned()));
}

/// A certificate or key that cannot be used ends the program before it
/// listens, naming the file.
#[test]
fn unusable_tls_files_are_refused() {
    let (cert, _key) = certificate();
    let greeter = greeter();
    let (code, stderr) = run_to_exit(&[
        "--tls-cert",
        "/nonexistent/cert.pem",
        "--tls-key",
        "/nonexistent/key.pem",
        greeter.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("failed to read TLS certificate `/nonexistent/cert.pem`"),
        "{stderr}"
    );
    // The certificate given as its own key.
    let (code, stderr) = run_to_exit(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        cert.to_str().unwrap(),
        greeter.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("TLS private key"), "{stderr}");
    let (code, stderr) = run_to_exit(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        greeter.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2), "--tls-cert needs --tls-key: {stderr}");
}
