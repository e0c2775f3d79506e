//! A configuration that cannot lie: the mistakes a new operator makes are refused by
//! `check-config` and `run` — through the real binary, run from a directory that is not the
//! configuration's — each in a line naming its key, all of them at once; what is allowed but
//! must not go unnoticed is a loud warning that does not fail.
//!
//! Attacks and failures covered:
//! - a word-valued key with a typo (`log.level = "inof"` read as "log only target inof",
//!   silencing every log line; a misspelt `csrf.mode`, `anomaly.*`, ...) passing `check-config`;
//! - problems told one at a time (fix, rerun, fix...), a syntax error blamed on `gateway.toml`
//!   whatever the file is called;
//! - relative paths read from the current directory: a configuration that works from one
//!   directory serves another directory's certificate, users or keys, or none, when a service
//!   manager starts it in `/` (and `run --dev` writing its files where it happens to be run);
//! - a certificate that is not valid for `server.public_origin`'s host (every browser refuses);
//! - two listeners on one port; an admin listener others can reach without an admin token;
//! - `csrf.mode = "off"` (and a `trusted_proxies` of every address) accepted without a word;
//! - `trusted_proxies` refusing a bare address and giving no example of a good entry;
//! - HSTS preload asked for on terms the preload list refuses;
//! - a certificate/key mismatch told in Rust's debug names, a missing certificate or assertion
//!   key with no word on how to make one;
//! - a shipped example configuration that does not pass `check-config` (`gateway.toml`,
//!   `gateway.*.example.toml` with the client secrets and CA files its OpenID providers name).

use std::ffi::OsStr;
use std::path::Path;

use crate::harness::*;

/// Every `[table] key` whose value is one of a few words (`src/config/raw.rs`), with values it
/// must refuse: a typo, another letter case, empty, and a word of another key.
const WORD_KEYS: &[(&str, &str, &[&str])] = &[
    ("session", "same_site", &["laxx", "Lax", "", "none"]),
    ("keys", "algorithm", &["HS512", "hs256", "", "none"]),
    ("store", "kind", &["memroy", "Memory", "", "redis-cluster"]),
    (
        "login",
        "mode",
        &["user_file", "Upstream", "", "users-file", "OIDC", "openid"],
    ),
    ("url_tokens", "action", &["redirct", "Redirect", "", "drop"]),
    ("csrf", "mode", &["orign", "Origin", "", "none"]),
    ("anomaly", "ip_change", &["revok", "LOG", "", "block"]),
    (
        "anomaly",
        "user_agent_change",
        &["ignor", "Revoke", "", "warn"],
    ),
    ("log", "format", &["jsno", "JSON", "", "logfmt"]),
    (
        "log",
        "level",
        &[
            "inof",
            "warning",
            "",
            "verbose",
            "sessiongate",
            "info,hyper=loud",
        ],
    ),
];

#[test]
fn a_word_key_with_a_word_it_does_not_take_is_refused_naming_it() {
    for (table, key, bads) in WORD_KEYS {
        for bad in *bads {
            let site = Site::new().set(table, &format!("{key} = {bad:?}"));
            site.refused_naming(
                &format!("{table}.{key}"),
                &format!("{table}.{key} = {bad:?}"),
            );
        }
    }
    // Each key's words are taken (and a level in any case, as RUST_LOG takes it).
    for (table, line) in [
        ("session", "same_site = \"strict\""),
        ("anomaly", "ip_change = \"reauth\""),
        ("log", "level = \"WARN\""),
        ("log", "level = \"info,sessiongate=debug\""),
        ("log", "format = \"json\""),
        ("csrf", "mode = \"token\""),
    ] {
        Site::new().set(table, line).accepted(line);
    }
}

#[test]
fn run_refuses_a_log_level_that_would_silence_every_log_line() {
    let site = Site::new().set("log", "level = \"inof\"");
    match site.run(&[]) {
        Ok(running) => {
            let stderr = running.stop();
            panic!("started with log.level = \"inof\"; stderr:\n{stderr}");
        }
        Err(out) => {
            assert_eq!(out.code, Some(2), "{}", out.text());
            assert!(
                out.stderr.contains("config error: log.level: "),
                "{}",
                out.text()
            );
        }
    }
}

