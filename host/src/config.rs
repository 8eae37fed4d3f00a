//! The configuration file: its structs, defaults, parsing and validation.
//!
//! Every key has a default except what only the user can know (plugin name,
//! component path, stream). Unknown keys are errors that name the key, so a
//! typo never silently falls back to a default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// The whole `streamhost.toml`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where Redis is.
    #[serde(default)]
    pub redis: RedisConfig,
    /// The handlers to run, one `[[plugin]]` table each.
    #[serde(default, rename = "plugin")]
    pub plugins: Vec<PluginConfig>,
    /// The admin HTTP endpoint (metrics, health); off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminConfig>,
    /// The compiled-code cache.
    #[serde(default)]
    pub cache: CacheConfig,
    /// Stream retention rules, applied periodically and never past pending entries.
    #[serde(default, rename = "retention", skip_serializing_if = "Vec::is_empty")]
    pub retention: Vec<RetentionConfig>,
}

/// `[cache]`: compiled native code kept on disk, so restarts and swaps to a
/// known version do not recompile. Keyed by the component's bytes and the
/// engine's settings; only code this host compiled is ever loaded from it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Whether to cache at all.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Where; defaults to `$XDG_CACHE_HOME/streamhost` or `~/.cache/streamhost`.
    /// A relative path is relative to the config file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: true,
            dir: None,
        }
    }
}

fn default_true() -> bool {
    true
}

impl CacheConfig {
    /// The cache directory in use, if caching is on and a directory can be found.
    pub fn directory(&self) -> Option<PathBuf> {
        if !self.enabled {
            return None;
        }
        // wasmtime's cache wants an absolute path; a config file's relative
        // one was already resolved against the file in `Config::load`.
        let dir = self
            .dir
            .as_deref()
            .map(|d| std::path::absolute(d).unwrap_or(d.to_owned()));
        dir.or_else(|| {
            let base = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
            Some(base.join("streamhost"))
        })
    }
}

/// The `[redis]` table.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// Connection URL, e.g. `redis://127.0.0.1:6379` or `redis://:password@host:6379/0`.
    /// The `REDIS_URL` environment variable overrides it.
    #[serde(default = "default_redis_url")]
    pub url: String,
    /// Validate keys for Redis Cluster: every key one plugin's commit touches
    /// (source stream, DLQ, emit/schedule targets, state) must share a hash slot.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cluster: bool,
    /// With `cluster = true`: seed nodes of the cluster (any few masters or
    /// replicas; the rest are discovered). Empty: `url` is the one seed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: default_redis_url(),
            cluster: false,
            urls: Vec::new(),
        }
    }
}

fn default_redis_url() -> String {
    "redis://127.0.0.1:6379".to_owned()
}

/// One `[[plugin]]`: a component handling one stream through one consumer group.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Unique name; used in logs, metrics, the default group and DLQ metadata.
    pub name: String,
    /// Path to the `.wasm` component (relative paths are relative to the config file).
    pub component: PathBuf,
    /// The stream to consume through a consumer group (at-least-once). A
    /// plugin has exactly one source key: `stream`, `subscribe`, `list` or
    /// `sorted_set`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stream: String,
    /// Pub/Sub channels to subscribe to (at-most-once, every subscribed host
    /// gets every message); a name with glob characters (`*`, `?`, `[`) is a
    /// pattern (`PSUBSCRIBE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<Vec<String>>,
    /// A list used as a reliable FIFO queue: producers `LPUSH`, the host
    /// moves items into a processing list of its own (`BLMOVE`) and removes
    /// them once handled, so an item is never lost once pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list: Option<String>,
    /// A sorted set used as a queue: popped and marked in flight in one
    /// script; in what order is `order`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sorted_set: Option<String>,
    /// With `sorted_set` only: `priority` (lowest score first, the default)
    /// or `due` (the score is a due time in Unix ms; never handed out earlier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<SortedSetOrder>,
    /// Consumer group name; defaults to the plugin name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Consumer name within the group; defaults to `<hostname>-<pid>`. Keep it
    /// stable across restarts to resume this consumer's pending entries at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<String>,
    /// Entries fetched per `XREADGROUP`.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Most bytes of entries read ahead of the handlers (queued or being
    /// handled), in MiB. Beside `batch`, it keeps memory bounded by bytes when
    /// entries are large: reads ask for fewer entries, and wait while the
    /// budget is spent.
    #[serde(default = "default_read_ahead_mib")]
    pub read_ahead_mib: u64,
    /// Handler instances running in parallel. Defaults to half the CPUs (at
    /// least one); raise it for handlers that mostly wait (state reads).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// How long one `XREADGROUP` blocks waiting for new entries, in milliseconds.
    /// Finite so that shutdown and reconnects are never stuck behind a read.
    #[serde(default = "default_block_ms")]
    pub block_ms: u64,
    /// Retry policy for failed attempts.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Claiming of entries abandoned by other (dead) consumers.
    #[serde(default)]
    pub claim: ClaimConfig,
    /// Dead-letter stream settings.
    #[serde(default)]
    pub dlq: DlqConfig,
    /// Sandbox limits per invocation.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Whether an instance is reused across entries (`reuse`, fast) or a fresh
    /// one is made for every entry (`per-message`, strictest). A trapped
    /// instance is always replaced.
    #[serde(default)]
    pub isolation: Isolation,
    /// Its weight in the host's CPU (1 to 10000, default 100): while other
    /// plugins want to run, each gets guest run time in proportion to its
    /// weight, so a plugin busy all the time cannot take a neighbour's share;
    /// alone, a plugin uses all it can.
    #[serde(default = "default_cpu_weight")]
    pub cpu_weight: u32,
    /// Where the plugin's effects may write.
    #[serde(default)]
    pub allow: AllowConfig,
    /// The plugin's key-value state.
    #[serde(default)]
    pub state: StateConfig,
    /// With `stream` only: split the logical stream into this many shard
    /// streams `{<stream>:0}` … `{<stream>:N-1}`, each its own hash slot, all
    /// read by this plugin's group (see README "Redis Cluster").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<u32>,
    /// Per-key ordering: entries with the same value of `key` run one at a
    /// time in stream order; different keys run in parallel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordering: Option<OrderingConfig>,
    /// When a canary (`deploy --canary`) is rolled back automatically.
    #[serde(default)]
    pub canary: CanaryConfig,
    /// The circuit breaker that pauses a plugin that keeps trapping.
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// CPU accounting per tenant, beside the per-plugin counters.
    #[serde(default)]
    pub accounting: AccountingConfig,
}

/// `ordering = { key = "customer" }`: which field orders entries.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OrderingConfig {
    /// The field whose value (bytes) is the ordering key. Entries without
    /// it are not ordered.
    pub key: String,
}

/// `[plugin.breaker]`: pauses the plugin on every host when a host sees
/// `traps` traps within `window_ms`, and resumes it `cooldown_ms` later
/// (any host resumes it when due). Off while `traps` is 0, the default.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// Traps within the window that trip it; 0 turns the breaker off.
    #[serde(default)]
    pub traps: u32,
    /// The window, in milliseconds (default 10000).
    #[serde(default = "default_breaker_window_ms")]
    pub window_ms: u64,
    /// How long the plugin stays paused once tripped, in milliseconds
    /// (default 30000).
    #[serde(default = "default_breaker_cooldown_ms")]
    pub cooldown_ms: u64,
}

fn default_breaker_window_ms() -> u64 {
    10_000
}
fn default_breaker_cooldown_ms() -> u64 {
    30_000
}

