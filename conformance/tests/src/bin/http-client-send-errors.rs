//! The suite's `http-client-send-errors` test.

include!(concat!(env!("WASI_TESTSUITE"), "/sources/http-client-send-errors.rs"));
