//! streamhost: runs message handlers as sandboxed WebAssembly components on
//! Redis Streams consumer groups, with at-least-once delivery, retries and
//! dead-lettering done once, correctly, in the host.
//!
//! This crate is the engine: tests drive the host in-process through
//! [`Host`]. The `streamhost` command (CLI, `demo`, `bench`, the bundled
//! example plugins) is the `streamhost-cli` crate in `host/cli/`.

pub mod admin;
pub mod backoff;
pub mod config;
pub mod consumer;
pub mod dashboard;
pub mod deploy;
pub mod display;
pub mod dlq;
pub mod effects;
pub mod error;
pub mod exposition;
pub mod gauges;
pub mod heartbeat;
pub mod host;
pub mod inspect;
pub mod local_redis;
pub mod metrics;
pub mod operations;
pub mod outcome;
pub mod pause;
pub mod pipeline;
pub mod plugin;
pub mod process_stats;
pub mod redis_health;
pub mod retention;
pub mod shutdown;
pub mod sources;
pub mod streams;

pub use config::Config;
pub use error::{Error, Result};
pub use host::Host;