#[test]
fn every_problem_is_reported_at_once_each_with_its_key() {
    let site = Site::new()
        .set("server", "listen = 8443")
        .set("tls", "cert = \"tls/missing.pem\"")
        .set("session", "same_site = \"laxx\"")
        .set("session", "idle_timout = \"30m\"")
        .set("session", "access_ttl = \"soon\"")
        .set("csrf", "allowed_origins = [\"http://app.example.test\"]")
        .set("log", "level = \"inof\"");
    let out = site.check(&[]);
    assert!(!out.ok);
    let text = out.text();
    for key in [
        "server.listen",
        "session.same_site",
        "session.idle_timout",
        "session.access_ttl",
        "csrf.allowed_origins[0]",
        "log.level",
        "tls.cert",
    ] {
        assert!(
            text.contains(&format!("config error: {key}: ")),
            "{key} is not reported; output:\n{text}"
        );
    }
    // A schema problem says where it is.
    assert!(
        text.lines()
            .any(|l| l.starts_with("config error: session.same_site: ") && l.contains("(line ")),
        "{text}"
    );
    // A refused key holds its default in the meantime, and nothing is said about the default.
    assert!(!text.contains("127.0.0.1:8443"), "{text}");
}

#[test]
fn a_syntax_error_names_the_file_it_is_in_and_its_line() {
    let site = Site::new();
    let path = site.etc.join("edge-gateway.conf");
    std::fs::write(
        &path,
        "[server]\nlisten = \"127.0.0.1:0\"\n[tls\ncert = \"x\"\n",
    )
    .unwrap();
    let args = [
        OsStr::new("check-config"),
        OsStr::new("--config"),
        path.as_os_str(),
    ];
    let out = sessiongate(&args, &site.elsewhere, &[]);
    assert!(!out.ok);
    let line = format!("config error: {}: ", path.display());
    assert!(
        out.stderr
            .lines()
            .any(|l| l.starts_with(&line) && l.contains("(line 3)")),
        "want a line starting {line:?} with (line 3); output:\n{}",
        out.text()
    );
    assert!(!out.text().contains("gateway.toml"), "{}", out.text());
}

/// Write a new Ed25519 PKCS#8 key to `path`.
fn write_ed25519(path: &Path) {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, kp.serialize_pem()).unwrap();
}

#[test]
fn every_relative_path_is_read_from_the_configuration_directory() {
    let site = Site::new()
        .run_elsewhere()
        .unset("keys", "access_secret_env")
        .unset("keys", "refresh_secret_env")
        .set("keys", "access_secret_file = \"secrets/access\"")
        .set("keys", "refresh_secret_file = \"secrets/refresh\"")
        .set("keys", "assertion_key_file = \"keys/assertion.pem\"")
        .set("keys", "assertion_previous_key_file = \"keys/old.pem\"");
    std::fs::create_dir_all(site.etc.join("secrets")).unwrap();
    std::fs::write(site.etc.join("secrets/access"), random_secret()).unwrap();
    std::fs::write(site.etc.join("secrets/refresh"), random_secret()).unwrap();
    write_ed25519(&site.etc.join("keys/assertion.pem"));
    write_ed25519(&site.etc.join("keys/old.pem"));
    let text = site.accepted("every path relative to etc/, run from elsewhere/");
    assert!(text.contains(": ok"), "{text}");

    let running = site.run(&[]).unwrap_or_else(|out| {
        panic!("run from elsewhere/ refused:\n{}", out.text());
    });
    running.stop();
    assert!(
        site.etc.join("audit.log").exists(),
        "audit.file is read from etc/"
    );
    let strays: Vec<_> = std::fs::read_dir(&site.elsewhere).unwrap().collect();
    assert!(
        strays.is_empty(),
        "files written in the working directory: {strays:?}"
    );

    // The same names in the working directory are not what is read.
    let site = Site::new()
        .run_elsewhere()
        .set("tls", "cert = \"cwd-only.pem\"");
    std::fs::copy(&site.pki.cert_path, site.elsewhere.join("cwd-only.pem")).unwrap();
    site.refused_naming(
        "tls.cert",
        "a certificate present in the working directory only",
    );
}

