//! The dashboard's view of one plugin's dead letters, over [`crate::dlq`]'s
//! list/count/replay/purge API: which letters belong to the plugin
//! ([`dlq::Owner`]), a newest-first page with its total and the reasons to
//! filter by, one letter, replay to that plugin alone, and purging what is
//! older than a time. Matching is the dlq module's, so the dashboard and the
//! CLI agree on what a filter selects.

use redis::aio::ConnectionLike;

use crate::dlq::{self, DeadLetter, DlqError, Filter, Owner, ReplayOptions, ReplayReport, Summary};
use crate::pipeline::PluginContext;

/// Whose letters: this plugin's (a DLQ may be shared by plugins).
pub(crate) fn owner(ctx: &PluginContext) -> Owner {
    Owner {
        plugin: ctx.plugin.name.to_string(),
        group: ctx.group().to_owned(),
    }
}

/// The plugin's letters with this reason (or reason prefix, `trap`) and
/// containing these bytes; empty strings select everything.
pub(crate) fn filter(ctx: &PluginContext, reason: Option<String>, text: Option<String>) -> Filter {
    Filter {
        owner: Some(owner(ctx)),
        reason: reason.filter(|r| !r.is_empty()),
        text: text.filter(|t| !t.is_empty()).map(String::into_bytes),
        before_ms: None,
    }
}

/// One page, newest first.
#[derive(Debug, Clone, Default)]
pub(crate) struct Page {
    /// The letters on this page, without their bodies.
    pub letters: Vec<Summary>,
    /// Letters matching the filter, in all.
    pub total: u64,
    /// Pass as `before` for the next page.
    pub next: Option<String>,
    /// Every reason among the plugin's letters, with its count (the filter's
    /// choices, whatever the filter is now).
    pub reasons: Vec<(String, u64)>,
}

/// Up to `limit` letters matching `filter` below `before`, newest first.
pub(crate) async fn page<C: ConnectionLike + Send>(
    conn: &mut C,
    dlq_stream: &str,
    filter: &Filter,
    before: Option<&str>,
    limit: usize,
) -> Result<Page, DlqError> {
    let listed = dlq::list(conn, dlq_stream, filter, before, limit).await?;
    let everything = Filter {
        owner: filter.owner.clone(),
        ..Filter::default()
    };
    let counts = dlq::count(conn, dlq_stream, &everything).await?;
    Ok(Page {
        letters: listed.letters,
        total: listed.total,
        next: listed.next,
        reasons: counts.reasons.into_iter().collect(),
    })
}

/// One letter of the plugin, by id, whole.
pub(crate) async fn one<C: ConnectionLike + Send>(
    conn: &mut C,
    dlq_stream: &str,
    owner: &Owner,
    id: &str,
) -> Result<Option<DeadLetter>, DlqError> {
    let found = dlq::show(conn, dlq_stream, id).await?;
    Ok(found.filter(|d| owner.owns(d)))
}

/// What to replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Chosen {
    /// These ids (only the plugin's are taken).
    Ids(Vec<String>),
    /// Everything the filter matches now.
    Matching,
}

/// Replays the chosen letters to the plugin's redelivery stream, which only
/// its group reads: no other plugin on the stream sees them again.
pub(crate) async fn replay<C: ConnectionLike + Send>(
    conn: &mut C,
    dlq_stream: &str,
    filter: &Filter,
    chosen: Chosen,
) -> Result<ReplayReport, DlqError> {
    let selection = match chosen {
        Chosen::Ids(ids) => dlq::Selection::Ids(ids),
        Chosen::Matching => dlq::Selection::Matching,
    };
    let options = ReplayOptions::default();
    dlq::replay(
        conn,
        dlq_stream,
        filter,
        &selection,
        &options,
        |_, _| {},
        |_| {},
    )
    .await
}

/// Deletes the plugin's letters dead-lettered before `before_ms`; returns
/// how many.
pub(crate) async fn purge_before<C: ConnectionLike + Send>(
    conn: &mut C,
    dlq_stream: &str,
    owner: Owner,
    before_ms: u64,
) -> Result<u64, DlqError> {
    let filter = Filter {
        owner: Some(owner),
        before_ms: Some(before_ms),
        ..Filter::default()
    };
    dlq::purge(conn, dlq_stream, &filter).await
}
