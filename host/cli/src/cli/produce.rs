//! `streamhost produce`: puts test items on any source — stream entries,
//! Pub/Sub messages, list items, sorted-set members — from arguments or a
//! JSONL file, in pipelined chunks, with progress on long files.
//!
//! Each argument is one item's payload (a stream entry's `data` field). In a
//! JSONL file each line is one item: a JSON string is the payload; a JSON
//! object is, for a stream, the entry's fields (string values as their bytes,
//! others as JSON text) and, for a sorted set, `{"member": ..., "score": ...}`
//! when it has a `member`; otherwise the line itself is the payload (the
//! JSON text, as producers `LPUSH` JSON).

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{ArgGroup, Args};

use super::BadInput;

/// Items sent per pipeline.
const CHUNK: usize = 1000;
/// Progress is printed every this many items (to stderr).
const PROGRESS_EVERY: usize = 10_000;

/// `streamhost produce` arguments.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["stream", "channel", "list", "sorted_set"])))]
pub struct ProduceArgs {
    /// Redis URL (default: REDIS_URL, then redis://127.0.0.1:6379).
    #[arg(long)]
    pub redis: Option<String>,
    /// `--redis` is a seed of a Redis Cluster.
    #[arg(long)]
    pub cluster: bool,
    /// Stream: it is sharded into this many shard streams `{STREAM:i}`; each
    /// entry goes to the shard of its `--key` field (see README "Redis Cluster").
    #[arg(long, requires = "key", requires = "stream")]
    pub shards: Option<u32>,
    /// With `--shards`: the field whose value picks the shard.
    #[arg(long, requires = "shards")]
    pub key: Option<String>,
    /// Append entries to this stream (`XADD`, the payload as field `data`).
    #[arg(long)]
    pub stream: Option<String>,
    /// Publish on this Pub/Sub channel.
    #[arg(long)]
    pub channel: Option<String>,
    /// Push onto this list queue (`LPUSH`, consumers take the oldest first).
    #[arg(long)]
    pub list: Option<String>,
    /// Add members to this sorted-set queue (`ZADD`).
    #[arg(long = "sorted-set")]
    pub sorted_set: Option<String>,
    /// Sorted set: the members' score (a priority, or a due time in Unix ms).
    #[arg(long, conflicts_with = "delay", allow_negative_numbers = true)]
    pub score: Option<f64>,
    /// Sorted set: due this long from now (score = now in Unix ms + delay),
    /// e.g. `30s`. Without `--score` or `--delay` a member is due now.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub delay: Option<Duration>,
    /// Read items from a JSONL file (one per line; `-` reads stdin).
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Items (payloads), one per argument.
    pub items: Vec<String>,
}

/// One item to produce.
#[derive(Debug, Clone, PartialEq)]
enum Item {
    /// A payload (a stream entry's `data`, a message, a list item, a member).
    Payload(Vec<u8>),
    /// A stream entry's fields.
    Fields(Vec<(String, Vec<u8>)>),
    /// A sorted-set member with its own score.
    Scored(Vec<u8>, f64),
}

