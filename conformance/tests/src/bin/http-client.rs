//! The suite's `http-client` test.

include!(concat!(env!("WASI_TESTSUITE"), "/sources/http-client.rs"));