#[test]
fn run_dev_creates_its_files_beside_the_configuration() {
    let site = Site::new()
        .run_elsewhere()
        .set("tls", "cert = \"certs/localhost.pem\"")
        .set("tls", "key = \"certs/localhost-key.pem\"")
        .set("keys", "assertion_key_file = \"keys/assertion.pem\"")
        .set("login", "users_file = \"nobody.toml\"");
    let out = site.check(&["--dev"]);
    assert!(out.ok, "check-config --dev: {}", out.text());
    let running = site.run(&["--dev"]).unwrap_or_else(|out| {
        panic!("run --dev refused:\n{}", out.text());
    });
    running.stop();
    for made in [
        "certs/localhost.pem",
        "certs/localhost-key.pem",
        "keys/assertion.pem",
    ] {
        assert!(
            site.etc.join(made).exists(),
            "{made} is not beside the configuration"
        );
    }
    let strays: Vec<_> = std::fs::read_dir(&site.elsewhere).unwrap().collect();
    assert!(
        strays.is_empty(),
        "run --dev wrote in the working directory: {strays:?}"
    );
    // What it made is what it then reads: a second start is a plain check.
    assert!(site.check(&["--dev"]).ok);
}

#[test]
fn a_certificate_not_valid_for_the_public_origin_is_refused() {
    // The test certificate names localhost, 127.0.0.1 and *.example.test.
    for origin in [
        "https://sso.example.com",
        "https://example.test",
        "https://a.b.example.test",
        "https://127.0.0.2",
        "https://[::1]:8443",
        "https://localhost.example.com",
    ] {
        let site = Site::new().set("server", &format!("public_origin = {origin:?}"));
        let text = site.refused_naming("tls.cert", origin);
        assert!(text.contains("server.public_origin"), "{text}");
    }
    for origin in [
        "https://localhost:8443",
        "https://LOCALHOST",
        "https://sso.example.test",
        "https://127.0.0.1:8443",
    ] {
        Site::new()
            .set("server", &format!("public_origin = {origin:?}"))
            .accepted(origin);
    }
    // `run` refuses it too; `--dev` (a laptop, a localhost certificate) only warns.
    let site = Site::new().set("server", "public_origin = \"https://sso.example.com\"");
    let refused = site
        .run(&[])
        .err()
        .expect("run started with a certificate for another host");
    assert!(
        refused.stderr.contains("config error: tls.cert: "),
        "{}",
        refused.text()
    );
    let out = site.check(&["--dev"]);
    assert!(out.ok, "{}", out.text());
    assert!(
        out.stderr.contains("config warning: tls.cert: "),
        "{}",
        out.text()
    );
}

#[test]
fn two_listeners_on_one_port_are_refused_before_anything_binds() {
    let p = free_port();
    for (lines, key) in [
        (
            [
                format!("listen = \"127.0.0.1:{p}\""),
                format!("redirect_listen = \"127.0.0.1:{p}\""),
            ],
            "server.redirect_listen",
        ),
        (
            [
                format!("listen = \"0.0.0.0:{p}\""),
                format!("admin_listen = \"127.0.0.1:{p}\""),
            ],
            "server.admin_listen",
        ),
        (
            [
                format!("redirect_listen = \"[::]:{p}\""),
                format!("admin_listen = \"127.0.0.1:{p}\""),
            ],
            "server.admin_listen",
        ),
    ] {
        let site = Site::new()
            .set("server", &lines[0])
            .set("server", &lines[1]);
        let text = site.refused_naming(key, &lines.join(", "));
        assert!(text.contains("port of its own"), "{text}");
    }
    let site = Site::new()
        .set("server", &format!("listen = \"127.0.0.1:{p}\""))
        .set("server", &format!("redirect_listen = \"127.0.0.2:{p}\""));
    site.accepted("one port on two loopback addresses");
    // `run` says so as a configuration error, not as a failed bind.
    let site = Site::new()
        .set("server", &format!("listen = \"127.0.0.1:{p}\""))
        .set("server", &format!("admin_listen = \"127.0.0.1:{p}\""));
    let out = site
        .run(&[])
        .err()
        .expect("run started with two listeners on one port");
    assert!(
        out.stderr.contains("config error: server.admin_listen: "),
        "{}",
        out.text()
    );
    assert!(!out.stderr.contains("cannot listen"), "{}", out.text());
}

