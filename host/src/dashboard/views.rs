//! The JSON the dashboard's pages are drawn from: this host's counters and
//! history beside the fleet-wide numbers Redis holds (group lag and pending,
//! consumers, DLQ length, deployed versions, the pause flag).

use std::time::UNIX_EPOCH;

use redis::aio::ConnectionLike;
use serde_json::{Value, json};

use super::Dashboard;
use super::letters;
use super::pretty::{self, neutralize};
use crate::dlq::{DeadLetter, Filter, Summary, meta};
use crate::error::Error;
use crate::outcome::TrapKind;
use crate::pipeline::PluginContext;
use crate::{deploy, inspect, pause};

/// Versions and refusals shown on a plugin page.
const RECENT: usize = 20;
/// Retries and scheduled entries listed on a plugin page.
const LISTED: usize = 50;
/// Characters of an error text shown in a list.
const ERROR_PREVIEW: usize = 160;

/// The overview: the host, Redis, and a row per plugin.
pub(crate) async fn overview<C: ConnectionLike + Send>(
    d: &Dashboard,
    conn: Option<&mut C>,
) -> Value {
    let mut redis_error = None;
    let mut rows = Vec::new();
    let mut conn = conn;
    for (i, ctx) in d.plugins.iter().enumerate() {
        let fleet = match conn.as_deref_mut() {
            Some(c) if redis_error.is_none() => match fleet_row(d, ctx, c).await {
                Ok(v) => v,
                Err(e) => {
                    redis_error = Some(e.to_string());
                    Value::Null
                }
            },
            _ => Value::Null,
        };
        let mut attention = attention(d, i, ctx, &fleet);
        if fleet.is_null() {
            attention.push("Redis unreachable: fleet numbers unknown".to_owned());
        }
        rows.push(json!({
            "name": &*ctx.plugin.name,
            "stream": ctx.stream(),
            "group": ctx.group(),
            "consumer": ctx.consumer,
            "running_digest": &*ctx.running().digest,
            "local": local(ctx),
            "fleet": fleet,
            "history": d.history.points(i),
            "attention": attention,
        }));
    }
    json!({
        "host": d.identity(),
        "redis": { "up": conn.is_some() && redis_error.is_none(), "error": redis_error },
        "window_s": super::history::WINDOW.as_secs(),
        "sample_s": super::history::SAMPLE_EVERY.as_secs(),
        "plugins": rows,
    })
}

/// This host's counters for a plugin.
fn local(ctx: &PluginContext) -> Value {
    let m = &ctx.metrics;
    let mut failures = serde_json::Map::new();
    failures.insert("rejected".into(), m.rejected.get().into());
    failures.insert("retry".into(), m.retry.get().into());
    for kind in TrapKind::ALL {
        failures.insert(kind.as_str().into(), m.trap(kind).get().into());
    }
    json!({
        "received": m.received.get(),
        "acked": m.acked.get(),
        "retried": m.retried.get(),
        "dead_lettered": m.dead_lettered.get(),
        "failures": failures,
        "retries_waiting": m.retries_waiting.get(),
        "in_flight": m.in_flight.get(),
        "workers_busy": m.workers_busy.get(),
        "workers": ctx.config.concurrency,
        "paused_here": ctx.paused.is_paused(),
    })
}

