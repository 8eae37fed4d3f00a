//! The `streamhost` command over the [`streamhost`] engine: argument parsing,
//! the subcommands (`run`, `check`, `deploy`, `dlq`, `status`, `demo`,
//! `bench`), the benchmark, and the example plugins bundled for `demo` and
//! `bench`. Tests spawn it through their own thin binary, so it is a library
//! with a one-line `main.rs` beside it.

mod bench;
mod bundled;
mod cli;

pub use cli::{Cli, main};
