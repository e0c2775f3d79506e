//! Starting one `sessiongate run` process: its environment and log files, and waiting for the
//! `sessiongate ready https=ADDR http=ADDR admin=ADDR` line that it prints once every listener
//! is bound, which also tells the addresses it bound (the harness lets it bind port 0).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
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
        let (tx, rx) = mpsc::channel::<String>();
        let mut out_file = log_file(self.stdout_log, self.append_logs);
        let stdout_thread = std::thread::spawn(move || {
            let mut tx = Some(tx);
            let mut reader = BufReader::new(stdout);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let _ = out_file.write_all(&line);
                        let _ = out_file.flush();
                        let text = String::from_utf8_lossy(&line);
                        if text.starts_with("sessiongate ready ")
                            && let Some(tx) = tx.take()
                        {
                            let _ = tx.send(text.trim_end().to_string());
                        }
                    }
                }
            }
        });

        let ready = match rx.recv_timeout(READY_TIMEOUT) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // Standard output closed before the ready line: the process is exiting.
                let deadline = Instant::now() + Duration::from_secs(10);
                while !matches!(child.try_wait(), Ok(Some(_))) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = child.kill();
                let _ = child.wait();
                let _ = stdout_thread.join();
                let stderr = std::fs::read_to_string(self.stderr_log).unwrap_or_default();
                let report = self.report("gateway exited before printing `sessiongate ready `");
                return Err(if stderr.contains("cannot listen") {
                    LaunchError::PortTaken(report)
                } else {
                    LaunchError::Failed(report)
                });
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = stdout_thread.join();
                return Err(LaunchError::Failed(self.report(&format!(
                    "gateway never printed `sessiongate ready ` ({e})"
                ))));
            }
        };
        let bound = parse_ready_line(&ready).and_then(|bound| {
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

/// `sessiongate ready https=127.0.0.1:P1 http=127.0.0.1:P2 admin=127.0.0.1:P3`. The harness
/// always configures all three listeners, so `off` (a listener not configured) is an error.
fn parse_ready_line(line: &str) -> Result<Bound, String> {
    let mut fields = BTreeMap::new();
    for part in line
        .trim_start_matches("sessiongate ready ")
        .split_whitespace()
    {
        if let Some((k, v)) = part.split_once('=') {
            fields.insert(k, v);
        }
    }
    let parse = |k: &str| -> Result<SocketAddr, String> {
        let v = fields
            .get(k)
            .ok_or_else(|| format!("ready line lacks {k}=: {line:?}"))?;
        v.parse()
            .map_err(|e| format!("ready line {k}= is not an address ({e}): {line:?}"))
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
    use super::{Bound, Launch, LaunchError, check_bound, parse_ready_line};

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
        assert_eq!(
            parse_ready_line(
                "sessiongate ready https=127.0.0.1:40001 http=127.0.0.1:40002 admin=127.0.0.1:40003"
            ),
            Ok(Bound {
                https: addr("127.0.0.1:40001"),
                http: addr("127.0.0.1:40002"),
                admin: addr("127.0.0.1:40003"),
            })
        );
        let off =
            parse_ready_line("sessiongate ready https=127.0.0.1:1 http=off admin=127.0.0.1:3");
        assert!(off.is_err_and(|e| e.contains("http=")));
        assert!(parse_ready_line("sessiongate ready https=127.0.0.1:1").is_err());

        let any = LOOPBACK_ANY_PORT;
        assert!(check_bound("k", any, addr("127.0.0.1:40001")).is_ok());
        assert!(check_bound("k", any, addr("127.0.0.1:0")).is_err());
        assert!(check_bound("k", any, addr("0.0.0.0:40001")).is_err());
        let fixed = addr("127.0.0.1:40001");
        assert!(check_bound("k", fixed, fixed).is_ok());
        assert!(check_bound("k", fixed, addr("127.0.0.1:40002")).is_err());
    }
}
