//! The `streamhost` binary: parse arguments, hand over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    streamhost::cli::main(streamhost::cli::Cli::parse())
}
