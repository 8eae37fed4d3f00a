//! The `streamhost` command line, built inside the test crate so process-level
//! tests (kill -9, SIGSTOP, exit codes) can find it via `CARGO_BIN_EXE_*`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    streamhost_cli::main(streamhost_cli::Cli::parse())
}
