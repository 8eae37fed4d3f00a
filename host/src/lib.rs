//! streamhost: runs message handlers as sandboxed WebAssembly components on
//! Redis Streams consumer groups, with at-least-once delivery, retries and
//! dead-lettering done once, correctly, in the host.
//!
//! The binary (`main.rs`) is a thin shell over this library; tests drive the
//! host in-process through [`Host`].

pub mod admin;
pub mod bench;
pub mod bundled;
pub mod cli;
pub mod config;
pub mod consumer;
pub mod deploy;
pub mod dispatch;
pub mod display;
pub mod dlq;
pub mod effects;
pub mod error;
pub mod gauges;
pub mod host;
pub mod inspect;
pub mod local_redis;
pub mod metrics;
pub mod operations;
pub mod plugin;
pub mod retention;
pub mod shutdown;
pub mod streams;

pub use config::Config;
pub use error::{Error, Result};
pub use host::Host;
