//! The Pub/Sub source: at-most-once by nature. A message published while
//! no host is subscribed (before start, during a reconnect) is gone; every
//! subscribed host gets every message (broadcast). The host subscribes on a
//! connection of its own (`SUBSCRIBE` for channels, `PSUBSCRIBE` for names
//! with glob characters), resubscribes after a reconnect with backoff and
//! counts the gap (`streamhost_pubsub_resubscribed_total`,
//! `streamhost_pubsub_gap_seconds_total`).
//!
//! ```text
//! subscriber ─► intake ─► workers ─► settle ─► source ┬─► ok: forget (with effects: the commit script, nothing to ack)
//!    ▲                                                 ├─► retry: in memory after the backoff, up to max_attempts
//!    └──────────── retrier (resubmits when due) ◄──────┘─► reject / exhausted: XADD to the DLQ with channel and pattern
//! ```
//!
//! A message is handed to the handler as one field `data`, with
//! `message.stream` = the channel it was published on; the dead letter keeps
//! the channel (`dlq.channel`) and the pattern that matched (`dlq.pattern`),
//! byte for byte. Retries waiting in memory are lost with the process.

pub(crate) mod source;
pub(crate) mod subscriber;

pub(crate) use source::PubSubSource;
