//! The suite's `http-client-method` test.

include!(concat!(env!("WASI_TESTSUITE"), "/sources/http-client-method.rs"));