/// What Redis says about a plugin, for every host alike.
async fn fleet_row<C: ConnectionLike + Send>(
    d: &Dashboard,
    ctx: &PluginContext,
    conn: &mut C,
) -> Result<Value, Error> {
    // Consumer-group figures exist for stream sources only.
    let group = if ctx.config.stream.is_empty() {
        None
    } else {
        inspect::group(conn, ctx.stream(), ctx.group()).await?
    };
    let now = inspect::server_time_ms(conn).await?;
    let oldest_ms = match &group {
        Some(g) if g.pending > 0 => inspect::pending_summary(conn, ctx.stream(), ctx.group())
            .await?
            .smallest_id
            .and_then(|id| inspect::age_ms(&id, now)),
        _ => None,
    };
    let dlq = inspect::stream_len(conn, &ctx.dlq_stream).await?;
    let current = deploy::current(conn, &ctx.plugin.name).await?;
    let refused = latest_refusal_of_current(conn, &ctx.plugin.name, current.as_ref()).await?;
    let paused = pause::status(conn, &ctx.plugin.name).await?;
    let retention_held = d.retention_streams.iter().any(|s| s == ctx.stream())
        && d.metrics.retention(ctx.stream()).held_back.get() > 0;
    Ok(json!({
        "consumers": group.as_ref().map(|g| g.consumers),
        "pending": group.as_ref().map(|g| g.pending),
        "lag": group.as_ref().and_then(|g| g.lag),
        "oldest_pending_age_ms": oldest_ms,
        "dlq": dlq,
        "dlq_stream": ctx.dlq_stream,
        "version": current.as_ref().map(|(v, _)| *v),
        "digest": current.as_ref().map_or_else(|| ctx.running().digest.to_string(), |(_, d)| d.clone()),
        "refused": refused,
        "paused": paused,
        "retention_held_back": retention_held,
    }))
}

/// The newest refusal of the current version, if a host refused it.
async fn latest_refusal_of_current<C: ConnectionLike + Send>(
    conn: &mut C,
    plugin: &str,
    current: Option<&(u64, String)>,
) -> Result<Option<Value>, Error> {
    let Some((_, digest)) = current else {
        return Ok(None);
    };
    let refusals = deploy::refusals(conn, plugin).await?;
    Ok(refusals.iter().rev().find(|r| &r.digest == digest).map(
        |r| json!({ "host": neutralize(&r.host), "error": neutralize(&r.error), "at_ms": r.at_ms }),
    ))
}

fn attention(d: &Dashboard, i: usize, ctx: &PluginContext, fleet: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if d.history.dlq_growing(i) {
        out.push("DLQ growing".to_owned());
    }
    if fleet["retention_held_back"] == json!(true) {
        out.push("retention held back by this group".to_owned());
    }
    if !fleet["refused"].is_null() {
        out.push("a host refused the deployed version".to_owned());
    }
    if !fleet["paused"].is_null() {
        out.push("paused".to_owned());
    }
    if ctx.metrics.workers_busy.get() >= ctx.config.concurrency as i64 && ctx.config.concurrency > 0
    {
        out.push("every worker busy".to_owned());
    }
    out
}

/// A plugin's page: consumers, retries, scheduled entries, versions, pause.
pub(crate) async fn plugin<C: ConnectionLike + Send>(
    d: &Dashboard,
    ctx: &PluginContext,
    conn: &mut C,
) -> Result<Value, Error> {
    // An error here is a group not created yet; Redis failures surface below.
    let consumers: Vec<inspect::ConsumerInfo> = inspect::consumers(conn, ctx.stream(), ctx.group())
        .await
        .unwrap_or_default();
    let consumers: Vec<Value> = consumers
        .into_iter()
        .map(|c| {
            json!({
                "name": neutralize(&c.name),
                "pending": c.pending,
                "idle_ms": c.idle_ms,
                "this_host": c.name == ctx.consumer,
            })
        })
        .collect();
    let (soonest, waiting) = ctx.retries.soonest(LISTED);
    let retries: Vec<Value> = soonest
        .into_iter()
        .map(|(key, id, due)| {
            let due_ms = due
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            json!({ "key": neutralize(&key), "id": id, "due_ms": due_ms })
        })
        .collect();
    let scheduled = scheduled(conn, &ctx.plugin.effects.schedule_key).await?;
    let mut versions = deploy::versions(conn, &ctx.plugin.name).await?;
    let current = versions.last().map(|v| v.version);
    let versions: Vec<Value> = versions
        .drain(..)
        .rev()
        .take(RECENT)
        .map(|v| {
            json!({
                "version": v.version, "digest": v.digest, "by": neutralize(&v.by),
                "action": neutralize(&v.action), "at_ms": v.at_ms,
                "current": Some(v.version) == current,
            })
        })
        .collect();
    let refusals: Vec<Value> = deploy::refusals(conn, &ctx.plugin.name)
        .await?
        .iter()
        .rev()
        .take(RECENT)
        .map(|r| json!({ "host": neutralize(&r.host), "digest": r.digest, "error": neutralize(&r.error), "at_ms": r.at_ms }))
        .collect();
    let paused = pause::status(conn, &ctx.plugin.name).await?;
    Ok(json!({
        "host": d.identity(),
        "name": &*ctx.plugin.name,
        "stream": ctx.stream(),
        "group": ctx.group(),
        "dlq_stream": ctx.dlq_stream,
        "running_digest": &*ctx.running().digest,
        "paused": paused,
        "consumers": consumers,
        "retries": { "waiting": waiting, "soonest": retries },
        "scheduled": scheduled,
        "versions": versions,
        "refusals": refusals,
    }))
}

