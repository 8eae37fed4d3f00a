//! Retention: applies each `[[retention]]` rule periodically with
//! `XTRIM MINID ~`, never past an entry that any consumer group of the stream
//! still needs (pending, or not read yet), and reports when a group holds the
//! rule back.
//!
//! The bound is computed inside one Lua script together with the trim
//! (`streams/lua/retention_trim.lua`), because Redis 7.0 has no trim mode that
//! respects pending entries and a bound computed in a separate round trip could
//! be stale by the time `XTRIM` runs (a group created meanwhile at `0`).

use std::time::Duration;

use redis::Value;
use redis::aio::ConnectionLike;
use tokio_util::sync::CancellationToken;

use crate::config::RetentionConfig;
use crate::error::{ReplyError, Result};
use crate::inspect::{number, text};
use crate::metrics::RetentionMetrics;
use crate::shutdown::pause;
use crate::streams::scripts;

/// Entries one round may look past to find the length bound, and about what
/// one approximate `XTRIM` deletes by default (100 × stream-node-max-entries):
/// keeps each script short so Redis is never blocked for long.
const ROUND_ENTRIES: u64 = 10_000;
/// Rounds per application; a stream far over its limit catches up over a few
/// intervals rather than in one long burst.
const MAX_ROUNDS: usize = 100;
/// Response timeout for retention's own connection.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a group holds retention back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hold {
    /// The group that needs older entries.
    pub group: String,
    /// `pending` (its oldest pending entry) or `unread` (its last-delivered id).
    pub reason: String,
    /// The first id retention must keep for that group.
    pub id: String,
    /// The first id the rule alone would keep.
    pub wanted: String,
}

/// What one application of a rule did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Applied {
    /// Entries deleted.
    pub trimmed: u64,
    /// Set when a group kept the rule from trimming as far as configured.
    pub held_back: Option<Hold>,
}

/// Applies `rule` every `rule.interval_ms` until `shutdown`.
pub(crate) async fn run(
    rule: RetentionConfig,
    redis: crate::connection::Endpoint,
    metrics: RetentionMetrics,
    shutdown: CancellationToken,
) {
    let mut conn = match redis.connect(COMMAND_TIMEOUT, &shutdown).await {
        Ok(Some(conn)) => conn,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(stream = %rule.stream, error = %e, "retention cannot connect; not trimming");
            return;
        }
    };
    let interval = Duration::from_millis(rule.interval_ms);
    let mut holding = Holding::default();
    loop {
        match apply(&rule, &mut conn, &shutdown).await {
            Ok(applied) => {
                metrics.trimmed.inc_by(applied.trimmed);
                metrics
                    .held_back
                    .set(i64::from(applied.held_back.is_some()));
                report(&rule.stream, &applied, &mut holding);
            }
            Err(e) => {
                tracing::warn!(stream = %rule.stream, error = %e, "retention round failed; trying again next interval")
            }
        }
        if !pause(interval, &shutdown).await {
            return;
        }
    }
}

/// Applies a rule once: rounds of the trim script until one deletes nothing
/// (or [`MAX_ROUNDS`]).
pub(crate) async fn apply<C: ConnectionLike + Send>(
    rule: &RetentionConfig,
    conn: &mut C,
    shutdown: &CancellationToken,
) -> Result<Applied> {
    let mut applied = Applied::default();
    for _ in 0..MAX_ROUNDS {
        let round = trim_round(rule, conn).await?;
        applied.trimmed += round.trimmed;
        applied.held_back = round.held_back;
        if round.trimmed == 0 || shutdown.is_cancelled() {
            break;
        }
    }
    Ok(applied)
}

async fn trim_round<C: ConnectionLike + Send>(
    rule: &RetentionConfig,
    conn: &mut C,
) -> Result<Applied> {
    let max_len = rule.max_len.map(|n| n.to_string()).unwrap_or_default();
    let max_age = rule
        .max_age()
        .map(|d| d.as_millis().to_string())
        .unwrap_or_default();
    let reply: Value = scripts::RETENTION_TRIM
        .key(&rule.stream)
        .arg(max_len)
        .arg(max_age)
        .arg(ROUND_ENTRIES)
        .invoke_async(conn)
        .await?;
    parse_round(reply)
}

