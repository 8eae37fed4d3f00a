//! Hot-swap test plugin, version 2: marks its output `version=v2`.

const VERSION: &str = "v2";

fn extra() -> String {
    String::new()
}

include!("../../marker-v1/src/handler.rs");
