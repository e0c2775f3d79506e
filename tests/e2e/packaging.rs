//! What ships beside the binary, checked against the binary: the container image's
//! configuration and the README's `docker run`, `docker-compose.yml` and its HAProxy, the
//! systemd unit, and the assertion verifiers of `docs/production.md` run against a real
//! gateway's assertion. (`scripts/docker-check` builds and starts the image itself.)
//!
//! Failures covered:
//! - a `docker run` (README) or compose service that does not mount a file its configuration
//!   needs (the `keys/` directory once), or mounts one nobody makes; an image configuration
//!   that does not listen on every interface of the container, or fails `check-config`;
//! - a Dockerfile that floats its base images (`latest`, a bare major), runs as root, or has
//!   no health check;
//! - a compose file that does not parse, an unpinned image, an HAProxy configuration HAProxy
//!   refuses or a load balancer the gateways do not trust;
//! - a systemd unit `systemd-analyze verify` warns about, or that drops the sandboxing;
//! - documented assertion verifiers that do not verify the gateway's assertion, or accept a
//!   tampered one or one for another audience.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde_json::Value;

use crate::harness::*;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// An operator's checkout after the documented preparation steps: `docker/` from the
/// repository, and what `dev-cert`, `gen-key` and a users file make (`certs/`, `keys/`,
/// `users.toml`), made with this build's binary.
fn prepared_checkout(dir: &Path) -> PathBuf {
    let checkout = dir.join("checkout");
    copy_tree(&repo().join("docker"), &checkout.join("docker"));
    for args in [
        vec![
            "dev-cert",
            "--cert",
            "certs/localhost.pem",
            "--key",
            "certs/localhost-key.pem",
        ],
        vec!["gen-key", "--out", "keys/assertion.pem"],
    ] {
        std::fs::create_dir_all(checkout.join(args[2]).parent().unwrap()).unwrap();
        let out = sessiongate(&args, &checkout, &[]);
        assert!(out.ok, "{args:?}: {}", out.text());
    }
    std::fs::write(checkout.join("users.toml"), users_toml()).unwrap();
    checkout
}

fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }
}

/// The runtime stage's `COPY <file> /etc/sessiongate/...` lines: what the image carries in
/// its configuration directory before anything is mounted.
fn image_files() -> Vec<(String, String)> {
    let dockerfile = read("Dockerfile");
    let runtime = dockerfile.rsplit("\nFROM ").next().unwrap();
    runtime
        .lines()
        .filter_map(|l| l.strip_prefix("COPY "))
        .filter(|l| !l.starts_with("--"))
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() == 2 && w[1].starts_with("/etc/sessiongate/"))
                .then(|| (w[0].to_string(), w[1].to_string()))
        })
        .collect()
}

/// The container's `/etc/sessiongate`, laid out under `root` from the image's own files and
/// the `mounts` (`(host path, container path)`; host paths relative to `checkout`); checks
/// that every mounted host path exists. Returns the container's configuration file there.
fn container_tree(root: &Path, checkout: &Path, mounts: &[(String, String)]) -> PathBuf {
    for (src, dest) in image_files() {
        copy_tree(&repo().join(src), &root.join(dest.trim_start_matches('/')));
    }
    for (src, dest) in mounts {
        let host = checkout.join(src.trim_start_matches("./"));
        assert!(
            host.exists(),
            "{src} is mounted at {dest}, but the documented steps make no such file"
        );
        copy_tree(&host, &root.join(dest.trim_start_matches('/')));
    }
    root.join("etc/sessiongate/gateway.toml")
}

