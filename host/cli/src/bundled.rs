//! Example plugins compiled into the binary (by `build.rs`), so `streamhost
//! demo` and `streamhost bench` work without a separate plugin build.

include!(concat!(env!("OUT_DIR"), "/bundled_plugins.rs"));
