//! What a run did, reconstructed from Redis and from the hosts' logs: which ids
//! the `recorder` plugin handled (and when), which are pending, acked or
//! dead-lettered, and the crash tests' account of produced/handled/lost.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use redis::Value;
use redis::aio::MultiplexedConnection;

/// A stream entry id as `(milliseconds, sequence)`, ordered as Redis orders them.
pub fn id_key(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (
        ms.parse()
            .unwrap_or_else(|_| panic!("bad stream id {id:?}")),
        seq.parse()
            .unwrap_or_else(|_| panic!("bad stream id {id:?}")),
    )
}

/// Removes terminal colour codes, which the host's text logs may contain.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters... final byte in @..~
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// One line of a host log, timestamp parsed.
pub struct LogLine {
    /// When it was written.
    pub at: SystemTime,
    /// The whole line without colour codes.
    pub text: String,
}

/// The lines of a host log that contain `needle`, with their timestamps.
pub fn log_lines(log: &str, needle: &str) -> Vec<LogLine> {
    strip_ansi(log)
        .lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| {
            let stamp = l.split_whitespace().next()?;
            let at = humantime::parse_rfc3339_weak(stamp.trim_end_matches('Z')).ok()?;
            Some(LogLine {
                at,
                text: l.to_owned(),
            })
        })
        .collect()
}

/// One invocation of the `recorder` plugin, as it logged it.
#[derive(Debug, Clone)]
pub struct Handled {
    pub id: String,
    pub attempt: u32,
}

/// Every `recorder handled <id> attempt <n>` line of a host log, in order.
pub fn recorder_handled(log: &str) -> Vec<Handled> {
    const MARK: &str = "recorder handled ";
    strip_ansi(log)
        .lines()
        .filter_map(|line| {
            let rest = &line[line.find(MARK)? + MARK.len()..];
            let mut words = rest.split_whitespace();
            let id = words.next()?.to_owned();
            let attempt = match (words.next(), words.next()) {
                (Some("attempt"), Some(n)) => n.parse().ok()?,
                _ => return None,
            };
            Some(Handled { id, attempt })
        })
        .collect()
}

/// Every `recorder data <word> attempt <n>` line of a host log, in order:
/// what the recorder saw on a list, sorted-set or Pub/Sub source (`id` is
/// the first word of the payload).
pub fn recorder_data(log: &str) -> Vec<Handled> {
    const MARK: &str = "recorder data ";
    strip_ansi(log)
        .lines()
        .filter_map(|line| {
            let rest = &line[line.find(MARK)? + MARK.len()..];
            let mut words = rest.split_whitespace();
            let id = words.next()?.to_owned();
            let attempt = match (words.next(), words.next()) {
                (Some("attempt"), Some(n)) => n.parse().ok()?,
                _ => return None,
            };
            Some(Handled { id, attempt })
        })
        .collect()
}