/// `check-config` of the container's configuration as the container would read it, with
/// `env` names set to fresh secrets; must pass.
fn container_config_checks(config: &Path, env_names: &[String], what: &str) -> toml::Value {
    let secrets: Vec<(String, String)> = env_names
        .iter()
        .map(|n| (n.clone(), random_secret()))
        .collect();
    let env: Vec<(&str, &str)> = secrets
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let args = ["check-config".as_ref(), "-c".as_ref(), config.as_os_str()];
    let out = sessiongate(&args, config.parent().unwrap(), &env);
    assert!(
        out.ok,
        "{what}: check-config of the container's configuration fails:\n{}",
        out.text()
    );
    let text = std::fs::read_to_string(config).unwrap();
    let cfg: toml::Value = toml::from_str(&text).unwrap();
    for key in ["listen", "redirect_listen"] {
        let addr = cfg["server"][key].as_str().unwrap_or("");
        assert!(
            addr.starts_with("0.0.0.0:"),
            "{what}: server.{key} = {addr:?}: a container must listen on every interface"
        );
    }
    cfg
}

/// `docker run …` in the README's Docker section: its `-v SRC:DST[:ro]` and `-e NAME`.
fn readme_docker_run() -> (Vec<(String, String)>, Vec<String>) {
    let readme = read("README.md");
    let section = readme
        .split("\n## Docker\n")
        .nth(1)
        .expect("README has a Docker section");
    let joined = section.replace("\\\n", " ");
    let run = joined
        .lines()
        .find(|l| l.trim_start().starts_with("docker run -p"))
        .expect("the Docker section has a `docker run -p …` command");
    let words: Vec<String> = run
        .split_whitespace()
        .map(|w| w.trim_matches('"').replace("$PWD/", "./"))
        .collect();
    let (mut mounts, mut env) = (Vec::new(), Vec::new());
    for pair in words.windows(2) {
        match pair[0].as_str() {
            "-v" => {
                let mut parts = pair[1].split(':');
                let (src, dest) = (parts.next().unwrap(), parts.next().unwrap());
                mounts.push((src.to_string(), dest.to_string()));
            }
            "-e" => env.push(pair[1].clone()),
            _ => {}
        }
    }
    (mounts, env)
}

#[test]
fn the_readme_docker_run_mounts_everything_the_image_configuration_needs() {
    let (mounts, env) = readme_docker_run();
    assert!(
        mounts.iter().any(|(_, d)| d == "/etc/sessiongate/keys"),
        "the keys/ directory is mounted: {mounts:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let checkout = prepared_checkout(dir.path());
    let config = container_tree(&dir.path().join("image"), &checkout, &mounts);
    container_config_checks(&config, &env, "README docker run");
}

#[test]
fn the_dockerfile_pins_its_bases_runs_as_non_root_and_checks_its_health() {
    let dockerfile = read("Dockerfile");
    let froms: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("FROM "))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(froms.len(), 2, "a build and a runtime stage: {froms:?}");
    for image in &froms {
        let tag = image.split_once(':').map(|(_, t)| t).unwrap_or("");
        let version = tag.split('-').next().unwrap_or("");
        assert!(
            version.split('.').count() >= 2 && version.split('.').all(|p| p.parse::<u32>().is_ok()),
            "{image}: a base image pinned to an exact release (rust:1.95.0-…, debian:12.15-slim)"
        );
    }
    let runtime = dockerfile.rsplit("\nFROM ").next().unwrap();
    let user = runtime
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the runtime stage sets USER");
    assert!(
        !user.starts_with("root") && !user.starts_with('0'),
        "USER {user}"
    );
    assert!(
        runtime.contains("HEALTHCHECK") && runtime.contains("\"healthcheck\"]"),
        "a HEALTHCHECK running `sessiongate healthcheck`"
    );
    assert!(
        runtime.contains("ENV SESSIONGATE_CONFIG=/etc/sessiongate/gateway.toml"),
        "run and healthcheck read the same file"
    );
    let ignore = read(".dockerignore");
    for must in ["target", ".git", "**/node_modules"] {
        assert!(
            ignore.lines().any(|l| l.trim() == must),
            ".dockerignore keeps out {must}"
        );
    }
}

