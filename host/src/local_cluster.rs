//! A private Redis Cluster (3 masters, 3 replicas) on free loopback ports in
//! a temp dir, for the tests and `streamhost bench --cluster`. Stopped on drop.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::LocalRedisError as Error;

/// How long the cluster may take to agree on `cluster_state:ok` everywhere.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// Masters in the cluster (each with one replica).
pub const MASTERS: usize = 3;

/// A running private cluster.
pub struct LocalCluster {
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

/// One `redis-server` of the cluster.
struct Node {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl LocalCluster {
    /// Starts six nodes, joins them with `redis-cli --cluster create
    /// --cluster-replicas 1`, and waits until every node says
    /// `cluster_state:ok` and knows every other node. A short node timeout
    /// (1 s) makes a killed master's replica take over within seconds.
    pub fn start() -> Result<LocalCluster, Error> {
        let dir = tempfile::tempdir().map_err(Error::TempDir)?;
        let mut nodes = Vec::with_capacity(MASTERS * 2);
        let mut taken = Vec::new();
        for _ in 0..MASTERS * 2 {
            let port = free_cluster_port(&taken)?;
            taken.push(port);
            let node_dir = dir.path().join(port.to_string());
            std::fs::create_dir_all(&node_dir).map_err(Error::TempDir)?;
            let mut node = Node {
                port,
                dir: node_dir,
                child: None,
            };
            node.spawn()?;
            nodes.push(node);
        }
        let cluster = LocalCluster { nodes, _dir: dir };
        for node in &cluster.nodes {
            cluster.wait_ping(node.port)?;
        }
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(addresses.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "1", "--cluster-yes"]);
        cluster.redis_cli(&args)?;
        cluster.wait_ok()?;
        Ok(cluster)
    }

