//! `streamhost dlq`: list, show, replay and purge one plugin's dead letters.
//! Everything stored that is printed (names, values, metadata) goes through
//! [`streamhost::display`]: producers control those bytes.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use clap::{Args, Subcommand};

use streamhost::ConfigError;
use streamhost::display::{ago, escape_bytes, now_ms, timestamp};
use streamhost::dlq::{
    self, DeadLetter, Filter, Owner, ReplayOptions, ReplayOutcome, Selection, Summary, meta,
};

/// Exit status when some replays' outcome is unknown (they may have happened).
const EXIT_UNKNOWN: u8 = 3;
/// Longest value `show` prints whole; longer ones are cut, saying so.
const SHOW_VALUE_BYTES: usize = 64 * 1024;

#[derive(Debug, Args)]
pub struct DlqArgs {
    /// Config file: the Redis URL and, with --plugin, the dead-letter stream.
    #[arg(short, long, global = true)]
    pub config: Option<PathBuf>,
    /// The plugin whose dead letters to use (default: the only one in the
    /// config). Only its own entries are listed, replayed and purged, also
    /// in a DLQ shared with other plugins.
    #[arg(long, global = true)]
    pub plugin: Option<String>,
    /// Redis URL (overrides the config and REDIS_URL).
    #[arg(long, global = true)]
    pub redis: Option<String>,
    /// With a sharded plugin (`shards = N`): which shard's dead letters (0..N-1).
    #[arg(long, global = true)]
    pub shard: Option<u32>,
    /// The dead-letter stream, instead of --config/--plugin (with --plugin:
    /// only that plugin's entries in it).
    #[arg(long, global = true)]
    pub stream: Option<String>,
    #[command(subcommand)]
    pub action: DlqAction,
}

