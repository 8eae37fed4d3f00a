//! The command line: argument definitions and one module per subcommand.
//! This is the binary's edge, so errors here carry `anyhow` context.

pub mod bench;
pub mod build;
pub mod check;
pub mod demo;
pub mod deploy;
pub mod dev;
pub mod dlq;
pub mod dlq_candidate;
pub mod fixtures;
pub mod invoke;
pub mod new;
pub mod produce;
pub mod run;
pub mod status;

use std::path::PathBuf;
use std::process::ExitCode;
use streamhost::connection::{Conn, Endpoint};

use clap::{Parser, Subcommand, ValueEnum};

/// `streamhost --version`: the release and the WIT packages its handlers may target.
static VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{} (accepts components of WIT {})",
        env!("CARGO_PKG_VERSION"),
        streamhost::plugin::WIT_PACKAGES.join(", ")
    )
});

/// Run sandboxed WebAssembly message handlers on Redis Streams.
#[derive(Debug, Parser)]
#[command(name = "streamhost", version = VERSION.as_str(), about, long_about = None)]
pub struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Colour in logs: `auto` colours only a terminal and honours NO_COLOR.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    pub color: ColorChoice,
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

/// When logs carry ANSI colour codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// When stderr is a terminal and `NO_COLOR` is unset or empty.
    Auto,
    /// Always (e.g. a pager that understands colour).
    Always,
    /// Never.
    Never,
}

impl ColorChoice {
    /// Whether to colour output written to `stream`.
    pub fn enabled(self, stream: &impl std::io::IsTerminal) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && stream.is_terminal()
            }
        }
    }
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
        /// Who deploys (recorded; default: the user running the command).
        #[arg(long)]
        by: Option<String>,
        /// Deploy a plugin no host has run and none was deployed as before
        /// (without it such a name is refused, as a likely typo).
        #[arg(long)]
        create: bool,
        /// Start a canary instead: route this share of entries (e.g. "5%")
        /// to the component on every host, the rest to the current version;
        /// then `promote` or `rollback`. Rolled back automatically when it
        /// fails more than the current version ([plugin.canary]).
        #[arg(long, value_name = "PERCENT", value_parser = deploy::parse_share)]
        canary: Option<u32>,
        /// Start a shadow instead: every host runs the component on a copy
        /// of each entry after the current version handled it (same
        /// limits, effects never committed); `streamhost shadow PLUGIN`
        /// reports how often they differ.
        #[arg(long, conflicts_with = "canary")]
        shadow: bool,
        #[command(flatten)]
        target: deploy::Target,
    },
    /// Report a shadow: how often the candidate's outcome or effects
    /// differed from the current version's, with examples.
    Shadow {
        /// The plugin name.
        plugin: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Examples shown at most (the newest).
        #[arg(long, default_value_t = 20)]
        examples: usize,
        #[command(flatten)]
        target: deploy::Target,
    },
    /// Make the running canary's (or shadow's) candidate the current version on every host.
    Promote {
        /// The plugin name.
        plugin: String,
        /// Who promotes (recorded; default: the user running the command).
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
    /// End the running canary (every entry goes to the current version
    /// again); without a canary, make an earlier version current again,
    /// recorded as a new version "rollback to N" (see `versions`).
    Rollback {
        /// The plugin name.
        plugin: String,
        /// The version number to return to. Default: the newest version whose
        /// component differs from the current one, so that two rollbacks in a
        /// row return to where the first one started.
        version: Option<u64>,
        /// Who rolls back (recorded; default: the user running the command).
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
        /// Skip the checks that need Redis (that it answers at the URL).
        #[arg(long)]
        offline: bool,
    },
    /// Write a ready plugin project: handler, build file, config, fixtures, a test.
    New(new::NewArgs),
    /// Build the project in a directory into its component, then validate it.
    Build(build::BuildArgs),
    /// Run messages through a component with no Redis: outcome, effects, logs, fuel, memory.
    Invoke(invoke::InvokeArgs),
    /// Build, run on a private redis-server, feed fixtures, print outcomes; rebuild on change.
    Dev(dev::DevArgs),
    /// Run the bundled example plugins on sample orders and print what happened.
    Demo(demo::DemoArgs),
    /// Inspect and replay dead-letter streams.
    Dlq(dlq::DlqArgs),
    /// Show each plugin's group as Redis sees it: consumers, pending, lag, DLQ.
    Status(status::StatusArgs),
    /// Measure throughput and latency against a native handler and a hand-written consumer.
    Bench(bench::BenchArgs),
    /// Put test items on any source: stream entries, Pub/Sub messages, list
    /// items, sorted-set members (from arguments or a JSONL file).
    Produce(produce::ProduceArgs),
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
    init_tracing(cli.log_format, cli.color, default_level);
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
                create,
                canary,
                shadow,
                target,
            } => match (canary, shadow) {
                (Some(share), _) => {
                    deploy::canary_cmd(&target, &plugin, &file, by, Some(share)).await
                }
                (None, true) => deploy::canary_cmd(&target, &plugin, &file, by, None).await,
                (None, false) => deploy::deploy_cmd(&target, &plugin, &file, by, create).await,
            },
            Command::Shadow {
                plugin,
                json,
                examples,
                target,
            } => deploy::shadow_cmd(&target, &plugin, json, examples).await,
            Command::Promote { plugin, by, target } => {
                deploy::promote_cmd(&target, &plugin, by).await
            }
            Command::Versions { plugin, target } => deploy::versions_cmd(&target, &plugin).await,
            Command::Rollback {
                plugin,
                version,
                by,
                target,
            } => deploy::rollback_cmd(&target, &plugin, version, by).await,
            Command::Check { config, offline } => check::check(&config, offline).await,
            Command::New(args) => new::new(args),
            Command::Build(args) => build::build(args).await,
            Command::Invoke(args) => invoke::invoke(args).await,
            Command::Dev(args) => dev::dev(args).await,
            Command::Demo(args) => demo::demo(args).await,
            Command::Dlq(args) => dlq::dlq(args).await,
            Command::Status(args) => status::status(args).await,
            Command::Bench(args) => bench::bench(args).await,
            Command::Produce(args) => produce::produce(args).await,
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