/// `docker-compose.yml` as JSON (python3's yaml reads it).
fn compose() -> Value {
    let out = Command::new(python_with("yaml", "python3-yaml"))
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))",
        ])
        .stdin(std::fs::File::open(repo().join("docker-compose.yml")).unwrap())
        .stderr(Stdio::piped())
        .output()
        .expect("python3 (scripts/test installs it)");
    assert!(
        out.status.success(),
        "docker-compose.yml does not parse (or python3-yaml is missing: apt-get install \
         python3-yaml):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_compose_file_parses_and_each_instance_gets_what_its_configuration_needs() {
    let doc = compose();
    let services = doc["services"].as_object().expect("services");
    for name in ["redis", "app", "gateway-a", "gateway-b", "lb"] {
        assert!(services.contains_key(name), "service {name}");
    }
    for (name, s) in services {
        if s.get("build").is_some() {
            continue; // built from this repository's Dockerfile
        }
        let image = s["image"].as_str().unwrap_or("");
        let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
        assert!(
            !tag.is_empty() && tag != "latest" && tag.chars().any(|c| c.is_ascii_digit()),
            "service {name}: image {image:?} is not pinned"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let checkout = prepared_checkout(dir.path());
    let mut lb_address = None;
    if let Some(nets) = services["lb"]["networks"].as_object() {
        lb_address = nets
            .values()
            .find_map(|n| n["ipv4_address"].as_str().map(String::from));
    }
    let lb_address = lb_address.expect("the load balancer has a fixed address");
    for name in ["gateway-a", "gateway-b"] {
        let s = &services[name];
        let mounts: Vec<(String, String)> = s["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                let v = v.as_str().unwrap();
                let mut p = v.split(':');
                (p.next().unwrap().to_string(), p.next().unwrap().to_string())
            })
            .collect();
        let env: Vec<String> = s["environment"]
            .as_object()
            .expect("environment")
            .keys()
            .cloned()
            .collect();
        let root = dir.path().join(name);
        let config = container_tree(&root, &checkout, &mounts);
        let cfg = container_config_checks(&config, &env, name);
        let trusted: Vec<&str> = cfg["server"]["trusted_proxies"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert!(
            trusted.contains(&lb_address.as_str()),
            "{name}: the load balancer {lb_address} is not in trusted_proxies {trusted:?}"
        );
        assert_eq!(cfg["store"]["kind"].as_str(), Some("redis"), "{name}");
    }
    // The load balancer's configuration is mounted from the repository and HAProxy takes it.
    let lb_cfg = services["lb"]["volumes"][0].as_str().unwrap();
    let host = lb_cfg.split(':').next().unwrap().trim_start_matches("./");
    let out = Command::new("haproxy")
        .args(["-c", "-f"])
        .arg(repo().join(host))
        .output()
        .expect("haproxy (scripts/test installs it)");
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "haproxy -c {host}:\n{text}");
    for line in text
        .lines()
        .filter(|l| l.contains("[WARNING]") || l.contains("[ALERT]"))
    {
        assert!(
            line.contains("could not resolve address"),
            "haproxy -c {host}: {line}\n(only the compose service names may be unknown here)"
        );
    }
}

#[test]
fn the_systemd_unit_verifies_and_keeps_its_sandboxing() {
    let unit = read("contrib/sessiongate.service");
    let tool = "systemd-analyze";
    assert!(
        Command::new(tool).arg("--version").output().is_ok(),
        "{tool} is missing: apt-get install systemd (scripts/test installs it)"
    );
    // The unit runs /usr/local/bin/sessiongate; verify resolves the command, so the copy
    // verified names this build's binary there instead.
    assert!(unit.contains("ExecStart=/usr/local/bin/sessiongate run -c "));
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("sessiongate.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/sessiongate", bin())).unwrap();
    let out = Command::new(tool)
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.trim().is_empty(),
        "systemd-analyze verify contrib/sessiongate.service:\n{text}"
    );
    let out = Command::new(tool)
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&copy)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let score: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for sessiongate.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    assert!(
        score <= 2.0,
        "systemd-analyze security rates the unit {score} (docs/production.md says 1.7):\n{text}"
    );
}

