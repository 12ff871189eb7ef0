//! The systemd unit in `docs/` is valid, as `systemd-analyze verify` sees it.

use std::path::Path;
use std::process::Command;

use crate::support::{SERVE_BIN, greeter};

/// Runs `systemd-analyze verify` on `unit` text; returns its complaints.
fn verify(unit: &str) -> String {
    let path = crate::support::scratch("unit").join("wasi-serve.service");
    std::fs::write(&path, unit).unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze runs (Debian package systemd)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|line| line.contains("wasi-serve.service"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `docs/wasi-serve.service`, with its paths pointed at the files this build
/// made, passes `systemd-analyze verify` without a warning; a broken copy
/// does not, so the check can fail.
#[test]
fn the_systemd_unit_verifies() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/wasi-serve.service"),
    )
    .unwrap();
    let unit = unit
        .replace("/usr/local/bin/wasi-serve", SERVE_BIN)
        .replace(
            "/usr/local/lib/wasi-serve/greeter.wasm",
            greeter().to_str().unwrap(),
        );
    assert_eq!(verify(&unit), "", "no complaints");
    let broken = unit.replace("Type=exec", "Type=sometimes");
    assert!(
        verify(&broken).contains("sometimes"),
        "a bad unit is reported"
    );
}