fn parse_round(reply: Value) -> Result<Applied> {
    let Value::Array(parts) = reply else {
        return Err(ReplyError(format!("the retention script replied {reply:?}")).into());
    };
    let mut parts = parts.into_iter();
    let trimmed = number(parts.next()).unwrap_or(0);
    let (policy, safe, group, reason) = (
        text(parts.next()),
        text(parts.next()),
        text(parts.next()),
        text(parts.next()),
    );
    let held_back = match (policy, safe, group, reason) {
        (Some(wanted), Some(id), Some(group), Some(reason)) if id_less(&id, &wanted) => {
            Some(Hold {
                group,
                reason,
                id,
                wanted,
            })
        }
        _ => None,
    };
    Ok(Applied { trimmed, held_back })
}

/// What the log has said about holds so far.
#[derive(Debug, Default)]
struct Holding {
    /// The hold seen in the last application.
    last: Option<Hold>,
    /// Whether it has been warned about.
    warned: bool,
}

/// Logs trims at debug, and a hold when the same group holds the rule in two
/// applications in a row: a group created a moment ago, or a burst being
/// read, holds it briefly and is no news.
fn report(stream: &str, applied: &Applied, holding: &mut Holding) {
    if applied.trimmed > 0 {
        tracing::debug!(
            stream,
            trimmed = applied.trimmed,
            "retention trimmed entries"
        );
    }
    let Some(now) = &applied.held_back else {
        if holding.warned
            && let Some(before) = &holding.last
        {
            tracing::info!(stream, group = %before.group, "retention no longer held back");
        }
        *holding = Holding::default();
        return;
    };
    let same = holding
        .last
        .as_ref()
        .is_some_and(|b| b.group == now.group && b.reason == now.reason);
    if !same {
        tracing::debug!(stream, group = %now.group, reason = %now.reason, keep_from = %now.id, "retention held back");
        *holding = Holding {
            last: Some(now.clone()),
            warned: false,
        };
        return;
    }
    if !holding.warned {
        let what = if now.reason == "pending" {
            "its oldest pending entry"
        } else {
            "entries it has not read yet (it is behind)"
        };
        tracing::warn!(
            stream, group = %now.group, reason = %now.reason, keep_from = %now.id, rule_keeps_from = %now.wanted,
            "retention held back: group {} still needs {what} from {}; trimming no further until it moves on",
            now.group, now.id
        );
        holding.warned = true;
    }
    holding.last = Some(now.clone());
}

/// Entry id order (`<ms>-<seq>`, both 64-bit).
fn id_less(a: &str, b: &str) -> bool {
    let parse = |id: &str| {
        let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
        (
            ms.parse::<u64>().unwrap_or(0),
            seq.parse::<u64>().unwrap_or(0),
        )
    };
    parse(a) < parse(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn ids_order_numerically() {
        assert!(id_less("9-0", "10-0"));
        assert!(id_less("10-2", "10-10"));
        assert!(!id_less("10-0", "10-0"));
        assert!(id_less("18446744073709551614-0", "18446744073709551615-0"));
    }

    #[test]
    fn a_safe_bound_below_the_policy_is_a_hold() {
        let reply = Value::Array(vec![
            Value::Int(40),
            bulk("100-0"),
            bulk("50-3"),
            bulk("stuck"),
            bulk("pending"),
            bulk("1-0"),
        ]);
        let applied = parse_round(reply).unwrap();
        assert_eq!(applied.trimmed, 40);
        let hold = applied.held_back.expect("held back");
        assert_eq!((hold.group.as_str(), hold.id.as_str()), ("stuck", "50-3"));
    }

    #[test]
    fn nothing_to_trim_is_no_hold() {
        let reply = Value::Array(vec![
            Value::Int(0),
            bulk("100-0"),
            Value::Nil,
            Value::Nil,
            Value::Nil,
            bulk("200-0"),
        ]);
        assert_eq!(parse_round(reply).unwrap(), Applied::default());
        let ahead = Value::Array(vec![
            Value::Int(5),
            bulk("100-0"),
            bulk("300-0"),
            bulk("g"),
            bulk("unread"),
            bulk("1-0"),
        ]);
        assert!(parse_round(ahead).unwrap().held_back.is_none());
    }
}