/// `[plugin.accounting]`: fuel and handling time are counted per plugin
/// always; with `tenant_field`, also per value of that field (the first 256
/// values seen; later ones count as `other`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AccountingConfig {
    /// The entry field naming the tenant, e.g. `"tenant"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_field: Option<String>,
}

/// `[plugin.canary]`: the automatic rollback of a canary. Every host counts,
/// per version, the handler attempts that failed (rejected, trapped, asked
/// for a retry) among those handled while the canary runs; once the
/// candidate has handled `min_entries` on a host and its failure rate
/// exceeds the stable version's by more than `failure_margin`, that host
/// records the rollback in Redis and every host stops routing to it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CanaryConfig {
    /// How much higher the candidate's failure rate may be than the stable
    /// version's, as a fraction (0.05: five percentage points).
    #[serde(default = "default_canary_margin")]
    pub failure_margin: f64,
    /// Attempts the candidate must have handled on a host before its rate
    /// is judged (the window of the decision).
    #[serde(default = "default_canary_min_entries")]
    pub min_entries: u64,
}

impl Default for CanaryConfig {
    fn default() -> Self {
        CanaryConfig {
            failure_margin: default_canary_margin(),
            min_entries: default_canary_min_entries(),
        }
    }
}

fn default_canary_margin() -> f64 {
    0.05
}
fn default_canary_min_entries() -> u64 {
    100
}

/// In what order a `sorted_set` source hands out its members.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SortedSetOrder {
    /// Lowest score first.
    #[default]
    Priority,
    /// The score is a due time in Unix milliseconds: a member is handed out
    /// no earlier than that, earliest first.
    Due,
}

/// Where a plugin's messages come from: the one source key of its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind<'a> {
    /// `stream`: a consumer group on a stream.
    Stream(&'a str),
    /// `subscribe`: Pub/Sub channels and patterns.
    Subscribe(&'a [String]),
    /// `list`: a reliable list queue.
    List(&'a str),
    /// `sorted_set`: a sorted-set queue in `order`.
    SortedSet(&'a str, SortedSetOrder),
}

impl SourceKind<'_> {
    /// The config key that names this source.
    pub fn config_key(&self) -> &'static str {
        match self {
            SourceKind::Stream(_) => "stream",
            SourceKind::Subscribe(_) => "subscribe",
            SourceKind::List(_) => "list",
            SourceKind::SortedSet(..) => "sorted_set",
        }
    }
}

/// Whether a Pub/Sub name is a pattern (`PSUBSCRIBE`) rather than a channel.
pub fn is_channel_pattern(name: &str) -> bool {
    name.contains(['*', '?', '['])
}

/// `[plugin.allow]`: capabilities for effects. Globs (`*`, `?`, `[...]`) allowed.
/// Anything not listed is refused to the guest with `not-allowed`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AllowConfig {
    /// Streams the plugin may `emit` to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emit: Vec<String>,
    /// Pub/Sub channels the plugin may `publish` on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<String>,
    /// Streams the plugin may `schedule` entries to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedule: Vec<String>,
    /// Lists the plugin may `push` items onto (`LPUSH`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub push: Vec<String>,
    /// Sorted sets the plugin may `zadd` members to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zadd: Vec<String>,
}

/// `[plugin.state]`: where the plugin's key-value state lives.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// Key prefix of the plugin's state; defaults to `state:<plugin name>:`.
    /// With Redis Cluster use the source stream's hash tag, e.g. `{orders}:state:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// How a plugin's CPU use is bounded (`limits.metering`).
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Metering {
    /// `limits.fuel` per invocation (deterministic) and `limits.timeout_ms`.
    #[default]
    Fuel,
    /// `limits.timeout_ms` alone: no fuel counting in the compiled code.
    EpochOnly,
}

/// Instance reuse policy.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// Keep an instance for many entries; replace it only after a trap.
    #[default]
    Reuse,
    /// A fresh instance for every entry: no state survives between entries.
    PerMessage,
}

fn default_batch() -> usize {
    256
}
/// Handlers are CPU-bound, and the reader, the acker and often Redis itself
/// need the other half of the machine: on 2 CPUs with a local Redis, a second
/// worker halved throughput (BENCHMARKS.md).
fn default_concurrency() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}
fn default_read_ahead_mib() -> u64 {
    64
}
fn default_block_ms() -> u64 {
    2000
}

impl PluginConfig {
    /// A plugin table with every optional key at its default.
    pub fn new(name: &str, component: impl Into<PathBuf>, stream: &str) -> PluginConfig {
        PluginConfig {
            name: name.to_owned(),
            component: component.into(),
            stream: stream.to_owned(),
            subscribe: None,
            list: None,
            sorted_set: None,
            order: None,
            group: None,
            consumer: None,
            batch: default_batch(),
            read_ahead_mib: default_read_ahead_mib(),
            concurrency: default_concurrency(),
            block_ms: default_block_ms(),
            retry: RetryConfig::default(),
            claim: ClaimConfig::default(),
            dlq: DlqConfig::default(),
            limits: LimitsConfig::default(),
            isolation: Isolation::default(),
            cpu_weight: default_cpu_weight(),
            allow: AllowConfig::default(),
            state: StateConfig::default(),
            shards: None,
            ordering: None,
            canary: CanaryConfig::default(),
            breaker: BreakerConfig::default(),
            accounting: AccountingConfig::default(),
        }
    }

    /// A plugin table reading `source` instead of a stream, every optional
    /// key at its default.
    pub fn with_source(
        name: &str,
        component: impl Into<PathBuf>,
        source: SourceKind<'_>,
    ) -> PluginConfig {
        let mut p = PluginConfig::new(name, component, "");
        match source {
            SourceKind::Stream(s) => p.stream = s.to_owned(),
            SourceKind::Subscribe(names) => p.subscribe = Some(names.to_vec()),
            SourceKind::List(key) => p.list = Some(key.to_owned()),
            SourceKind::SortedSet(key, order) => {
                p.sorted_set = Some(key.to_owned());
                p.order = Some(order);
            }
        }
        p
    }

