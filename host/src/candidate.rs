//! Trying a candidate component on dead letters before replaying them: each
//! selected dead letter runs through the candidate in the invoker's sandbox
//! (the plugin's limits, no Redis: effects recorded, never committed), and
//! comes out as the verdict a replay would meet. Nothing is written to Redis.

use redis::aio::ConnectionLike;

use crate::config::{SortedSetOrder, SourceKind};
use crate::dlq::{DeadLetter, Filter, Selected, Selection, meta};
use crate::error::Error;
use crate::outcome::{Outcome, TrapKind};
use crate::pipeline::Origin;
use crate::pipeline::delivery::message_source;
use crate::plugin::{Invoker, Message, Source};
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
/// `on_trial` with each verdict; `kind` is the plugin's source, when a config
/// names the plugin, so each message's `source` is what a replay would show.
/// Reads Redis only.
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
    kind: Option<SourceKind<'_>>,
    mut on_trial: impl FnMut(&Trial),
) -> Result<TrialReport, Error> {
    let mut report = TrialReport::default();
    let mut selected = Selected::start(conn, dlq, filter, selection).await?;
    while let Some(letter) = selected.next(conn).await? {
        let (verdict, effects) = run_one(candidate, kind, &letter).await?;
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

/// Where the letter's message came from, as a real replay would tell the
/// handler (`pipeline::delivery::message_source`, from the plugin's source
/// kind and the letter's `dlq.channel`/`dlq.pattern`/`dlq.score`). Without
/// the plugin's config, the metadata alone decides: a channel is Pub/Sub, a
/// score a sorted set, anything else a stream entry.
fn letter_source(letter: &DeadLetter, kind: Option<SourceKind<'_>>, id: &str) -> Source {
    let raw = |name: &str| {
        letter
            .metadata
            .iter()
            .find(|(n, _)| n == name.as_bytes())
            .map(|(_, v)| v.clone())
    };
    let origin = match (raw(meta::CHANNEL), letter.meta(meta::SCORE)) {
        (Some(channel), _) => Origin::Channel {
            channel,
            pattern: raw(meta::PATTERN),
        },
        (None, Some(score)) => Origin::Score(score.to_owned()),
        (None, None) => Origin::Key,
    };
    let key = letter.meta(meta::SOURCE_STREAM).unwrap_or_default();
    let kind = kind.unwrap_or(match &origin {
        Origin::Channel { .. } => SourceKind::Subscribe(&[]),
        Origin::Score(_) => SourceKind::SortedSet(key, SortedSetOrder::Priority),
        Origin::Key => SourceKind::Stream(key),
    });
    message_source(kind, key, None, id, &origin)
}

/// The message a replay would hand the handler: the original stream, id and
/// fields, attempt 1 (a replay starts again).
async fn run_one(
    candidate: &mut Invoker,
    kind: Option<SourceKind<'_>>,
    letter: &DeadLetter,
) -> Result<(Verdict, usize), Error> {
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
        source: letter_source(letter, kind, &id),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::{PubsubMessage, SortedSetMember, StreamEntry};

    fn letter(meta: &[(&str, &[u8])]) -> DeadLetter {
        DeadLetter {
            id: "9-0".into(),
            metadata: meta
                .iter()
                .map(|(n, v)| (n.as_bytes().to_vec(), v.to_vec()))
                .collect(),
            fields: vec![(b"data".to_vec(), b"x".to_vec())],
        }
    }

    #[test]
    fn a_candidate_sees_the_source_a_replay_would_show() {
        let list = letter(&[(meta::SOURCE_STREAM, b"jobs")]);
        assert_eq!(
            letter_source(&list, Some(SourceKind::List("jobs")), "9-0"),
            Source::List("jobs".into())
        );
        // Without the plugin's config the metadata decides.
        assert_eq!(
            letter_source(&list, None, "7-0"),
            Source::Stream(StreamEntry {
                name: "jobs".into(),
                id: "7-0".into()
            })
        );
        let member = letter(&[(meta::SOURCE_STREAM, b"render"), (meta::SCORE, b"2.5")]);
        assert_eq!(
            letter_source(&member, None, "9-0"),
            Source::SortedSet(SortedSetMember {
                key: "render".into(),
                score: 2.5
            })
        );
        let message = letter(&[
            (meta::SOURCE_STREAM, b"events:*"),
            (meta::CHANNEL, b"events:\xff"),
            (meta::PATTERN, b"events:*"),
        ]);
        let names = ["events:*".to_owned()];
        assert_eq!(
            letter_source(&message, Some(SourceKind::Subscribe(&names)), "9-0"),
            Source::Pubsub(PubsubMessage {
                channel: b"events:\xff".to_vec(),
                pattern: Some("events:*".into())
            })
        );
    }
}
