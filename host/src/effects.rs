//! Transactional effects: what a handler asks the host to write to Redis
//! (emit, publish, schedule, push, zadd, key-value state) is buffered during the
//! invocation and committed by one script together with the ack — only if the
//! handler returned ok, this consumer still owns the entry, and the state the
//! handler read is unchanged (optimistic concurrency between workers and hosts).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::connection::Conn;
use glob::Pattern;

use crate::config::PluginConfig;
use crate::plugin::bindings::{EffectError, Field};
use crate::streams::scripts;

/// What a plugin's effects may touch, from `[plugin.allow]`, `[plugin.state]`
/// and `[plugin.limits]`.
#[derive(Debug)]
pub struct EffectPolicy {
    pub(crate) emit: Vec<Pattern>,
    pub(crate) publish: Vec<Pattern>,
    pub(crate) schedule: Vec<Pattern>,
    pub(crate) push: Vec<Pattern>,
    pub(crate) zadd: Vec<Pattern>,
    /// Prefix that namespaces the plugin's state keys.
    pub state_prefix: String,
    /// The sorted set holding this plugin's scheduled entries until due.
    pub schedule_key: String,
    max_effects: usize,
    max_bytes: usize,
}

impl EffectPolicy {
    /// Builds the policy; patterns were validated with the config.
    pub fn from_config(p: &PluginConfig) -> EffectPolicy {
        let patterns = |list: &[String]| list.iter().filter_map(|s| Pattern::new(s).ok()).collect();
        EffectPolicy {
            emit: patterns(&p.allow.emit),
            publish: patterns(&p.allow.publish),
            schedule: patterns(&p.allow.schedule),
            push: patterns(&p.allow.push),
            zadd: patterns(&p.allow.zadd),
            state_prefix: p.state_prefix(),
            schedule_key: schedule_key(p),
            max_effects: p.limits.max_effects,
            max_bytes: p.limits.max_effect_bytes,
        }
    }

    /// A policy that allows nothing (for hosts without effects config, and tests).
    pub fn deny_all(plugin: &str) -> EffectPolicy {
        EffectPolicy {
            emit: Vec::new(),
            publish: Vec::new(),
            schedule: Vec::new(),
            push: Vec::new(),
            zadd: Vec::new(),
            state_prefix: format!("state:{plugin}:"),
            schedule_key: format!("scheduled:{plugin}"),
            max_effects: 0,
            max_bytes: 0,
        }
    }
}

/// Effects a component imports that its `[plugin.allow]` permits nowhere:
/// each such call will be refused with `not-allowed` (`streamhost check`
/// warns about them). `used` are the effect function names it imports.
pub fn unpermitted<'u>(used: &'u [String], allow: &crate::config::AllowConfig) -> Vec<&'u str> {
    used.iter()
        .map(String::as_str)
        .filter(|f| match *f {
            "emit" => allow.emit.is_empty(),
            "publish" => allow.publish.is_empty(),
            "schedule" => allow.schedule.is_empty(),
            "push" => allow.push.is_empty(),
            "zadd" => allow.zadd.is_empty(),
            _ => false,
        })
        .collect()
}

/// Whether `used` (the effect functions a component lowers) holds the whole
/// `effects` interface of `streamhost:plugin@0.1`, which every later version
/// keeps. Interpreters' toolchains (componentize-py, componentize-js) lower
/// all of it whatever the handler calls, so for such a component the
/// functions it imports say nothing about the effects it makes.
pub fn imports_every_effect(used: &[String]) -> bool {
    [
        "emit",
        "publish",
        "schedule",
        "kv-get",
        "kv-set",
        "kv-delete",
    ]
    .iter()
    .all(|f| used.iter().any(|u| u == f))
}

/// The sorted set of a plugin's scheduled entries (see [`PluginConfig::schedule_key`]).
pub(crate) fn schedule_key(p: &PluginConfig) -> String {
    p.schedule_key()
}

