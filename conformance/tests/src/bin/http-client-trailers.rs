//! The suite's `http-client-trailers` test.

include!(concat!(env!("WASI_TESTSUITE"), "/sources/http-client-trailers.rs"));
