//! `streamhost status`: what Redis says about each plugin's stream, group,
//! consumers, pending entries, lag and dead letters, as a table or JSON.
//! Reads Redis only, so it works from any machine that reaches it, with or
//! without a host running.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use streamhost::connection::Conn;

use streamhost::config::PluginConfig;
use streamhost::inspect::{self, ConsumerInfo};

/// How long apart the two `entries-read` samples of `--rate` are.
const RATE_WINDOW: Duration = Duration::from_secs(1);

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Config file: the Redis URL and every plugin's stream, group, DLQ and
    /// component (default: streamhost.toml, unless --stream is given).
    #[arg(short, long, conflicts_with = "stream")]
    pub config: Option<PathBuf>,
    /// Redis URL (overrides the config and REDIS_URL).
    #[arg(long)]
    pub redis: Option<String>,
    /// Report on this stream instead of a config's plugins: all its groups, or --group.
    #[arg(long)]
    pub stream: Option<String>,
    /// With --stream: only this consumer group.
    #[arg(long, requires = "stream")]
    pub group: Option<String>,
    /// With --stream: the dead-letter stream (default: dlq:<stream>:<group>);
    /// only the group's own entries in it are counted.
    #[arg(long, requires = "stream")]
    pub dlq: Option<String>,
    /// Print one JSON document instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Sample each group's entries-read twice, one second apart, for a read rate.
    #[arg(long)]
    pub rate: bool,
    /// Refresh until interrupted: in place on a terminal, else one report
    /// after the other (with --json, one JSON document per line).
    #[arg(long)]
    pub watch: bool,
    /// Seconds between refreshes with --watch.
    #[arg(long, default_value_t = 2.0, requires = "watch", value_parser = interval_secs)]
    pub interval: f64,
}

fn interval_secs(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && (0.1..=3600.0).contains(&s) => Ok(s),
        _ => Err(format!(
            "{text:?} is not a number of seconds from 0.1 to 3600"
        )),
    }
}

/// Clears a terminal and puts the cursor home, so the next report replaces
/// the last one instead of scrolling.
const REDRAW: &str = "\x1b[H\x1b[2J";

/// Everything `status` reports.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    /// The Redis URL (password hidden).
    pub redis: String,
    /// Redis's clock when the report was taken (ms since the epoch).
    pub time_ms: u64,
    /// One entry per plugin (or per group of `--stream`); a sharded
    /// stream has one per shard.
    pub groups: Vec<GroupStatus>,
    /// Each sharded stream's figures summed over its shards.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sharded: Vec<ShardedStatus>,
}

/// A sharded stream (`shards = N`): its shards' figures summed (the
/// per-shard figures are in `groups`).
#[derive(Debug, Serialize)]
pub struct ShardedStatus {
    /// The plugin.
    pub plugin: String,
    /// The logical stream (its shards are `{stream:i}`).
    pub stream: String,
    /// How many shards.
    pub shards: u32,
    /// Entries in all shards.
    pub stream_length: u64,
    /// Entries read by the group over all shards (when every shard tells).
    pub entries_read: Option<u64>,
    /// Entries not yet delivered over all shards (when every shard tells).
    pub lag: Option<u64>,
    /// Pending entries over all shards.
    pub pending: u64,
    /// Dead letters over all shards.
    pub dlq_length: u64,
}

/// One consumer group of one stream, as Redis sees it.
#[derive(Debug, Serialize)]
pub struct GroupStatus {
    /// The plugin, when known from a config.
    pub plugin: Option<String>,
    /// The component version, when known.
    pub version: Option<Version>,
    /// The source stream.
    pub stream: String,
    /// `XLEN` of the stream.
    pub stream_length: u64,
    /// The consumer group.
    pub group: String,
    /// Whether the group exists (a host creates it when it starts).
    pub exists: bool,
    /// `XINFO GROUPS` `last-delivered-id`.
    pub last_delivered_id: Option<String>,
    /// `XINFO GROUPS` `entries-read` (Redis 7+).
    pub entries_read: Option<u64>,
    /// `XINFO GROUPS` `lag`: entries not yet delivered (nil when Redis cannot tell).
    pub lag: Option<u64>,
    /// `XPENDING` count: delivered, not acked.
    pub pending: u64,
    /// Smallest pending id (`XPENDING` summary).
    pub oldest_pending_id: Option<String>,
    /// Age of the oldest pending entry by its id time, against Redis's clock.
    pub oldest_pending_age_ms: Option<u64>,
    /// Largest pending id (`XPENDING` summary).
    pub newest_pending_id: Option<String>,
    /// `XINFO CONSUMERS`.
    pub consumers: Vec<ConsumerInfo>,
    /// The dead-letter stream and its length.
    pub dlq: DlqStatus,
    /// Read rate over a short window, only with `--rate`.
    pub rate: Option<Rate>,
    /// The plugin's pause record while it is paused (by an operator or the
    /// circuit breaker, with its reason and resume time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused: Option<streamhost::pause::Paused>,
}