#[test]
fn an_admin_listener_others_can_reach_needs_the_admin_token() {
    for addr in ["0.0.0.0:0", "[::]:0", "192.0.2.10:9090"] {
        Site::new()
            .set("server", &format!("admin_listen = {addr:?}"))
            .refused_naming("server.admin_listen", addr);
    }
    for addr in ["127.0.0.1:0", "[::1]:0", "127.0.0.53:0", ""] {
        Site::new()
            .set("server", &format!("admin_listen = {addr:?}"))
            .accepted(addr);
    }
    Site::new()
        .set("server", "admin_listen = \"0.0.0.0:0\"")
        .set("admin", "token_env = \"SG_TEST_ADMIN_TOKEN\"")
        .with_env("SG_TEST_ADMIN_TOKEN", &random_secret())
        .accepted("a reachable admin listener with a token");
}

#[test]
fn csrf_off_is_accepted_with_a_warning_at_check_and_at_every_start() {
    let site = Site::new()
        .set("csrf", "mode = \"off\"")
        .set("log", "level = \"error\"");
    let out = site.check(&[]);
    assert!(out.ok, "{}", out.text());
    assert!(
        out.stderr.contains("config warning: csrf.mode: "),
        "{}",
        out.text()
    );
    let running = site.run(&[]).unwrap_or_else(|out| panic!("{}", out.text()));
    let stderr = running.stop();
    assert!(
        stderr.contains("config warning: csrf.mode: "),
        "no warning at start (even at log.level = error); stderr:\n{stderr}"
    );
    // The default says nothing.
    let out = Site::new().check(&[]);
    assert!(out.ok && !out.text().contains("warning"), "{}", out.text());
}

#[test]
fn passkeys_with_an_ip_address_for_public_origin_are_warned_about() {
    // WebAuthn binds a passkey to a domain name, never to an IP address: the pages' passkey
    // buttons could only fail there, while passwords and codes still work.
    let out = Site::new()
        .set("server", "public_origin = \"https://127.0.0.1:8443\"")
        .check(&[]);
    assert!(out.ok, "{}", out.text());
    assert!(
        out.stderr
            .contains("config warning: server.public_origin: passkeys need a domain name"),
        "{}",
        out.text()
    );
}

#[test]
fn trusted_proxies_take_bare_addresses_and_a_bad_entry_gets_an_example() {
    Site::new()
        .set(
            "server",
            "trusted_proxies = [\"10.0.0.7\", \"2001:db8::1\", \"10.1.0.0/16\", \"fd00::/8\"]",
        )
        .accepted("bare addresses and blocks");
    for bad in [
        "10.0.0.300",
        "10.0.0.0/33",
        "proxy.internal",
        "10.0.0.1-10.0.0.9",
        "",
    ] {
        let text = Site::new()
            .set(
                "server",
                &format!("trusted_proxies = [\"10.0.0.7\", {bad:?}]"),
            )
            .refused_naming("server.trusted_proxies[1]", bad);
        assert!(
            text.contains("\"10.0.0.0/8\""),
            "no example for {bad:?}: {text}"
        );
    }
    let out = Site::new()
        .set("server", "trusted_proxies = [\"0.0.0.0/0\"]")
        .check(&[]);
    assert!(out.ok, "{}", out.text());
    assert!(
        out.stderr
            .contains("config warning: server.trusted_proxies[0]: "),
        "{}",
        out.text()
    );
}

#[test]
fn hsts_preload_is_refused_on_terms_the_preload_list_refuses() {
    for (lines, key) in [
        (
            &["hsts_preload = true", "hsts_max_age = \"180d\""][..],
            "server.hsts_max_age",
        ),
        (
            &["hsts_preload = true", "hsts_include_subdomains = false"][..],
            "server.hsts_include_subdomains",
        ),
    ] {
        let site = lines.iter().fold(Site::new(), |s, l| s.set("server", l));
        let text = site.refused_naming(key, &lines.join(", "));
        assert!(text.contains("server.hsts_preload = true"), "{text}");
    }
    for lines in [
        &["hsts_preload = true", "hsts_max_age = \"730d\""][..],
        &["hsts_preload = true"][..],
        &["hsts_include_subdomains = false", "hsts_max_age = \"1d\""][..],
    ] {
        let site = lines.iter().fold(Site::new(), |s, l| s.set("server", l));
        site.accepted(&lines.join(", "));
    }
    let out = Site::new()
        .set("server", "hsts_max_age = \"0s\"")
        .check(&[]);
    assert!(out.ok, "{}", out.text());
    assert!(
        out.stderr.contains("config warning: server.hsts_max_age: "),
        "{}",
        out.text()
    );
}

