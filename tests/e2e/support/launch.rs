//! Starting one `sessiongate run` process: its environment and log files, and waiting for the
//! `ready` event that it logs on standard error once every listener is bound (`INFO ready
//! https=ADDR http=ADDR admin=ADDR` in text, `{"msg":"ready","https":ADDR,…}` in JSON), which
//! also tells the addresses it bound (the harness lets it bind port 0).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::util::bin;

const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How to start one `sessiongate run` process and know it is ready.
pub(super) struct Launch<'a> {
    pub(super) config_path: &'a Path,
    pub(super) dir: &'a Path,
    pub(super) access_secret: &'a str,
    pub(super) refresh_secret: &'a str,
    pub(super) env: &'a [(String, String)],
    pub(super) stdout_log: &'a Path,
    pub(super) stderr_log: &'a Path,
    /// The configured `(server.listen, server.redirect_listen, server.admin_listen)`: the
    /// ready line must name these, a port 0 standing for any port the kernel chose.
    pub(super) listen: (SocketAddr, SocketAddr, SocketAddr),
    /// Keep what earlier runs logged (a restart) instead of starting the logs afresh.
    pub(super) append_logs: bool,
}

/// A gateway process that printed its ready line.
pub(super) struct Launched {
    pub(super) child: Child,
    /// Copies the process's standard output to the stdout log until it closes.
    pub(super) stdout_thread: std::thread::JoinHandle<()>,
    pub(super) bound: Bound,
}

/// The addresses the gateway's listeners bound, as its ready line names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Bound {
    pub(super) https: SocketAddr,
    pub(super) http: SocketAddr,
    pub(super) admin: SocketAddr,
}

pub(super) enum LaunchError {
    /// The process exited before it was ready because a listener address was taken (only
    /// possible with a fixed port in the config).
    PortTaken(String),
    /// Anything else; the report holds the config and both logs.
    Failed(String),
}

impl LaunchError {
    /// Fail the test with the report (the config and both logs).
    pub(super) fn panic(self, what: &str) -> ! {
        match self {
            LaunchError::PortTaken(report) => {
                panic!("gateway {what}: a listen address is taken: {report}")
            }
            LaunchError::Failed(report) => panic!("gateway {what}: {report}"),
        }
    }
}

fn log_file(path: &Path, append: bool) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

impl Launch<'_> {
    fn report(&self, what: &str) -> String {
        format!(
            "{what}.\n--- config ---\n{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            std::fs::read_to_string(self.config_path).unwrap_or_default(),
            std::fs::read_to_string(self.stdout_log).unwrap_or_default(),
            std::fs::read_to_string(self.stderr_log).unwrap_or_default()
        )
    }

    /// Spawn the gateway and wait for `sessiongate ready ...` naming the configured addresses.
    pub(super) fn run(&self) -> Result<Launched, LaunchError> {
        let stderr_file = log_file(self.stderr_log, self.append_logs);
        // The ready event is looked for after what earlier runs wrote.
        let skip = stderr_file.metadata().map_or(0, |m| m.len());
        let mut cmd = Command::new(bin());
        cmd.arg("run")
            .arg("--config")
            .arg(self.config_path)
            .current_dir(self.dir)
            .env_remove("RUST_LOG")
            .env("SG_TEST_ACCESS_SECRET", self.access_secret)
            .env("SG_TEST_REFRESH_SECRET", self.refresh_secret)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr_file));
        for (k, v) in self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn sessiongate run");
        let stdout = child.stdout.take().unwrap();
        let mut out_file = log_file(self.stdout_log, self.append_logs);
        let stdout_thread = std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let _ = out_file.write_all(&line);
                        let _ = out_file.flush();
                    }
                }
            }
        });
        // The gateway writes standard error straight to its file (nothing between it and the
        // file to lag behind); the ready event is looked for there.
        let deadline = Instant::now() + READY_TIMEOUT;
        let ready = loop {
            let text = std::fs::read(self.stderr_log).unwrap_or_default();
            let fresh = String::from_utf8_lossy(text.get(skip as usize..).unwrap_or_default());
            if let Some(fields) = fresh.lines().find_map(ready_event) {
                break fields;
            }
            if let Ok(Some(_)) = child.try_wait() {
                let _ = stdout_thread.join();
                let stderr = std::fs::read_to_string(self.stderr_log).unwrap_or_default();
                let report = self.report("gateway exited before logging `ready`");
                return Err(if stderr.contains("cannot listen") {
                    LaunchError::PortTaken(report)
                } else {
                    LaunchError::Failed(report)
                });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                let _ = stdout_thread.join();
                return Err(LaunchError::Failed(self.report(&format!(
                    "gateway never logged `ready` within {READY_TIMEOUT:?}"
                ))));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let bound = parse_ready(&ready).and_then(|bound| {
            let (https, http, admin) = self.listen;
            check_bound("server.listen", https, bound.https)?;
            check_bound("server.redirect_listen", http, bound.http)?;
            check_bound("server.admin_listen", admin, bound.admin)?;
            Ok(bound)
        });
        match bound {
            Ok(bound) => Ok(Launched {
                child,
                stdout_thread,
                bound,
            }),
            Err(why) => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = stdout_thread.join();
                Err(LaunchError::Failed(self.report(&why)))
            }
        }
    }
}

