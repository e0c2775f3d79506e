//! `sessiongate healthcheck` (the container image's `HEALTHCHECK`) and `sessiongate --version`.
//!
//! Failures covered:
//! - a health check that needs the secrets' environment variables (a container's health check
//!   runs without them) or that validates more than it reads;
//! - a health check that passes while the gateway is not ready (its Redis store down), or
//!   when nothing listens, or hangs on a listener that never answers;
//! - an admin listener on every address (`0.0.0.0`) that the check cannot reach;
//! - a failure that says nothing an operator can act on (not naming the key, not one line);
//! - a `--version` that does not say which revision was built.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::*;

/// A copy of `gw`'s configuration whose `server.admin_listen` is `admin` (the harness's file
/// says port 0; the check needs the port the gateway bound).
fn config_with_admin(gw: &Gateway, admin: &str) -> PathBuf {
    let text = std::fs::read_to_string(&gw.config_path).unwrap();
    let mut replaced = 0;
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("admin_listen") {
                replaced += 1;
                format!("admin_listen = \"{admin}\"")
            } else {
                l.to_string()
            }
        })
        .collect();
    assert_eq!(replaced, 1, "one admin_listen line in:\n{text}");
    let path = gw.dir.path().join(format!(
        "healthcheck-{}.toml",
        admin.replace([':', '[', ']'], "_")
    ));
    std::fs::write(&path, out.join("\n")).unwrap();
    path
}

/// `sessiongate healthcheck -c <config> [extra]` with no secret in the environment.
fn healthcheck(config: &Path, extra: &[&str]) -> CliOutput {
    let mut args: Vec<&OsStr> = vec!["healthcheck".as_ref(), "-c".as_ref(), config.as_ref()];
    args.extend(extra.iter().map(OsStr::new));
    sessiongate(&args, config.parent().unwrap(), &[])
}

/// Exit 1 with exactly one line on standard error, containing each of `says`.
fn unhealthy(out: &CliOutput, says: &[&str], what: &str) {
    assert_eq!(out.code, Some(1), "{what}: {}", out.text());
    assert_eq!(out.stdout, "", "{what}");
    assert_eq!(out.stderr.lines().count(), 1, "{what}: {}", out.stderr);
    assert!(
        out.stderr.starts_with("unhealthy: "),
        "{what}: {}",
        out.stderr
    );
    for s in says {
        assert!(out.stderr.contains(s), "{what}: no {s:?} in {}", out.stderr);
    }
}

#[tokio::test]
async fn healthcheck_passes_against_a_ready_gateway_without_the_secrets() {
    let gw = Gateway::start_default().await;
    gw.wait_readyz(200, Duration::from_secs(10)).await;
    let config = config_with_admin(&gw, &gw.admin.to_string());
    let out = healthcheck(&config, &[]);
    assert_eq!(out.code, Some(0), "{}", out.text());
    assert_eq!(
        out.stdout,
        format!("healthy: http://{}/readyz: 200 ready\n", gw.admin)
    );
    assert_eq!(out.stderr, "");

    // SESSIONGATE_CONFIG names the file, as in the container image (no option at all).
    let named = config.display().to_string();
    let out = sessiongate(
        &["healthcheck"],
        gw.dir.path(),
        &[("SESSIONGATE_CONFIG", named.as_str())],
    );
    assert_eq!(out.code, Some(0), "SESSIONGATE_CONFIG: {}", out.text());

    // An admin listener on every address is asked on loopback.
    let every = config_with_admin(&gw, &format!("0.0.0.0:{}", gw.admin.port()));
    let out = healthcheck(&every, &[]);
    assert_eq!(out.code, Some(0), "0.0.0.0: {}", out.text());
    assert!(
        out.stdout
            .contains(&format!("http://127.0.0.1:{}/readyz", gw.admin.port())),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn healthcheck_fails_while_the_redis_store_is_down_and_passes_once_it_is_back() {
    let mut redis = RedisServer::start().await;
    let gw =
        Gateway::start(GatewayConfig::new().store(StoreSpec::Redis { url: redis.url() })).await;
    gw.wait_readyz(200, Duration::from_secs(10)).await;
    let config = config_with_admin(&gw, &gw.admin.to_string());
    let out = healthcheck(&config, &[]);
    assert_eq!(out.code, Some(0), "Redis up: {}", out.text());

    redis.kill();
    gw.wait_readyz(503, Duration::from_secs(5)).await;
    let out = healthcheck(&config, &[]);
    unhealthy(
        &out,
        &["answered 503", "session store unreachable"],
        "Redis down",
    );

    redis.restart().await;
    gw.wait_readyz(200, Duration::from_secs(10)).await;
    let out = healthcheck(&config, &[]);
    assert_eq!(out.code, Some(0), "Redis back: {}", out.text());
}

#[test]
fn healthcheck_fails_when_nothing_listens_or_nothing_answers_in_time() {
    let site = Site::new();
    // Nothing listens: refused at once.
    let port = free_port();
    let site = site.set("server", &format!("admin_listen = \"127.0.0.1:{port}\""));
    let out = healthcheck(&site.config_path(), &[]);
    unhealthy(
        &out,
        &[&format!("http://127.0.0.1:{port}/readyz"), "cannot connect"],
        "nothing listens",
    );

    // A listener that accepts and never answers: the timeout ends the wait.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let site = site.set("server", &format!("admin_listen = \"{addr}\""));
    let started = std::time::Instant::now();
    let out = healthcheck(&site.config_path(), &["--timeout", "500ms"]);
    unhealthy(&out, &["no answer within 500ms"], "silent listener");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    drop(silent);
}

#[test]
fn healthcheck_refuses_a_config_it_cannot_ask_naming_the_key() {
    let site = Site::new().set("server", "admin_listen = \"\"");
    let out = healthcheck(&site.config_path(), &[]);
    unhealthy(&out, &["server.admin_listen", "off"], "admin listener off");

    let site = site.set("server", "admin_listen = \"127.0.0.1:0\"");
    let out = healthcheck(&site.config_path(), &[]);
    unhealthy(&out, &["server.admin_listen", "port 0"], "port 0");

    let site = site.set("server", "admin_listen = 9090");
    let out = healthcheck(&site.config_path(), &[]);
    unhealthy(&out, &["config error: server.admin_listen"], "wrong type");

    let missing = site.etc.join("missing.toml");
    let out = healthcheck(&missing, &[]);
    unhealthy(&out, &["--config", "missing.toml"], "no such file");
}

#[test]
fn version_names_the_crate_version_and_the_git_revision() {
    let dir = tempfile::tempdir().unwrap();
    let out = sessiongate(&["--version"], dir.path(), &[]);
    assert!(out.ok, "{}", out.text());
    let line = out.stdout.trim_end();
    let want_prefix = format!("sessiongate {} (revision ", env!("CARGO_PKG_VERSION"));
    let revision = line
        .strip_prefix(&want_prefix)
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{line:?} is not `{want_prefix}REV)`"));
    // This test runs from the git checkout: the revision is HEAD's, not a fallback.
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    if head.status.success() {
        let head = String::from_utf8(head.stdout).unwrap();
        assert_eq!(revision, head.trim(), "--version: {line}");
    } else {
        // A source tree without git (a container build): the build's SESSIONGATE_REVISION,
        // else "unknown".
        let want = std::env::var("SESSIONGATE_REVISION").unwrap_or_else(|_| "unknown".into());
        assert_eq!(revision, want, "--version: {line}");
    }
}
