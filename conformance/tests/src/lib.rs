//! The suite's shared test code (`sources/http.rs`), as the crate its tests
//! import it from (`test_wasm32_wasip3::http`).

pub mod http {
    include!(concat!(env!("WASI_TESTSUITE"), "/sources/http.rs"));
}