/// Sums the `count=N` field of the log lines containing `needle`.
pub fn sum_counts(log: &str, needle: &str) -> u64 {
    strip_ansi(log)
        .lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| {
            let at = l.find("count=")? + "count=".len();
            l[at..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// A pending entry: id, owning consumer, delivery count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEntry {
    pub id: String,
    pub consumer: String,
    pub deliveries: u64,
}

/// Every pending entry of a group (an empty list when the group is missing).
pub async fn pending_entries(
    conn: &mut MultiplexedConnection,
    stream: &str,
    group: &str,
) -> Vec<PendingEntry> {
    let rows: Result<Vec<(String, String, u64, u64)>, _> = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .arg("-")
        .arg("+")
        .arg(1_000_000)
        .query_async(conn)
        .await;
    rows.unwrap_or_default()
        .into_iter()
        .map(|(id, consumer, _, deliveries)| PendingEntry {
            id,
            consumer,
            deliveries,
        })
        .collect()
}

/// A group's `last-delivered-id`, if the group exists.
pub async fn last_delivered(
    conn: &mut MultiplexedConnection,
    stream: &str,
    group: &str,
) -> Option<String> {
    let groups: Value = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(stream)
        .query_async(conn)
        .await
        .ok()?;
    let Value::Array(groups) = groups else {
        return None;
    };
    groups.into_iter().find_map(|g| {
        let fields = flat_map(g);
        (fields.get("name")? == group)
            .then(|| fields.get("last-delivered-id").cloned())
            .flatten()
    })
}

/// The consumers of a group with their pending counts.
pub async fn consumers(
    conn: &mut MultiplexedConnection,
    stream: &str,
    group: &str,
) -> BTreeMap<String, u64> {
    let reply: Value = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(stream)
        .arg(group)
        .query_async(conn)
        .await
        .expect("XINFO CONSUMERS");
    let Value::Array(items) = reply else {
        return BTreeMap::new();
    };
    items
        .into_iter()
        .filter_map(|c| {
            let mut fields = flat_map(c);
            let pending = fields.get("pending")?.parse().ok()?;
            Some((fields.remove("name")?, pending))
        })
        .collect()
}

fn flat_map(v: Value) -> HashMap<String, String> {
    let text = |v: &Value| match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    };
    match v {
        Value::Array(items) => items
            .chunks(2)
            .filter_map(|kv| Some((text(&kv[0])?, text(kv.get(1)?)?)))
            .collect(),
        Value::Map(pairs) => pairs
            .iter()
            .filter_map(|(k, v)| Some((text(k)?, text(v)?)))
            .collect(),
        _ => HashMap::new(),
    }
}

/// `dlq.source-id` of every entry of a dead-letter stream, in DLQ order.
pub async fn dead_lettered_ids(conn: &mut MultiplexedConnection, dlq_stream: &str) -> Vec<String> {
    streamhost::dlq::range(conn, dlq_stream, "-", 1_000_000)
        .await
        .expect("read the dead-letter stream")
        .iter()
        .map(|d| {
            d.meta(streamhost::dlq::meta::SOURCE_ID)
                .expect("dead letter has a source id")
                .to_owned()
        })
        .collect()
}

/// Whether every produced entry has been delivered and none is pending.
pub async fn settled(
    conn: &mut MultiplexedConnection,
    stream: &str,
    group: &str,
    last_produced: &str,
) -> bool {
    let Some(last) = last_delivered(conn, stream, group).await else {
        return false;
    };
    id_key(&last) >= id_key(last_produced) && pending_entries(conn, stream, group).await.is_empty()
}

/// Waits up to `timeout` for [`settled`].
pub async fn wait_settled(
    conn: &MultiplexedConnection,
    stream: &str,
    group: &str,
    last_produced: &str,
    timeout: std::time::Duration,
) -> bool {
    crate::wait_until(timeout, || async {
        settled(&mut conn.clone(), stream, group, last_produced).await
    })
    .await
}

/// The account of a run against the producer's ledger of ids.
#[derive(Debug, Default)]
pub struct Account {
    /// Entries produced.
    pub produced: usize,
    /// Distinct produced ids some handler ran on.
    pub handled: usize,
    /// Invocations beyond the expected ones (an entry handled again after a crash).
    pub duplicates: usize,
    /// Distinct ids in the dead-letter stream.
    pub dead_lettered: usize,
    /// Ids dead-lettered more than once.
    pub dead_lettered_twice: usize,
    /// Produced ids neither handled-and-acked nor dead-lettered, or still pending.
    pub lost: Vec<String>,
    /// Ids handled more than expected, with their invocation counts.
    pub duplicated: BTreeMap<String, usize>,
}

impl Account {
    /// Settles a finished run: `produced` is the producer's ledger, `expected`
    /// how many invocations an id needs (1, or `fail_times + 1`), `handled` the
    /// recorder's invocations from every host, `pending` and `dlq` what Redis
    /// holds now. Acked = delivered and not pending.
    pub fn settle(
        produced: &[String],
        expected: impl Fn(&str) -> usize,
        handled: &[Handled],
        pending: &[PendingEntry],
        dlq: &[String],
    ) -> Account {
        let mut runs: HashMap<&str, usize> = HashMap::new();
        for h in handled {
            *runs.entry(h.id.as_str()).or_default() += 1;
        }
        let pending: BTreeSet<&str> = pending.iter().map(|p| p.id.as_str()).collect();
        let mut dead: HashMap<&str, usize> = HashMap::new();
        for id in dlq {
            *dead.entry(id.as_str()).or_default() += 1;
        }
        let mut account = Account {
            produced: produced.len(),
            dead_lettered: dead.len(),
            dead_lettered_twice: dead.values().filter(|&&n| n > 1).count(),
            ..Account::default()
        };
        for id in produced {
            let n = runs.get(id.as_str()).copied().unwrap_or(0);
            if n > 0 {
                account.handled += 1;
            }
            let want = expected(id);
            if n > want {
                account.duplicates += n - want;
                account.duplicated.insert(id.clone(), n);
            }
            // Acked without a handler run would be lost too.
            let done = n > 0 && !pending.contains(id.as_str());
            if !done {
                account.lost.push(id.clone());
            }
        }
        account
    }

    /// Prints the figures (shown by `cargo test -- --nocapture`).
    pub fn print(&self, what: &str) {
        eprintln!(
            "{what}: produced {}, handled {}, dead-lettered {}, duplicates {}, lost {}",
            self.produced,
            self.handled,
            self.dead_lettered,
            self.duplicates,
            self.lost.len()
        );
    }
}

/// Waits until the host log contains `needle`.
pub async fn wait_for_log(host: &crate::HostProcess, needle: &str, timeout: Duration) -> bool {
    crate::wait_until(timeout, || async {
        strip_ansi(&host.log()).contains(needle)
    })
    .await
}

/// One entry's fields, names and values as bytes.
pub type RawFields = Vec<(Vec<u8>, Vec<u8>)>;

/// Every entry of a stream (e.g. a DLQ), oldest first, fields as bytes.
pub async fn stream_fields(conn: &mut MultiplexedConnection, stream: &str) -> Vec<RawFields> {
    let entries: Vec<(String, RawFields)> = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .expect("XRANGE");
    entries.into_iter().map(|(_, fields)| fields).collect()
}

/// The value of field `name`.
pub fn field(fields: &RawFields, name: &str) -> Option<Vec<u8>> {
    fields
        .iter()
        .find(|(n, _)| n == name.as_bytes())
        .map(|(_, v)| v.clone())
}
