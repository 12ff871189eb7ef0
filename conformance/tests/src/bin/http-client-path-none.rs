//! The suite's `http-client-path-none` test.

include!(concat!(env!("WASI_TESTSUITE"), "/sources/http-client-path-none.rs"));
