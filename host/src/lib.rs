//! streamhost: runs message handlers as sandboxed WebAssembly components on
//! Redis Streams consumer groups, with at-least-once delivery, retries and
//! dead-lettering done once, correctly, in the host.
//!
//! This crate is the engine: tests drive the host in-process through
//! [`Host`]. The `streamhost` command (CLI, `demo`, `bench`, the bundled
//! example plugins) is the `streamhost-cli` crate in `host/cli/`.

#![warn(missing_docs, unreachable_pub)]

// Layout: `config` says what to run; `host` starts one `consumer` per plugin,
// which wires a source (`sources/`) into the `pipeline` (intake, workers,
// settle) around a sandboxed `plugin` instance; `effects` and `dlq` are what
// settle's verdicts write; `admin`, `metrics` and `dashboard` are what
// operators see. docs/architecture.md walks one entry through them.
//
// The public modules are the operator APIs the CLI and tests call (config,
// dead letters, deploys, inspection, pausing, a private redis-server for
// demos and tests, loading and checking components); everything else is
// private and only its few types are re-exported below.

mod admin;
mod backoff;
pub mod candidate;
pub mod config;
pub mod connection;
mod consumer;
mod dashboard;
pub mod deploy;
pub mod display;
pub mod dlq;
mod effects;
mod error;
mod exposition;
mod gauges;
mod heartbeat;
mod histogram;
mod host;
pub mod inspect;
pub mod local_cluster;
pub mod local_redis;
mod metrics;
mod operations;
mod outcome;
pub mod pause;
mod pipeline;
pub mod plugin;
mod process_stats;
mod redis_health;
pub mod release;
mod release_metrics;
mod retention;
mod shutdown;
mod sources;
mod streams;

pub use admin::Listener as AdminListener;
pub use config::Config;
pub use consumer::run as run_plugin;
pub use effects::{Effect, EffectPolicy, imports_every_effect, unpermitted as unpermitted_effects};
pub use error::{ConfigError, DeployError, Error, LoadError, LocalRedisError, ReplyError, Result};
pub use heartbeat::INTERVAL as HEARTBEAT_INTERVAL;
pub use host::{Host, engine_options, load_plugins};
pub use metrics::{Metrics, PluginMetrics};
pub use outcome::{FailureKind, Outcome, TrapKind};
pub use pipeline::PluginContext;
pub use shutdown::cancel_on_signal;
pub use sources::check_key_type as check_source_key_type;
pub use streams::entry;
