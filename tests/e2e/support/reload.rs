//! Reloading a running gateway: rewrite its configuration (same files, ports, secrets), send
//! SIGHUP, and wait until `/metrics` counts the reload.

use std::time::{Duration, Instant};

use super::config::{GatewayConfig, LOOPBACK_ANY_PORT, RenderParams};
use super::gateway::Gateway;
use super::metrics::{metric, metrics};

impl Gateway {
    /// Write `config` as the gateway's configuration file, with the same certificate, users
    /// file, upstream and audit file; the running process does not see it until a reload.
    pub fn rewrite_config(&mut self, config: GatewayConfig) {
        let params = RenderParams {
            https: LOOPBACK_ANY_PORT,
            http: LOOPBACK_ANY_PORT,
            admin: LOOPBACK_ANY_PORT,
            cert: self.pki.cert_path.clone(),
            key: self.pki.key_path.clone(),
            upstream_url: self.upstream.url(),
            users_file: self.dir.path().join("users.toml"),
            audit_file: self.audit_log.clone(),
        };
        std::fs::write(&self.config_path, config.render(&params)).unwrap();
        self.config = config;
    }

    /// The gateway process's id.
    pub fn pid(&self) -> i32 {
        let child = self.child.as_ref().expect("the gateway is running");
        i32::try_from(child.id()).unwrap()
    }

    /// Send SIGHUP to the gateway process.
    pub fn sighup(&self) {
        // SAFETY: kill(2) with a pid this test started and a valid signal number.
        let rc = unsafe { libc::kill(self.pid(), libc::SIGHUP) };
        assert_eq!(rc, 0, "kill -HUP {}", self.pid());
    }

    /// Wait until `sessiongate_reloads_total{outcome}` reaches `n`.
    pub async fn wait_reloads(&self, outcome: &str, n: u64) {
        let series = format!("sessiongate_reloads_total{{outcome=\"{outcome}\"}}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = metrics(self).await;
            let seen = metric(&text, "sessiongate_reloads_total", &[("outcome", outcome)]);
            if seen >= n as f64 {
                assert_eq!(seen, n as f64, "{series}: more reloads than sent");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{series} is {seen}, not {n}, 20 s after SIGHUP; stderr:\n{}",
                self.stderr_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Rewrite the configuration, SIGHUP, and wait for the `n`-th reload with `outcome`.
    pub async fn reload_with(&mut self, config: GatewayConfig, outcome: &str, n: u64) {
        self.rewrite_config(config);
        self.sighup();
        self.wait_reloads(outcome, n).await;
    }
}
