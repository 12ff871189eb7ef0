//! The suite's `http-client-path` test.

include!(concat!(env!("WASI_TESTSUITE"), "/sources/http-client-path.rs"));