/// Bad input found at the binary's edge (an argument naming nothing that
/// exists, a malformed id): exits 2 like bad config.
#[derive(Debug)]
pub struct BadInput(pub String);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

/// Bad input (config, components, arguments, names of things that do not
/// exist) exits with 2, everything else with 1.
fn exit_code_for(e: &anyhow::Error) -> ExitCode {
    use streamhost::{ConfigError, DeployError, LoadError};
    let bad_input = e.chain().any(|c| {
        c.is::<ConfigError>()
            || c.is::<LoadError>()
            || c.is::<BadInput>()
            || c.downcast_ref::<DeployError>()
                .is_some_and(|d| !matches!(d, DeployError::ComponentGone { .. }))
            || c.downcast_ref::<streamhost::Error>()
                .is_some_and(streamhost::Error::is_bad_input)
    });
    if bad_input {
        ExitCode::from(EXIT_BAD_INPUT)
    } else {
        ExitCode::FAILURE
    }
}

fn init_tracing(format: LogFormat, color: ColorChoice, default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(color.enabled(&std::io::stderr())).init(),
        // Flat: `{"level":..,"plugin":..,"message":..}`, the fields beside
        // the message, as log shippers index them without a nested `fields`.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_ansi(false)
            .init(),
    }
}

/// Where Redis is for a command: `--redis`, then the config's (which
/// `REDIS_URL` already overrides), then `REDIS_URL`, then the default. With
/// a config saying `cluster = true`, `--redis` is a seed of that cluster. A
/// URL that is not a Redis URL is bad input naming where it came from.
pub fn redis_endpoint(
    flag: Option<&str>,
    config: Option<&streamhost::Config>,
) -> Result<Endpoint, streamhost::ConfigError> {
    let cluster = config.is_some_and(|c| c.redis.cluster);
    let (key, url) = if let Some(url) = flag {
        ("--redis", url.to_owned())
    } else if let Some(c) = config {
        return Ok(Endpoint::new(&c.redis));
    } else if let Some(url) = std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty()) {
        ("REDIS_URL", url)
    } else {
        ("redis.url", streamhost::config::RedisConfig::default().url)
    };
    streamhost::config::check_redis_url(key, &url)?;
    Ok(if cluster {
        Endpoint::cluster(&[url])
    } else {
        Endpoint::single(&url)
    })
}

/// A connection for a one-shot command (a cluster client when the endpoint
/// is a cluster), with the URLs (passwords hidden) in errors. A seed that
/// does not answer is an error: the caller exits 2 when Redis is the input.
pub async fn connect(redis: &Endpoint) -> anyhow::Result<Conn> {
    connect_within(redis, std::time::Duration::from_secs(5)).await
}

/// A connection whose commands may take long, for commands whose operations
/// bound their own time by the size of the work (`dlq`).
pub async fn connect_unbounded(redis: &Endpoint) -> anyhow::Result<Conn> {
    connect_within(redis, std::time::Duration::from_secs(3600)).await
}

async fn connect_within(redis: &Endpoint, response: std::time::Duration) -> anyhow::Result<Conn> {
    use anyhow::Context;
    let redacted = redis.redacted();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        redis.connect_once(response),
    )
    .await
    .map_err(|_| anyhow::anyhow!("timed out connecting to Redis at {redacted}"))?
    .with_context(|| format!("cannot connect to Redis at {redacted}"))
}

/// Parses a stream entry id argument (`1700000000000-0`, or the time part
/// alone): a malformed one is a usage error (exit 2), not a Redis error.
pub fn stream_id(text: &str) -> Result<String, String> {
    let (ms, seq) = text.split_once('-').unwrap_or((text, "0"));
    let number = |part: &str| {
        !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) && part.parse::<u64>().is_ok()
    };
    if number(ms) && number(seq) {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "{text:?} is not a stream entry id like 1700000000000-0"
        ))
    }
}

/// Loads a config file and applies `REDIS_URL`.
pub fn load_config(path: &std::path::Path) -> anyhow::Result<streamhost::Config> {
    let mut config = streamhost::Config::load(path)?;
    config.apply_env()?;
    Ok(config)
}
