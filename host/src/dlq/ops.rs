//! The operator's side of dead letters, for the CLI and the dashboard: list
//! (newest first, filtered, paged, with the total), count, show, replay to the
//! plugin alone, purge.
//!
//! Selection is one server-side walk ([`super::scan`]) shared by every
//! operation, filtered by owner, so a DLQ shared by several plugins on purpose
//! still shows, replays and purges one plugin's dead letters only. Replay and
//! purge work on a snapshot: the range up to the newest entry when they start,
//! so entries that fail again during a replay are not replayed again by it.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use redis::Value;
use redis::aio::ConnectionLike;

use super::scan::{Direction, Walk};
pub use super::scan::{Filter, Summary};
use super::write::push_fields;
use super::{
    DeadLetter, DlqError, Owner, fields_len, meta, nonce, parse_letters, redeliver_key,
    write_budget,
};
use crate::streams::scripts;

/// Longest wait for a read (an entry can be hundreds of MiB).
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// One page of a listing, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The dead letters on this page.
    pub letters: Vec<Summary>,
    /// How many match the filter in all.
    pub total: u64,
    /// Pass as `before` for the next page; `None` on the last page.
    pub next: Option<String>,
}

/// Counts of what matches a filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Matching dead letters.
    pub total: u64,
    /// Of those, how many per `dlq.reason`.
    pub reasons: BTreeMap<String, u64>,
}

/// Reads up to `count` dead letters from `start` (inclusive; `-` for the
/// beginning), oldest first, whole, unfiltered.
pub async fn range<C: ConnectionLike + Send>(
    conn: &mut C,
    dlq: &str,
    start: &str,
    count: usize,
) -> Result<Vec<DeadLetter>, DlqError> {
    let reply: Value = read(
        redis::cmd("XRANGE")
            .arg(dlq)
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(count)
            .query_async(conn),
    )
    .await?;
    Ok(parse_letters(reply)?)
}

/// One dead letter by id, whole.
pub async fn show<C: ConnectionLike + Send>(
    conn: &mut C,
    dlq: &str,
    id: &str,
) -> Result<Option<DeadLetter>, DlqError> {
    let reply: Value = read(
        redis::cmd("XRANGE")
            .arg(dlq)
            .arg(id)
            .arg(id)
            .query_async(conn),
    )
    .await?;
    Ok(parse_letters(reply)?.pop().filter(|d| d.id == id))
}

/// Counts the dead letters matching `filter`, per reason.
pub async fn count<C: ConnectionLike + Send>(
    conn: &mut C,
    dlq: &str,
    filter: &Filter,
) -> Result<Counts, DlqError> {
    let mut counts = Counts::default();
    let mut walk = Walk::new(dlq, filter, Direction::Forward, None, None);
    while let Some((hits, _)) = read(walk.step(conn)).await? {
        for hit in hits {
            counts.total += 1;
            let reason = hit.meta(meta::REASON).unwrap_or("?").to_owned();
            *counts.reasons.entry(reason).or_default() += 1;
        }
    }
    Ok(counts)
}

/// How many dead letters `owner` has in `dlq`. `exclusive` says the stream
/// is the owner's own default DLQ (`dlq:<stream>:<plugin>`): then its length
/// is the answer, without walking it.
pub async fn owned_count<C: ConnectionLike + Send>(
    conn: &mut C,
    dlq: &str,
    owner: &Owner,
    exclusive: bool,
) -> Result<u64, DlqError> {
    if exclusive {
        return read(redis::cmd("XLEN").arg(dlq).query_async(conn)).await;
    }
    let filter = Filter {
        owner: Some(owner.clone()),
        ..Filter::default()
    };
    Ok(count(conn, dlq, &filter).await?.total)
}

