//! Nothing here: the benchmark is `benches/instance.rs`.