/// Where a component version comes from.
#[derive(Debug, Clone, Serialize)]
pub struct Version {
    /// `sha256:<hex>` of the component.
    pub digest: String,
    /// `deployed`: the plugin's current version in Redis (`streamhost deploy`),
    /// which every host runs; `config`: the digest of the file the config
    /// names, which a host runs while nothing was deployed.
    pub source: &'static str,
    /// The deployed version number, when `source` is `deployed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<u64>,
}

/// A dead-letter stream.
#[derive(Debug, Serialize)]
pub struct DlqStatus {
    /// Its name.
    pub stream: String,
    /// `XLEN`.
    pub length: u64,
}

/// Entries read per second, from two `entries-read` samples.
#[derive(Debug, Serialize)]
pub struct Rate {
    /// Entries the group read per second over the window.
    pub read_per_second: f64,
    /// The window, in milliseconds.
    pub window_ms: u64,
}

/// One group to report on.
struct Target {
    plugin: Option<String>,
    version: Option<Version>,
    stream: String,
    group: String,
    dlq: String,
    /// Whose entries in `dlq` to count, and whether the DLQ is theirs alone.
    owner: streamhost::dlq::Owner,
    dlq_is_own: bool,
}

/// Runs `streamhost status`, once or (`--watch`) until interrupted.
pub async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let (url, plugins) = resolve(&args)?;
    let mut conn = super::connect(&url).await?;
    if !args.watch {
        let report = take_report(&mut conn, &url.redacted(), plugins.as_deref(), &args).await?;
        std::io::stdout().write_all(&render(&report, &args)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let interval = Duration::from_secs_f64(args.interval);
    loop {
        let report = take_report(&mut conn, &url.redacted(), plugins.as_deref(), &args).await?;
        let frame = render(&report, &args)?;
        let mut out = std::io::stdout().lock();
        if terminal && !args.json {
            out.write_all(REDRAW.as_bytes())?;
        }
        out.write_all(&frame)?;
        if !terminal && !args.json {
            writeln!(out)?;
        }
        out.flush()?;
        drop(out);
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// The report as it is printed: a table, or JSON (one line with `--watch`).
fn render(report: &StatusReport, args: &StatusArgs) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    if args.json && args.watch {
        serde_json::to_writer(&mut out, report)?;
    } else if args.json {
        serde_json::to_writer_pretty(&mut out, report)?;
    } else {
        if args.watch {
            writeln!(
                out,
                "{} every {}s (Ctrl-C to stop)",
                report.redis, args.interval
            )?;
        }
        print_table(&mut out, report, args.rate)?;
        return Ok(out);
    }
    writeln!(out)?;
    Ok(out)
}

/// One report on the configured plugins, or the groups of `--stream`.
async fn take_report(
    conn: &mut Conn,
    url: &str,
    plugins: Option<&[PluginConfig]>,
    args: &StatusArgs,
) -> anyhow::Result<StatusReport> {
    let targets = match plugins {
        Some(plugins) => {
            let mut targets = Vec::with_capacity(plugins.len());
            // Consumer-group figures exist for stream sources only; the other
            // sources' plugins are left out of this report.
            for p in plugins
                .iter()
                .filter(|p| !p.stream.is_empty())
                .flat_map(PluginConfig::shard_tables)
            {
                let p = &p;
                let mut target = plugin_target(p);
                if let Some((number, digest)) = streamhost::deploy::current(conn, &p.name).await? {
                    target.version = Some(Version {
                        digest,
                        source: "deployed",
                        number: Some(number),
                    });
                }
                targets.push(target);
            }
            targets
        }
        None => stream_targets(conn, args).await?,
    };
    let mut report = collect(conn, url, targets, args.rate).await?;
    for p in plugins.unwrap_or_default() {
        if let Some(shards) = p.shards {
            report.sharded.push(sum_shards(p, shards, &report.groups));
        }
    }
    Ok(report)
}

/// A sharded plugin's figures summed over its shards' groups.
fn sum_shards(p: &PluginConfig, shards: u32, groups: &[GroupStatus]) -> ShardedStatus {
    let keys: Vec<String> = (0..shards)
        .map(|i| streamhost::config::shard_key(&p.stream, i))
        .collect();
    let mine: Vec<&GroupStatus> = groups
        .iter()
        .filter(|g| g.plugin.as_deref() == Some(p.name.as_str()) && keys.contains(&g.stream))
        .collect();
    let all = |f: fn(&GroupStatus) -> Option<u64>| mine.iter().map(|g| f(g)).sum::<Option<u64>>();
    ShardedStatus {
        plugin: p.name.clone(),
        stream: p.stream.clone(),
        shards,
        stream_length: mine.iter().map(|g| g.stream_length).sum(),
        entries_read: all(|g| g.entries_read),
        lag: all(|g| g.lag),
        pending: mine.iter().map(|g| g.pending).sum(),
        dlq_length: mine.iter().map(|g| g.dlq.length).sum(),
    }
}

/// The Redis URL, and the plugins when reporting from a config.
fn resolve(
    args: &StatusArgs,
) -> anyhow::Result<(streamhost::connection::Endpoint, Option<Vec<PluginConfig>>)> {
    let config = match (&args.config, &args.stream) {
        (Some(path), _) => Some(super::load_config(path)?),
        (None, None) => Some(super::load_config(std::path::Path::new("streamhost.toml"))?),
        (None, Some(_)) => None,
    };
    let url = super::redis_endpoint(args.redis.as_deref(), config.as_ref())?;
    Ok((url, config.map(|c| c.plugins)))
}

fn plugin_target(p: &PluginConfig) -> Target {
    Target {
        plugin: Some(p.name.clone()),
        version: version_of(p),
        stream: p.stream.clone(),
        group: p.group().to_owned(),
        dlq: p.dlq_stream(),
        owner: p.dlq_owner(),
        dlq_is_own: p.dlq_is_own(),
    }
}

/// The version a host started from this config runs while nothing is
/// deployed (a deployed version, read from Redis, takes precedence).
fn version_of(p: &PluginConfig) -> Option<Version> {
    let bytes = std::fs::read(&p.component).ok()?;
    Some(Version {
        digest: streamhost::plugin::digest(&bytes),
        source: "config",
        number: None,
    })
}

/// `--stream`: the named group, or every group of the stream.
async fn stream_targets(conn: &mut Conn, args: &StatusArgs) -> anyhow::Result<Vec<Target>> {
    let stream = args.stream.clone().unwrap_or_default();
    let groups = match &args.group {
        Some(g) => vec![g.clone()],
        None => inspect::groups(conn, &stream)
            .await?
            .into_iter()
            .map(|g| g.name)
            .collect(),
    };
    Ok(groups
        .into_iter()
        .map(|group| Target {
            plugin: None,
            version: None,
            stream: stream.clone(),
            // A plugin's group is named after it unless configured otherwise.
            dlq: args
                .dlq
                .clone()
                .unwrap_or_else(|| streamhost::dlq::dlq_key(&stream, &group)),
            dlq_is_own: args.dlq.is_none(),
            owner: streamhost::dlq::Owner {
                plugin: group.clone(),
                group: group.clone(),
            },
            group,
        })
        .collect())
}

async fn collect(
    conn: &mut Conn,
    url: &str,
    targets: Vec<Target>,
    rate: bool,
) -> anyhow::Result<StatusReport> {
    let time_ms = inspect::server_time_ms(conn).await?;
    let mut groups = Vec::with_capacity(targets.len());
    for t in targets {
        groups.push(group_status(conn, t, time_ms).await?);
    }
    if rate {
        sample_rates(conn, &mut groups).await?;
    }
    Ok(StatusReport {
        redis: url.to_owned(),
        time_ms,
        groups,
        sharded: Vec::new(),
    })
}

async fn group_status(conn: &mut Conn, t: Target, now_ms: u64) -> anyhow::Result<GroupStatus> {
    let stream_length = inspect::stream_len(conn, &t.stream).await?;
    let dlq_length = streamhost::dlq::owned_count(conn, &t.dlq, &t.owner, t.dlq_is_own).await?;
    let info = inspect::group(conn, &t.stream, &t.group).await?;
    let paused = match &t.plugin {
        Some(plugin) => streamhost::pause::status(conn, plugin).await?,
        None => None,
    };
    let (consumers, pending) = match &info {
        Some(_) => (
            inspect::consumers(conn, &t.stream, &t.group).await?,
            inspect::pending_summary(conn, &t.stream, &t.group).await?,
        ),
        None => (Vec::new(), inspect::PendingSummary::default()),
    };
    Ok(GroupStatus {
        plugin: t.plugin,
        version: t.version,
        stream: t.stream,
        stream_length,
        group: t.group,
        exists: info.is_some(),
        last_delivered_id: info.as_ref().map(|g| g.last_delivered_id.clone()),
        entries_read: info.as_ref().and_then(|g| g.entries_read),
        lag: info.as_ref().and_then(|g| g.lag),
        pending: pending.count,
        oldest_pending_age_ms: pending
            .smallest_id
            .as_deref()
            .and_then(|id| inspect::age_ms(id, now_ms)),
        oldest_pending_id: pending.smallest_id,
        newest_pending_id: pending.largest_id,
        consumers,
        dlq: DlqStatus {
            stream: t.dlq,
            length: dlq_length,
        },
        rate: None,
        paused,
    })
}

/// Reads every group's `entries-read` again after [`RATE_WINDOW`].
async fn sample_rates(conn: &mut Conn, groups: &mut [GroupStatus]) -> anyhow::Result<()> {
    let started = Instant::now();
    tokio::time::sleep(RATE_WINDOW).await;
    for g in groups.iter_mut() {
        let later = inspect::group(conn, &g.stream, &g.group).await?;
        let window = started.elapsed();
        if let (Some(before), Some(after)) = (g.entries_read, later.and_then(|l| l.entries_read)) {
            g.rate = Some(Rate {
                read_per_second: after.saturating_sub(before) as f64 / window.as_secs_f64(),
                window_ms: u64::try_from(window.as_millis()).unwrap_or(u64::MAX),
            });
        }
    }
    Ok(())
}

fn print_table(out: &mut impl Write, report: &StatusReport, rate: bool) -> std::io::Result<()> {
    if report.groups.is_empty() {
        return writeln!(out, "no consumer groups to report on ({})", report.redis);
    }
    let header = [
        "PLUGIN", "VERSION", "STREAM", "GROUP", "LENGTH", "READ", "LAG", "PENDING", "OLDEST",
        "DLQ", "READ/S",
    ];
    let rows: Vec<Vec<String>> = report.groups.iter().map(row).collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    // Columns from LENGTH on are numbers: right-aligned.
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if i >= 4 {
                    format!("{c:>w$}")
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    writeln!(out, "{}", line(&header).trim_end())?;
    for (g, r) in report.groups.iter().zip(&rows) {
        writeln!(out, "{}", line(r).trim_end())?;
        if let Some(p) = &g.paused {
            let why = p
                .reason
                .as_deref()
                .map(|r| format!(": {}", streamhost::display::escape_str(r)))
                .unwrap_or_default();
            let resumes = p.resume_at_ms.map_or_else(String::new, |at| {
                format!("; resumes in {}", human(at.saturating_sub(report.time_ms)))
            });
            writeln!(
                out,
                "  paused by {}{why}{resumes}",
                streamhost::display::escape_str(&p.by)
            )?;
        }
        if !g.exists {
            writeln!(
                out,
                "  group does not exist yet (a host creates it when it starts)"
            )?;
        }
        for c in &g.consumers {
            writeln!(
                out,
                "  consumer {:<24} pending {:>6}  idle {}",
                c.name,
                c.pending,
                human(c.idle_ms)
            )?;
        }
    }
    for s in &report.sharded {
        let opt = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |n| n.to_string());
        writeln!(
            out,
            "sharded {} {} over {} shards: length {}  read {}  lag {}  pending {}  dlq {}",
            s.plugin,
            s.stream,
            s.shards,
            s.stream_length,
            opt(s.entries_read),
            opt(s.lag),
            s.pending,
            s.dlq_length
        )?;
    }
    if !rate {
        writeln!(
            out,
            "READ/S not sampled; add --rate to sample entries-read over one second"
        )?;
    }
    Ok(())
}

fn row(g: &GroupStatus) -> Vec<String> {
    let opt = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |n| n.to_string());
    vec![
        g.plugin.clone().unwrap_or_else(|| "-".to_owned()),
        g.version
            .as_ref()
            .map_or_else(|| "?".to_owned(), |v| short_digest(&v.digest)),
        g.stream.clone(),
        g.group.clone(),
        g.stream_length.to_string(),
        opt(g.entries_read),
        opt(g.lag),
        g.pending.to_string(),
        g.oldest_pending_age_ms
            .map_or_else(|| "-".to_owned(), human),
        g.dlq.length.to_string(),
        g.rate
            .as_ref()
            .map_or_else(|| "-".to_owned(), |r| format!("{:.1}", r.read_per_second)),
    ]
}

/// `sha256:` and the first 12 hex digits: enough to tell versions apart.
fn short_digest(digest: &str) -> String {
    digest.chars().take("sha256:".len() + 12).collect()
}

/// A duration for people: `850ms`, `12.3s`, `5m03s`, `2h10m`, `3d04h`.
fn human(ms: u64) -> String {
    let s = ms / 1000;
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{:02}s", s / 60, s % 60),
        3_600_000..86_400_000 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(human(850), "850ms");
        assert_eq!(human(12_345), "12.3s");
        assert_eq!(human(303_000), "5m03s");
        assert_eq!(human(7_800_000), "2h10m");
        assert_eq!(human(273_600_000), "3d04h");
    }

    #[test]
    fn digests_are_shortened() {
        assert_eq!(
            short_digest("sha256:0123456789abcdef0123"),
            "sha256:0123456789ab"
        );
    }
}
