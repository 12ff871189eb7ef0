//! The suite's `http-client-status` test.

include!(concat!(env!("WASI_TESTSUITE"), "/sources/http-client-status.rs"));