/// The fields of the gateway's `ready` event, when `line` is that event: in the JSON log
/// format (`{"msg":"ready","https":"127.0.0.1:1",…}`) or the text one
/// (`2026-12-01T21:00:00.123456Z  INFO ready https=127.0.0.1:1 http=… admin=…`).
pub fn ready_event(line: &str) -> Option<BTreeMap<String, String>> {
    if let Ok(serde_json::Value::Object(m)) = serde_json::from_str::<serde_json::Value>(line) {
        if m.get("msg").and_then(|v| v.as_str()) != Some("ready") {
            return None;
        }
        return Some(
            m.into_iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_string())))
                .collect(),
        );
    }
    let mut words = line.split_whitespace();
    let (_time, level, msg) = (words.next()?, words.next()?, words.next()?);
    if level != "INFO" || msg != "ready" {
        return None;
    }
    Some(
        words
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// The listeners' addresses in a `ready` event. The harness always configures all three
/// listeners, so `off` (a listener not configured) is an error.
fn parse_ready(fields: &BTreeMap<String, String>) -> Result<Bound, String> {
    let parse = |k: &str| -> Result<SocketAddr, String> {
        let v = fields
            .get(k)
            .ok_or_else(|| format!("the ready event lacks {k}: {fields:?}"))?;
        v.parse()
            .map_err(|e| format!("the ready event's {k} is not an address ({e}): {fields:?}"))
    };
    Ok(Bound {
        https: parse("https")?,
        http: parse("http")?,
        admin: parse("admin")?,
    })
}

/// The bound address is the configured one: same IP, and the same port unless the config asked
/// for port 0 (then any port but 0).
fn check_bound(key: &str, configured: SocketAddr, bound: SocketAddr) -> Result<(), String> {
    let port_ok = match configured.port() {
        0 => bound.port() != 0,
        p => bound.port() == p,
    };
    if bound.ip() == configured.ip() && port_ok {
        Ok(())
    } else {
        Err(format!(
            "the ready line names {bound}, which is not {key} = \"{configured}\""
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::net::{SocketAddr, TcpListener};

    use super::super::config::{GatewayConfig, LOOPBACK_ANY_PORT, RenderParams};
    use super::super::pki::Pki;
    use super::super::users::users_toml;
    use super::super::util::{install_crypto_provider, random_secret};
    use super::{Bound, Launch, LaunchError, check_bound, parse_ready, ready_event};

    /// A bind conflict is recognised: a gateway whose (fixed) listen address is taken exits
    /// before it is ready, and the launch reports that as a taken port, with the gateway's
    /// `cannot listen` in the report. This test needs a fixed port: the one it holds.
    #[test]
    fn launch_reports_a_taken_listen_port() {
        install_crypto_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::generate(dir.path());
        let users_file = dir.path().join("users.toml");
        std::fs::write(&users_file, users_toml()).unwrap();
        let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
        let https = taken.local_addr().unwrap();
        let params = RenderParams {
            https,
            http: LOOPBACK_ANY_PORT,
            admin: LOOPBACK_ANY_PORT,
            cert: pki.cert_path.clone(),
            key: pki.key_path.clone(),
            upstream_url: "http://127.0.0.1:9".into(),
            users_file,
            audit_file: dir.path().join("audit.log"),
        };
        let config_path = dir.path().join("gateway.toml");
        std::fs::write(&config_path, GatewayConfig::new().render(&params)).unwrap();
        let (access, refresh) = (random_secret(), random_secret());
        let launch = Launch {
            config_path: &config_path,
            dir: dir.path(),
            access_secret: &access,
            refresh_secret: &refresh,
            env: &[],
            stdout_log: &dir.path().join("stdout.log"),
            stderr_log: &dir.path().join("stderr.log"),
            listen: (https, LOOPBACK_ANY_PORT, LOOPBACK_ANY_PORT),
            append_logs: false,
        };
        match launch.run() {
            Err(LaunchError::PortTaken(report)) => {
                assert!(report.contains("cannot listen"), "{report}")
            }
            Err(LaunchError::Failed(report)) => panic!("not recognised as a taken port:\n{report}"),
            Ok(mut launched) => {
                let _ = launched.child.kill();
                let _ = launched.child.wait();
                panic!("the gateway started although {https} was taken");
            }
        }
        drop(taken);
    }

    #[test]
    fn ready_line_names_the_bound_addresses() {
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        let want = Ok(Bound {
            https: addr("127.0.0.1:40001"),
            http: addr("127.0.0.1:40002"),
            admin: addr("127.0.0.1:40003"),
        });
        let text = "2026-12-01T21:00:00.123456Z  INFO ready https=127.0.0.1:40001 \
                    http=127.0.0.1:40002 admin=127.0.0.1:40003";
        assert_eq!(parse_ready(&ready_event(text).unwrap()), want);
        let json = r#"{"admin":"127.0.0.1:40003","http":"127.0.0.1:40002","https":"127.0.0.1:40001","level":"info","msg":"ready","target":"sessiongate::lifecycle","time":"2026-12-01T21:00:00.123Z"}"#;
        assert_eq!(parse_ready(&ready_event(json).unwrap()), want);
        assert!(ready_event("2026-12-01T21:00:00Z  INFO listening https=127.0.0.1:1").is_none());
        assert!(ready_event(r#"{"msg":"stopped"}"#).is_none());
        let off = ready_event("t INFO ready https=127.0.0.1:1 http=off admin=127.0.0.1:3").unwrap();
        assert!(parse_ready(&off).is_err_and(|e| e.contains("http")));
        let short = ready_event("t INFO ready https=127.0.0.1:1").unwrap();
        assert!(parse_ready(&short).is_err());

        let any = LOOPBACK_ANY_PORT;
        assert!(check_bound("k", any, addr("127.0.0.1:40001")).is_ok());
        assert!(check_bound("k", any, addr("127.0.0.1:0")).is_err());
        assert!(check_bound("k", any, addr("0.0.0.0:40001")).is_err());
        let fixed = addr("127.0.0.1:40001");
        assert!(check_bound("k", fixed, fixed).is_ok());
        assert!(check_bound("k", fixed, addr("127.0.0.1:40002")).is_err());
    }
}
