//! Link-time settings for the `wasi-serve` binary.

use std::env;

fn main() {
    // Relative relocations packed (DT_RELR). As a position-independent
    // executable, the binary carries ~62,000 of them: in the classic format
    // a 1.5 MB table that the dynamic loader reads once at start, and whose
    // pages then stay mapped in the process for good. Packed, the table is
    // a few kilobytes (docs/performance.md, "Packed relocations").
    //
    // Only glibc 2.36 and later load such a binary, so only a native build
    // on such a system gets it; anything else links as before.
    let native = env::var("TARGET").ok() == env::var("HOST").ok();
    let gnu_linux = env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if native && gnu_linux && glibc_at_least(2, 36) {
        println!("cargo:rustc-link-arg-bin=wasi-serve=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed=build.rs");
}

/// Whether the glibc this build script runs on is `major.minor` or later.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn glibc_at_least(major: u32, minor: u32) -> bool {
    unsafe extern "C" {
        fn gnu_get_libc_version() -> *const std::ffi::c_char;
    }
    // SAFETY: glibc returns a static, NUL-terminated string such as "2.36".
    let version = unsafe { std::ffi::CStr::from_ptr(gnu_get_libc_version()) };
    let mut parts = version
        .to_str()
        .unwrap_or_default()
        .split('.')
        .map(|part| part.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (major, minor)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn glibc_at_least(_major: u32, _minor: u32) -> bool {
    false
}
