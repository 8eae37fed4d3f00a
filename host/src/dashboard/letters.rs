//! The dashboard's view of one plugin's dead letters, over [`crate::dlq`]:
//! newest-first pages filtered by reason and text with a total, one letter,
//! replay of chosen ids or of everything a filter matches, and purging what
//! is older than a time. Every walk is bounded by [`MAX_SCAN`] entries.

use redis::Value;
use redis::aio::ConnectionLike;

use crate::dlq::{self, DeadLetter, meta};
use crate::error::Error;
use crate::streams::entry;

/// Most dead letters one request looks at.
pub const MAX_SCAN: usize = 10_000;
/// Entries read per round trip.
const PAGE: usize = 200;

/// Which dead letters of a plugin.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// The plugin (a DLQ may be shared: only its letters count).
    pub plugin: String,
    /// `dlq.reason` equal to this, or its prefix before `:` (`trap`).
    pub reason: Option<String>,
    /// Bytes contained in a field name or value, or the error text.
    pub text: Option<Vec<u8>>,
}

impl Filter {
    /// Whether `d` matches.
    pub fn matches(&self, d: &DeadLetter) -> bool {
        let plugin_ok = d.meta(meta::PLUGIN).is_none_or(|p| p == self.plugin);
        let reason_ok = self.reason.as_deref().is_none_or(|r| {
            d.meta(meta::REASON).is_some_and(|x| {
                x == r || x.strip_prefix(r).is_some_and(|rest| rest.starts_with(':'))
            })
        });
        let text_ok = self.text.as_deref().is_none_or(|t| {
            let has = |hay: &[u8]| t.is_empty() || hay.windows(t.len()).any(|w| w == t);
            d.fields.iter().any(|(n, v)| has(n.as_bytes()) || has(v))
                || d.meta(meta::ERROR).is_some_and(|e| has(e.as_bytes()))
        });
        plugin_ok && reason_ok && text_ok
    }
}

/// One page, newest first.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// The letters on this page.
    pub letters: Vec<DeadLetter>,
    /// Matching letters seen in the walk (all of them unless `capped`).
    pub total: u64,
    /// The walk stopped at [`MAX_SCAN`]: `total` is a lower bound.
    pub capped: bool,
    /// Pass as `before` for the next page.
    pub next: Option<String>,
    /// Every reason seen in the walk, for the filter's choices.
    pub reasons: Vec<String>,
}

/// Walks the DLQ newest first from below `before`, keeping `limit` matches.
pub async fn page<C: ConnectionLike + Send>(
    conn: &mut C,
    dlq_stream: &str,
    filter: &Filter,
    before: Option<&str>,
    limit: usize,
) -> Result<Page, Error> {
    let mut out = Page::default();
    let mut end = before.map_or_else(|| "+".to_owned(), |b| format!("({b}"));
    let mut scanned = 0;
    loop {
        let batch = rev_range(conn, dlq_stream, &end, PAGE).await?;
        let Some(last) = batch.last() else { break };
        end = format!("({}", last.id);
        let full = batch.len() == PAGE;
        for d in batch {
            scanned += 1;
            if let Some(r) = d.meta(meta::REASON)
                && !out.reasons.iter().any(|x| x == r)
            {
                out.reasons.push(r.to_owned());
            }
            if !filter.matches(&d) {
                continue;
            }
            out.total += 1;
            if out.letters.len() < limit {
                out.letters.push(d);
            } else if out.next.is_none() {
                out.next = out.letters.last().map(|l| l.id.clone());
            }
        }
        if !full {
            break;
        }
        if scanned >= MAX_SCAN {
            out.capped = true;
            out.next = out
                .next
                .or_else(|| out.letters.last().map(|l| l.id.clone()));
            break;
        }
    }
    out.reasons.sort();
    Ok(out)
}

async fn rev_range<C: ConnectionLike + Send>(
    conn: &mut C,
    key: &str,
    end: &str,
    count: usize,
) -> Result<Vec<DeadLetter>, Error> {
    let reply: Value = redis::cmd("XREVRANGE")
        .arg(key)
        .arg(end)
        .arg("-")
        .arg("COUNT")
        .arg(count)
        .query_async(conn)
        .await?;
    let Value::Array(items) = reply else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(items.len());
    for v in items {
        let e = entry::parse_entry(v, 0).map_err(|e| Error::Other(e.to_string()))?;
        out.push(DeadLetter::from_entry(e));
    }
    Ok(out)
}

/// One letter of the plugin, by id.
pub async fn one<C: ConnectionLike + Send>(
    conn: &mut C,
    dlq_stream: &str,
    plugin: &str,
    id: &str,
) -> Result<Option<DeadLetter>, Error> {
    let found = dlq::show(conn, dlq_stream, id).await?;
    Ok(found.filter(|d| d.meta(meta::PLUGIN).is_none_or(|p| p == plugin)))
}

/// Ids of every letter matching `filter` (bounded by [`MAX_SCAN`]).
pub async fn matching_ids<C: ConnectionLike + Send>(
    conn: &mut C,
    dlq_stream: &str,
    filter: &Filter,
) -> Result<Vec<String>, Error> {
    let p = page(conn, dlq_stream, filter, None, MAX_SCAN).await?;
    Ok(p.letters.into_iter().map(|d| d.id).collect())
}

/// Replays these letters (only the plugin's); returns how many were replayed.
pub async fn replay<C: ConnectionLike + Send>(
    conn: &mut C,
    dlq_stream: &str,
    plugin: &str,
    ids: Vec<String>,
) -> Result<u64, Error> {
    let mut own = Vec::with_capacity(ids.len());
    for id in ids.into_iter().take(MAX_SCAN) {
        if one(conn, dlq_stream, plugin, &id).await?.is_some() {
            own.push(id);
        }
    }
    if own.is_empty() {
        return Ok(0);
    }
    let report = dlq::replay(conn, dlq_stream, &dlq::Selection::Ids(own), |_| {}).await?;
    Ok(report.replayed)
}

/// Deletes the plugin's letters dead-lettered before `before_ms` (by DLQ id
/// time); returns how many.
pub async fn purge_before<C: ConnectionLike + Send>(
    conn: &mut C,
    dlq_stream: &str,
    plugin: &str,
    before_ms: u64,
) -> Result<u64, Error> {
    let filter = Filter {
        plugin: plugin.to_owned(),
        ..Filter::default()
    };
    let mut deleted = 0;
    let mut start = "-".to_owned();
    // Oldest first, stopping at the first letter not older than the cut.
    'walk: for _ in 0..MAX_SCAN.div_ceil(PAGE) {
        let batch = dlq::list(conn, dlq_stream, &start, PAGE).await?;
        let Some(last) = batch.last() else { break };
        start = format!("({}", last.id);
        let full = batch.len() == PAGE;
        let mut doomed = Vec::new();
        let mut done = !full;
        for d in batch {
            if crate::inspect::id_time_ms(&d.id).is_none_or(|t| t >= before_ms) {
                done = true;
                break;
            }
            if filter.matches(&d) {
                doomed.push(d.id);
            }
        }
        if !doomed.is_empty() {
            let n: u64 = redis::cmd("XDEL")
                .arg(dlq_stream)
                .arg(&doomed)
                .query_async(conn)
                .await?;
            deleted += n;
        }
        if done {
            break 'walk;
        }
    }
    Ok(deleted)
}