/// One buffered write (public so `streamhost invoke` can show what a
/// handler asked for).
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)] // the fields are the WIT functions' parameters
pub enum Effect {
    /// `emit`: an `XADD` to `stream`.
    Emit {
        stream: String,
        fields: Vec<Field>,
        max_len: Option<u64>,
    },
    /// `publish`: a `PUBLISH` on `channel`.
    Publish { channel: String, payload: Vec<u8> },
    /// `schedule`: an entry for `stream`, due in `delay_ms`.
    Schedule {
        stream: String,
        fields: Vec<Field>,
        delay_ms: u64,
    },
    /// `push`: an `LPUSH` of `item` onto list `key`.
    Push { key: String, item: Vec<u8> },
    /// `zadd`: a `ZADD` of `member` with `score` to sorted set `key`.
    Zadd {
        key: String,
        member: Vec<u8>,
        score: f64,
    },
    /// `kv-set` of a full state key (prefix included).
    Set { key: String, value: Vec<u8> },
    /// `kv-delete` of a full state key (prefix included).
    Delete { key: String },
}

/// The effects of the invocation in progress.
#[derive(Debug, Default)]
pub struct EffectBuffer {
    effects: Vec<Effect>,
    bytes: usize,
    /// State values read from Redis (full key → value seen), checked at commit.
    pub(crate) reads: Vec<(String, Option<Vec<u8>>)>,
    /// This invocation's own state writes, so reads see them.
    pub(crate) overlay: HashMap<String, Option<Vec<u8>>>,
    /// A state read failed: the handler may have acted on a guess, so its
    /// effects must not be committed.
    pub(crate) read_failed: bool,
}

impl EffectBuffer {
    /// Whether nothing needs committing besides the ack.
    pub fn is_empty(&self) -> bool {
        self.effects.is_empty()
    }

    /// Forgets everything (failed invocation, or a new one starting).
    pub fn clear(&mut self) {
        self.effects.clear();
        self.bytes = 0;
        self.reads.clear();
        self.overlay.clear();
        self.read_failed = false;
    }

    /// The effects buffered so far, in the order asked for.
    pub fn effects(&self) -> &[Effect] {
        &self.effects
    }

    /// Whether a state read failed during the invocation.
    pub fn read_failed(&self) -> bool {
        self.read_failed
    }

    pub(crate) fn push(
        &mut self,
        policy: &EffectPolicy,
        effect: Effect,
        bytes: usize,
    ) -> Result<(), EffectError> {
        if self.effects.len() >= policy.max_effects {
            return Err(EffectError::LimitExceeded(format!(
                "at most {} effects per invocation (limits.max_effects)",
                policy.max_effects
            )));
        }
        if self.bytes + bytes > policy.max_bytes {
            return Err(EffectError::LimitExceeded(format!(
                "at most {} bytes of effects per invocation (limits.max_effect_bytes)",
                policy.max_bytes
            )));
        }
        self.bytes += bytes;
        self.effects.push(effect);
        Ok(())
    }
}

/// Most fields in one emitted or scheduled entry: the scripts pass them to
/// `XADD` through Lua's `unpack`, which has a hard limit near 8,000 values.
pub(crate) const MAX_FIELDS: usize = 1_000;

/// Bytes an entry counts against `max_effect_bytes`: names and values plus a
/// fixed cost per field, so that many empty fields are not free.
pub(crate) fn fields_bytes(fields: &[Field]) -> usize {
    fields
        .iter()
        .map(|f| 16 + f.name.len() + f.value.len())
        .sum()
}

pub(crate) fn allowed(
    patterns: &[Pattern],
    what: &str,
    name: &str,
    plugin: &str,
) -> Result<(), EffectError> {
    if name.is_empty() {
        return Err(EffectError::Invalid(format!("empty {what} name")));
    }
    if patterns.iter().any(|p| p.matches(name)) {
        return Ok(());
    }
    tracing::warn!(
        plugin,
        what,
        name,
        "effect refused: not in the plugin's [plugin.allow] list"
    );
    Err(EffectError::NotAllowed(format!(
        "plugin {plugin:?} may not {what} {name:?} (see [plugin.allow])"
    )))
}