/// No Rust names in what the operator reads.
fn assert_no_rust_names(text: &str) {
    for name in [
        "KeyMismatch",
        "InconsistentKeys",
        "Os {",
        "kind:",
        "[45, 45",
        "Raw",
    ] {
        assert!(!text.contains(name), "{name:?} in:\n{text}");
    }
}

#[test]
fn a_key_of_another_certificate_is_named_in_words() {
    // Absolute paths: this is about the pair, wherever the files are read from.
    let site = Site::new();
    std::fs::create_dir_all(site.etc.join("other")).unwrap();
    let other = Pki::generate(&site.etc.join("other"));
    let cert = site.pki.cert_path.display().to_string();
    let key = other.key_path.display().to_string();
    let site = site
        .set("tls", &format!("cert = {cert:?}"))
        .set("tls", &format!("key = {key:?}"));
    let text = site.refused_naming("tls.key", "the key of another certificate");
    assert!(text.contains("tls.cert"), "{text}");
    assert_no_rust_names(&text);
    let out = site
        .run(&[])
        .err()
        .expect("run started with a mismatched key");
    assert!(
        out.stderr.contains("config error: tls.key: "),
        "{}",
        out.text()
    );
    assert_no_rust_names(&out.text());

    // The neighbours: a key file with no key, a cut certificate, a file that is no PEM.
    for (table_key, file, key) in [
        ("key", "cert.pem", "tls.key"),
        ("cert", "cut.pem", "tls.cert"),
        ("cert", "text.pem", "tls.cert"),
    ] {
        let site = Site::new();
        let tls = site.etc.join("tls");
        let pem = std::fs::read_to_string(tls.join("cert.pem")).unwrap();
        std::fs::write(tls.join("cut.pem"), &pem[..pem.len() / 3]).unwrap();
        std::fs::write(tls.join("text.pem"), "not a certificate\n").unwrap();
        let abs = |f: &str| tls.join(f).display().to_string();
        let line = format!("{table_key} = {:?}", abs(file));
        let other = if table_key == "key" { "cert" } else { "key" };
        let other_file = if other == "key" {
            "key.pem"
        } else {
            "cert.pem"
        };
        let site = site
            .set("tls", &line)
            .set("tls", &format!("{other} = {:?}", abs(other_file)));
        let text = site.refused_naming(key, &line);
        assert_no_rust_names(&text);
        assert!(!text.contains("No such file"), "{text}");
    }
}

#[test]
fn a_missing_certificate_or_assertion_key_says_how_to_make_one() {
    let text = Site::new()
        .set("tls", "cert = \"certs/none.pem\"")
        .refused_naming("tls.cert", "a missing certificate");
    assert!(text.contains("sessiongate dev-cert"), "{text}");
    let text = Site::new()
        .set("keys", "assertion_key_file = \"keys/none.pem\"")
        .refused_naming("keys.assertion_key_file", "a missing assertion key");
    assert!(text.contains("sessiongate gen-key"), "{text}");
    // A file that is not an Ed25519 key (the TLS key is ECDSA) says so, and how to make one.
    let text = Site::new()
        .set("keys", "assertion_key_file = \"tls/key.pem\"")
        .refused_naming(
            "keys.assertion_key_file",
            "an ECDSA key as the assertion key",
        );
    assert!(
        text.contains("Ed25519") && text.contains("gen-key"),
        "{text}"
    );
}