/// A page of up to `limit` dead letters matching `filter`, newest first,
/// starting below `before` (an id from [`Page::next`]; `None` for the newest).
pub async fn list<C: ConnectionLike + Send>(
    conn: &mut C,
    dlq: &str,
    filter: &Filter,
    before: Option<&str>,
    limit: usize,
) -> Result<Page, DlqError> {
    let mut letters = Vec::new();
    let mut walk = Walk::new(dlq, filter, Direction::Reverse, before, None);
    let mut more = false;
    while let Some((hits, _)) = read(walk.step(conn)).await? {
        for hit in hits {
            if letters.len() == limit {
                more = true;
                break;
            }
            letters.push(hit);
        }
        if more {
            break;
        }
    }
    let total = count(conn, dlq, filter).await?.total;
    let next = more.then(|| letters.last().map(|l| l.id.clone())).flatten();
    Ok(Page {
        letters,
        total,
        next,
    })
}

/// What became of one dead letter in a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayOutcome {
    /// Moved to `to` (the plugin's redelivery stream) under `new_id`.
    Moved {
        /// The redelivery stream.
        to: String,
        /// The entry's id there.
        new_id: String,
    },
    /// A dry run: would be moved to `to`.
    WouldMove {
        /// The redelivery stream.
        to: String,
    },
    /// Not in the DLQ (any more): replayed or purged by someone else.
    Gone,
    /// Belongs to another plugin than the filter's.
    OtherOwner,
    /// Lacks what a replay needs; left in the DLQ.
    NotReplayable(&'static str),
    /// The move was sent but no reply came in time, and looking afterwards
    /// could not tell whether it happened. Never reported as a failure.
    Unknown {
        /// The redelivery stream.
        to: String,
        /// What was observed.
        detail: String,
    },
}

/// Replay totals.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReplayReport {
    /// Moved to their redelivery streams (or, in a dry run, would be).
    pub replayed: u64,
    /// In the snapshot but not selected by the filter.
    pub skipped: u64,
    /// Gone before their turn, or another plugin's.
    pub gone: u64,
    /// Left in the DLQ: not replayable.
    pub not_replayable: u64,
    /// Outcome unknown (timed out after sending).
    pub unknown: u64,
}

impl ReplayReport {
    fn add(&mut self, outcome: &ReplayOutcome) {
        match outcome {
            ReplayOutcome::Moved { .. } | ReplayOutcome::WouldMove { .. } => self.replayed += 1,
            ReplayOutcome::Gone | ReplayOutcome::OtherOwner => self.gone += 1,
            ReplayOutcome::NotReplayable(_) => self.not_replayable += 1,
            ReplayOutcome::Unknown { .. } => self.unknown += 1,
        }
    }
}

/// How a replay runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayOptions {
    /// Only say what would be moved where.
    pub dry_run: bool,
    /// How long one move may take before its outcome is looked up instead;
    /// by default sized to the entry ([`write_budget`]).
    pub budget: Option<Duration>,
}

/// Which dead letters a replay takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Those matching the filter.
    Matching,
    /// These ids (the filter's owner still applies).
    Ids(Vec<String>),
}

/// Replays the selected dead letters, each to its plugin's redelivery stream
/// and atomically removed from the DLQ. Works on a snapshot (entries up to the
/// newest at the start). `on_entry` is called after each dead letter with its
/// outcome; `on_step` after each step of the walk with the totals so far.
pub async fn replay<C: ConnectionLike + Send>(
    conn: &mut C,
    dlq: &str,
    filter: &Filter,
    selection: &Selection,
    options: &ReplayOptions,
    mut on_entry: impl FnMut(&str, &ReplayOutcome),
    mut on_step: impl FnMut(&ReplayReport),
) -> Result<ReplayReport, DlqError> {
    let mut report = ReplayReport::default();
    if let Selection::Ids(ids) = selection {
        for id in ids {
            let outcome = replay_one(conn, dlq, id, filter.owner.as_ref(), options).await?;
            report.add(&outcome);
            on_entry(id, &outcome);
        }
        on_step(&report);
        return Ok(report);
    }
    let Some(snapshot) = newest_id(conn, dlq).await? else {
        return Ok(report);
    };
    let mut walk = Walk::new(dlq, filter, Direction::Forward, None, Some(&snapshot));
    while let Some((hits, examined)) = read(walk.step(conn)).await? {
        report.skipped += (examined - hits.len()) as u64;
        for hit in hits {
            let outcome = replay_one(conn, dlq, &hit.id, None, options).await?;
            report.add(&outcome);
            on_entry(&hit.id, &outcome);
        }
        on_step(&report);
    }
    Ok(report)
}

