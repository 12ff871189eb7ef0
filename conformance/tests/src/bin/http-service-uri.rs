//! The suite's `http-service-uri` test.

include!(concat!(env!("WASI_TESTSUITE"), "/sources/http-service-uri.rs"));
