//! The `streamhost` binary: parse arguments, hand over to the library.

use clap::Parser;

/// The hot path allocates a few small buffers per entry; jemalloc does that
/// about 10% cheaper in host CPU than glibc's malloc (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    streamhost_cli::main(streamhost_cli::Cli::parse())
}
