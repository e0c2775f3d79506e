//! `sessiongate check-config`: refuses unsafe configurations with messages naming the key.
//!
//! Attacks covered (misconfigurations that would silently weaken the deployment):
//! - weak secrets: too short, a known placeholder, access and refresh secrets equal, missing;
//! - a route to an upstream that does not exist;
//! - a plain-HTTP public origin (cookies with `Secure` would not work, tokens over cleartext);
//! - durations under the 1 s minimum;
//! - a typo in a key (`deny_unknown_fields`), which would otherwise leave a default in place;
//! - a missing certificate;
//! - an `identity.strip_headers` entry that is no header name, or that would remove a header
//!   every request needs (`Host`, `Content-*`), and a `[paths]` typo.

use std::process::{Command, Stdio};

use crate::harness::*;

fn assert_refused_naming(ok: bool, output: &str, key: &str, what: &str) {
    assert!(!ok, "{what}: check-config should fail; output:\n{output}");
    assert!(
        output.contains(key),
        "{what}: the error should name `{key}`; output:\n{output}"
    );
}

#[tokio::test]
async fn check_config_accepts_a_good_config() {
    let w = write_config(&GatewayConfig::new(), |s| s);
    let (ok, out) = check_config(&w.path, &random_secret(), &random_secret());
    assert!(ok, "a good config is accepted; output:\n{out}");
}

#[tokio::test]
async fn check_config_refuses_a_short_access_secret() {
    let w = write_config(&GatewayConfig::new(), |s| s);
    let (ok, out) = check_config(&w.path, "0123456789", &random_secret());
    assert_refused_naming(ok, &out, "keys.access_secret_env", "10-byte access secret");
    assert!(!out.contains("0123456789"), "the secret is echoed: {out}");
}

#[tokio::test]
async fn check_config_refuses_equal_secrets() {
    let w = write_config(&GatewayConfig::new(), |s| s);
    let secret = random_secret();
    let (ok, out) = check_config(&w.path, &secret, &secret);
    assert_refused_naming(ok, &out, "keys.refresh_secret_env", "equal secrets");
    assert!(!out.contains(&secret), "the secret is echoed: {out}");
}

#[tokio::test]
async fn check_config_refuses_a_placeholder_secret() {
    let w = write_config(&GatewayConfig::new(), |s| s);
    let (ok, out) = check_config(
        &w.path,
        "changeme-changeme-changeme-changeme-00",
        &random_secret(),
    );
    assert_refused_naming(
        ok,
        &out,
        "keys.access_secret_env",
        "placeholder access secret",
    );
    let (ok, out) = check_config(
        &w.path,
        &random_secret(),
        "changeme-changeme-changeme-changeme-00",
    );
    assert_refused_naming(
        ok,
        &out,
        "keys.refresh_secret_env",
        "placeholder refresh secret",
    );
}

#[tokio::test]
async fn check_config_refuses_a_missing_secret_variable() {
    let w = write_config(&GatewayConfig::new(), |s| s);
    let out = Command::new(bin())
        .arg("check-config")
        .arg("--config")
        .arg(&w.path)
        .env_remove("SG_TEST_ACCESS_SECRET")
        .env("SG_TEST_REFRESH_SECRET", random_secret())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_refused_naming(
        out.status.success(),
        &text,
        "keys.access_secret_env",
        "unset access secret variable",
    );
}

#[tokio::test]
async fn check_config_names_a_route_to_an_unknown_upstream() {
    let cfg = GatewayConfig::new().routes(vec![
        Route::public("/x/").to("nope"),
        Route::public("/public/"),
    ]);
    let w = write_config(&cfg, |s| s);
    let (ok, out) = check_config(&w.path, &random_secret(), &random_secret());
    assert_refused_naming(
        ok,
        &out,
        "route[0].upstream",
        "route to an unknown upstream",
    );
}

#[tokio::test]
async fn check_config_refuses_a_plain_http_public_origin() {
    let w = write_config(
        &GatewayConfig::new().public_origin("http://localhost:8443"),
        |s| s,
    );
    let (ok, out) = check_config(&w.path, &random_secret(), &random_secret());
    assert_refused_naming(ok, &out, "server.public_origin", "http:// public origin");
}

#[tokio::test]
async fn check_config_refuses_an_unknown_key() {
    let w = write_config(&GatewayConfig::new(), |s| {
        s.replace("idle_timeout =", "idle_timout =")
    });
    let (ok, out) = check_config(&w.path, &random_secret(), &random_secret());
    assert_refused_naming(ok, &out, "idle_timout", "typo in [session]");
}

#[tokio::test]
async fn check_config_refuses_durations_under_one_second() {
    let w = write_config(&GatewayConfig::new().access_ttl("500ms"), |s| s);
    let (ok, out) = check_config(&w.path, &random_secret(), &random_secret());
    assert_refused_naming(ok, &out, "session.access_ttl", "access_ttl = 500ms");
    let w = write_config(&GatewayConfig::new().refresh_grace("0s"), |s| s);
    let (ok, out) = check_config(&w.path, &random_secret(), &random_secret());
    assert_refused_naming(ok, &out, "session.refresh_grace", "refresh_grace = 0s");
}

#[tokio::test]
async fn check_config_refuses_a_missing_certificate() {
    let w = write_config(&GatewayConfig::new(), |s| {
        let mut out = String::new();
        for line in s.lines() {
            if line.starts_with("cert = ") {
                out.push_str("cert = \"/nonexistent/sessiongate-e2e/cert.pem\"\n");
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    });
    let (ok, out) = check_config(&w.path, &random_secret(), &random_secret());
    assert_refused_naming(ok, &out, "tls.cert", "missing certificate file");
}

#[tokio::test]
async fn check_config_reports_every_problem_at_once() {
    let w = write_config(
        &GatewayConfig::new().public_origin("http://localhost:8443"),
        |s| s,
    );
    let (ok, out) = check_config(&w.path, "short", &random_secret());
    assert!(!ok);
    for key in ["keys.access_secret_env", "server.public_origin"] {
        assert!(out.contains(key), "missing {key} in:\n{out}");
    }
}

#[tokio::test]
async fn check_config_names_bad_strip_headers_and_accepts_good_ones() {
    let good = GatewayConfig::new().extra(
        "[identity]\nstrip_headers = [\"X-Employee-Id\", \"X-Tenant-*\"]\n\n[paths]\nallow_double_encoding = true\n",
    );
    let w = write_config(&good, |s| s);
    let (ok, out) = check_config(&w.path, &random_secret(), &random_secret());
    assert!(ok, "good [identity] and [paths]; output:\n{out}");

    for (entry, key) in [
        ("\"X Employee\"", "identity.strip_headers[0]"),
        ("\"*\"", "identity.strip_headers[0]"),
        ("\"Content-*\"", "identity.strip_headers[0]"),
        ("\"Host\"", "identity.strip_headers[0]"),
    ] {
        let cfg = GatewayConfig::new().extra(&format!("[identity]\nstrip_headers = [{entry}]\n"));
        let w = write_config(&cfg, |s| s);
        let (ok, out) = check_config(&w.path, &random_secret(), &random_secret());
        assert_refused_naming(ok, &out, key, entry);
    }
    let cfg = GatewayConfig::new().extra("[paths]\nallow_double_encodings = true\n");
    let w = write_config(&cfg, |s| s);
    let (ok, out) = check_config(&w.path, &random_secret(), &random_secret());
    assert_refused_naming(ok, &out, "allow_double_encodings", "a [paths] typo");
}