/// A python3 (the one on PATH, else Debian's) that imports `modules`.
fn python_with(modules: &str, packages: &str) -> String {
    for py in ["python3", "/usr/bin/python3"] {
        let ok = Command::new(py)
            .args(["-c", &format!("import {modules}")])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return py.to_string();
        }
    }
    panic!("no python3 imports {modules}: apt-get install {packages} (scripts/test installs them)");
}

/// Run a verifier `cmd` with `token` on standard input.
fn verifier(
    cmd: &[&str],
    token: &str,
    args: &[&str],
    env: &BTreeMap<&str, String>,
) -> (bool, String) {
    use std::io::Write as _;
    let mut child = Command::new(cmd[0])
        .args(&cmd[1..])
        .args(args)
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(token.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test]
async fn the_documented_verifiers_accept_the_gateways_assertion_and_refuse_forgeries() {
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("assertion.pem");
    let out = sessiongate(
        &["gen-key", "--out", key.to_str().unwrap()],
        keys.path(),
        &[],
    );
    assert!(out.ok, "{}", out.text());
    let gw = Gateway::start(GatewayConfig::new().set(
        "keys",
        "assertion_key_file",
        &format!("\"{}\"", key.display()),
    ))
    .await;
    let s = gw.login_alice().await;
    let echo = Echo::from(gw.get_with("/private/verify-me", &s.cookie_header()).await).await;
    let token = echo
        .header("x-auth-assertion")
        .expect("an assertion")
        .to_string();
    // The JWKS as an app fetches it: over HTTPS from the gateway, trusting the test CA.
    let jwks = format!("https://localhost:{}/.auth/jwks.json", gw.https.port());
    let ca = gw.dir.path().join("ca.pem").display().to_string();
    let env = BTreeMap::from([("SSL_CERT_FILE", ca.clone()), ("NODE_EXTRA_CA_CERTS", ca)]);
    let python = python_with("jwt, cryptography", "python3-jwt python3-cryptography");
    let py_script = repo().join("docs/examples/verify_assertion.py");
    let node_script = repo().join("docs/examples/verify-assertion.mjs");
    let verifiers: [(&str, Vec<&str>); 2] = [
        ("python", vec![python.as_str(), py_script.to_str().unwrap()]),
        ("node", vec!["node", node_script.to_str().unwrap()]),
    ];
    let issuer = gw.origin();
    // One character of the signature changed, away from its end (the last character of a
    // 64-byte signature carries padding bits a decoder may drop).
    let at = token.len() - 10;
    let flipped = if &token[at..=at] == "A" { "B" } else { "A" };
    let tampered = format!("{}{flipped}{}", &token[..at], &token[at + 1..]);
    // Another payload under the real signature: the subject changed to bob.
    let parts: Vec<&str> = token.split('.').collect();
    let claims = jwt_claims(&token);
    let mut forged_claims = claims.clone();
    forged_claims["sub"] = "bob".into();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(forged_claims.to_string()),
        parts[2]
    );
    for (name, cmd) in &verifiers {
        let (ok, out) = verifier(cmd, &token, &[&jwks, "upstream", &issuer], &env);
        assert!(ok, "{name}: the gateway's assertion is refused: {out}");
        let got: Value = serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("{name}: not the claims as JSON ({e}): {out}"));
        assert_eq!(got["sub"], "alice", "{name}: {got}");
        assert_eq!(got["roles"], claims["roles"], "{name}: {got}");
        assert_eq!(got["sid"], echo.header("x-auth-session").unwrap(), "{name}");

        for (what, bad, audience) in [
            ("a tampered signature", tampered.as_str(), "upstream"),
            (
                "another subject under the signature",
                forged.as_str(),
                "upstream",
            ),
            ("another audience", token.as_str(), "another-app"),
        ] {
            let (ok, out) = verifier(cmd, bad, &[&jwks, audience, &issuer], &env);
            assert!(!ok, "{name} accepts {what}: {out}");
            assert!(out.contains("refused"), "{name}, {what}: {out}");
        }
        let (ok, out) = verifier(
            cmd,
            &token,
            &[&jwks, "upstream", "https://evil.example"],
            &env,
        );
        assert!(!ok, "{name} accepts another issuer: {out}");
    }
}