    /// The plugin's source. Validation made sure there is exactly one; on
    /// an unvalidated table the first present key wins, in the order
    /// `stream`, `subscribe`, `list`, `sorted_set`.
    pub fn source(&self) -> SourceKind<'_> {
        if let Some(names) = &self.subscribe
            && self.stream.is_empty()
        {
            return SourceKind::Subscribe(names);
        }
        if let Some(key) = &self.list
            && self.stream.is_empty()
        {
            return SourceKind::List(key);
        }
        if let Some(key) = &self.sorted_set
            && self.stream.is_empty()
        {
            return SourceKind::SortedSet(key, self.order.unwrap_or_default());
        }
        SourceKind::Stream(&self.stream)
    }

    /// The key the plugin's other keys are named after (its DLQ
    /// `dlq:<source key>:<plugin>`, its redelivery stream, its schedule):
    /// the stream, list or sorted set, or the first Pub/Sub name.
    pub fn source_key(&self) -> &str {
        match self.source() {
            SourceKind::Stream(key) | SourceKind::List(key) | SourceKind::SortedSet(key, _) => key,
            SourceKind::Subscribe(names) => names.first().map_or("", String::as_str),
        }
    }

    /// Checks there is exactly one source key, and what only makes sense
    /// with one of them (`order`); `Err` names the keys.
    fn check_source(&self) -> Result<(), (&'static str, String)> {
        let present: Vec<&str> = [
            ("stream", !self.stream.is_empty()),
            ("subscribe", self.subscribe.is_some()),
            ("list", self.list.is_some()),
            ("sorted_set", self.sorted_set.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, on)| on.then_some(k))
        .collect();
        match present.as_slice() {
            [] => {
                return Err((
                    "stream",
                    "missing: a plugin needs exactly one source key: stream, subscribe, list or sorted_set".into(),
                ));
            }
            [_] => {}
            [first, second, ..] => {
                return Err((
                    second,
                    format!(
                        "a plugin has exactly one source key, this one has {}; keep one of {first:?} and {second:?}",
                        present.join(", ")
                    ),
                ));
            }
        }
        if self.order.is_some() && self.sorted_set.is_none() {
            return Err((
                "order",
                "only applies to a sorted_set source; remove it or use sorted_set".into(),
            ));
        }
        match self.source() {
            SourceKind::Subscribe([]) => {
                return Err((
                    "subscribe",
                    "must name at least one channel or pattern".into(),
                ));
            }
            SourceKind::Subscribe(_) if self.group.is_some() => {
                return Err((
                    "group",
                    "a subscribe source is a broadcast: every host gets every message, and \
                     competing Pub/Sub consumers are not offered; remove `group` (use a list or \
                     a stream for work one host must do)"
                        .into(),
                ));
            }
            SourceKind::Subscribe(names) => {
                if let Some(i) = names.iter().position(String::is_empty) {
                    return Err(("subscribe", format!("entry {i} is empty")));
                }
                let mut seen = std::collections::HashSet::new();
                if let Some(dup) = names.iter().find(|n| !seen.insert(n.as_str())) {
                    return Err(("subscribe", format!("{dup:?} is listed twice")));
                }
            }
            SourceKind::List(key) | SourceKind::SortedSet(key, _) if key.is_empty() => {
                return Err((self.source().config_key(), "must not be empty".into()));
            }
            _ => {}
        }
        Ok(())
    }

    /// The read-ahead budget in bytes.
    pub fn read_ahead_bytes(&self) -> usize {
        usize::try_from(self.read_ahead_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }

    /// The consumer group, defaulting to the plugin name.
    pub fn group(&self) -> &str {
        self.group.as_deref().unwrap_or(&self.name)
    }

    /// The dead-letter stream, defaulting to `dlq:<stream>:<plugin>` (its
    /// own per plugin; it keeps the stream's hash tag).
    pub fn dlq_stream(&self) -> String {
        self.dlq
            .stream
            .clone()
            .unwrap_or_else(|| crate::dlq::dlq_key(self.source_key(), &self.name))
    }

    /// Whose entries in the DLQ are this plugin's.
    pub fn dlq_owner(&self) -> crate::dlq::Owner {
        crate::dlq::Owner {
            plugin: self.name.clone(),
            group: self.group().to_owned(),
        }
    }

    /// Whether the DLQ is this plugin's own default one (not named in the config).
    pub fn dlq_is_own(&self) -> bool {
        self.dlq.stream.is_none()
    }

    /// The stream replayed dead letters go to, `redeliver:<stream>:<plugin>`,
    /// which the plugin's group reads besides the source stream.
    pub fn redeliver_stream(&self) -> String {
        crate::dlq::redeliver_key(self.source_key(), &self.name)
    }

    /// The state key prefix, defaulting to `state:<plugin name>:`.
    pub fn state_prefix(&self) -> String {
        self.state
            .prefix
            .clone()
            .unwrap_or_else(|| format!("state:{}:", self.name))
    }

    /// The sorted set of the plugin's scheduled entries: named after its
    /// source stream so it shares the stream's hash slot.
    pub fn schedule_key(&self) -> String {
        format!("{}:scheduled:{}", self.source_key(), self.name)
    }

    /// The consumer name, defaulting to `<hostname>-<pid>`.
    pub fn consumer(&self) -> String {
        self.consumer.clone().unwrap_or_else(default_consumer_name)
    }
}

/// `<hostname>-<pid>`: unique per process on a machine, and readable in `XINFO CONSUMERS`.
pub fn default_consumer_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "streamhost".to_owned());
    format!("{host}-{}", std::process::id())
}

/// `[plugin.retry]`: how failed attempts are retried.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Handler attempts in total, the first included; after the last failed
    /// one the entry is dead-lettered. Deliveries no handler saw and
    /// deliveries whose settling Redis refused do not count.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// How the delay grows between attempts.
    #[serde(default)]
    pub backoff: Backoff,
    /// Delay before the second attempt, in milliseconds.
    #[serde(default = "default_initial_ms")]
    pub initial_ms: u64,
    /// Cap on the delay, in milliseconds (jitter is added below the cap).
    #[serde(default = "default_max_ms")]
    pub max_ms: u64,
    /// What a trap (panic, exhausted limit) counts as.
    #[serde(default)]
    pub on_trap: OnTrap,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: default_max_attempts(),
            backoff: Backoff::default(),
            initial_ms: default_initial_ms(),
            max_ms: default_max_ms(),
            on_trap: OnTrap::default(),
        }
    }
}

fn default_max_attempts() -> u32 {
    5
}
fn default_initial_ms() -> u64 {
    100
}
fn default_max_ms() -> u64 {
    30_000
}

/// Backoff shape.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Backoff {
    /// `initial_ms * 2^(attempt-1)`, capped at `max_ms`.
    #[default]
    Exponential,
    /// Always `initial_ms`.
    Fixed,
}

/// What a trapped invocation counts as.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum OnTrap {
    /// A failed attempt, retried like `retry(reason)`.
    #[default]
    Retry,
    /// Dead-letter at once, like `reject(reason)`.
    DeadLetter,
}

/// `[plugin.claim]`: taking over entries abandoned by dead consumers.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClaimConfig {
    /// An entry pending this long on another consumer is presumed abandoned.
    #[serde(default = "default_min_idle_ms")]
    pub min_idle_ms: u64,
    /// How often to look for abandoned entries.
    #[serde(default = "default_claim_interval_ms")]
    pub interval_ms: u64,
    /// Consumers idle this long with no pending entries are removed from the group.
    #[serde(default = "default_consumer_idle_ms")]
    pub delete_idle_consumers_ms: u64,
}

impl Default for ClaimConfig {
    fn default() -> Self {
        ClaimConfig {
            min_idle_ms: default_min_idle_ms(),
            interval_ms: default_claim_interval_ms(),
            delete_idle_consumers_ms: default_consumer_idle_ms(),
        }
    }
}

fn default_min_idle_ms() -> u64 {
    30_000
}
fn default_claim_interval_ms() -> u64 {
    5_000
}
fn default_consumer_idle_ms() -> u64 {
    24 * 3600 * 1000
}

/// `[plugin.dlq]`: where dead letters go.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DlqConfig {
    /// The dead-letter stream; defaults to `dlq:<stream>:<plugin>`. Several
    /// plugins may share one on purpose: every `dlq` command, `status` and the
    /// DLQ gauge still count and act on each plugin's own entries
    /// (`dlq.plugin`); `check` warns about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
}

