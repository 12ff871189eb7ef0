//! Link-time settings for the `wasi-serve` binary.

fn main() {
    // Relative relocations packed (DT_RELR, glibc 2.36 and later). As a
    // position-independent executable, the binary carries ~62,000 of them:
    // in the classic format a 1.5 MB table that the dynamic loader reads
    // once at start, and whose pages then stay mapped in the process for
    // good. Packed, the table is a few kilobytes. See docs/performance.md.
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if target_os == "linux" && target_env == "gnu" {
        println!("cargo:rustc-link-arg-bin=wasi-serve=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
