//! The suite's `http-service` test.

include!(concat!(env!("WASI_TESTSUITE"), "/sources/http-service.rs"));