/// Due times of the plugin's scheduled entries (their bodies are packed).
async fn scheduled<C: ConnectionLike + Send>(conn: &mut C, key: &str) -> Result<Value, Error> {
    let total: u64 = redis::cmd("ZCARD").arg(key).query_async(conn).await?;
    let first: Vec<(Vec<u8>, f64)> = redis::cmd("ZRANGE")
        .arg(key)
        .arg(0)
        .arg(LISTED as i64 - 1)
        .arg("WITHSCORES")
        .query_async(conn)
        .await?;
    let due: Vec<Value> = first
        .iter()
        .map(|(member, score)| json!({ "due_ms": *score as u64, "bytes": member.len() }))
        .collect();
    Ok(json!({ "key": key, "total": total, "soonest": due }))
}

/// One row of the dead-letter list: from a listed [`Summary`] or a whole
/// [`DeadLetter`], which carry the same metadata.
fn summary<'a>(
    id: &str,
    meta: impl Fn(&str) -> Option<&'a str>,
    time_ms: Option<u64>,
    fields: usize,
) -> Value {
    let error = meta(meta::ERROR).unwrap_or("");
    let preview: String = error.chars().take(ERROR_PREVIEW).collect();
    json!({
        "id": id,
        "time_ms": time_ms,
        "reason": meta(meta::REASON).map(neutralize),
        "attempts": meta(meta::ATTEMPTS).and_then(|a| a.parse::<u64>().ok()),
        "source_id": meta(meta::SOURCE_ID).map(neutralize),
        "error": neutralize(&preview),
        "fields": fields,
    })
}

fn listed(d: &Summary) -> Value {
    summary(&d.id, |n| d.meta(n), d.time_ms(), d.field_count)
}

/// A page of a plugin's dead letters.
pub(crate) async fn dead_letters<C: ConnectionLike + Send>(
    ctx: &PluginContext,
    conn: &mut C,
    filter: &Filter,
    before: Option<&str>,
    limit: usize,
) -> Result<Value, Error> {
    let page = letters::page(conn, &ctx.dlq_stream, filter, before, limit).await?;
    let now_ms = inspect::server_time_ms(conn).await?;
    Ok(json!({
        "plugin": &*ctx.plugin.name,
        "dlq_stream": ctx.dlq_stream,
        "now_ms": now_ms,
        "total": page.total,
        "next": page.next,
        "reasons": page.reasons.iter().map(|(r, n)| json!({ "reason": neutralize(r), "count": n })).collect::<Vec<_>>(),
        "letters": page.letters.iter().map(listed).collect::<Vec<_>>(),
    }))
}

/// One dead letter, every field pretty-printed.
pub(crate) fn message(ctx: &PluginContext, d: &DeadLetter) -> Value {
    json!({
        "plugin": &*ctx.plugin.name,
        "summary": summary(&d.id, |n| d.meta(n), d.time_ms(), d.fields.len()),
        "metadata": d.metadata.iter().map(|(k, v)| json!({ "name": pretty::name(k), "value": pretty::name(v) })).collect::<Vec<_>>(),
        "fields": d.fields.iter().map(|(k, v)| json!({ "name": pretty::name(k), "value": pretty::show(v) })).collect::<Vec<_>>(),
    })
}