/// `[plugin.limits]`: the sandbox's per-invocation budget.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Deterministic CPU budget per invocation (wasm instructions, roughly).
    #[serde(default = "default_fuel")]
    pub fuel: u64,
    /// How CPU is bounded: `fuel` (default: the `fuel` budget, deterministic,
    /// and `timeout_ms`) or `epoch-only` (`timeout_ms` alone, wall clock; the
    /// code runs without fuel counting, ~6% less host CPU per entry; for
    /// trusted plugins only, since how far a handler gets then depends on
    /// the machine).
    #[serde(default)]
    pub metering: Metering,
    /// Wall-clock budget per invocation, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Linear memory (all memories of an instance) in MiB.
    #[serde(default = "default_memory_mib")]
    pub memory_mib: u64,
    /// A reused instance whose memory has grown past this percentage of
    /// `memory_mib` is replaced by a fresh one after its call, before it
    /// traps for want of memory (linear memory never shrinks, and some
    /// guest runtimes keep growing it); 100 replaces only on a trap.
    #[serde(default = "default_recycle_memory_percent")]
    pub recycle_memory_percent: u32,
    /// Largest component file accepted at load, in MiB.
    #[serde(default = "default_max_component_mib")]
    pub max_component_mib: u64,
    /// Bytes of log output a handler may write per invocation; the rest is dropped and counted.
    #[serde(default = "default_log_bytes")]
    pub log_bytes: usize,
    /// Effects (emit, publish, schedule, kv writes) one invocation may buffer.
    #[serde(default = "default_max_effects")]
    pub max_effects: usize,
    /// Bytes of effect payload (names, fields, values) one invocation may buffer.
    #[serde(default = "default_max_effect_bytes")]
    pub max_effect_bytes: usize,
    /// Core functions (with a body) a component may contain; checked before
    /// compiling, since compile time and memory grow with them.
    #[serde(default = "default_max_functions")]
    pub max_functions: u64,
    /// MiB of function bodies a component may contain; checked before compiling.
    #[serde(default = "default_max_code_mib")]
    pub max_code_mib: u64,
    /// KiB of the largest single function body; checked before compiling
    /// (one huge function is the slowest thing to compile).
    #[serde(default = "default_max_function_kib")]
    pub max_function_kib: u64,
    /// Core module instances one component instance may create
    /// (componentize-py output has about 40 once wasmtime adds its adapters).
    #[serde(default = "default_max_core_instances")]
    pub max_core_instances: u32,
    /// Linear memories one component instance may create.
    #[serde(default = "default_max_memories")]
    pub max_memories: u32,
    /// Tables one component instance may create.
    #[serde(default = "default_max_tables")]
    pub max_tables: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            fuel: default_fuel(),
            metering: Metering::default(),
            timeout_ms: default_timeout_ms(),
            memory_mib: default_memory_mib(),
            recycle_memory_percent: default_recycle_memory_percent(),
            max_component_mib: default_max_component_mib(),
            log_bytes: default_log_bytes(),
            max_effects: default_max_effects(),
            max_effect_bytes: default_max_effect_bytes(),
            max_functions: default_max_functions(),
            max_code_mib: default_max_code_mib(),
            max_function_kib: default_max_function_kib(),
            max_core_instances: default_max_core_instances(),
            max_memories: default_max_memories(),
            max_tables: default_max_tables(),
        }
    }
}

fn default_fuel() -> u64 {
    100_000_000
}
fn default_timeout_ms() -> u64 {
    1000
}
fn default_cpu_weight() -> u32 {
    100
}
fn default_memory_mib() -> u64 {
    64
}
fn default_recycle_memory_percent() -> u32 {
    90
}
fn default_max_component_mib() -> u64 {
    50
}
fn default_log_bytes() -> usize {
    16 * 1024
}
fn default_max_effects() -> usize {
    1_000
}
fn default_max_effect_bytes() -> usize {
    1 << 20
}
/// componentize-py 0.25 output has about 13,400 functions, componentize-js
/// more; 900,000 empty functions took 61 s and 5.9 GB to compile.
fn default_max_functions() -> u64 {
    100_000
}
/// componentize-py output has 6.3 MiB of function bodies.
fn default_max_code_mib() -> u64 {
    48
}
/// CPython's largest function body is 417 KiB.
fn default_max_function_kib() -> u64 {
    4096
}
fn default_max_core_instances() -> u32 {
    64
}
fn default_max_memories() -> u32 {
    4
}
fn default_max_tables() -> u32 {
    16
}

/// `[admin]`: the HTTP endpoint for metrics, health and the dashboard.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address to listen on, e.g. `127.0.0.1:9464` (port 0: any free port,
    /// logged at start).
    pub listen: String,
    /// How often each plugin's Redis-derived gauges (lag, oldest pending age,
    /// DLQ length) are refreshed, in milliseconds. Scrapes never query Redis.
    #[serde(default = "default_admin_refresh_ms")]
    pub refresh_ms: u64,
    /// The dashboard's action token: without it the dashboard is read-only;
    /// with it, pause/resume, rollback, replay and purge need it (bearer
    /// header, or the sign-in form that sets a session cookie).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
}

/// A secret string from the config, never shown by `Debug`.
#[derive(Clone, Deserialize, Serialize, PartialEq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

fn default_admin_refresh_ms() -> u64 {
    5_000
}

/// One `[[retention]]` rule.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// The stream to trim.
    pub stream: String,
    /// Keep about this many entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_len: Option<u64>,
    /// Keep entries younger than this (by entry id time), e.g. `"7d"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<String>,
    /// How often the rule is applied, in milliseconds.
    #[serde(default = "default_retention_interval_ms")]
    pub interval_ms: u64,
}

fn default_retention_interval_ms() -> u64 {
    10_000
}

impl RetentionConfig {
    /// `max_age` as a duration (validated at load, so `None` only when unset).
    pub fn max_age(&self) -> Option<Duration> {
        self.max_age
            .as_deref()
            .and_then(|a| humantime::parse_duration(a).ok())
    }
}

