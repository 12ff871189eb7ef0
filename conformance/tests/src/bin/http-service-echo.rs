//! The suite's `http-service-echo` test.

include!(concat!(env!("WASI_TESTSUITE"), "/sources/http-service-echo.rs"));
