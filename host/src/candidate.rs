//! Trying a candidate component on dead letters before replaying them: each
//! selected dead letter runs through the candidate in the invoker's sandbox
//! (the plugin's limits, no Redis: effects recorded, never committed), and
//! comes out as the verdict a replay would meet. Nothing is written to Redis.

use redis::aio::ConnectionLike;

use crate::dlq::{DeadLetter, Filter, Selected, Selection, meta};
use crate::error::Error;
use crate::outcome::{Outcome, TrapKind};
use crate::plugin::{Invoker, Message, PubsubMessage, SortedSetMember, Source, StreamEntry};
use crate::streams::entry::{self, RawField};

/// What the candidate would do with one dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The handler accepted it.
    Accepted,
    /// The handler refused it for good (its reason, guest-controlled).
    Rejected(String),
    /// The handler asked for another attempt.
    Retry(String),
    /// The invocation trapped.
    Trap(TrapKind, String),
    /// The host would not hand it to any handler (a field name that is not
    /// UTF-8), or a replay could not send it (no original fields).
    Undeliverable(String),
}

impl Verdict {
    /// One word for the verdict: `accepted`, `rejected`, `retry`, `trap`,
    /// `undeliverable`.
    pub fn word(&self) -> &'static str {
        match self {
            Verdict::Accepted => "accepted",
            Verdict::Rejected(_) => "rejected",
            Verdict::Retry(_) => "retry",
            Verdict::Trap(..) => "trap",
            Verdict::Undeliverable(_) => "undeliverable",
        }
    }
}

/// One dead letter tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trial {
    /// Its id in the DLQ.
    pub id: String,
    /// Why it was dead-lettered (`dlq.reason`), if recorded.
    pub reason: Option<String>,
    /// What the candidate did with it.
    pub verdict: Verdict,
    /// How many effects it asked for (never committed).
    pub effects: usize,
}

/// Totals of a trial run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TrialReport {
    /// Accepted by the candidate.
    pub accepted: u64,
    /// Rejected, asked for a retry, trapped, or not deliverable.
    pub refused: u64,
}

/// Runs every selected dead letter of `dlq` through `candidate`, calling
/// `on_trial` with each verdict. Reads Redis only.
///
/// # Errors
///
/// When Redis cannot be read, or the candidate cannot be instantiated (then
/// no dead letter can run).
pub async fn try_dead_letters<C: ConnectionLike + Send>(
    conn: &mut C,
    dlq: &str,
    filter: &Filter,
    selection: &Selection,
    candidate: &mut Invoker,
    mut on_trial: impl FnMut(&Trial),
) -> Result<TrialReport, Error> {
    let mut report = TrialReport::default();
    let mut selected = Selected::start(conn, dlq, filter, selection).await?;
    while let Some(letter) = selected.next(conn).await? {
        let (verdict, effects) = run_one(candidate, &letter).await?;
        if verdict == Verdict::Accepted {
            report.accepted += 1;
        } else {
            report.refused += 1;
        }
        on_trial(&Trial {
            id: letter.id.clone(),
            reason: letter.meta(meta::REASON).map(str::to_owned),
            verdict,
            effects,
        });
    }
    Ok(report)
}

/// Where the letter's message came from, as far as its metadata says: a
/// channel (Pub/Sub), a score (sorted set), else a stream entry (a list
/// item's letter carries no more than a stream's, so it shows as one here).
fn letter_source(letter: &DeadLetter, id: &str) -> Source {
    let raw = |name: &str| {
        letter
            .metadata
            .iter()
            .find(|(n, _)| n == name.as_bytes())
            .map(|(_, v)| v.clone())
    };
    let key = letter
        .meta(meta::SOURCE_STREAM)
        .unwrap_or_default()
        .to_owned();
    if let Some(channel) = raw(meta::CHANNEL) {
        return Source::Pubsub(PubsubMessage {
            channel,
            pattern: letter.meta(meta::PATTERN).map(str::to_owned),
        });
    }
    if let Some(score) = letter.meta(meta::SCORE) {
        return Source::SortedSet(SortedSetMember {
            key,
            score: score.parse().unwrap_or(f64::NAN),
        });
    }
    Source::Stream(StreamEntry {
        name: key,
        id: id.to_owned(),
    })
}

/// The message a replay would hand the handler: the original stream, id and
/// fields, attempt 1 (a replay starts again).
async fn run_one(candidate: &mut Invoker, letter: &DeadLetter) -> Result<(Verdict, usize), Error> {
    if letter.fields.is_empty() {
        return Ok((
            Verdict::Undeliverable("no original fields (not replayable)".into()),
            0,
        ));
    }
    let raw = letter
        .fields
        .iter()
        .map(|(name, value)| RawField {
            name: name.clone(),
            value: value.clone(),
        })
        .collect();
    let fields = match entry::to_wit_fields(raw) {
        Ok(fields) => fields,
        Err((_, bad)) => {
            let why = format!("field name {} is not UTF-8 (field {})", bad.name, bad.index);
            return Ok((Verdict::Undeliverable(why), 0));
        }
    };
    let id = letter
        .meta(meta::SOURCE_ID)
        .unwrap_or(letter.id.as_str())
        .to_owned();
    let msg = Message {
        source: letter_source(letter, &id),
        id,
        fields,
        attempt: 1,
    };
    let report = candidate.invoke(&msg).await?;
    let verdict = match report.outcome {
        Outcome::Ok => Verdict::Accepted,
        Outcome::Reject(why) => Verdict::Rejected(why),
        Outcome::Retry(why) => Verdict::Retry(why),
        Outcome::Trap(kind, detail) => Verdict::Trap(kind, detail),
    };
    Ok((verdict, report.effects.len()))
}
