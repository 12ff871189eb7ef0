//! The suite's `http-client-chunked` test.

include!(concat!(env!("WASI_TESTSUITE"), "/sources/http-client-chunked.rs"));
