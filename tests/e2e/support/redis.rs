//! Real Redis for the Redis store: one `redis-server` (append-only, survives kill and restart on
//! the same port) and a Redis Cluster (three masters, or three masters with a replica each),
//! each on free loopback ports, and `redis-cli` against them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::util::{free_port, wait_output_within};

const REDIS_MISSING: &str = "redis-server is not installed: install redis-server \
     (`apt-get install redis-server`, or run scripts/test, which installs it)";
const REDIS_READY_TIMEOUT: Duration = Duration::from_secs(15);
/// The cluster's `cluster-node-timeout` unless a test asks for another.
const CLUSTER_NODE_TIMEOUT_MS: u64 = 5000;

/// Run `redis-cli --raw` against a loopback port; its standard output. Quick, but blocking.
pub fn redis_cli(port: u16, args: &[&str]) -> Vec<u8> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--raw"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run redis-cli ({e}): {REDIS_MISSING}"));
    assert!(
        out.status.success(),
        "redis-cli -p {port} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// One inline command over a fresh connection, without redis-cli; the reply's text (a status,
/// an error with its `-`, an integer, or a bulk string).
fn redis_inline(port: u16, command: &str) -> Result<String, String> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500))
        .map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(format!("{command}\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut r = BufReader::new(s);
    let mut first = String::new();
    r.read_line(&mut first).map_err(|e| e.to_string())?;
    let first = first.trim_end();
    match first.split_at_checked(1) {
        Some(("$", n)) => {
            let n: usize = n.parse().map_err(|_| format!("bad reply {first:?}"))?;
            let mut body = vec![0u8; n];
            r.read_exact(&mut body).map_err(|e| e.to_string())?;
            Ok(String::from_utf8_lossy(&body).into_owned())
        }
        Some(("+" | ":", rest)) => Ok(rest.to_string()),
        Some(("-", _)) => Ok(first.to_string()),
        _ => Err(format!("unexpected reply {first:?}")),
    }
}

enum RedisStartError {
    PortTaken(String),
    Failed(String),
}

/// Spawn `redis-server` with `args` and wait until *it* (not another process that may hold
/// the port) answers `PING`: `INFO server` must name its pid.
fn start_redis_process(args: &[String], port: u16, log: &Path) -> Result<Child, RedisStartError> {
    let mut child = match Command::new("redis-server")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{REDIS_MISSING}"),
        Err(e) => panic!("cannot start redis-server: {e}"),
    };
    let deadline = Instant::now() + REDIS_READY_TIMEOUT;
    let pid = format!("process_id:{}", child.id());
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let report = format!("redis-server on port {port} exited ({status}); log:\n{text}");
            return Err(if text.contains("Address already in use") {
                RedisStartError::PortTaken(report)
            } else {
                RedisStartError::Failed(report)
            });
        }
        if redis_inline(port, "PING").as_deref() == Ok("PONG")
            && redis_inline(port, "INFO server").is_ok_and(|i| i.lines().any(|l| l == pid))
        {
            return Ok(child);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(RedisStartError::Failed(format!(
                "redis-server on port {port} did not answer PING within {REDIS_READY_TIMEOUT:?}; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `redis-server` on a free loopback port, appending every write to its own directory, so
/// that a kill and restart on the same port keeps the data. `appendfsync no`: Redis writes
/// the append-only file before it sends the replies of each event-loop turn, so a SIGKILL
/// loses nothing that was answered; only an fsync per write would add (a crash of the whole
/// machine, which no test makes), and on a busy CI disk one fsync can outlast the gateway's
/// 1 s command timeout and turn a test's answer into a `503`. Killed on drop.
pub struct RedisServer {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    pub async fn start() -> RedisServer {
        tokio::task::spawn_blocking(RedisServer::start_blocking)
            .await
            .expect("redis start task")
    }

    pub fn start_blocking() -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("sessiongate-redis-")
            .tempdir()
            .expect("tempdir");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port();
            match Self::launch(port, dir.path()) {
                Ok(child) => {
                    return RedisServer {
                        port,
                        dir,
                        child: Some(child),
                    };
                }
                Err(RedisStartError::PortTaken(_)) if attempt < 3 => continue,
                Err(RedisStartError::PortTaken(r) | RedisStartError::Failed(r)) => panic!("{r}"),
            }
        }
    }

    fn args(port: u16, dir: &Path) -> Vec<String> {
        let mut a: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "no",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.push("--dir".into());
        a.push(dir.display().to_string());
        a.push("--logfile".into());
        a.push(dir.join("redis.log").display().to_string());
        a
    }

    fn launch(port: u16, dir: &Path) -> Result<Child, RedisStartError> {
        start_redis_process(&Self::args(port, dir), port, &dir.join("redis.log"))
    }

    /// `redis://127.0.0.1:<port>/0`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// SIGKILL: no shutdown, no final save; what was appended stays on disk.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start again on the same port and directory (after [`RedisServer::kill`]); returns once
    /// the append-only file is loaded and `PING` answers.
    pub async fn restart(&mut self) {
        self.kill();
        let port = self.port;
        let dir = self.dir.path().to_path_buf();
        let child = tokio::task::spawn_blocking(move || {
            let mut attempt = 0;
            loop {
                attempt += 1;
                match Self::launch(port, &dir) {
                    Ok(c) => return c,
                    Err(RedisStartError::PortTaken(_)) if attempt < 5 => {
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    Err(RedisStartError::PortTaken(r) | RedisStartError::Failed(r)) => {
                        panic!("redis restart: {r}")
                    }
                }
            }
        })
        .await
        .expect("redis restart task");
        self.child = Some(child);
    }

    /// `redis-cli --raw <args>` against this server.
    pub fn cli(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&redis_cli(self.port, args)).into_owned()
    }

    /// Every key (`redis-cli --scan`).
    pub fn keys(&self) -> Vec<String> {
        let mut k: Vec<String> = self
            .cli(&["--scan"])
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        k.sort();
        k
    }

    /// Every file under the server's directory (append-only files, log), with its bytes.
    pub fn files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        fn walk(p: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
            for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
                let path = e.path();
                if path.is_dir() {
                    walk(&path, out);
                } else if let Ok(b) = std::fs::read(&path) {
                    out.push((path, b));
                }
            }
        }
        let mut out = Vec::new();
        walk(self.dir.path(), &mut out);
        out
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `redis-server --cluster-enabled yes` nodes on free loopback ports, each with its own
/// directory, joined with `redis-cli --cluster create`: three masters ([`RedisCluster::start`])
/// or six nodes, three masters with a replica each ([`RedisCluster::start_six`]). Killed on
/// drop.
pub struct RedisCluster {
    /// Every node's port, masters and replicas, in start order (a node killed stays listed).
    pub ports: Vec<u16>,
    dirs: Vec<tempfile::TempDir>,
    children: Vec<Child>,
    /// Nodes killed by [`RedisCluster::kill_master_of`].
    killed: Vec<u16>,
}

/// One node as a `CLUSTER NODES` line describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterNode {
    pub port: u16,
    /// `master` in its flags (a failed master keeps it).
    pub master: bool,
    /// `fail` in its flags: the cluster agreed it is down.
    pub failed: bool,
    /// The slot ranges it serves, inclusive (a master's; a replica serves none).
    pub slots: Vec<(u16, u16)>,
}

/// Parse `CLUSTER NODES`: `<id> <ip:port@bus> <flags> <master> <ping> <pong> <epoch> <link>
/// <slot or range>...` per line (slots being migrated, `[..]`, are skipped).
pub fn parse_cluster_nodes(text: &str) -> Vec<ClusterNode> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            let port = f[1].split('@').next()?.rsplit(':').next()?.parse().ok()?;
            let flags: Vec<&str> = f[2].split(',').collect();
            let slots = f[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => s.parse().ok().map(|n| (n, n)),
                })
                .collect();
            Some(ClusterNode {
                port,
                master: flags.contains(&"master"),
                failed: flags.contains(&"fail"),
                slots,
            })
        })
        .collect()
}

