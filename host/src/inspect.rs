//! Read-only queries of Redis's own view of a stream and its consumer groups
//! (`XINFO GROUPS`, `XINFO CONSUMERS`, the `XPENDING` summary, `XLEN`, `TIME`),
//! parsed into plain structs for the gauges, retention and `streamhost status`.

use std::collections::HashMap;

use redis::Value;
use redis::aio::ConnectionLike;
use serde::Serialize;

use crate::error::{Error, ReplyError, Result};

/// One group as `XINFO GROUPS` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupInfo {
    /// Group name.
    pub name: String,
    /// Consumers in the group.
    pub consumers: u64,
    /// Entries delivered and not acked (the PEL size).
    pub pending: u64,
    /// The last id delivered to the group; entries after it are unread.
    pub last_delivered_id: String,
    /// Entries the group has read (Redis 7+; nil when Redis cannot tell).
    pub entries_read: Option<u64>,
    /// Entries not yet delivered (Redis 7+; nil after deletions it cannot account for).
    pub lag: Option<u64>,
}

/// One consumer as `XINFO CONSUMERS` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsumerInfo {
    /// Consumer name.
    pub name: String,
    /// Entries pending on this consumer.
    pub pending: u64,
    /// Milliseconds since the consumer last interacted with the group.
    pub idle_ms: u64,
    /// Milliseconds since its last successful read or claim (Redis 7.2+ only).
    pub inactive_ms: Option<i64>,
}

/// The summary form of `XPENDING stream group`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PendingSummary {
    /// Entries pending in the group.
    pub count: u64,
    /// The smallest pending id.
    pub smallest_id: Option<String>,
    /// The largest pending id.
    pub largest_id: Option<String>,
    /// Pending entries per consumer (only consumers that have some).
    pub consumers: Vec<(String, u64)>,
}