/// The newest id in a stream, if any.
pub(super) async fn newest_id<C: ConnectionLike + Send>(
    conn: &mut C,
    stream: &str,
) -> Result<Option<String>, DlqError> {
    // The scan script reads only ids and metadata; one XREVRANGE of the
    // newest entry could send a huge body.
    let everything = Filter::default();
    let mut walk = Walk::new(stream, &everything, Direction::Reverse, None, None);
    let newest = read(walk.step(conn)).await?;
    Ok(newest.and_then(|(hits, _)| hits.into_iter().next().map(|h| h.id)))
}

/// Replays one dead letter (see [`replay`]). `owner`, when given, must own it.
pub async fn replay_one<C: ConnectionLike + Send>(
    conn: &mut C,
    dlq: &str,
    id: &str,
    owner: Option<&Owner>,
    options: &ReplayOptions,
) -> Result<ReplayOutcome, DlqError> {
    let ReplayOptions { dry_run, budget } = *options;
    let Some(d) = show(conn, dlq, id).await? else {
        return Ok(ReplayOutcome::Gone);
    };
    if owner.is_some_and(|o| !o.owns(&d)) {
        return Ok(ReplayOutcome::OtherOwner);
    }
    let (Some(source), Some(source_id)) = (d.meta(meta::SOURCE_STREAM), d.meta(meta::SOURCE_ID))
    else {
        return Ok(ReplayOutcome::NotReplayable(
            "no dlq.source-stream or dlq.source-id",
        ));
    };
    let Some(plugin) = d.meta(meta::PLUGIN) else {
        return Ok(ReplayOutcome::NotReplayable(
            "no dlq.plugin: whose it is is unknown",
        ));
    };
    if d.fields.is_empty() {
        return Ok(ReplayOutcome::NotReplayable("no original fields"));
    }
    let to = redeliver_key(source, plugin);
    if dry_run {
        return Ok(ReplayOutcome::WouldMove { to });
    }
    let nonce = nonce();
    let mut xadd = redis::cmd("XADD");
    xadd.arg(&to).arg("*");
    // The nonce first: the finishing script looks for it there.
    for (name, value) in [
        (meta::NONCE, nonce.as_str()),
        (meta::SOURCE_STREAM, source),
        (meta::SOURCE_ID, source_id),
        (meta::REPLAYED_FROM, dlq),
        (meta::REPLAYED_ID, id),
    ] {
        xadd.arg(name).arg(value);
    }
    // A Pub/Sub message's channel and pattern, a sorted-set member's score:
    // byte for byte, so the handler sees the same origin again.
    for (name, value) in &d.metadata {
        if [meta::CHANNEL, meta::PATTERN, meta::SCORE]
            .iter()
            .any(|m| m.as_bytes() == name.as_slice())
        {
            xadd.arg(name.as_slice()).arg(value.as_slice());
        }
    }
    push_fields(&mut xadd, &d.fields);
    let mut finish = redis::cmd("EVAL");
    finish
        .arg(scripts::REPLAY)
        .arg(2)
        .arg(dlq)
        .arg(&to)
        .arg(id)
        .arg(&nonce);
    let mut pipe = redis::pipe();
    pipe.atomic().add_command(xadd).ignore().add_command(finish);
    let budget = budget.unwrap_or_else(|| write_budget(fields_len(&d.fields)));
    let sent = send_within(budget, pipe.query_async::<(Option<String>,)>(conn)).await;
    let detail = match sent {
        Ok(Ok((Some(new_id),))) => return Ok(ReplayOutcome::Moved { to, new_id }),
        Ok(Ok((None,))) => return Ok(ReplayOutcome::Gone),
        Ok(Err(e)) if e.code() == Some("DLQNOTWRITTEN") => return Err(DlqError::NotWritten),
        // A refusal by the server: the MULTI did nothing.
        Ok(Err(e)) if e.code().is_some() => return Err(DlqError::Redis(e)),
        // The request went out, or part of it: it may have run.
        Ok(Err(e)) => format!("the connection failed after sending: {e}"),
        Err(_) => format!("no reply within {budget:?}"),
    };
    confirm(conn, dlq, id, to, &nonce, detail).await
}

