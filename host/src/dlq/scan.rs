//! Walking a DLQ in steps with the scan script: which entries match a
//! filter, with their metadata, never their bodies. Every list, count,
//! replay and purge selects through here, so they agree on what matches.

use redis::Value;
use redis::aio::ConnectionLike;

use super::{DlqError, Owner, meta};
use crate::streams::entry::ReplyError;
use crate::streams::scripts;

/// Which dead letters an operation is about. Every part is optional; the
/// default matches everything in the stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this plugin's (see [`Owner`]).
    pub owner: Option<Owner>,
    /// Only this reason: equal, or a prefix before `:` (`trap` selects every
    /// `trap:<kind>`).
    pub reason: Option<String>,
    /// Only entries whose original field names or values, or error text,
    /// contain these bytes.
    pub text: Option<Vec<u8>>,
    /// Only entries dead-lettered before this time (Unix ms, by entry id).
    pub before_ms: Option<u64>,
}

/// A dead letter without its original fields: what lists show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Its id in the DLQ.
    pub id: String,
    /// Its `dlq.*` fields as stored.
    pub metadata: Vec<(Vec<u8>, Vec<u8>)>,
    /// How many original fields it has.
    pub field_count: usize,
    /// Bytes of original names and values.
    pub field_bytes: usize,
}

impl Summary {
    /// A metadata value by its full name, when it is UTF-8.
    pub fn meta(&self, name: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(n, _)| n == name.as_bytes())
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// When it was dead-lettered (Unix ms).
    pub fn time_ms(&self) -> Option<u64> {
        self.meta(meta::TIME_MS)
            .and_then(|t| t.parse().ok())
            .or_else(|| super::id_ms(&self.id))
    }
}

/// Entries one script call examines: bounds its run time on the server.
pub(super) const STEP: usize = 200;

/// Walk direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Direction {
    /// Oldest first.
    Forward,
    /// Newest first.
    Reverse,
}

/// A walk over `[low, high]` of one DLQ (inclusive bounds, `-`/`+` open).
pub(super) struct Walk<'a> {
    dlq: &'a str,
    filter: &'a Filter,
    direction: Direction,
    /// The next first bound; `None` when the walk is done.
    next: Option<String>,
    /// The other end.
    last: String,
}

impl<'a> Walk<'a> {
    /// A walk from `from` (exclusive; the start when `None`) to the far end
    /// in `direction`, never past `until` (inclusive: a snapshot bound) nor
    /// to entries at or after the filter's `before_ms`.
    pub(super) fn new(
        dlq: &'a str,
        filter: &'a Filter,
        direction: Direction,
        from: Option<&str>,
        until: Option<&str>,
    ) -> Walk<'a> {
        // Entries older than `before_ms` are those below id `<ms>-0`.
        let before = filter.before_ms.map(|ms| (ms, format!("({ms}-0")));
        let older = |id: &str, ms: u64| id_key(id).is_some_and(|k| k < (ms, 0));
        let (next, last) = match direction {
            Direction::Forward => {
                let first = from.map_or_else(|| "-".to_owned(), |id| format!("({id}"));
                let last = match (until, before) {
                    (Some(u), Some((ms, bound))) => {
                        if older(u, ms) {
                            u.to_owned()
                        } else {
                            bound
                        }
                    }
                    (Some(u), None) => u.to_owned(),
                    (None, Some((_, bound))) => bound,
                    (None, None) => "+".to_owned(),
                };
                (first, last)
            }
            Direction::Reverse => {
                let first = match (from, before) {
                    (Some(f), Some((ms, bound))) => {
                        if older(f, ms) {
                            format!("({f}")
                        } else {
                            bound
                        }
                    }
                    (Some(f), None) => format!("({f}"),
                    (None, Some((_, bound))) => bound,
                    (None, None) => "+".to_owned(),
                };
                (first, until.unwrap_or("-").to_owned())
            }
        };
        Walk {
            dlq,
            filter,
            direction,
            next: Some(next),
            last,
        }
    }

    /// The next step's matches and how many entries it examined; `None` when
    /// the walk is done.
    pub(super) async fn step<C: ConnectionLike + Send>(
        &mut self,
        conn: &mut C,
    ) -> Result<Option<(Vec<Summary>, usize)>, DlqError> {
        let Some(first) = self.next.take() else {
            return Ok(None);
        };
        let owner = self.filter.owner.as_ref();
        let reply: Value = scripts::DLQ_SCAN
            .key(self.dlq)
            .arg(match self.direction {
                Direction::Forward => "fwd",
                Direction::Reverse => "rev",
            })
            .arg(&first)
            .arg(&self.last)
            .arg(STEP)
            .arg(owner.map_or("", |o| o.plugin.as_str()))
            .arg(owner.map_or("", |o| o.group.as_str()))
            .arg(self.filter.reason.as_deref().unwrap_or(""))
            .arg(self.filter.text.as_deref().unwrap_or(b""))
            .invoke_async(conn)
            .await?;
        let (last, examined, hits) = parse_step(reply)?;
        if !last.is_empty() {
            self.next = Some(format!("({last}"));
        }
        Ok(Some((hits, examined)))
    }

    /// The last id a step examined (exclusive start of the next); `None`
    /// once the walk is done.
    pub(super) fn position(&self) -> Option<&str> {
        self.next.as_deref().and_then(|n| n.strip_prefix('('))
    }
}

fn parse_step(reply: Value) -> Result<(String, usize, Vec<Summary>), ReplyError> {
    let bad = || ReplyError("the DLQ scan script returned an unexpected reply".into());
    let Value::Array(parts) = reply else {
        return Err(bad());
    };
    let [last, examined, hits]: [Value; 3] = parts.try_into().map_err(|_| bad())?;
    let last = string(last).ok_or_else(bad)?;
    let Value::Int(examined) = examined else {
        return Err(bad());
    };
    let Value::Array(hits) = hits else {
        return Ok((last, usize::try_from(examined).unwrap_or(0), Vec::new()));
    };
    let summaries = hits
        .into_iter()
        .map(|hit| {
            let Value::Array(hit) = hit else {
                return Err(bad());
            };
            let [id, metadata, count, bytes]: [Value; 4] = hit.try_into().map_err(|_| bad())?;
            let id = string(id).ok_or_else(bad)?;
            let metadata = match metadata {
                Value::Array(flat) => flat
                    .chunks(2)
                    .map(|pair| match pair {
                        [Value::BulkString(n), Value::BulkString(v)] => Ok((n.clone(), v.clone())),
                        _ => Err(bad()),
                    })
                    .collect::<Result<_, _>>()?,
                _ => Vec::new(),
            };
            let int = |v: Value| match v {
                Value::Int(n) => Ok(usize::try_from(n).unwrap_or(0)),
                _ => Err(bad()),
            };
            Ok(Summary {
                id,
                metadata,
                field_count: int(count)?,
                field_bytes: int(bytes)?,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok((last, usize::try_from(examined).unwrap_or(0), summaries))
}

/// A stream id as `(ms, seq)` for ordering.
pub(super) fn id_key(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

fn string(v: Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}
