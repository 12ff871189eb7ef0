//! The suite's `http-client-headers` test.

include!(concat!(env!("WASI_TESTSUITE"), "/sources/http-client-headers.rs"));