/// `XINFO GROUPS stream`; empty when the stream does not exist.
pub async fn groups<C: ConnectionLike + Send>(
    conn: &mut C,
    stream: &str,
) -> Result<Vec<GroupInfo>> {
    let reply: Value = match redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(stream)
        .query_async(conn)
        .await
    {
        Ok(v) => v,
        Err(e) if is_no_such_key(&e) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    list(reply, "XINFO GROUPS")?
        .into_iter()
        .map(|g| {
            let mut f = fields(g, "XINFO GROUPS")?;
            Ok(GroupInfo {
                name: text(f.remove("name")).ok_or_else(|| bad("XINFO GROUPS", "name"))?,
                consumers: number(f.remove("consumers")).unwrap_or(0),
                pending: number(f.remove("pending")).unwrap_or(0),
                last_delivered_id: text(f.remove("last-delivered-id"))
                    .ok_or_else(|| bad("XINFO GROUPS", "last-delivered-id"))?,
                entries_read: number(f.remove("entries-read")),
                lag: number(f.remove("lag")),
            })
        })
        .collect()
}

/// One group of a stream, `None` when the stream or the group is missing.
pub async fn group<C: ConnectionLike + Send>(
    conn: &mut C,
    stream: &str,
    name: &str,
) -> Result<Option<GroupInfo>> {
    Ok(groups(conn, stream)
        .await?
        .into_iter()
        .find(|g| g.name == name))
}

/// `XINFO CONSUMERS stream group`.
pub async fn consumers<C: ConnectionLike + Send>(
    conn: &mut C,
    stream: &str,
    group: &str,
) -> Result<Vec<ConsumerInfo>> {
    let reply: Value = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(stream)
        .arg(group)
        .query_async(conn)
        .await?;
    list(reply, "XINFO CONSUMERS")?
        .into_iter()
        .map(|c| {
            let mut f = fields(c, "XINFO CONSUMERS")?;
            Ok(ConsumerInfo {
                name: text(f.remove("name")).ok_or_else(|| bad("XINFO CONSUMERS", "name"))?,
                pending: number(f.remove("pending")).unwrap_or(0),
                idle_ms: number(f.remove("idle")).unwrap_or(0),
                inactive_ms: f.remove("inactive").and_then(|v| match v {
                    Value::Int(n) => Some(n),
                    _ => None,
                }),
            })
        })
        .collect()
}

/// `XPENDING stream group` (the summary form).
pub async fn pending_summary<C: ConnectionLike + Send>(
    conn: &mut C,
    stream: &str,
    group: &str,
) -> Result<PendingSummary> {
    let reply: Value = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .query_async(conn)
        .await?;
    let mut parts = list(reply, "XPENDING")?.into_iter();
    let count = number(parts.next()).ok_or_else(|| bad("XPENDING", "count"))?;
    let smallest_id = text(parts.next());
    let largest_id = text(parts.next());
    let consumers = match parts.next() {
        Some(Value::Array(rows)) => rows
            .into_iter()
            .filter_map(|row| {
                let mut pair = list(row, "XPENDING").ok()?.into_iter();
                Some((text(pair.next())?, number(pair.next())?))
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(PendingSummary {
        count,
        smallest_id,
        largest_id,
        consumers,
    })
}

/// `XLEN key` (0 when the key does not exist).
pub async fn stream_len<C: ConnectionLike + Send>(conn: &mut C, key: &str) -> Result<u64> {
    Ok(redis::cmd("XLEN").arg(key).query_async(conn).await?)
}

/// Redis's clock in milliseconds since the epoch. Ages are measured against
/// it, not the local clock, because entry ids carry Redis's time.
pub async fn server_time_ms<C: ConnectionLike + Send>(conn: &mut C) -> Result<u64> {
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(conn).await?;
    Ok(secs * 1000 + micros / 1000)
}

/// The millisecond part of an entry id (`<ms>-<seq>`).
pub fn id_time_ms(id: &str) -> Option<u64> {
    crate::streams::id::time_ms(id.as_bytes())
}

/// Milliseconds from the time in `id` to `now_ms` (0 for ids in the future).
pub fn age_ms(id: &str, now_ms: u64) -> Option<u64> {
    id_time_ms(id).map(|t| now_ms.saturating_sub(t))
}

fn is_no_such_key(e: &redis::RedisError) -> bool {
    e.to_string().contains("no such key")
}

fn bad(command: &str, field: &str) -> Error {
    ReplyError(format!("{command} reply has no `{field}`")).into()
}

fn list(v: Value, command: &str) -> Result<Vec<Value>> {
    match v {
        Value::Array(items) | Value::Set(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        other => Err(ReplyError(format!("{command} replied {other:?}")).into()),
    }
}

/// A RESP2 flat `name, value, ...` array or a RESP3 map, by name.
fn fields(v: Value, command: &str) -> Result<HashMap<String, Value>> {
    let pairs: Vec<(Value, Value)> = match v {
        Value::Map(pairs) => pairs,
        other => {
            let mut flat = list(other, command)?.into_iter();
            std::iter::from_fn(|| Some((flat.next()?, flat.next()?))).collect()
        }
    };
    Ok(pairs
        .into_iter()
        .filter_map(|(k, v)| Some((text(Some(k))?, v)))
        .collect())
}

pub(crate) fn text(v: Option<Value>) -> Option<String> {
    match v? {
        Value::BulkString(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        Value::SimpleString(s) => Some(s),
        Value::VerbatimString { text, .. } => Some(text),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

pub(crate) fn number(v: Option<Value>) -> Option<u64> {
    match v? {
        Value::Int(n) => u64::try_from(n).ok(),
        other => text(Some(other))?.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_times_parse() {
        assert_eq!(id_time_ms("1700000000000-3"), Some(1_700_000_000_000));
        assert_eq!(id_time_ms("12"), Some(12));
        assert_eq!(id_time_ms("x-1"), None);
        assert_eq!(age_ms("1000-0", 3500), Some(2500));
        assert_eq!(age_ms("9000-0", 3500), Some(0));
    }

    #[test]
    fn flat_and_map_replies_read_alike() {
        let b = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let flat = Value::Array(vec![b("name"), b("g"), b("lag"), Value::Nil]);
        let f = fields(flat, "t").unwrap();
        assert_eq!(text(f.get("name").cloned()), Some("g".into()));
        assert_eq!(number(f.get("lag").cloned()), None);
        let map = Value::Map(vec![(b("pending"), Value::Int(3))]);
        assert_eq!(number(fields(map, "t").unwrap().remove("pending")), Some(3));
    }
}