/// Runs `request` for at most `budget` from the moment it was handed to the
/// connection (its first poll queues it), so a timeout always means "sent,
/// outcome unknown", never "not sent yet".
async fn send_within<F: Future>(budget: Duration, request: F) -> Result<F::Output, ()> {
    let mut request = std::pin::pin!(request);
    if let std::task::Poll::Ready(done) = futures_util::poll!(request.as_mut()) {
        return Ok(done);
    }
    tokio::time::timeout(budget, request).await.map_err(drop)
}

/// After a move whose reply did not come: looks for the new entry by its
/// nonce (the connection answers in order, so this waits for the move's
/// reply first) and tells moved from unknown.
async fn confirm<C: ConnectionLike + Send>(
    conn: &mut C,
    dlq: &str,
    id: &str,
    to: String,
    nonce: &str,
    detail: String,
) -> Result<ReplayOutcome, DlqError> {
    let everything = Filter::default();
    let mut walk = Walk::new(&to, &everything, Direction::Reverse, None, None);
    let newest = read(walk.step(conn)).await;
    if let Ok(Some((hits, _))) = newest
        && let Some(hit) = hits.iter().find(|h| h.meta(meta::NONCE) == Some(nonce))
    {
        let new_id = hit.id.clone();
        return Ok(ReplayOutcome::Moved { to, new_id });
    }
    let still_there = matches!(show(conn, dlq, id).await, Ok(Some(_)));
    let seen = if still_there {
        "it is still in the DLQ, and the move may still be on its way"
    } else {
        "it is no longer in the DLQ, but its new entry was not found"
    };
    Ok(ReplayOutcome::Unknown {
        to,
        detail: format!("{detail}; {seen}"),
    })
}

/// Deletes the dead letters matching `filter` that exist when it starts;
/// returns how many.
pub async fn purge<C: ConnectionLike + Send>(
    conn: &mut C,
    dlq: &str,
    filter: &Filter,
) -> Result<u64, DlqError> {
    let Some(snapshot) = newest_id(conn, dlq).await? else {
        return Ok(0);
    };
    let mut deleted = 0;
    let mut walk = Walk::new(dlq, filter, Direction::Forward, None, Some(&snapshot));
    while let Some((hits, _)) = read(walk.step(conn)).await? {
        if hits.is_empty() {
            continue;
        }
        let ids: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
        let n: u64 = read(redis::cmd("XDEL").arg(dlq).arg(&ids).query_async(conn)).await?;
        deleted += n;
    }
    Ok(deleted)
}

/// A read bounded by [`READ_TIMEOUT`] (reads change nothing, so a timeout is
/// a plain failure).
pub(super) async fn read<T, E>(f: impl Future<Output = Result<T, E>>) -> Result<T, DlqError>
where
    DlqError: From<E>,
{
    match tokio::time::timeout(READ_TIMEOUT, f).await {
        Ok(r) => r.map_err(DlqError::from),
        Err(_) => Err(DlqError::ReadTimeout(READ_TIMEOUT)),
    }
}