impl Config {
    /// Reads, parses and validates a config file. Relative component paths are
    /// resolved against the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Config::parse(&text).map_err(|e| e.in_file(path))?;
        let base = path.parent().unwrap_or(Path::new("."));
        if let Some(dir) = &mut config.cache.dir
            && dir.is_relative()
        {
            *dir = base.join(&*dir);
        }
        for plugin in &mut config.plugins {
            if plugin.component.is_relative() {
                plugin.component = base.join(&plugin.component);
            }
        }
        Ok(config)
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::parse(text, &e))?;
        config.validate()?;
        Ok(config)
    }

    /// Applies `REDIS_URL` when set; a value that is not a Redis URL is an
    /// error naming the variable.
    pub fn apply_env(&mut self) -> Result<(), ConfigError> {
        if let Ok(url) = std::env::var("REDIS_URL")
            && !url.is_empty()
        {
            check_redis_url("REDIS_URL", &url)?;
            self.redis.url = url;
        }
        Ok(())
    }

    /// Checks what serde cannot: ranges, uniqueness, cross-field rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_redis_url("redis.url", &self.redis.url)?;
        for (i, url) in self.redis.urls.iter().enumerate() {
            check_redis_url(&format!("redis.urls[{i}]"), url)?;
        }
        if !self.redis.urls.is_empty() && !self.redis.cluster {
            return Err(ConfigError::Invalid {
                key: "redis.urls".to_owned(),
                reason: "seed URLs are for a cluster: set redis.cluster = true, or give one node as redis.url".to_owned(),
            });
        }
        let mut names = std::collections::HashSet::new();
        for (i, p) in self.plugins.iter().enumerate() {
            let key = |k: &str| format!("plugin[{i}].{k}");
            let invalid = |k: &str, why: &str| ConfigError::Invalid {
                key: key(k),
                reason: why.to_owned(),
            };
            check_plugin_name(&p.name).map_err(|why| invalid("name", why))?;
            if let Some(other) = self.plugins[..i].iter().find(|o| {
                let (a, b) = (o.state_prefix(), p.state_prefix());
                a.starts_with(&b) || b.starts_with(&a)
            }) {
                return Err(invalid(
                    "state.prefix",
                    &format!(
                        "overlaps the state of plugin {:?}; plugins must not share state",
                        other.name
                    ),
                ));
            }
            self.check_state_reach(p)
                .map_err(|why| invalid("state.prefix", &why))?;
            if !names.insert(p.name.as_str()) {
                return Err(invalid(
                    "name",
                    &format!("duplicate plugin name {:?}", p.name),
                ));
            }
            p.check_source().map_err(|(k, why)| invalid(k, &why))?;
            if p.batch == 0 || p.batch > 100_000 {
                return Err(invalid("batch", "must be between 1 and 100000"));
            }
            if p.concurrency == 0 || p.concurrency > 1024 {
                return Err(invalid("concurrency", "must be between 1 and 1024"));
            }
            if p.read_ahead_mib == 0 || p.read_ahead_mib > 1 << 20 {
                return Err(invalid("read_ahead_mib", "must be between 1 and 1048576"));
            }
            if p.block_ms == 0 {
                return Err(invalid("block_ms", "must be at least 1"));
            }
            if p.retry.max_attempts == 0 {
                return Err(invalid("retry.max_attempts", "must be at least 1"));
            }
            if p.retry.initial_ms > p.retry.max_ms {
                return Err(invalid("retry.initial_ms", "must not exceed retry.max_ms"));
            }
            if !(0.0..=1.0).contains(&p.canary.failure_margin) {
                return Err(invalid(
                    "canary.failure_margin",
                    "must be a fraction between 0 and 1",
                ));
            }
            if p.breaker.traps > 0 && (p.breaker.window_ms == 0 || p.breaker.cooldown_ms == 0) {
                return Err(invalid(
                    "breaker",
                    "window_ms and cooldown_ms must be at least 1",
                ));
            }
            if p.canary.min_entries == 0 {
                return Err(invalid("canary.min_entries", "must be at least 1"));
            }
            if p.claim.interval_ms == 0 {
                return Err(invalid("claim.interval_ms", "must be at least 1"));
            }
            if p.limits.timeout_ms == 0 || p.limits.fuel == 0 || p.limits.memory_mib == 0 {
                return Err(invalid(
                    "limits",
                    "fuel, timeout_ms and memory_mib must be positive",
                ));
            }
            if !(1..=10_000).contains(&p.cpu_weight) {
                return Err(invalid("cpu_weight", "must be between 1 and 10000"));
            }
            if !(1..=100).contains(&p.limits.recycle_memory_percent) {
                return Err(invalid(
                    "limits.recycle_memory_percent",
                    "must be between 1 and 100",
                ));
            }
            check_pool_limits(&p.limits).map_err(|(k, why)| invalid(k, why))?;
            if p.dlq_stream() == p.source_key() || p.dlq_stream() == p.redeliver_stream() {
                return Err(invalid(
                    "dlq.stream",
                    "must differ from the source stream and the redelivery stream",
                ));
            }
            for (kind, patterns) in [
                ("emit", &p.allow.emit),
                ("publish", &p.allow.publish),
                ("schedule", &p.allow.schedule),
                ("push", &p.allow.push),
                ("zadd", &p.allow.zadd),
            ] {
                for pattern in patterns {
                    glob::Pattern::new(pattern).map_err(|e| {
                        invalid(
                            &format!("allow.{kind}"),
                            &format!("bad pattern {pattern:?}: {e}"),
                        )
                    })?;
                }
            }
            if let Some(ordering) = &p.ordering
                && ordering.key.is_empty()
            {
                return Err(invalid(
                    "ordering.key",
                    "name the field whose value orders entries, e.g. ordering = { key = \"customer\" }",
                ));
            }
            check_shards(p).map_err(|(k, why)| invalid(k, &why))?;
            if self.redis.cluster {
                for table in p.shard_tables() {
                    check_cluster_slots(&table).map_err(|(k, why)| invalid(k, &why))?;
                }
            }
        }
        if let Some(admin) = &self.admin {
            check_listen(&admin.listen).map_err(|reason| ConfigError::Invalid {
                key: "admin.listen".to_owned(),
                reason,
            })?;
            if admin.refresh_ms == 0 {
                return Err(ConfigError::Invalid {
                    key: "admin.refresh_ms".to_owned(),
                    reason: "must be at least 1".to_owned(),
                });
            }
            if admin.token.as_ref().is_some_and(|t| t.expose().len() < 16) {
                return Err(ConfigError::Invalid {
                    key: "admin.token".to_owned(),
                    reason: "must be at least 16 characters (e.g. `openssl rand -hex 16`)"
                        .to_owned(),
                });
            }
        }
        let mut retained = std::collections::HashSet::new();
        for (i, r) in self.retention.iter().enumerate() {
            if r.stream.is_empty() || !retained.insert(r.stream.as_str()) {
                return Err(ConfigError::Invalid {
                    key: format!("retention[{i}].stream"),
                    reason: format!(
                        "must be non-empty and appear in one rule only ({:?})",
                        r.stream
                    ),
                });
            }
            if r.interval_ms == 0 {
                return Err(ConfigError::Invalid {
                    key: format!("retention[{i}].interval_ms"),
                    reason: "must be at least 1".to_owned(),
                });
            }
            if r.max_len.is_none() && r.max_age.is_none() {
                return Err(ConfigError::Invalid {
                    key: format!("retention[{i}]"),
                    reason: "set max_len, max_age or both".to_owned(),
                });
            }
            if let Some(age) = &r.max_age {
                humantime::parse_duration(age).map_err(|e| ConfigError::Invalid {
                    key: format!("retention[{i}].max_age"),
                    reason: format!("{age:?} is not a duration like \"7d\" or \"12h\": {e}"),
                })?;
            }
        }
        Ok(())
    }
}

/// Why a plugin name is unusable, if it is. Names appear in key names
/// (`state:<name>:`, `{streamhost:deploy:<name>}`): a colon would let plugin
/// `a` reach plugin `a:b`'s keys, braces would change the hash slot. The same
/// rule holds for names given to `deploy`, `versions` and `rollback`.
pub fn check_plugin_name(name: &str) -> Result<(), &'static str> {
    if name.trim().is_empty() {
        return Err("must not be empty");
    }
    if name.len() > 200
        || !name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(
            "use up to 200 letters, digits, '-', '_' or '.' (no ':', braces, spaces or control characters)",
        );
    }
    Ok(())
}

/// Key prefixes of the host's own data (deployed components and their
/// records); no plugin's state may reach into them.
const HOST_KEY_PREFIXES: &[&str] = &["streamhost:", "{streamhost:"];

impl Config {
    /// A plugin's state keys are `<prefix><key>` for any key: the prefix must
    /// not be empty and no stream, DLQ or schedule of any plugin, and none of
    /// the host's own keys, may start with it.
    fn check_state_reach(&self, p: &PluginConfig) -> Result<(), String> {
        let prefix = p.state_prefix();
        if prefix.is_empty() {
            return Err(
                "must not be empty: the plugin's kv effects could then write any key".into(),
            );
        }
        if let Some(host) = HOST_KEY_PREFIXES
            .iter()
            .find(|h| h.starts_with(&prefix) || prefix.starts_with(*h))
        {
            return Err(format!(
                "{prefix:?} overlaps the host's own keys ({host:?}: deployed components)"
            ));
        }
        for (j, q) in self.plugins.iter().enumerate() {
            let keys = [
                (q.source().config_key(), q.source_key().to_owned()),
                ("dlq.stream", q.dlq_stream()),
                ("schedule", q.schedule_key()),
                ("redelivery stream", q.redeliver_stream()),
            ];
            if let Some((what, key)) = keys.iter().find(|(_, k)| k.starts_with(&prefix)) {
                return Err(format!(
                    "{prefix:?} would reach {key:?}, the {what} of plugin[{j}] ({:?}); state keys must not cover streams",
                    q.name
                ));
            }
        }
        Ok(())
    }
}

