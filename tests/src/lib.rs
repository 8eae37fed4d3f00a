//! End-to-end tests for streamhost: a real redis-server and real compiled components.

/// Paths of the plugin components, freshly built by `build.rs`.
pub mod artifacts {
    include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));
}