    /// `redis://127.0.0.1:<port>` of every node (the seeds).
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| url(n.port)).collect()
    }

    /// The ports of every node, running or not.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// The port of the master serving `slot` now, asked of a running node.
    pub fn master_of_slot(&self, slot: u16) -> Result<u16, Error> {
        for node in self.nodes.iter().filter(|n| n.child.is_some()) {
            let Ok(mut conn) = connect(node.port) else {
                continue;
            };
            let Ok(slots) = redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query::<redis::Value>(&mut conn)
            else {
                continue;
            };
            if let Some(port) = crate::connection::slot_owner(&slots, slot).map(|(_, p)| p) {
                return Ok(port);
            }
        }
        Err(Error::ClusterNotReady {
            seconds: 0,
            why: format!("no running node knows the master of slot {slot}"),
        })
    }

    /// The ports of the masters serving slots now.
    pub fn masters(&self) -> Result<Vec<u16>, Error> {
        let mut ports: Vec<u16> = Vec::new();
        let mut slot = 0u32;
        while slot < u32::from(crate::connection::SLOTS) {
            let port = self.master_of_slot(slot as u16)?;
            if !ports.contains(&port) {
                ports.push(port);
            }
            // Each master serves one contiguous range after `cluster create`.
            slot += 128;
        }
        Ok(ports)
    }

    /// Moves `slot` to the master on `to` with the steps `redis-cli
    /// --cluster reshard` takes for each slot (which cannot be told which
    /// slot to move): `SETSLOT IMPORTING` on the target, `MIGRATING` on the
    /// source, `MIGRATE` of every key in the slot, then `SETSLOT NODE` on
    /// every master.
    pub fn migrate_slot(&self, slot: u16, to: u16) -> Result<(), Error> {
        let from = self.master_of_slot(slot)?;
        if from == to {
            return Ok(());
        }
        let mut source = connect(from)?;
        let mut target = connect(to)?;
        let id = |conn: &mut redis::Connection| -> Result<String, redis::RedisError> {
            redis::cmd("CLUSTER").arg("MYID").query(conn)
        };
        let (from_id, to_id) = (id(&mut source)?, id(&mut target)?);
        let setslot = |conn: &mut redis::Connection, state: &str, node: &str| {
            redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg(state)
                .arg(node)
                .query::<()>(conn)
        };
        setslot(&mut target, "IMPORTING", &from_id)?;
        setslot(&mut source, "MIGRATING", &to_id)?;
        loop {
            let keys: Vec<Vec<u8>> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(100)
                .query(&mut source)?;
            if keys.is_empty() {
                break;
            }
            redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(to)
                .arg("")
                .arg(0)
                .arg(5000)
                .arg("KEYS")
                .arg(keys)
                .query::<()>(&mut source)?;
        }
        for port in self.masters()? {
            let mut conn = connect(port)?;
            setslot(&mut conn, "NODE", &to_id)?;
        }
        setslot(&mut target, "NODE", &to_id)?;
        setslot(&mut source, "NODE", &to_id)?;
        Ok(())
    }

    /// Kills the node on `port` (SIGKILL); with `node-timeout` 1 s its
    /// replica is promoted in a few seconds if it was a master.
    pub fn kill(&mut self, port: u16) {
        if let Some(node) = self.nodes.iter_mut().find(|n| n.port == port) {
            node.stop();
        }
    }

    /// Waits until the running nodes all say `cluster_state:ok` again and
    /// every slot has a running master (after a failover).
    pub fn wait_ok(&self) -> Result<(), Error> {
        let deadline = Instant::now() + READY_WITHIN;
        let running = self.nodes.iter().filter(|n| n.child.is_some()).count();
        loop {
            let why = match self.check(running) {
                Ok(()) => return Ok(()),
                Err(why) => why,
            };
            if Instant::now() > deadline {
                return Err(Error::ClusterNotReady {
                    seconds: READY_WITHIN.as_secs(),
                    why,
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `redis-cli` with `args` (e.g. `--cluster reshard ...`); its output or why it failed.
    pub fn redis_cli(&self, args: &[&str]) -> Result<String, Error> {
        let out = Command::new("redis-cli")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| Error::Spawn {
                program: "redis-cli".to_owned(),
                source,
            })?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            Ok(text)
        } else {
            Err(Error::ClusterCreate(text))
        }
    }

    fn check(&self, running: usize) -> Result<(), String> {
        let ports = self.ports_running();
        for slot in (0..crate::connection::SLOTS).step_by(64) {
            match self.master_of_slot(slot) {
                Ok(port) if ports.contains(&port) => {}
                Ok(port) => return Err(format!("slot {slot} still served by stopped {port}")),
                Err(e) => return Err(e.to_string()),
            }
        }
        for node in self.nodes.iter().filter(|n| n.child.is_some()) {
            let mut conn = connect(node.port).map_err(|e| format!("port {}: {e}", node.port))?;
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query(&mut conn)
                .map_err(|e| format!("port {}: {e}", node.port))?;
            if !info.contains("cluster_state:ok") {
                return Err(format!("port {} not ok yet", node.port));
            }
            let nodes: String = redis::cmd("CLUSTER")
                .arg("NODES")
                .query(&mut conn)
                .map_err(|e| format!("port {}: {e}", node.port))?;
            let healthy = nodes
                .lines()
                .filter(|l| {
                    !l.contains("fail") && !l.contains("handshake") && !l.contains("noaddr")
                })
                .count();
            if healthy < running {
                return Err(format!(
                    "port {} knows {healthy} of {running} nodes",
                    node.port
                ));
            }
        }
        Ok(())
    }

    fn ports_running(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.port)
            .collect()
    }

    fn wait_ping(&self, port: u16) -> Result<(), Error> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut conn) = connect(port)
                && redis::cmd("PING").query::<String>(&mut conn).is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::NotReady { port, seconds: 10 });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Node {
    fn spawn(&mut self) -> Result<(), Error> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", "nodes.conf"])
            .args(["--cluster-node-timeout", "1000"])
            .args(["--logfile", "redis.log", "--dir"])
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| Error::Spawn {
                program: "redis-server".to_owned(),
                source,
            })?;
        self.child = Some(child);
        Ok(())
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.stop();
        }
    }
}

fn url(port: u16) -> String {
    format!("redis://127.0.0.1:{port}")
}

fn connect(port: u16) -> Result<redis::Connection, redis::RedisError> {
    let client = redis::Client::open(url(port))?;
    let conn = client.get_connection_with_timeout(Duration::from_millis(500))?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    Ok(conn)
}

/// A free port whose cluster bus port (+10000) is free too.
fn free_cluster_port(taken: &[u16]) -> Result<u16, Error> {
    for _ in 0..200 {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(Error::NoFreePort)?;
        let port = listener.local_addr().map_err(Error::NoFreePort)?.port();
        let Some(bus) = port.checked_add(10_000) else {
            continue;
        };
        if taken
            .iter()
            .any(|&t| t == port || t + 10_000 == port || t == bus)
        {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", bus)).is_ok() {
            return Ok(port);
        }
    }
    Err(Error::NoFreePort(std::io::Error::other(
        "no port with a free cluster bus port (+10000) in 200 tries",
    )))
}
