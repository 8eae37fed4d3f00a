//! The dead letters an operation selects, read whole one at a time: the same
//! filter and snapshot as a replay, for work that only reads them (trying a
//! candidate component on them).

use std::collections::VecDeque;

use redis::aio::ConnectionLike;

use super::ops::{self, Filter, Selection};
use super::scan::{Direction, Walk};
use super::{DeadLetter, DlqError};

/// A cursor over the selected dead letters, oldest first; holds one walk
/// step's ids at a time.
pub struct Selected {
    dlq: String,
    filter: Filter,
    /// Ids found and not yet read.
    queue: VecDeque<String>,
    /// Where the walk goes on from (`None` before the first step).
    after: Option<String>,
    /// The newest id when the selection started; `None` once the walk is done.
    until: Option<String>,
}

impl Selected {
    /// Starts a selection of `dlq`: `selection`'s ids, or every dead letter
    /// matching `filter` present now. Ids keep the filter's owner.
    pub async fn start<C: ConnectionLike + Send>(
        conn: &mut C,
        dlq: &str,
        filter: &Filter,
        selection: &Selection,
    ) -> Result<Selected, DlqError> {
        let (queue, until) = match selection {
            Selection::Ids(ids) => (ids.iter().cloned().collect(), None),
            Selection::Matching => (VecDeque::new(), ops::newest_id(conn, dlq).await?),
        };
        Ok(Selected {
            dlq: dlq.to_owned(),
            filter: filter.clone(),
            queue,
            after: None,
            until,
        })
    }

    /// The next selected dead letter, whole; `None` when there are no more.
    /// Ids that are gone, or another plugin's, are passed over.
    pub async fn next<C: ConnectionLike + Send>(
        &mut self,
        conn: &mut C,
    ) -> Result<Option<DeadLetter>, DlqError> {
        loop {
            while let Some(id) = self.queue.pop_front() {
                let Some(letter) = ops::show(conn, &self.dlq, &id).await? else {
                    continue;
                };
                if self.filter.owner.as_ref().is_some_and(|o| !o.owns(&letter)) {
                    continue;
                }
                return Ok(Some(letter));
            }
            let Some(until) = self.until.clone() else {
                return Ok(None);
            };
            let mut walk = Walk::new(
                &self.dlq,
                &self.filter,
                Direction::Forward,
                self.after.as_deref(),
                Some(&until),
            );
            match ops::read(walk.step(conn)).await? {
                Some((hits, _)) => {
                    // The next step starts after the last entry examined,
                    // which a step reports through the walk's own bound.
                    self.after = walk.position().map(str::to_owned);
                    if self.after.is_none() {
                        self.until = None;
                    }
                    self.queue.extend(hits.into_iter().map(|h| h.id));
                }
                None => self.until = None,
            }
        }
    }
}