/// The per-instance counts size the pooling allocator (slots x count), so
/// they must be at least 1 and stay far below what would reserve absurd
/// amounts of address space.
fn check_pool_limits(l: &LimitsConfig) -> Result<(), (&'static str, &'static str)> {
    for (key, value, max) in [
        ("limits.max_core_instances", l.max_core_instances, 1_000),
        ("limits.max_memories", l.max_memories, 64),
        ("limits.max_tables", l.max_tables, 1_000),
    ] {
        if value == 0 || value > max {
            return Err((
                key,
                match key {
                    "limits.max_memories" => "must be between 1 and 64",
                    _ => "must be between 1 and 1000",
                },
            ));
        }
    }
    if l.max_functions == 0 || l.max_code_mib == 0 || l.max_function_kib == 0 {
        return Err((
            "limits",
            "max_functions, max_code_mib and max_function_kib must be positive",
        ));
    }
    Ok(())
}

impl Config {
    /// Dead-letter streams that several plugins write to, with those plugins'
    /// names. Allowed (commands filter by plugin), but worth a warning.
    pub fn shared_dlqs(&self) -> Vec<(String, Vec<String>)> {
        let mut by_dlq: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for p in &self.plugins {
            by_dlq
                .entry(p.dlq_stream())
                .or_default()
                .push(p.name.clone());
        }
        by_dlq.into_iter().filter(|(_, v)| v.len() > 1).collect()
    }
}

/// Checks a Redis URL the way connecting parses it, so that `check` rejects
/// what `run` would; `key` names where it came from (`redis.url`,
/// `REDIS_URL`, `--redis`).
pub fn check_redis_url(key: &str, url: &str) -> Result<(), ConfigError> {
    use redis::IntoConnectionInfo;
    let Err(e) = url.into_connection_info() else {
        return Ok(());
    };
    Err(ConfigError::Invalid {
        key: key.to_owned(),
        reason: format!(
            "{:?} is not a Redis URL ({e}); write redis://HOST:PORT or redis://HOST:PORT/DB \
             (with a password redis://:PASSWORD@HOST:PORT, TLS rediss://..., a socket unix:///PATH)",
            redact(url)
        ),
    })
}

/// A URL with its password replaced, for logs and messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// `HOST:PORT` with a port that fits in 16 bits (`127.0.0.1:99999` passed
/// parsing as text and failed only at bind).
fn check_listen(listen: &str) -> Result<(), String> {
    let bad = || {
        format!("{listen:?} is not HOST:PORT with a port from 0 to 65535, e.g. \"127.0.0.1:9464\"")
    };
    let (host, port) = listen.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(())
}

/// Most shards one logical stream may have.
pub const MAX_SHARDS: u32 = 1024;

/// The stream key of shard `shard` of the sharded stream `stream`:
/// `{<stream>:<shard>}`, its own hash tag.
pub fn shard_key(stream: &str, shard: u32) -> String {
    format!("{{{stream}:{shard}}}")
}

/// Which shard of `shards` an entry whose key field holds `value` goes to:
/// FNV-1a (64-bit) of the value's bytes, modulo `shards`. Stable across
/// versions and languages (README "Redis Cluster" gives it in a few lines).
pub fn shard_of(value: &[u8], shards: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in value {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % u64::from(shards.max(1))) as u32
}

impl PluginConfig {
    /// The plugin tables the host runs for this one: itself, or with
    /// `shards = N` one per shard, reading `{<stream>:i}` with its DLQ,
    /// redelivery stream, schedule and state under that shard's hash tag.
    pub fn shard_tables(&self) -> Vec<PluginConfig> {
        let Some(shards) = self.shards else {
            return vec![self.clone()];
        };
        (0..shards)
            .map(|i| {
                let key = shard_key(&self.stream, i);
                let mut p = self.clone();
                p.shards = None;
                p.dlq.stream = Some(match &self.dlq.stream {
                    Some(dlq) => format!("{key}:{dlq}"),
                    None => crate::dlq::dlq_key(&key, &self.name),
                });
                p.state.prefix = Some(format!("{key}:{}", self.state_prefix()));
                p.stream = key;
                p
            })
            .collect()
    }
}

impl Config {
    /// The config with every sharded plugin table replaced by its shard
    /// tables (see [`PluginConfig::shard_tables`]): what the host runs.
    pub fn sharded(&self) -> Config {
        Config {
            plugins: self
                .plugins
                .iter()
                .flat_map(PluginConfig::shard_tables)
                .collect(),
            ..self.clone()
        }
    }
}

/// `shards` only on a stream, in range, on a name without braces (the
/// shard keys add their own hash tag).
fn check_shards(p: &PluginConfig) -> Result<(), (&'static str, String)> {
    let Some(shards) = p.shards else {
        return Ok(());
    };
    if !matches!(p.source(), SourceKind::Stream(_)) {
        return Err(("shards", "applies to a `stream` source only".to_owned()));
    }
    if shards == 0 || shards > MAX_SHARDS {
        return Err(("shards", format!("must be between 1 and {MAX_SHARDS}")));
    }
    if p.stream.contains(['{', '}']) {
        return Err((
            "stream",
            format!(
                "{:?}: a sharded stream's name may not contain braces (its shards are {{name:0}} … {{name:{}}})",
                p.stream,
                shards - 1
            ),
        ));
    }
    if p.dlq
        .stream
        .as_deref()
        .is_some_and(|d| d.contains(['{', '}']))
    {
        return Err((
            "dlq.stream",
            "with shards, give a name without braces: each shard's DLQ is {stream:i}:<name>"
                .to_owned(),
        ));
    }
    if p.state
        .prefix
        .as_deref()
        .is_some_and(|d| d.contains(['{', '}']))
    {
        return Err((
            "state.prefix",
            "with shards, give a prefix without braces: each shard's state is under {stream:i}:<prefix>".to_owned(),
        ));
    }
    Ok(())
}

