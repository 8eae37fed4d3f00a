//! Hot-swap test plugin, version "large": marks its output `version=large` and
//! carries 6 MiB of data, to measure swaps of a component of several MiB.

const VERSION: &str = "large";

/// Ballast kept by `black_box` indexing below (a real 6 MiB data segment).
static BALLAST: [u8; 6 << 20] = [7u8; 6 << 20];

fn extra() -> String {
    let i = std::hint::black_box(12345usize) % BALLAST.len();
    BALLAST[i].to_string()
}

include!("../../marker-v1/src/handler.rs");