/// Runs `streamhost produce`.
pub async fn produce(args: ProduceArgs) -> anyhow::Result<ExitCode> {
    if (args.score.is_some() || args.delay.is_some()) && args.sorted_set.is_none() {
        return Err(BadInput("--score and --delay apply to --sorted-set only".into()).into());
    }
    if args.items.is_empty() && args.file.is_none() {
        return Err(BadInput(
            "nothing to produce: give items as arguments or --file FILE.jsonl".into(),
        )
        .into());
    }
    let mut items: Vec<Item> = args
        .items
        .iter()
        .map(|i| Item::Payload(i.clone().into_bytes()))
        .collect();
    if let Some(path) = &args.file {
        items.extend(read_jsonl(
            path,
            args.sorted_set.is_some(),
            args.stream.is_some(),
        )?);
    }
    if let Some(shards) = args.shards
        && (shards == 0 || shards > streamhost::config::MAX_SHARDS)
    {
        return Err(BadInput(format!(
            "--shards must be between 1 and {}",
            streamhost::config::MAX_SHARDS
        ))
        .into());
    }
    let mut redis = super::redis_endpoint(args.redis.as_deref(), None)?;
    if args.cluster {
        redis = streamhost::connection::Endpoint::cluster(&[redis.url().to_owned()]);
    }
    let mut conn = super::connect(&redis).await?;
    let default_score = match (args.score, args.delay) {
        (Some(score), _) => score,
        (None, delay) => (now_ms() + delay.map_or(0, |d| d.as_millis() as u64)) as f64,
    };
    let (what, key) = target(&args);
    let total = items.len();
    let mut receivers = 0i64;
    for (done, chunk) in items.chunks(CHUNK).enumerate() {
        // One pipeline per target key: on a cluster a pipeline is one slot.
        let mut pipes: std::collections::BTreeMap<String, redis::Pipeline> = Default::default();
        for item in chunk {
            let target = shard_target(&args, key, item)?;
            let pipe = pipes.entry(target.clone()).or_insert_with(redis::pipe);
            add(pipe, &args, &target, item, default_score);
        }
        let mut replies: Vec<redis::Value> = Vec::new();
        for (target, pipe) in pipes {
            let part: Vec<redis::Value> = pipe
                .query_async(&mut conn)
                .await
                .with_context(|| format!("producing to {what} {target:?}"))?;
            replies.extend(part);
        }
        if args.channel.is_some() {
            receivers += replies
                .iter()
                .map(|v| if let redis::Value::Int(n) = v { *n } else { 0 })
                .sum::<i64>();
        }
        let sent = ((done + 1) * CHUNK).min(total);
        if total >= PROGRESS_EVERY && (sent % PROGRESS_EVERY < CHUNK || sent == total) {
            eprintln!("produced {sent}/{total}");
        }
    }
    let shown = streamhost::display::escape_str(key);
    match args.channel {
        Some(_) => println!(
            "published {total} message(s) on {what} {shown}; {receivers} delivery(ies) to subscribers"
        ),
        None => println!("produced {total} item(s) to {what} {shown}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The key an item goes to: `key`, or with `--shards` the shard stream its
/// `--key` field picks (an item without that field is bad input).
fn shard_target(args: &ProduceArgs, key: &str, item: &Item) -> anyhow::Result<String> {
    let (Some(shards), Some(field)) = (args.shards, args.key.as_deref()) else {
        return Ok(key.to_owned());
    };
    let value: Option<&[u8]> = match item {
        Item::Fields(fields) => fields
            .iter()
            .find(|(name, _)| name == field)
            .map(|(_, v)| v.as_slice()),
        Item::Payload(p) | Item::Scored(p, _) => (field == "data").then_some(p.as_slice()),
    };
    let value = value.ok_or_else(|| {
        BadInput(format!(
            "an entry has no field {field:?} to pick its shard by (--key {field})"
        ))
    })?;
    let shard = streamhost::config::shard_of(value, shards);
    Ok(streamhost::config::shard_key(key, shard))
}

fn target(args: &ProduceArgs) -> (&'static str, &str) {
    match (&args.stream, &args.channel, &args.list, &args.sorted_set) {
        (Some(k), ..) => ("stream", k),
        (_, Some(k), ..) => ("channel", k),
        (_, _, Some(k), _) => ("list", k),
        (_, _, _, Some(k)) => ("sorted set", k),
        // clap's group requires one.
        _ => ("stream", ""),
    }
}

fn add(pipe: &mut redis::Pipeline, args: &ProduceArgs, key: &str, item: &Item, score: f64) {
    let payload = |item: &Item| -> Vec<u8> {
        match item {
            Item::Payload(p) | Item::Scored(p, _) => p.clone(),
            Item::Fields(fields) => serde_json::to_vec(
                &fields
                    .iter()
                    .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
                    .collect::<std::collections::BTreeMap<_, _>>(),
            )
            .unwrap_or_default(),
        }
    };
    if args.stream.is_some() {
        let cmd = pipe.cmd("XADD").arg(key).arg("*");
        match item {
            Item::Fields(fields) => {
                for (name, value) in fields {
                    cmd.arg(name.as_str()).arg(value.as_slice());
                }
            }
            other => {
                cmd.arg("data").arg(payload(other));
            }
        }
    } else if args.channel.is_some() {
        pipe.cmd("PUBLISH").arg(key).arg(payload(item));
    } else if args.list.is_some() {
        pipe.cmd("LPUSH").arg(key).arg(payload(item));
    } else {
        let score = match item {
            Item::Scored(_, s) => *s,
            _ => score,
        };
        pipe.cmd("ZADD").arg(key).arg(score).arg(payload(item));
    }
}

/// Reads one item per line; a line that is not JSON is bad input naming the
/// file and line.
fn read_jsonl(path: &std::path::Path, sorted_set: bool, stream: bool) -> anyhow::Result<Vec<Item>> {
    let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        let file = std::fs::File::open(path)
            .map_err(|e| BadInput(format!("cannot read {}: {e}", path.display())))?;
        Box::new(std::io::BufReader::new(file))
    };
    let mut items = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| BadInput(format!("{} line {}: not JSON ({e})", path.display(), n + 1)))?;
        items.push(
            item_of(value, &line, sorted_set, stream)
                .map_err(|why| BadInput(format!("{} line {}: {why}", path.display(), n + 1)))?,
        );
    }
    Ok(items)
}

fn item_of(
    value: serde_json::Value,
    line: &str,
    sorted_set: bool,
    stream: bool,
) -> Result<Item, String> {
    use serde_json::Value;
    let text = |v: &Value| match v {
        Value::String(s) => s.clone().into_bytes(),
        other => other.to_string().into_bytes(),
    };
    Ok(match value {
        Value::String(s) => Item::Payload(s.into_bytes()),
        Value::Object(map) if stream => {
            Item::Fields(map.iter().map(|(k, v)| (k.clone(), text(v))).collect())
        }
        Value::Object(map) if sorted_set && map.contains_key("member") => {
            let member = text(&map["member"]);
            match map.get("score") {
                None => Item::Payload(member),
                Some(s) => Item::Scored(member, s.as_f64().ok_or("\"score\" is not a number")?),
            }
        }
        _ => Item::Payload(line.trim().as_bytes().to_vec()),
    })
}

fn now_ms() -> u64 {
    streamhost::display::now_ms()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_lines_become_items_by_target() {
        let v = |s: &str| serde_json::from_str(s).unwrap();
        assert_eq!(
            item_of(v(r#""x""#), "", false, false),
            Ok(Item::Payload(b"x".to_vec()))
        );
        assert_eq!(
            item_of(v(r#"{"a":"1","n":2}"#), "", false, true),
            Ok(Item::Fields(vec![
                ("a".into(), b"1".to_vec()),
                ("n".into(), b"2".to_vec())
            ]))
        );
        assert_eq!(
            item_of(v(r#"{"member":"m","score":-2.5}"#), "", true, false),
            Ok(Item::Scored(b"m".to_vec(), -2.5))
        );
        let line = r#"{"order_id":1}"#;
        assert_eq!(
            item_of(v(line), line, false, false),
            Ok(Item::Payload(line.as_bytes().to_vec()))
        );
        assert!(item_of(v(r#"{"member":"m","score":"x"}"#), "", true, false).is_err());
    }
}
