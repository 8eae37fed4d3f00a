//! A private `redis-server` on a free loopback port in a temp dir, for
//! `streamhost demo`, `streamhost bench` and the tests. Stopped on drop.

use std::net::TcpListener;
use std::path::Path;
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
}

impl LocalRedis {
    /// Starts `redis-server` with no persistence.
    pub fn start() -> Result<LocalRedis, Error> {
        LocalRedis::start_with(&[])
    }

    /// Starts `redis-server` with extra arguments (e.g. `["--appendonly", "yes"]`).
    pub fn start_with(extra: &[&str]) -> Result<LocalRedis, Error> {
        let dir = tempfile::tempdir().map_err(Error::TempDir)?;
        let port = free_port()?;
        let child = spawn(dir.path(), port, extra)?;
        let server = LocalRedis { child, port, dir };
        server.wait_ready()?;
        Ok(server)
    }

    /// Restarts the server on the same port and directory (an AOF file there
    /// is replayed when `--appendonly yes` was given).
    pub fn restart(&mut self, extra: &[&str]) -> Result<(), Error> {
        self.stop();
        self.child = spawn(self.dir.path(), self.port, extra)?;
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

fn spawn(dir: &Path, port: u16, extra: &[&str]) -> Result<Child, Error> {
    Command::new("redis-server")
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
        .map_err(Error::Spawn)
}

fn free_port() -> Result<u16, Error> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(Error::NoFreePort)?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(Error::NoFreePort)
}
