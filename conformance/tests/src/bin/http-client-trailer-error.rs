//! The suite's `http-client-trailer-error` test.

include!(concat!(env!("WASI_TESTSUITE"), "/sources/http-client-trailer-error.rs"));
