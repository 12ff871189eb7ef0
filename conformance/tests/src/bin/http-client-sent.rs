//! The suite's `http-client-sent` test.

include!(concat!(env!("WASI_TESTSUITE"), "/sources/http-client-sent.rs"));
