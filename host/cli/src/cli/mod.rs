//! The command line: argument definitions and one module per subcommand.
//! This is the binary's edge, so errors here carry `anyhow` context.

pub mod bench;
pub mod check;
pub mod demo;
pub mod deploy;
pub mod dlq;
pub mod run;
pub mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Run sandboxed WebAssembly message handlers on Redis Streams.
#[derive(Debug, Parser)]
#[command(name = "streamhost", version, about, long_about = None)]
pub struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Consume the configured streams until SIGINT/SIGTERM.
    Run {
        /// The config file.
        #[arg(short, long, default_value = "streamhost.toml")]
        config: PathBuf,
        /// Swap a plugin whenever its component file changes on disk (development loop).
        #[arg(long)]
        watch: bool,
    },
    /// Validate a component and make it the plugin's version on every host, without restarts.
    Deploy {
        /// The plugin name.
        plugin: String,
        /// The component file.
        file: PathBuf,
        /// Who deploys (recorded; default: <hostname>-<pid>).
        #[arg(long)]
        by: Option<String>,
        #[command(flatten)]
        target: deploy::Target,
    },
    /// List a plugin's deployed versions and refusals.
    Versions {
        /// The plugin name.
        plugin: String,
        #[command(flatten)]
        target: deploy::Target,
    },
    /// Make an earlier version current again (default: the one before the current).
    Rollback {
        /// The plugin name.
        plugin: String,
        /// The version number to return to.
        version: Option<u64>,
        /// Who rolls back (recorded).
        #[arg(long)]
        by: Option<String>,
        #[command(flatten)]
        target: deploy::Target,
    },
    /// Validate a config and every component without consuming.
    Check {
        /// The config file.
        #[arg(short, long, default_value = "streamhost.toml")]
        config: PathBuf,
    },
    /// Run the bundled example plugins on sample orders and print what happened.
    Demo(demo::DemoArgs),
    /// Inspect and replay dead-letter streams.
    Dlq(dlq::DlqArgs),
    /// Show each plugin's group as Redis sees it: consumers, pending, lag, DLQ.
    Status(status::StatusArgs),
    /// Measure throughput and latency against a native handler and a hand-written consumer.
    Bench(bench::BenchArgs),
}

/// Exit code for bad input (config, components, arguments).
pub const EXIT_BAD_INPUT: u8 = 2;

/// Runs a parsed command line.
pub fn main(cli: Cli) -> ExitCode {
    // The demo and the bench print their own summaries; per-entry logs would drown them.
    let default_level = if matches!(cli.command, Command::Demo(_) | Command::Bench(_)) {
        "warn"
    } else {
        "info"
    };
    init_tracing(cli.log_format, default_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run { config, watch } => run::run(&config, watch).await,
            Command::Deploy {
                plugin,
                file,
                by,
                target,
            } => deploy::deploy_cmd(&target, &plugin, &file, by).await,
            Command::Versions { plugin, target } => deploy::versions_cmd(&target, &plugin).await,
            Command::Rollback {
                plugin,
                version,
                by,
                target,
            } => deploy::rollback_cmd(&target, &plugin, version, by).await,
            Command::Check { config } => check::check(&config).await,
            Command::Demo(args) => demo::demo(args).await,
            Command::Dlq(args) => dlq::dlq(args).await,
            Command::Status(args) => status::status(args).await,
            Command::Bench(args) => bench::bench(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", render(&e));
            exit_code_for(&e)
        }
    }
}

/// The error and its causes on one line, each said once: several library
/// errors print their source in their own message too, and `{:#}` would
/// repeat it.
fn render(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Bad config or components exit with 2, everything else with 1.
fn exit_code_for(e: &anyhow::Error) -> ExitCode {
    let bad_input = e.chain().any(|c| {
        c.downcast_ref::<streamhost::error::ConfigError>().is_some()
            || c.downcast_ref::<streamhost::error::LoadError>().is_some()
            || matches!(
                c.downcast_ref::<streamhost::Error>(),
                Some(streamhost::Error::Config(_) | streamhost::Error::Load(_))
            )
    });
    if bad_input {
        ExitCode::from(EXIT_BAD_INPUT)
    } else {
        ExitCode::FAILURE
    }
}

fn init_tracing(format: LogFormat, default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The Redis URL a command uses: `--redis`, then the config's (which
/// `REDIS_URL` already overrides), then `REDIS_URL`, then the default.
pub fn redis_url(flag: Option<&str>, config: Option<&streamhost::Config>) -> String {
    flag.map(str::to_owned)
        .or_else(|| config.map(|c| c.redis.url.clone()))
        .or_else(|| std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| streamhost::config::RedisConfig::default().url)
}

/// A connection for a one-shot command, with the URL (password hidden) in errors.
pub async fn connect(url: &str) -> anyhow::Result<redis::aio::MultiplexedConnection> {
    use anyhow::Context;
    let client = redis::Client::open(url).with_context(|| format!("bad Redis URL {url:?}"))?;
    let redacted = streamhost::streams::redact(url);
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        client.get_multiplexed_async_connection(),
    )
    .await
    .map_err(|_| anyhow::anyhow!("timed out connecting to Redis at {redacted}"))?
    .with_context(|| format!("cannot connect to Redis at {redacted}"))
}

/// A connection without a response timeout, for commands whose operations
/// bound their own time by the size of the work (`dlq`).
pub async fn connect_unbounded(url: &str) -> anyhow::Result<redis::aio::MultiplexedConnection> {
    use anyhow::Context;
    let client = redis::Client::open(url).with_context(|| format!("bad Redis URL {url:?}"))?;
    let redacted = streamhost::streams::redact(url);
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(std::time::Duration::from_secs(5)))
        .set_response_timeout(None);
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .with_context(|| format!("cannot connect to Redis at {redacted}"))
}

/// Loads a config file and applies `REDIS_URL`.
pub fn load_config(path: &std::path::Path) -> anyhow::Result<streamhost::Config> {
    let mut config = streamhost::Config::load(path)?;
    config.apply_env();
    Ok(config)
}