pub(crate) fn check_fields(fields: &[Field]) -> Result<(), EffectError> {
    if fields.is_empty() {
        return Err(EffectError::Invalid(
            "an entry needs at least one field".into(),
        ));
    }
    if fields.len() > MAX_FIELDS {
        return Err(EffectError::Invalid(format!(
            "an entry has at most {MAX_FIELDS} fields, got {}",
            fields.len()
        )));
    }
    Ok(())
}

pub(crate) fn state_key(policy: &EffectPolicy, key: &str) -> Result<String, EffectError> {
    if key.is_empty() || key.len() > 1024 {
        return Err(EffectError::Invalid(
            "state keys are 1 to 1024 bytes".into(),
        ));
    }
    Ok(format!("{}{key}", policy.state_prefix))
}

/// How a commit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Commit {
    /// Effects applied and the entry acked.
    Committed,
    /// Another consumer owns the entry now; nothing was written.
    NotOwner,
    /// State the handler read has changed; nothing was written — run the handler again.
    Conflict,
}

/// Applies `buffer` and acks `id` in one script.
pub(crate) async fn commit(
    conn: &mut Conn,
    target: &CommitTarget<'_>,
    id: &str,
    buffer: &EffectBuffer,
    policy: &Arc<EffectPolicy>,
) -> Result<Commit, redis::RedisError> {
    // KEYS[1] is where the entry is held (a sorted set's meta hash is
    // KEYS[2]); every other key gets an index at its first use.
    let mut keys: Vec<&str> = vec![target.key];
    fn index<'k>(keys: &mut Vec<&'k str>, key: &'k str) -> Vec<u8> {
        let i = match keys.iter().position(|k| *k == key) {
            Some(i) => i + 1,
            None => {
                keys.push(key);
                keys.len()
            }
        };
        i.to_string().into_bytes()
    }
    let mut args: Vec<Vec<u8>> = match target.held {
        Held::Stream { group, consumer } => {
            vec![
                b"X".to_vec(),
                group.into(),
                consumer.into(),
                id.into(),
                Vec::new(),
            ]
        }
        Held::List { item } => vec![
            b"L".to_vec(),
            Vec::new(),
            Vec::new(),
            id.into(),
            item.into(),
        ],
        Held::Nowhere => vec![b"N".to_vec(), Vec::new(), Vec::new(), id.into(), Vec::new()],
        Held::SortedSet {
            meta,
            token,
            member,
        } => {
            keys.push(meta);
            vec![
                b"Z".to_vec(),
                Vec::new(),
                token.into(),
                id.into(),
                member.into(),
            ]
        }
    };
    for (key, seen) in &buffer.reads {
        match seen {
            Some(value) => args.extend([b"R".to_vec(), index(&mut keys, key), value.clone()]),
            None => args.extend([b"N".to_vec(), index(&mut keys, key)]),
        }
    }
    for effect in &buffer.effects {
        let key = match effect {
            Effect::Emit { stream, .. } => Some(stream.as_str()),
            Effect::Schedule { .. } => Some(policy.schedule_key.as_str()),
            Effect::Set { key, .. }
            | Effect::Delete { key }
            | Effect::Push { key, .. }
            | Effect::Zadd { key, .. } => Some(key.as_str()),
            Effect::Publish { .. } => None,
        };
        let idx = key.map(|k| index(&mut keys, k)).unwrap_or_default();
        encode_effect(&mut args, effect, idx);
    }
    let mut invocation = scripts::COMMIT.prepare_invoke();
    for k in &keys {
        invocation.key(*k);
    }
    for a in &args {
        invocation.arg(a.as_slice());
    }
    let result: i64 = invocation.invoke_async(conn).await?;
    Ok(match result {
        1 => Commit::Committed,
        -1 => Commit::Conflict,
        _ => Commit::NotOwner,
    })
}