#[derive(Debug, Subcommand)]
pub enum DlqAction {
    /// List dead letters, newest first: id, time, plugin, reason, attempts, source, error.
    List {
        /// Show at most this many.
        #[arg(long, default_value_t = 100)]
        count: usize,
        /// Only those older than this DLQ id (the next page).
        #[arg(long)]
        before: Option<String>,
        /// Only those with this reason: rejected, attempts-exhausted, trap, trap:fuel, ...
        #[arg(long)]
        reason: Option<String>,
        /// Only those whose fields or error contain this text.
        #[arg(long)]
        text: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one dead letter with all metadata and fields.
    Show {
        /// The dead letter's id in the DLQ stream.
        #[arg(value_parser = super::stream_id)]
        id: String,
    },
    /// Send dead letters back to their plugin alone (its redelivery stream,
    /// which only its group reads), atomically removing them from the DLQ.
    Replay {
        /// Replay every dead letter of the plugin (those present when the replay starts).
        #[arg(long, conflicts_with_all = ["id", "reason"])]
        all: bool,
        /// Replay these ids (repeatable).
        #[arg(long, value_parser = super::stream_id)]
        id: Vec<String>,
        /// Replay those with this reason: rejected, attempts-exhausted, trap, trap:fuel, ...
        #[arg(long)]
        reason: Option<String>,
        /// With --all or --reason: only those whose fields or error contain this text.
        #[arg(long)]
        text: Option<String>,
        /// Print what would be replayed where, and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// With --dry-run: run the selected dead letters through this
        /// candidate component (the plugin's limits, no Redis writes) and
        /// print which it would accept and which it still refuses, and why.
        #[arg(long, value_name = "FILE.wasm", requires = "dry_run")]
        with: Option<PathBuf>,
        /// Replay only the selected dead letters this candidate component
        /// accepts; the rest stay in the DLQ. They are still handled by the
        /// version that is current: deploy the candidate first.
        #[arg(long, value_name = "FILE.wasm", conflicts_with = "with")]
        only_accepted_by: Option<PathBuf>,
        /// With --with: print JSON Lines (one object per dead letter, then a summary).
        #[arg(long, requires = "with")]
        json: bool,
        /// How long one move may take before its outcome is looked up rather
        /// than awaited, e.g. "30s" (default: sized to each entry).
        #[arg(long, value_parser = humantime::parse_duration)]
        timeout: Option<Duration>,
    },
    /// Delete the plugin's dead letters (all, or older than --older-than).
    Purge {
        /// Required: purging cannot be undone.
        #[arg(long)]
        yes: bool,
        /// Only those dead-lettered longer ago than this, e.g. "7d".
        #[arg(long, value_parser = humantime::parse_duration)]
        older_than: Option<Duration>,
    },
}

/// Runs a `dlq` subcommand.
pub async fn dlq(args: DlqArgs) -> anyhow::Result<ExitCode> {
    let (url, stream, owner) = target(&args)?;
    // No response timeout on the connection: each operation bounds its own
    // time by the work (an entry can be hundreds of MiB).
    let mut conn = super::connect_unbounded(&url).await?;
    let base = Filter {
        owner: owner.clone(),
        ..Filter::default()
    };
    let whose = owner
        .as_ref()
        .map_or_else(String::new, |o| format!(" (plugin {})", o.plugin));
    let mut out = std::io::stdout().lock();
    match args.action {
        DlqAction::List {
            count,
            before,
            reason,
            text,
            json,
        } => {
            let filter = Filter {
                reason: reason.clone(),
                text: text.map(String::into_bytes),
                ..base.clone()
            };
            if let Some(r) = &reason {
                known_reason(&mut conn, &stream, &base, r, &whose).await?;
            }
            let page = dlq::list(&mut conn, &stream, &filter, before.as_deref(), count).await?;
            if json {
                print_json(&mut out, &stream, &page)?;
            } else {
                print_table(&mut out, &stream, &whose, &page)?;
            }
        }
        DlqAction::Show { id } => {
            let Some(d) = dlq::show(&mut conn, &stream, &id).await? else {
                bail!(super::BadInput(format!(
                    "no dead letter {} in {stream}",
                    escape_bytes(id.as_bytes())
                )));
            };
            if owner.as_ref().is_some_and(|o| !o.owns(&d)) {
                bail!(ConfigError::Invalid {
                    key: "dlq show".into(),
                    reason: format!("dead letter {id} in {stream} is not{whose}'s"),
                });
            }
            print_letter(&mut out, &d)?;
        }
        DlqAction::Replay {
            all,
            id,
            reason,
            text,
            dry_run,
            with,
            only_accepted_by,
            json,
            timeout,
        } => {
            let (filter, selection) = match (all, id.is_empty(), reason) {
                (true, _, _) => (base.clone(), Selection::Matching),
                (false, false, None) if text.is_none() => (base.clone(), Selection::Ids(id)),
                (false, true, Some(r)) => {
                    known_reason(&mut conn, &stream, &base, &r, &whose).await?;
                    let filter = Filter {
                        reason: Some(r),
                        ..base.clone()
                    };
                    (filter, Selection::Matching)
                }
                _ => bail!(ConfigError::Invalid {
                    key: "dlq replay".into(),
                    reason: "say what to replay: --all, --id ID (repeatable) or --reason REASON \
                             (--text only with --all or --reason)"
                        .into(),
                }),
            };
            let filter = Filter {
                text: text.map(String::into_bytes),
                ..filter
            };
            if let Selection::Ids(ids) = &selection {
                // A mistyped id should not pass as "replayed 0" after the rest went.
                let mut missing = Vec::new();
                for id in ids {
                    match dlq::show(&mut conn, &stream, id).await? {
                        Some(d) if owner.as_ref().is_none_or(|o| o.owns(&d)) => {}
                        _ => missing.push(escape_bytes(id.as_bytes())),
                    }
                }
                if !missing.is_empty() {
                    bail!(super::BadInput(format!(
                        "no dead letter {} in {stream}{whose}; nothing replayed",
                        missing.join(", ")
                    )));
                }
            }
            let candidate = |file| {
                let plugin = plugin_config(args.config.as_deref(), args.plugin.as_deref())?;
                anyhow::Ok(super::dlq_candidate::Candidate { file, plugin })
            };
            if let Some(file) = &with {
                let candidate = candidate(file)?;
                super::dlq_candidate::dry_run(
                    &mut conn, &stream, &filter, &selection, candidate, json, &mut out,
                )
                .await?;
                return Ok(ExitCode::SUCCESS);
            }
            let selection = match &only_accepted_by {
                Some(file) => {
                    let (ids, tried) = super::dlq_candidate::accepted(
                        &mut conn,
                        &stream,
                        &filter,
                        &selection,
                        candidate(file)?,
                    )
                    .await?;
                    eprintln!(
                        "candidate {} accepts {} of {} selected dead letter(s); replaying those",
                        escape_bytes(file.display().to_string().as_bytes()),
                        tried.accepted,
                        tried.accepted + tried.refused
                    );
                    Selection::Ids(ids)
                }
                None => selection,
            };
            let options = ReplayOptions {
                dry_run,
                budget: timeout,
            };
            let mut moved = 0u64;
            let report = dlq::replay(
                &mut conn,
                &stream,
                &filter,
                &selection,
                &options,
                |id, outcome| {
                    print_outcome(id, outcome);
                    if matches!(outcome, ReplayOutcome::Moved { .. }) {
                        moved += 1;
                        if moved.is_multiple_of(500) {
                            eprintln!("replayed {moved}");
                        }
                    }
                },
                |_| {},
            )
            .await?;
            if !dry_run && report.replayed > 0 && !report.replayed.is_multiple_of(500) {
                eprintln!("replayed {}", report.replayed);
            }
            let verb = if dry_run { "would replay" } else { "replayed" };
            let mut summary = format!(
                "{verb} {} dead letter(s) from {stream}{whose}; {} not selected",
                report.replayed, report.skipped
            );
            for (n, what) in [
                (report.gone, "gone meanwhile or another plugin's"),
                (report.not_replayable, "not replayable (left in the DLQ)"),
                (report.unknown, "with an unknown outcome (see above)"),
            ] {
                if n > 0 {
                    summary.push_str(&format!("; {n} {what}"));
                }
            }
            writeln!(out, "{summary}")?;
            if report.unknown > 0 {
                return Ok(ExitCode::from(EXIT_UNKNOWN));
            }
        }
        DlqAction::Purge { yes, older_than } => {
            if !yes {
                bail!(ConfigError::Invalid {
                    key: "dlq purge".into(),
                    reason: "purging deletes dead letters for good; pass --yes to confirm".into(),
                });
            }
            let filter = Filter {
                before_ms: older_than.map(|age| {
                    now_ms().saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX))
                }),
                ..base
            };
            let n = dlq::purge(&mut conn, &stream, &filter).await?;
            writeln!(out, "purged {n} dead letter(s) from {stream}{whose}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// An unknown `--reason` is an error that lists the reasons present.
async fn known_reason(
    conn: &mut streamhost::connection::Conn,
    stream: &str,
    base: &Filter,
    reason: &str,
    whose: &str,
) -> anyhow::Result<()> {
    let counts = dlq::count(conn, stream, base).await?;
    let matches = |r: &str| {
        r == reason
            || r.strip_prefix(reason)
                .is_some_and(|rest| rest.starts_with(':'))
    };
    if counts.reasons.keys().any(|r| matches(r)) {
        return Ok(());
    }
    let present = if counts.reasons.is_empty() {
        "none (no dead letters)".to_owned()
    } else {
        counts
            .reasons
            .iter()
            .map(|(r, n)| format!("{} ({n})", escape_bytes(r.as_bytes())))
            .collect::<Vec<_>>()
            .join(", ")
    };
    bail!(ConfigError::Invalid {
        key: "--reason".into(),
        reason: format!(
            "no dead letter in {stream}{whose} has reason {:?}; reasons present: {present}",
            escape_bytes(reason.as_bytes())
        ),
    })
}

fn print_outcome(id: &str, outcome: &ReplayOutcome) {
    let id = escape_bytes(id.as_bytes());
    match outcome {
        ReplayOutcome::Moved { to, new_id } => println!("{id} -> {to} {new_id}"),
        ReplayOutcome::WouldMove { to } => println!("{id} would go to {to}"),
        ReplayOutcome::Gone => println!("{id} skipped: no longer in the DLQ"),
        ReplayOutcome::OtherOwner => println!("{id} skipped: another plugin's"),
        ReplayOutcome::NotReplayable(why) => println!("{id} left in the DLQ: {why}"),
        ReplayOutcome::Unknown { to, detail } => {
            println!("{id} outcome unknown (may be in {to}): {detail}")
        }
    }
}

/// A metadata value for display: escaped, `?` when absent.
fn meta_text(metadata: &[(Vec<u8>, Vec<u8>)], name: &str) -> String {
    metadata
        .iter()
        .find(|(n, _)| n == name.as_bytes())
        .map_or_else(|| "?".to_owned(), |(_, v)| escape_bytes(v))
}

fn when(s: &Summary, now: u64) -> String {
    s.time_ms().map_or_else(|| "?".to_owned(), |t| ago(t, now))
}

fn print_table(
    out: &mut impl Write,
    stream: &str,
    whose: &str,
    page: &dlq::Page,
) -> std::io::Result<()> {
    let now = now_ms();
    writeln!(
        out,
        "{:<20} {:<9} {:<16} {:<22} {:>8}  {:<28} ERROR",
        "ID", "TIME", "PLUGIN", "REASON", "ATTEMPTS", "SOURCE"
    )?;
    for s in &page.letters {
        let m = &s.metadata;
        writeln!(
            out,
            "{:<20} {:<9} {:<16} {:<22} {:>8}  {:<28} {}",
            s.id,
            when(s, now),
            meta_text(m, meta::PLUGIN),
            meta_text(m, meta::REASON),
            meta_text(m, meta::ATTEMPTS),
            format!(
                "{}/{}",
                meta_text(m, meta::SOURCE_STREAM),
                meta_text(m, meta::SOURCE_ID)
            ),
            if m.iter().any(|(n, _)| n == meta::ERROR.as_bytes()) {
                meta_text(m, meta::ERROR)
            } else {
                String::new()
            },
        )?;
    }
    let shown = page.letters.len();
    write!(
        out,
        "{shown} dead letter(s) shown of {} in {stream}{whose}",
        page.total
    )?;
    match &page.next {
        Some(next) => writeln!(
            out,
            "; {} more (next page: --before {next})",
            page.total.saturating_sub(shown as u64)
        ),
        None => writeln!(out),
    }
}

fn print_json(out: &mut impl Write, stream: &str, page: &dlq::Page) -> std::io::Result<()> {
    let letters: Vec<serde_json::Value> = page
        .letters
        .iter()
        .map(|s| {
            let metadata: serde_json::Map<String, serde_json::Value> = s
                .metadata
                .iter()
                .filter(|(n, _)| n != meta::NONCE.as_bytes())
                .map(|(n, v)| (escape_bytes(n), escape_bytes(v).into()))
                .collect();
            serde_json::json!({
                "id": s.id,
                "time_ms": s.time_ms(),
                "plugin": s.meta(meta::PLUGIN),
                "reason": s.meta(meta::REASON),
                "attempts": s.meta(meta::ATTEMPTS).and_then(|a| a.parse::<u64>().ok()),
                "source_stream": s.meta(meta::SOURCE_STREAM),
                "source_id": s.meta(meta::SOURCE_ID),
                "fields": s.field_count,
                "field_bytes": s.field_bytes,
                "metadata": metadata,
            })
        })
        .collect();
    let doc = serde_json::json!({
        "stream": stream,
        "total": page.total,
        "shown": page.letters.len(),
        "more": page.next.is_some(),
        "next": page.next,
        "letters": letters,
    });
    writeln!(out, "{doc}")
}

fn print_letter(out: &mut impl Write, d: &DeadLetter) -> std::io::Result<()> {
    let now = now_ms();
    writeln!(out, "id: {}", escape_bytes(d.id.as_bytes()))?;
    if let Some(t) = d.time_ms() {
        writeln!(out, "time: {} ({})", timestamp(t), ago(t, now))?;
    }
    for (name, value) in &d.metadata {
        if name == meta::NONCE.as_bytes() {
            continue;
        }
        writeln!(out, "{}: {}", escape_bytes(name), escape_bytes(value))?;
    }
    for (name, value) in &d.fields {
        let name = escape_bytes(name);
        let (shown, cut) = if value.len() > SHOW_VALUE_BYTES {
            (&value[..SHOW_VALUE_BYTES], true)
        } else {
            (&value[..], false)
        };
        match std::str::from_utf8(shown) {
            Ok(text) => write!(out, "field {name}: {}", escape_bytes(text.as_bytes()))?,
            Err(_) => write!(
                out,
                "field {name}: ({} bytes, hex) {}",
                value.len(),
                hex::encode(shown)
            )?,
        }
        if cut {
            write!(out, " … ({} bytes in all)", value.len())?;
        }
        writeln!(out)?;
    }
    Ok(())
}

/// The plugin's config table, for the limits a candidate runs under.
fn plugin_config(
    config: Option<&std::path::Path>,
    plugin: Option<&str>,
) -> anyhow::Result<Option<streamhost::config::PluginConfig>> {
    let Some(path) = config else {
        return Ok(None);
    };
    let config = super::load_config(path)?;
    Ok(match plugin {
        Some(name) => config.plugins.into_iter().find(|p| p.name == name),
        None if config.plugins.len() == 1 => config.plugins.into_iter().next(),
        None => None,
    })
}

/// Which Redis, which stream and whose entries: explicit flags first, then the config.
fn target(
    args: &DlqArgs,
) -> anyhow::Result<(streamhost::connection::Endpoint, String, Option<Owner>)> {
    let config = args.config.as_deref().map(super::load_config).transpose()?;
    let url = super::redis_endpoint(args.redis.as_deref(), config.as_ref())?;
    if let Some(stream) = &args.stream {
        let owner = args.plugin.as_ref().map(|name| {
            let group = config
                .as_ref()
                .and_then(|c| c.plugins.iter().find(|p| &p.name == name))
                .map_or_else(|| name.clone(), |p| p.group().to_owned());
            Owner {
                plugin: name.clone(),
                group,
            }
        });
        return Ok((url, stream.clone(), owner));
    }
    let Some(config) = config else {
        bail!(ConfigError::Invalid {
            key: "dlq".into(),
            reason: "name the dead-letter stream with --stream, or give --config (and --plugin)"
                .into(),
        });
    };
    let plugin = match &args.plugin {
        Some(name) => config.plugins.iter().find(|p| &p.name == name),
        None if config.plugins.len() == 1 => config.plugins.first(),
        None => bail!(ConfigError::Invalid {
            key: "dlq --plugin".into(),
            reason: "the config has several plugins; say which with --plugin".into(),
        }),
    };
    let Some(plugin) = plugin else {
        bail!(ConfigError::Invalid {
            key: "dlq --plugin".into(),
            reason: format!(
                "no plugin named {:?} in the config",
                args.plugin.as_deref().unwrap_or_default()
            ),
        });
    };
    let owner = Owner {
        plugin: plugin.name.clone(),
        group: plugin.group().to_owned(),
    };
    let plugin = match (plugin.shards, args.shard) {
        (None, None) => plugin.clone(),
        (Some(n), Some(i)) if i < n => plugin.shard_tables().swap_remove(i as usize),
        (Some(n), _) => bail!(ConfigError::Invalid {
            key: "dlq --shard".into(),
            reason: format!(
                "plugin {:?} is sharded into {n} streams, each with its own DLQ: pick one with --shard 0..{}",
                plugin.name,
                n - 1
            ),
        }),
        (None, Some(_)) => bail!(ConfigError::Invalid {
            key: "dlq --shard".into(),
            reason: format!("plugin {:?} is not sharded", plugin.name),
        }),
    };
    Ok((url, plugin.dlq_stream(), Some(owner)))
}
