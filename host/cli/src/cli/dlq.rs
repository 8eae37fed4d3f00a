//! `streamhost dlq`: list, show, replay and purge dead letters.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, Subcommand};

use streamhost::dlq::{self, DeadLetter, Selection, meta};

#[derive(Debug, Args)]
pub struct DlqArgs {
    /// Config file: the Redis URL and, with --plugin, the dead-letter stream.
    #[arg(short, long, global = true)]
    pub config: Option<PathBuf>,
    /// The plugin whose dead-letter stream to use (default: the only one in the config).
    #[arg(long, global = true)]
    pub plugin: Option<String>,
    /// Redis URL (overrides the config and REDIS_URL).
    #[arg(long, global = true)]
    pub redis: Option<String>,
    /// The dead-letter stream, instead of --config/--plugin.
    #[arg(long, global = true)]
    pub stream: Option<String>,
    #[command(subcommand)]
    pub action: DlqAction,
}

#[derive(Debug, Subcommand)]
pub enum DlqAction {
    /// List dead letters: id, reason, attempts, source, error.
    List {
        /// Show at most this many.
        #[arg(long, default_value_t = 100)]
        count: usize,
    },
    /// Show one dead letter with all metadata and fields.
    Show {
        /// The dead letter's id in the DLQ stream.
        #[arg(value_parser = super::stream_id)]
        id: String,
    },
    /// Put dead letters back on their source stream (atomically removing them from the DLQ).
    Replay {
        /// Replay every dead letter.
        #[arg(long, conflicts_with_all = ["id", "reason"])]
        all: bool,
        /// Replay these ids (repeatable).
        #[arg(long, value_parser = super::stream_id)]
        id: Vec<String>,
        /// Replay those with this reason: rejected, attempts-exhausted, trap, trap:fuel, ...
        #[arg(long)]
        reason: Option<String>,
    },
    /// Delete every dead letter in the stream.
    Purge {
        /// Required: purging cannot be undone.
        #[arg(long)]
        yes: bool,
    },
}

/// Runs a `dlq` subcommand.
pub async fn dlq(args: DlqArgs) -> anyhow::Result<ExitCode> {
    let (url, stream) = target(&args)?;
    let mut conn = super::connect(&url).await?;
    let mut out = std::io::stdout().lock();
    match args.action {
        DlqAction::List { count } => {
            let letters = dlq::list(&mut conn, &stream, "-", count).await?;
            writeln!(
                out,
                "{:<20} {:<22} {:>8}  {:<24} error",
                "ID", "REASON", "ATTEMPTS", "SOURCE"
            )?;
            for d in &letters {
                writeln!(
                    out,
                    "{:<20} {:<22} {:>8}  {:<24} {}",
                    d.id,
                    d.meta(meta::REASON).unwrap_or("?"),
                    d.meta(meta::ATTEMPTS).unwrap_or("?"),
                    format!(
                        "{}/{}",
                        d.meta(meta::SOURCE_STREAM).unwrap_or("?"),
                        d.meta(meta::SOURCE_ID).unwrap_or("?")
                    ),
                    d.meta(meta::ERROR).unwrap_or(""),
                )?;
            }
            writeln!(out, "{} dead letter(s) shown from {stream}", letters.len())?;
        }
        DlqAction::Show { id } => {
            let Some(d) = dlq::show(&mut conn, &stream, &id).await? else {
                bail!(super::BadInput(format!("no dead letter {id} in {stream}")));
            };
            print_letter(&mut out, &d)?;
        }
        DlqAction::Replay { all, id, reason } => {
            let selection = match (all, id.is_empty(), reason) {
                (true, _, _) => Selection::All,
                (false, false, None) => Selection::Ids(id),
                (false, true, Some(r)) => Selection::Reason(r),
                _ => bail!(streamhost::error::ConfigError::Invalid {
                    key: "dlq replay".into(),
                    reason: "say what to replay: --all, --id ID (repeatable) or --reason REASON"
                        .into(),
                }),
            };
            if let Selection::Ids(ids) = &selection {
                // A mistyped id should not pass as "replayed 0" after the rest went.
                let mut missing = Vec::new();
                for id in ids {
                    if dlq::show(&mut conn, &stream, id).await?.is_none() {
                        missing.push(id.as_str());
                    }
                }
                if !missing.is_empty() {
                    bail!(super::BadInput(format!(
                        "no dead letter {} in {stream}; nothing replayed",
                        missing.join(", ")
                    )));
                }
            }
            let report = dlq::replay(&mut conn, &stream, &selection, |r| {
                eprintln!("replayed {} (skipped {})", r.replayed, r.skipped);
            })
            .await?;
            writeln!(
                out,
                "replayed {} dead letter(s) from {stream}; {} not selected",
                report.replayed, report.skipped
            )?;
        }
        DlqAction::Purge { yes } => {
            if !yes {
                bail!(streamhost::error::ConfigError::Invalid {
                    key: "dlq purge".into(),
                    reason: "purging deletes every dead letter; pass --yes to confirm".into(),
                });
            }
            let n = dlq::purge(&mut conn, &stream).await?;
            writeln!(out, "purged {n} dead letter(s) from {stream}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_letter(out: &mut impl Write, d: &DeadLetter) -> std::io::Result<()> {
    writeln!(out, "id: {}", d.id)?;
    for (name, value) in &d.metadata {
        writeln!(out, "{name}: {value}")?;
    }
    for (name, value) in &d.fields {
        match std::str::from_utf8(value) {
            Ok(text) => writeln!(out, "field {name}: {text}")?,
            Err(_) => writeln!(
                out,
                "field {name}: ({} bytes, hex) {}",
                value.len(),
                hex::encode(value)
            )?,
        }
    }
    Ok(())
}

/// Which Redis and which stream: explicit flags first, then the config.
fn target(args: &DlqArgs) -> anyhow::Result<(String, String)> {
    let config = args.config.as_deref().map(super::load_config).transpose()?;
    let url = super::redis_url(args.redis.as_deref(), config.as_ref())?;
    if let Some(stream) = &args.stream {
        return Ok((url, stream.clone()));
    }
    let Some(config) = config else {
        bail!(streamhost::error::ConfigError::Invalid {
            key: "dlq".into(),
            reason: "name the dead-letter stream with --stream, or give --config (and --plugin)"
                .into(),
        });
    };
    let plugin = match &args.plugin {
        Some(name) => config.plugins.iter().find(|p| &p.name == name),
        None if config.plugins.len() == 1 => config.plugins.first(),
        None => bail!(streamhost::error::ConfigError::Invalid {
            key: "dlq --plugin".into(),
            reason: "the config has several plugins; say which with --plugin".into(),
        }),
    };
    let Some(plugin) = plugin else {
        bail!(streamhost::error::ConfigError::Invalid {
            key: "dlq --plugin".into(),
            reason: format!(
                "no plugin named {:?} in the config",
                args.plugin.as_deref().unwrap_or_default()
            ),
        });
    };
    Ok((url, plugin.dlq_stream()))
}