fn encode_effect(args: &mut Vec<Vec<u8>>, effect: &Effect, idx: Vec<u8>) {
    let push_fields = |args: &mut Vec<Vec<u8>>, fields: &[Field]| {
        args.push((fields.len() * 2).to_string().into_bytes());
        for f in fields {
            args.push(f.name.clone().into_bytes());
            args.push(f.value.clone());
        }
    };
    match effect {
        Effect::Emit {
            fields, max_len, ..
        } => {
            args.push(b"E".to_vec());
            args.push(idx);
            args.push(
                max_len
                    .map(|n| n.to_string())
                    .unwrap_or_default()
                    .into_bytes(),
            );
            push_fields(args, fields);
        }
        Effect::Schedule {
            stream,
            fields,
            delay_ms,
        } => {
            args.push(b"S".to_vec());
            args.push(idx);
            args.push(stream.clone().into_bytes());
            args.push(delay_ms.to_string().into_bytes());
            push_fields(args, fields);
        }
        Effect::Publish { channel, payload } => {
            args.push(b"P".to_vec());
            args.push(channel.clone().into_bytes());
            args.push(payload.clone());
        }
        Effect::Push { item, .. } => {
            args.push(b"L".to_vec());
            args.push(idx);
            args.push(item.clone());
        }
        Effect::Zadd { member, score, .. } => {
            args.push(b"Z".to_vec());
            args.push(idx);
            // Display is the shortest text that parses back to the same
            // f64; `inf` and `-inf` are what ZADD takes. NaN never gets here.
            args.push(score.to_string().into_bytes());
            args.push(member.clone());
        }
        Effect::Set { value, .. } => {
            args.push(b"K".to_vec());
            args.push(idx);
            args.push(value.clone());
        }
        Effect::Delete { .. } => {
            args.push(b"D".to_vec());
            args.push(idx);
        }
    }
}

/// Whose entry a commit acks.
pub(crate) struct CommitTarget<'a> {
    /// Where the entry is held: the source stream, the processing list, the
    /// in-flight sorted set.
    pub key: &'a str,
    /// How it is held there, which says how to check it is still this
    /// consumer's and how to ack it.
    pub held: Held<'a>,
}

/// How an entry a commit acks is held.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Held<'a> {
    /// Pending in a consumer group: owned while pending on `consumer`; acked with `XACK`.
    Stream {
        /// The consumer group.
        group: &'a str,
        /// This consumer.
        consumer: &'a str,
    },
    /// In a processing list: owned while a copy is there; acked by removing one.
    List {
        /// The item as stored in the processing list.
        item: &'a [u8],
    },
    /// Held nowhere in Redis (a Pub/Sub message): the commit writes the
    /// effects only. `CommitTarget::key` is then any key of the plugin's
    /// slot (its DLQ), for the script's `KEYS[1]`.
    Nowhere,
    /// In an in-flight sorted set: owned while its meta hash names this
    /// delivery; acked by removing the member from both.
    SortedSet {
        /// The meta hash (member → delivery token).
        meta: &'a str,
        /// This delivery's token.
        token: &'a str,
        /// The member.
        member: &'a [u8],
    },
}

/// Moves due scheduled entries of one set to their streams; returns how many moved.
pub(crate) async fn promote_due(
    conn: &mut Conn,
    schedule_key: &str,
) -> Result<u64, redis::RedisError> {
    const PER_CALL: u64 = 500;
    let mut total = 0;
    loop {
        let (moved, stuck): (u64, u64) = scripts::PROMOTE
            .key(schedule_key)
            .arg(PER_CALL)
            .invoke_async(conn)
            .await?;
        total += moved;
        if stuck > 0 {
            tracing::error!(
                key = schedule_key,
                stuck,
                "scheduled entries cannot be delivered: their target key is not a stream"
            );
        }
        // Stop when a call moved nothing: stuck entries (wrong target type)
        // stay where they are instead of being looked at in a loop.
        if moved == 0 || moved + stuck < PER_CALL {
            return Ok(total);
        }
    }
}

/// How often due scheduled entries are promoted.
pub(crate) const PROMOTE_INTERVAL: Duration = Duration::from_millis(100);