/// What the `[[oidc.provider]]` tables of `text` need from the deployment: a random client
/// secret in each `client_secret_env` (returned, to pass to the commands) and in each
/// `client_secret_file`, and a CA certificate in each `ca_file`, under `etc`.
fn provide_oidc_files(text: &str, etc: &Path) -> Vec<(String, String)> {
    let doc: toml::Table = text.parse().unwrap();
    let providers = doc
        .get("oidc")
        .and_then(|o| o.get("provider"))
        .and_then(|p| p.as_array())
        .cloned()
        .unwrap_or_default();
    let mut env = Vec::new();
    for p in providers {
        let value = |k: &str| p.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let place = |rel: &str| {
            let path = etc.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            path
        };
        if let Some(name) = value("client_secret_env") {
            env.push((name, random_secret()));
        }
        if let Some(file) = value("client_secret_file") {
            std::fs::write(place(&file), format!("{}\n", random_secret())).unwrap();
        }
        if let Some(file) = value("ca_file") {
            let dir = place(&file).parent().unwrap().to_path_buf();
            let ca = TestCa::new(&dir, "shipped-idp");
            std::fs::rename(&ca.path, place(&file)).unwrap();
        }
    }
    env
}

#[test]
fn every_shipped_example_configuration_passes_check_config() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut shipped = vec![repo.join("gateway.toml")];
    // `gateway.<what>.example.toml` beside it, and `examples/*.toml`.
    for (dir, beside) in [(repo.to_path_buf(), true), (repo.join("examples"), false)] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        shipped.extend(
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    let name = p.file_name().unwrap_or_default().to_string_lossy();
                    match beside {
                        true => name.starts_with("gateway.") && name.ends_with(".example.toml"),
                        false => name.ends_with(".toml"),
                    }
                }),
        );
    }
    assert!(
        shipped
            .iter()
            .any(|p| p.ends_with("gateway.oidc.example.toml")),
        "{shipped:?}"
    );
    for example in shipped {
        let name = example.display().to_string();
        let text = std::fs::read_to_string(&example).unwrap();
        // As `run --dev` starts it: in a directory of its own, run from another.
        let site = Site::new();
        let copy = site.etc.join("shipped.toml");
        std::fs::write(&copy, &text).unwrap();
        // Client secrets are never made up, not even in --dev: the provider must know them.
        let oidc_env = provide_oidc_files(&text, &site.etc);
        let oidc_env: Vec<(&str, &str)> = oidc_env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let dev = [
            OsStr::new("check-config"),
            OsStr::new("--dev"),
            OsStr::new("--config"),
            copy.as_os_str(),
        ];
        let out = sessiongate(&dev, &site.elsewhere, &oidc_env);
        assert!(out.ok, "{name} --dev: {}", out.text());
        assert!(
            !out.text().contains("warning"),
            "{name} --dev: {}",
            out.text()
        );

        // In production, with the files it names in place and an upstream.
        let key = site.etc.join("keys/assertion.pem");
        write_ed25519(&key);
        std::fs::create_dir_all(site.etc.join("certs")).unwrap();
        std::fs::copy(&site.pki.cert_path, site.etc.join("certs/localhost.pem")).unwrap();
        std::fs::copy(&site.pki.key_path, site.etc.join("certs/localhost-key.pem")).unwrap();
        let with_upstream = if text.contains("\n[[upstream]]") {
            text.clone()
        } else {
            format!("{text}\n[[upstream]]\nname = \"app\"\nurl = \"http://127.0.0.1:3000\"\n")
        };
        std::fs::write(&copy, with_upstream).unwrap();
        let mut env = vec![
            ("SESSIONGATE_ACCESS_SECRET", site.access_secret.as_str()),
            ("SESSIONGATE_REFRESH_SECRET", site.refresh_secret.as_str()),
        ];
        env.extend(oidc_env.iter().copied());
        let prod = [
            OsStr::new("check-config"),
            OsStr::new("--config"),
            copy.as_os_str(),
        ];
        let out = sessiongate(&prod, &site.elsewhere, &env);
        assert!(out.ok, "{name}: {}", out.text());
        if text.contains("\n[[oidc.provider]]") {
            // The redirect URI to register, on the example's public origin.
            assert!(
                out.stdout
                    .lines()
                    .any(|l| l.starts_with("config info: oidc.provider[0]: ")
                        && l.ends_with(" https://localhost:8443/.auth/oidc/callback")),
                "{name}: {}",
                out.text()
            );
        }
    }
}