impl RedisCluster {
    /// Three masters, no replicas.
    pub async fn start() -> RedisCluster {
        tokio::task::spawn_blocking(RedisCluster::start_blocking)
            .await
            .expect("redis cluster start task")
    }

    /// Six nodes: three masters, each with one replica.
    pub async fn start_six() -> RedisCluster {
        RedisCluster::start_six_node_timeout(CLUSTER_NODE_TIMEOUT_MS).await
    }

    /// Six nodes as [`RedisCluster::start_six`], with this `cluster-node-timeout`: a master
    /// unreachable for that long is failed, and its replica promoted, about a second later.
    pub async fn start_six_node_timeout(node_timeout_ms: u64) -> RedisCluster {
        tokio::task::spawn_blocking(move || RedisCluster::start_nodes(6, 1, node_timeout_ms))
            .await
            .expect("redis cluster start task")
    }

    pub fn start_blocking() -> RedisCluster {
        RedisCluster::start_nodes(3, 0, CLUSTER_NODE_TIMEOUT_MS)
    }

    /// `nodes` nodes, `replicas` replicas per master (`redis-cli --cluster create
    /// --cluster-replicas`).
    fn start_nodes(nodes: usize, replicas: usize, node_timeout_ms: u64) -> RedisCluster {
        let mut cluster = RedisCluster {
            ports: Vec::new(),
            dirs: Vec::new(),
            children: Vec::new(),
            killed: Vec::new(),
        };
        for _ in 0..nodes {
            let dir = tempfile::Builder::new()
                .prefix("sessiongate-redis-cluster-")
                .tempdir()
                .expect("tempdir");
            let mut attempt = 0;
            let (port, child) = loop {
                attempt += 1;
                // The cluster bus gets its own free port (`cluster-port`), so a data port near
                // the top of the range is fine.
                let (port, bus) = (free_port(), free_port());
                let d = dir.path().display().to_string();
                let args: Vec<String> = [
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &bus.to_string(),
                    "--cluster-config-file",
                    &format!("{d}/nodes.conf"),
                    "--cluster-node-timeout",
                    &node_timeout_ms.to_string(),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    &d,
                    "--logfile",
                    &format!("{d}/redis.log"),
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                match start_redis_process(&args, port, &dir.path().join("redis.log")) {
                    Ok(c) => break (port, c),
                    Err(RedisStartError::PortTaken(_)) if attempt < 3 => continue,
                    Err(RedisStartError::PortTaken(r) | RedisStartError::Failed(r)) => {
                        panic!("redis cluster node: {r}")
                    }
                }
            };
            cluster.ports.push(port);
            cluster.dirs.push(dir);
            cluster.children.push(child);
        }

        let mut cmd = Command::new("redis-cli");
        cmd.arg("--cluster").arg("create");
        for p in &cluster.ports {
            cmd.arg(format!("127.0.0.1:{p}"));
        }
        cmd.args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run redis-cli ({e}): {REDIS_MISSING}"));
        let out = wait_output_within(child, Duration::from_secs(60), "redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );

        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let states: Vec<String> = cluster
                .ports
                .iter()
                .map(|p| redis_inline(*p, "CLUSTER INFO").unwrap_or_else(|e| e))
                .collect();
            let known = format!("cluster_known_nodes:{nodes}");
            if states
                .iter()
                .all(|s| s.contains("cluster_state:ok") && s.contains(&known))
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the Redis Cluster never reported cluster_state:ok: {states:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    /// `["redis://127.0.0.1:P1", ...]`, for `store.cluster_nodes`.
    pub fn nodes(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    /// Every key of every node, as `(port, key)`.
    pub fn keys(&self) -> Vec<(u16, String)> {
        let mut out = Vec::new();
        for p in &self.live_ports() {
            let text = String::from_utf8_lossy(&redis_cli(*p, &["--scan"])).into_owned();
            out.extend(
                text.lines()
                    .filter(|l| !l.is_empty())
                    .map(|k| (*p, k.to_string())),
            );
        }
        out
    }
}

impl RedisCluster {
    /// The nodes not killed.
    pub fn live_ports(&self) -> Vec<u16> {
        self.ports
            .iter()
            .copied()
            .filter(|p| !self.killed.contains(p))
            .collect()
    }

    /// The slot of `key` (`CLUSTER KEYSLOT`, asked of a live node).
    pub fn key_slot(&self, key: &str) -> u16 {
        let port = self.live_ports()[0];
        let reply = redis_inline(port, &format!("CLUSTER KEYSLOT {key}"))
            .unwrap_or_else(|e| panic!("CLUSTER KEYSLOT on {port}: {e}"));
        reply
            .parse()
            .unwrap_or_else(|_| panic!("CLUSTER KEYSLOT: {reply:?}"))
    }

    /// The live master that serves `slot` as node `via` sees it; see [`master_of_slot`].
    pub fn master_of_slot(&self, via: u16, slot: u16) -> Result<u16, String> {
        master_of_slot(via, slot, &self.killed)
    }

    /// SIGKILL the master that serves `key`'s slot (no shutdown: what it had not yet sent to
    /// its replica is lost); its port.
    pub fn kill_master_of(&mut self, key: &str) -> u16 {
        let slot = self.key_slot(key);
        let port = self
            .master_of_slot(self.live_ports()[0], slot)
            .unwrap_or_else(|e| panic!("kill_master_of({key:?}): {e}"));
        let i = self
            .ports
            .iter()
            .position(|p| *p == port)
            .expect("a node of this cluster");
        let _ = self.children[i].kill();
        let _ = self.children[i].wait();
        self.killed.push(port);
        port
    }

    /// After a kill: wait until every live node reports `cluster_state:ok` and names the same
    /// live master (a promoted replica) for `slot`; that master's port, or what the nodes
    /// said last when that did not happen within `within`.
    pub async fn wait_failover(&self, slot: u16, within: Duration) -> Result<u16, String> {
        let deadline = Instant::now() + within;
        loop {
            let (live, killed) = (self.live_ports(), self.killed.clone());
            let verdict = tokio::task::spawn_blocking(move || {
                let mut owners = Vec::new();
                for p in &live {
                    let info = redis_inline(*p, "CLUSTER INFO").unwrap_or_else(|e| e);
                    if !info.contains("cluster_state:ok") {
                        let state = info.lines().next().unwrap_or_default();
                        return Err(format!("node {p}: {state}"));
                    }
                    owners.push(master_of_slot(*p, slot, &killed)?);
                }
                owners.sort_unstable();
                owners.dedup();
                match owners.as_slice() {
                    [one] => Ok(*one),
                    _ => Err(format!(
                        "the nodes disagree on slot {slot}'s master: {owners:?}"
                    )),
                }
            })
            .await
            .expect("cluster probe task");
            match verdict {
                Ok(port) => return Ok(port),
                Err(e) if Instant::now() > deadline => {
                    return Err(format!("after {within:?}: {e}"));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

/// The live master that serves `slot` as node `via` sees it: its `CLUSTER NODES` names it a
/// master (not failed, not one of `killed`) with the slot, and the node itself says
/// `role:master`.
pub fn master_of_slot(via: u16, slot: u16, killed: &[u16]) -> Result<u16, String> {
    let nodes = parse_cluster_nodes(&redis_inline(via, "CLUSTER NODES")?);
    let serves = |n: &ClusterNode| n.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot));
    let owner = nodes
        .iter()
        .find(|n| n.master && !n.failed && serves(n))
        .ok_or_else(|| format!("node {via} names no live master for slot {slot}: {nodes:?}"))?;
    if killed.contains(&owner.port) {
        return Err(format!(
            "node {via} still names the killed {} for slot {slot}",
            owner.port
        ));
    }
    let role = redis_inline(owner.port, "INFO replication")?;
    if role.lines().any(|l| l.trim() == "role:master") {
        Ok(owner.port)
    } else {
        Err(format!(
            "node {} serves slot {slot} but does not say role:master",
            owner.port
        ))
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The ACL user a TLS Redis gives the gateway, and its password.
pub const REDIS_ACL_USER: &str = "gateway";
pub const REDIS_ACL_PASSWORD: &str = "gateway-acl-password-3f9c";
const REDIS_ADMIN_PASSWORD: &str = "admin-acl-password-81d2";

/// A `redis-server` that speaks TLS on `tls_port` (a certificate for `127.0.0.1` and
/// `localhost` from its own CA, written to `ca_path`) and plain on `plain_port` for the test's
/// own inspection. ACL: [`REDIS_ACL_USER`] may touch the store's keys and channels (`sg:*`)
/// only; the `default` user needs a password nobody else knows, so a client that does not
/// authenticate as the ACL user gets nowhere. Killed on drop.
pub struct RedisTls {
    pub plain_port: u16,
    pub tls_port: u16,
    /// The CA of the server's certificate, for `store.ca_file`.
    pub ca_path: PathBuf,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisTls {
    pub async fn start() -> RedisTls {
        tokio::task::spawn_blocking(RedisTls::start_blocking)
            .await
            .expect("redis tls start task")
    }

    fn start_blocking() -> RedisTls {
        let dir = tempfile::Builder::new()
            .prefix("sessiongate-redis-tls-")
            .tempdir()
            .expect("tempdir");
        let ca = super::pki::TestCa::new(dir.path(), "redis");
        let leaf = ca.server("redis", &["127.0.0.1", "localhost"]);
        let d = dir.path().display().to_string();
        let mut attempt = 0;
        let (plain_port, tls_port, child) = loop {
            attempt += 1;
            let (plain, tls) = (free_port(), free_port());
            let args: Vec<String> = [
                "--port",
                &plain.to_string(),
                "--tls-port",
                &tls.to_string(),
                "--tls-cert-file",
                &leaf.cert.display().to_string(),
                "--tls-key-file",
                &leaf.key.display().to_string(),
                "--tls-ca-cert-file",
                &ca.path.display().to_string(),
                "--tls-auth-clients",
                "no",
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                &d,
                "--logfile",
                &format!("{d}/redis.log"),
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            match start_redis_process(&args, plain, &dir.path().join("redis.log")) {
                Ok(c) => break (plain, tls, c),
                Err(RedisStartError::PortTaken(_)) if attempt < 3 => continue,
                Err(RedisStartError::PortTaken(r) | RedisStartError::Failed(r)) => {
                    panic!("redis-server --tls-port: {r}")
                }
            }
        };
        let (gateway_pw, admin_pw) = (
            format!(">{REDIS_ACL_PASSWORD}"),
            format!(">{REDIS_ADMIN_PASSWORD}"),
        );
        for acl in [
            vec![
                "ACL",
                "SETUSER",
                REDIS_ACL_USER,
                "on",
                gateway_pw.as_str(),
                "~sg:*",
                "&sg:*",
                "+@all",
            ],
            vec![
                "ACL",
                "SETUSER",
                "admin",
                "on",
                admin_pw.as_str(),
                "~*",
                "&*",
                "+@all",
            ],
            // Last: from here on, only a client that authenticates gets in.
            vec![
                "ACL",
                "SETUSER",
                "default",
                "on",
                "resetpass",
                ">nobody-knows-this-9a1e",
            ],
        ] {
            let out = String::from_utf8_lossy(&redis_cli(plain_port, &acl)).into_owned();
            assert_eq!(out.trim(), "OK", "{acl:?}: {out}");
        }
        RedisTls {
            plain_port,
            tls_port,
            ca_path: ca.path.clone(),
            dir,
            child: Some(child),
        }
    }

    /// `rediss://127.0.0.1:<tls_port>/0`
    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}/0", self.tls_port)
    }

    /// `redis-cli --raw <args>` on the plain port, as the admin user.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut all = vec![
            "--user",
            "admin",
            "--pass",
            REDIS_ADMIN_PASSWORD,
            "--no-auth-warning",
        ];
        all.extend_from_slice(args);
        String::from_utf8_lossy(&redis_cli(self.plain_port, &all)).into_owned()
    }

    /// Every key (`--scan`), sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut k: Vec<String> = self
            .cli(&["--scan"])
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        k.sort();
        k
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }
}

impl Drop for RedisTls {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
