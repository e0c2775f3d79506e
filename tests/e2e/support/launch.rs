//! Starting one `sessiongate run` process: its environment and log files, and waiting for the
//! `sessiongate ready ...` line that it prints once every listener is bound.

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
    /// `(https, http, admin)` the ready line must name.
    pub(super) addrs: (SocketAddr, SocketAddr, SocketAddr),
    /// Keep what earlier runs logged (a restart) instead of starting the logs afresh.
    pub(super) append_logs: bool,
}

pub(super) enum LaunchError {
    /// The process exited before it was ready because a listener address was taken.
    PortTaken(String),
    /// Anything else; the report holds the config and both logs.
    Failed(String),
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
    pub(super) fn run(&self) -> Result<(Child, std::thread::JoinHandle<()>), LaunchError> {
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
        // `sessiongate ready https=127.0.0.1:P1 http=127.0.0.1:P2 admin=127.0.0.1:P3`
        let mut fields = BTreeMap::new();
        for part in ready
            .trim_start_matches("sessiongate ready ")
            .split_whitespace()
        {
            if let Some((k, v)) = part.split_once('=') {
                fields.insert(k.to_string(), v.to_string());
            }
        }
        let parse = |k: &str| -> SocketAddr {
            fields
                .get(k)
                .unwrap_or_else(|| panic!("ready line lacks {k}=: {ready:?}"))
                .parse()
                .unwrap_or_else(|e| panic!("ready line {k}= is not an address ({e}): {ready:?}"))
        };
        let (https, http, admin) = self.addrs;
        assert_eq!(
            parse("https"),
            https,
            "ready line https= differs from server.listen"
        );
        assert_eq!(
            parse("http"),
            http,
            "ready line http= differs from server.redirect_listen"
        );
        assert_eq!(
            parse("admin"),
            admin,
            "ready line admin= differs from server.admin_listen"
        );
        Ok((child, stdout_thread))
    }
}

#[cfg(test)]
mod tests {
    use std::net::{SocketAddr, TcpListener};

    use super::super::config::{GatewayConfig, RenderParams};
    use super::super::pki::Pki;
    use super::super::users::users_toml;
    use super::super::util::{free_port, install_crypto_provider, random_secret};
    use super::{Launch, LaunchError};

    /// The free-port race is recognised: a gateway whose listen address is taken exits before it
    /// is ready, and the launch calls that a port race (on which `Gateway::start` takes new ports).
    #[test]
    fn launch_reports_a_taken_listen_port_as_a_port_race() {
        install_crypto_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::generate(dir.path());
        let users_file = dir.path().join("users.toml");
        std::fs::write(&users_file, users_toml()).unwrap();
        let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
        let https = taken.local_addr().unwrap();
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let params = RenderParams {
            https,
            http,
            admin,
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
            addrs: (https, http, admin),
            append_logs: false,
        };
        match launch.run() {
            Err(LaunchError::PortTaken(report)) => {
                assert!(report.contains("cannot listen"), "{report}")
            }
            Err(LaunchError::Failed(report)) => panic!("not recognised as a port race:\n{report}"),
            Ok((mut child, _)) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the gateway started although {https} was taken");
            }
        }
        drop(taken);
    }
}