/// The hash tag of a key: what Redis Cluster hashes (`{tag}` when present and
/// non-empty, else the whole key).
pub fn hash_tag(key: &str) -> &str {
    if let Some(open) = key.find('{')
        && let Some(len) = key[open + 1..].find('}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

/// With cluster mode on, one commit (ack + effects) and one dead-lettering
/// must touch one hash slot: every key must carry the source stream's hash tag.
fn check_cluster_slots(p: &PluginConfig) -> Result<(), (&'static str, String)> {
    // Pub/Sub is not slotted: the DLQ (which its effect commits name) is
    // the key the others must share a slot with.
    let (reference, reference_key) = match p.source() {
        SourceKind::Subscribe(_) => (p.dlq_stream(), "dlq.stream"),
        source => (p.source_key().to_owned(), source.config_key()),
    };
    let tag = hash_tag(&reference);
    if tag == reference {
        return Err((
            reference_key,
            format!(
                "{reference:?} has no hash tag; with redis.cluster = true name it like \"{{orders}}:events\""
            ),
        ));
    }
    let same = |key: &str| hash_tag(key) == tag;
    if !same(&p.dlq_stream()) {
        return Err((
            "dlq.stream",
            format!(
                "{:?} must carry the hash tag {{{tag}}} of the source stream",
                p.dlq_stream()
            ),
        ));
    }
    // Replayed dead letters are read, acked and dead-lettered again in the
    // redelivery stream, named after the source key (for Pub/Sub, the first
    // `subscribe` name).
    if !same(&p.redeliver_stream()) {
        return Err((
            p.source().config_key(),
            format!(
                "the redelivery stream {:?} must carry the hash tag {{{tag}}} of {reference_key}",
                p.redeliver_stream()
            ),
        ));
    }
    if !same(&p.state_prefix()) {
        return Err((
            "state.prefix",
            format!(
                "{:?} must carry the hash tag {{{tag}}} of the source stream",
                p.state_prefix()
            ),
        ));
    }
    for (key, patterns) in [
        ("allow.emit", &p.allow.emit),
        ("allow.schedule", &p.allow.schedule),
        ("allow.push", &p.allow.push),
        ("allow.zadd", &p.allow.zadd),
    ] {
        if let Some(bad) = patterns
            .iter()
            .find(|pat| !pat.starts_with(&format!("{{{tag}}}")))
        {
            return Err((
                key,
                format!("{bad:?} must start with the hash tag {{{tag}}} of the source stream"),
            ));
        }
    }
    Ok(())
}

impl LimitsConfig {
    /// The wall-clock budget as a [`Duration`].
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../streamhost.example.toml");

    #[test]
    fn example_config_round_trips() {
        let config = Config::parse(EXAMPLE).expect("example config parses");
        let text = toml::to_string(&config).expect("serializes");
        let again = Config::parse(&text).expect("re-parses");
        assert_eq!(config, again);
        assert!(!config.plugins.is_empty());
    }

    #[test]
    fn a_plugin_has_exactly_one_source_key() {
        let base = "[[plugin]]\nname = \"a\"\ncomponent = \"a.wasm\"\n";
        let parse = |extra: &str| Config::parse(&format!("{base}{extra}"));
        let c = parse("list = \"jobs\"\n").unwrap();
        assert_eq!(c.plugins[0].source(), SourceKind::List("jobs"));
        assert_eq!(c.plugins[0].dlq_stream(), "dlq:jobs:a");
        let c = parse("sorted_set = \"z\"\n").unwrap();
        assert_eq!(
            c.plugins[0].source(),
            SourceKind::SortedSet("z", SortedSetOrder::Priority)
        );
        let c = parse("sorted_set = \"z\"\norder = \"due\"\n").unwrap();
        assert_eq!(
            c.plugins[0].source(),
            SourceKind::SortedSet("z", SortedSetOrder::Due)
        );
        let c = parse("subscribe = [\"ev:*\", \"c\"]\n").unwrap();
        assert_eq!(c.plugins[0].source_key(), "ev:*");
        assert!(is_channel_pattern("ev:*") && !is_channel_pattern("c"));
        for (extra, key, says) in [
            (
                "stream = \"s\"\nlist = \"l\"\n",
                "plugin[0].list",
                "stream, list",
            ),
            (
                "list = \"l\"\nsubscribe = [\"c\"]\n",
                "plugin[0].list",
                "subscribe, list",
            ),
            (
                "stream = \"s\"\norder = \"due\"\n",
                "plugin[0].order",
                "sorted_set",
            ),
            ("subscribe = []\n", "plugin[0].subscribe", "at least one"),
            (
                "subscribe = [\"c\", \"c\"]\n",
                "plugin[0].subscribe",
                "twice",
            ),
            ("list = \"\"\n", "plugin[0].list", "must not be empty"),
            (
                "subscribe = [\"c\"]\ngroup = \"g\"\n",
                "plugin[0].group",
                "broadcast",
            ),
            ("", "plugin[0].stream", "exactly one source key"),
        ] {
            let err = parse(extra).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains(says), "{extra:?}: {err}");
        }
        // A config written back keeps its one source key.
        let c = parse("list = \"jobs\"\n").unwrap();
        let text = toml::to_string(&c).unwrap();
        assert!(
            text.contains("list = \"jobs\"") && !text.contains("stream ="),
            "{text}"
        );
    }

    #[test]
    fn cluster_mode_checks_queues_by_their_key_and_pubsub_by_its_dlq() {
        let base = "[redis]\ncluster = true\n[[plugin]]\nname = \"a\"\ncomponent = \"a.wasm\"\n";
        let parse = |extra: &str| Config::parse(&format!("{base}{extra}"));
        parse("list = \"{q}:jobs\"\n[plugin.state]\nprefix = \"{q}:s:\"\n").unwrap();
        let err = parse("list = \"jobs\"\n").unwrap_err().to_string();
        assert!(
            err.contains("plugin[0].list") && err.contains("hash tag"),
            "{err}"
        );
        let err = parse("subscribe = [\"c\"]\n").unwrap_err().to_string();
        assert!(err.contains("plugin[0].dlq.stream"), "{err}");
        // The first `subscribe` name names the redelivery stream (replay),
        // which must share the DLQ's slot.
        let err = parse("subscribe = [\"c\"]\n[plugin.dlq]\nstream = \"{p}:dlq\"\n[plugin.state]\nprefix = \"{p}:s:\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("plugin[0].subscribe") && err.contains("redeliver:c:a"),
            "{err}"
        );
        parse("subscribe = [\"{p}:c\", \"c\"]\n[plugin.dlq]\nstream = \"{p}:dlq\"\n[plugin.state]\nprefix = \"{p}:s:\"\n")
            .unwrap();
    }

    #[test]
    fn defaults_fill_every_optional_key() {
        let c = Config::parse("[[plugin]]\nname = \"a\"\ncomponent = \"a.wasm\"\nstream = \"s\"\n")
            .unwrap();
        let p = &c.plugins[0];
        assert_eq!(p.group(), "a");
        assert_eq!(p.dlq_stream(), "dlq:s:a");
        assert_eq!(p.redeliver_stream(), "redeliver:s:a");
        assert_eq!(p.batch, 256);
        assert_eq!(p.retry.max_attempts, 5);
        assert_eq!(c.redis.url, "redis://127.0.0.1:6379");
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err = Config::parse("[redis]\nurl = \"redis://x\"\nbogus = 1\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("bogus"), "{msg}");
        assert!(msg.contains("line 3"), "{msg}");
    }

    #[test]
    fn invalid_values_name_their_key() {
        let err = Config::parse(
            "[[plugin]]\nname = \"a\"\ncomponent = \"a.wasm\"\nstream = \"s\"\nbatch = 0\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("plugin[0].batch"), "{err}");
    }

    #[test]
    fn shards_are_fnv1a_64_of_the_key_mod_n() {
        // Reference values (FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c): a
        // producer in another language can check its port against these.
        assert_eq!(shard_of(b"", 6), 5);
        assert_eq!(shard_of(b"a", 6), 4);
        assert_eq!(shard_of(b"customer-42", 6), 2);
        assert_eq!(shard_key("orders", 2), "{orders:2}");
        let text = "[redis]\ncluster = true\n[[plugin]]\nname = \"a\"\ncomponent = \"a.wasm\"\nstream = \"orders\"\nshards = 3\n";
        let config = Config::parse(text).expect("a sharded stream needs no hash tag of its own");
        let tables = config.sharded().plugins;
        assert_eq!(tables.len(), 3);
        assert_eq!(tables[1].stream, "{orders:1}");
        assert_eq!(tables[1].dlq_stream(), "dlq:{orders:1}:a");
        assert_eq!(tables[1].state_prefix(), "{orders:1}:state:a:");
    }

    #[test]
    fn cluster_mode_rejects_keys_in_other_slots() {
        let base = "[redis]\ncluster = true\n[[plugin]]\nname = \"a\"\ncomponent = \"a.wasm\"\n";
        let ok = format!(
            "{base}stream = \"{{o}}:events\"\n[plugin.state]\nprefix = \"{{o}}:state:\"\n[plugin.allow]\nemit = [\"{{o}}:out*\"]\n"
        );
        Config::parse(&ok).expect("same slot");
        let err = Config::parse(&format!("{base}stream = \"events\"\n")).unwrap_err();
        assert!(err.to_string().contains("plugin[0].stream"), "{err}");
        let err = Config::parse(&format!("{base}stream = \"{{o}}:events\"\n[plugin.state]\nprefix = \"{{o}}:s:\"\n[plugin.allow]\nemit = [\"other\"]\n")).unwrap_err();
        assert!(err.to_string().contains("allow.emit"), "{err}");
        for key in ["push", "zadd"] {
            let ok = format!(
                "{base}list = \"{{o}}:jobs\"\n[plugin.state]\nprefix = \"{{o}}:s:\"\n[plugin.allow]\n{key} = [\"{{o}}:out\"]\n"
            );
            Config::parse(&ok).expect("same slot");
            let err = Config::parse(&ok.replace("\"{o}:out\"", "\"out\"")).unwrap_err();
            assert!(err.to_string().contains(&format!("allow.{key}")), "{err}");
        }
        // Pub/Sub: the redelivery stream is named after the first `subscribe`
        // name and must share the DLQ's slot.
        let pubsub = |names: &str| {
            format!(
                "{base}subscribe = [{names}]\n[plugin.dlq]\nstream = \"{{o}}:dlq\"\n[plugin.state]\nprefix = \"{{o}}:s:\"\n"
            )
        };
        Config::parse(&pubsub("\"{o}:ev\", \"other\"")).expect("same slot");
        let err = Config::parse(&pubsub("\"other\", \"{o}:ev\"")).unwrap_err();
        assert!(err.to_string().contains("redelivery stream"), "{err}");
        assert_eq!(hash_tag("{a}b"), "a");
        assert_eq!(hash_tag("{}b"), "{}b");
    }

    fn two_plugins(extra_a: &str, extra_b: &str) -> String {
        format!(
            "[[plugin]]\nname = \"a\"\ncomponent = \"a.wasm\"\nstream = \"events:a\"\n{extra_a}\n[[plugin]]\nname = \"b\"\ncomponent = \"b.wasm\"\nstream = \"events:b\"\n{extra_b}\n"
        )
    }

    #[test]
    fn a_state_prefix_reaching_streams_or_host_keys_is_refused() {
        Config::parse(&two_plugins("", "")).expect("default prefixes are fine");
        for (prefix, needle) in [
            ("", "must not be empty"),
            ("events:", "\"events:a\""),
            ("events:b", "plugin[1]"),
            ("dlq:", "dlq.stream"),
            ("streamhost:", "host's own keys"),
            ("{streamhost:deploy:", "host's own keys"),
            ("str", "host's own keys"),
        ] {
            let text = two_plugins(&format!("[plugin.state]\nprefix = {prefix:?}\n"), "");
            let err = Config::parse(&text).unwrap_err().to_string();
            assert!(err.contains("plugin[0].state.prefix"), "{prefix:?}: {err}");
            assert!(err.contains(needle), "{prefix:?}: {err}");
        }
        let shared = two_plugins(
            "[plugin.state]\nprefix = \"s:x:\"\n",
            "[plugin.state]\nprefix = \"s:\"\n",
        );
        let err = Config::parse(&shared).unwrap_err().to_string();
        assert!(err.contains("plugin[1].state.prefix"), "{err}");
    }

    #[test]
    fn plugin_names_are_plain() {
        for bad in ["", " ", "a:b{c}", "two words", "tab\t", "bell\u{7}"] {
            assert!(check_plugin_name(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["order-validator", "v1.2_x", "zähler"] {
            assert!(check_plugin_name(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn pool_counts_are_keys_with_bounds() {
        let base =
            "[[plugin]]\nname = \"a\"\ncomponent = \"a.wasm\"\nstream = \"s\"\n[plugin.limits]\n";
        let c = Config::parse(&format!("{base}max_core_instances = 100\n")).unwrap();
        assert_eq!(c.plugins[0].limits.max_core_instances, 100);
        let err = Config::parse(&format!("{base}max_memories = 0\n")).unwrap_err();
        assert!(
            err.to_string().contains("plugin[0].limits.max_memories"),
            "{err}"
        );
    }

    #[test]
    fn default_dlq_and_redelivery_keys_keep_the_streams_hash_tag() {
        use crate::dlq::{dlq_key, redeliver_key};
        assert_eq!(dlq_key("orders", "flaky"), "dlq:orders:flaky");
        assert_eq!(hash_tag(&dlq_key("{o}:events", "p")), "o");
        assert_eq!(hash_tag(&redeliver_key("{o}:events", "p")), "o");
        assert_eq!(hash_tag(&redeliver_key("a}b{c}", "p")), "c");
    }

    #[test]
    fn each_plugin_has_its_own_dlq_and_sharing_is_reported() {
        let plugin = |name: &str, dlq: &str| {
            format!("[[plugin]]\nname = \"{name}\"\ncomponent = \"a.wasm\"\nstream = \"s\"\n{dlq}")
        };
        let c = Config::parse(&format!("{}{}", plugin("a", ""), plugin("b", ""))).unwrap();
        assert_ne!(c.plugins[0].dlq_stream(), c.plugins[1].dlq_stream());
        assert!(c.shared_dlqs().is_empty());
        let shared = "[plugin.dlq]\nstream = \"dlq:s\"\n";
        let c = Config::parse(&format!(
            "{}{}{}",
            plugin("a", shared),
            plugin("b", shared),
            plugin("c", "")
        ))
        .unwrap();
        assert_eq!(
            c.shared_dlqs(),
            vec![("dlq:s".to_owned(), vec!["a".to_owned(), "b".to_owned()])]
        );
    }

    #[test]
    fn redis_urls_that_cannot_connect_are_named_with_the_redis_form() {
        for bad in [
            "127.0.0.1:6379",
            "http://127.0.0.1:6379",
            "redis://h:99999",
            "",
        ] {
            let text = format!("[redis]\nurl = {bad:?}\n");
            let err = Config::parse(&text).unwrap_err().to_string();
            assert!(err.contains("redis.url"), "{bad}: {err}");
            assert!(err.contains("redis://HOST:PORT"), "{bad}: {err}");
        }
        let err = check_redis_url("REDIS_URL", "http://:secret@h:1").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        for good in [
            "redis://127.0.0.1:6379",
            "redis://:pw@h:1/2",
            "unix:///tmp/r.sock",
        ] {
            check_redis_url("redis.url", good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
    }

    #[test]
    fn admin_listen_needs_a_16_bit_port() {
        for bad in ["127.0.0.1:99999", "127.0.0.1", ":80", "h:x"] {
            let err = Config::parse(&format!("[admin]\nlisten = {bad:?}\n")).unwrap_err();
            assert!(err.to_string().contains("admin.listen"), "{bad}: {err}");
        }
        for good in ["127.0.0.1:0", "[::1]:9464", "localhost:9464"] {
            Config::parse(&format!("[admin]\nlisten = {good:?}\n"))
                .unwrap_or_else(|e| panic!("{good}: {e}"));
        }
    }

    #[test]
    fn a_relative_cache_dir_is_relative_to_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[cache]\ndir = \"cache\"\n").unwrap();
        let config = Config::load(&path).unwrap();
        assert_eq!(config.cache.directory(), Some(dir.path().join("cache")));
    }

    #[test]
    fn missing_required_key_is_named() {
        let err = Config::parse("[[plugin]]\nname = \"a\"\nstream = \"s\"\n").unwrap_err();
        assert!(err.to_string().contains("component"), "{err}");
    }
}
