//! Hot-swap test plugin, version 1: marks its output `version=v1`.

const VERSION: &str = "v1";

fn extra() -> String {
    String::new()
}

include!("handler.rs");
