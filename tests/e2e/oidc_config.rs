//! The configuration of OpenID Connect login (`login.mode = "oidc"`, `[oidc]`,
//! `[[oidc.provider]]`) through the real binary: `check-config` and `run` refuse each mistake
//! under its key, all at once, and a reload (SIGHUP) refuses a broken provider while the
//! running configuration stays.
//!
//! Attacks and failures covered:
//! - a provider reached over plain HTTP (discovery documents and signing keys an on-path
//!   attacker could replace), or an issuer the discovery document can never equal (a query, a
//!   fragment, a user, a space, a backslash, an upper-case scheme);
//! - an `allowed_groups` filter that silently admits everybody because no `roles_claim` says
//!   where the groups are; an `allowed_domains` entry that can never match (`@example.com`,
//!   `*.example.com`);
//! - a request without `openid` (plain OAuth 2.0: no ID token to verify), a scope listed twice;
//! - a client secret that is missing, empty, given twice, or equal to a token secret (the
//!   provider could then sign the gateway's tokens) — and a secret echoed in a message;
//! - a CA file that is missing or holds no certificate, found only at the first login;
//! - providers written for another `login.mode` (believed active, never used), `oidc` mode
//!   without a provider (nobody can sign in);
//! - relative paths of a provider read from the working directory instead of the
//!   configuration's;
//! - a re-check interval of zero or a few seconds (a provider round trip on every refresh);
//! - a reload that half-applies a broken provider, or that needs a restart for an `[oidc]` key;
//! - no word on which redirect URI to register at the provider.

use crate::harness::*;

/// The client secret in the commands' environment (never to be printed).
const SECRET_ENV: &str = "SG_TEST_OIDC_SECRET";

/// A provider with the keys it needs and `more` lines, as an `[[oidc.provider]]` table.
fn provider(name: &str, more: &str) -> String {
    format!(
        "[[oidc.provider]]\nname = {name:?}\nissuer = \"https://idp.example.test/realms/main\"\n\
         client_id = \"gateway\"\nclient_secret_env = \"{SECRET_ENV}\"\n{more}\n"
    )
}

/// A site in `oidc` mode with the users file still written, and the client secret set.
fn oidc_site(secret: &str) -> Site {
    Site::new()
        .set("login", "mode = \"oidc\"")
        .with_env(SECRET_ENV, secret)
}

/// `check-config` must refuse `site` naming `key`, and print no client secret.
fn refused(site: &Site, key: &str, what: &str, secret: &str) -> String {
    let text = site.refused_naming(key, what);
    assert!(
        !text.contains(secret),
        "{what}: the client secret is printed:\n{text}"
    );
    text
}

#[test]
fn check_config_prints_the_uris_to_register_for_each_provider_as_information() {
    let secret = random_secret();
    let site = oidc_site(&secret)
        .set("server", "public_origin = \"https://sso.example.test\"")
        .append(&provider(
            "corp",
            "display_name = \"Corp SSO\"\nuser_claim = \"email\"",
        ))
        .append(
            &provider("partner", "user_claim = \"email\"")
                .replace("client_id = \"gateway\"", "client_id = \"p\""),
        );
    let out = site.check(&[]);
    assert!(out.ok, "{}", out.text());
    let info: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("config info: "))
        .collect();
    let origin = "https://sso.example.test";
    let mut want = Vec::new();
    for (i, name) in ["corp", "partner"].iter().enumerate() {
        want.push(format!(
            "config info: oidc.provider[{i}]: {name:?} redirect URI (register it): \
             {origin}/.auth/oidc/callback"
        ));
        want.push(format!(
            "config info: oidc.provider[{i}]: {name:?} back-channel logout URI: \
             {origin}/.auth/oidc/backchannel-logout"
        ));
        want.push(format!(
            "config info: oidc.provider[{i}]: {name:?} post-logout redirect URI: \
             {origin}/.auth/login?signed_out=1"
        ));
    }
    assert_eq!(info, want, "{}", out.text());
    // Information, not a warning; the ok line stays last; no secret anywhere.
    assert!(!out.text().contains("warning"), "{}", out.text());
    assert!(out.stdout.trim_end().ends_with(": ok"), "{}", out.stdout);
    assert!(!out.text().contains(&secret), "{}", out.text());
    // Without providers there is nothing to register, and nothing is said.
    let out = Site::new().check(&[]);
    assert!(
        out.ok && !out.text().contains("config info"),
        "{}",
        out.text()
    );
}

#[test]
fn oidc_mode_needs_a_provider_and_providers_need_oidc_mode() {
    let secret = random_secret();
    let text = refused(
        &oidc_site(&secret),
        "oidc.provider",
        "oidc mode without a provider",
        &secret,
    );
    assert!(text.contains("[[oidc.provider]]"), "{text}");
    // An [oidc] table alone is no provider.
    refused(
        &oidc_site(&secret).set("oidc", "recheck_interval = \"5m\""),
        "oidc.provider",
        "[oidc] without a provider",
        &secret,
    );
    let grant = random_secret();
    for mode in ["users_file", "upstream"] {
        let site = || {
            let site = Site::new().with_env(SECRET_ENV, &secret);
            if mode == "users_file" {
                return site;
            }
            site.set("login", "mode = \"upstream\"")
                .set("login", "upstream_path = \"/login\"")
                .set("login", "grant_secret_env = \"SG_TEST_GRANT\"")
                .with_env("SG_TEST_GRANT", &grant)
        };
        site().accepted(mode);
        let text = refused(
            &site().append(&provider("corp", "")),
            "login.mode",
            &format!("a provider in {mode} mode"),
            &secret,
        );
        assert!(text.contains("login.mode = \"oidc\""), "{text}");
        refused(
            &site().set("oidc", "recheck_interval = \"5m\""),
            "login.mode",
            &format!("oidc.recheck_interval in {mode} mode"),
            &secret,
        );
    }
    // `run` refuses the same, naming the key.
    let out = oidc_site(&secret)
        .run(&[])
        .err()
        .expect("run started in oidc mode without a provider");
    assert_eq!(out.code, Some(2), "{}", out.text());
    assert!(
        out.stderr.contains("config error: oidc.provider: "),
        "{}",
        out.text()
    );
}

/// `(what to change in a good provider, the key that must be named)`: each a mistake alone.
fn provider_mistakes() -> Vec<(String, &'static str)> {
    let issuer = |v: &str| {
        provider("corp", "").replace(
            "issuer = \"https://idp.example.test/realms/main\"",
            &format!("issuer = {v:?}"),
        )
    };
    let without_secret =
        provider("corp", "").replace(&format!("client_secret_env = \"{SECRET_ENV}\"\n"), "");
    let mut m: Vec<(String, &'static str)> = Vec::new();
    for bad in ["Corp", "corp sso", "-corp", "", "corp.sso", &"c".repeat(33)] {
        m.push((provider(bad, ""), "oidc.provider[0].name"));
    }
    for bad in [
        "http://idp.example.test",
        "HTTPS://idp.example.test",
        "https://idp.example.test/realms/main?x=1",
        "https://idp.example.test/?",
        "https://idp.example.test/realms/main#top",
        "https://admin:pw@idp.example.test",
        "https://idp.example.test/realms/my realm",
        " https://idp.example.test",
        "https://idp.example.test\\realms",
        "https:///realms/main",
        "idp.example.test",
        "",
    ] {
        m.push((issuer(bad), "oidc.provider[0].issuer"));
    }
    m.extend([
        (
            provider("corp", "").replace("client_id = \"gateway\"", "client_id = \"\""),
            "oidc.provider[0].client_id",
        ),
        (without_secret.clone(), "oidc.provider[0].client_secret_env"),
        (
            provider("corp", "client_secret_file = \"secrets/corp\""),
            "oidc.provider[0].client_secret_file",
        ),
        (
            format!("{without_secret}client_secret_env = \"SG_TEST_OIDC_UNSET\"\n"),
            "oidc.provider[0].client_secret_env",
        ),
        (
            format!("{without_secret}client_secret_env = \"SG_TEST_OIDC_EMPTY\"\n"),
            "oidc.provider[0].client_secret_env",
        ),
        (
            format!("{without_secret}client_secret_file = \"secrets/none\"\n"),
            "oidc.provider[0].client_secret_file",
        ),
        (
            format!("{without_secret}client_secret_file = \"secrets/empty\"\n"),
            "oidc.provider[0].client_secret_file",
        ),
        (
            format!("{without_secret}client_secret_env = \"SG_TEST_ACCESS_SECRET\"\n"),
            "oidc.provider[0].client_secret_env",
        ),
        (
            provider("corp", "scopes = [\"email\", \"profile\"]"),
            "oidc.provider[0].scopes",
        ),
        (provider("corp", "scopes = []"), "oidc.provider[0].scopes"),
        (
            provider("corp", "scopes = [\"openid\", \"email\", \"email\"]"),
            "oidc.provider[0].scopes[2]",
        ),
        (
            provider("corp", "scopes = [\"openid\", \"email profile\"]"),
            "oidc.provider[0].scopes[1]",
        ),
        (
            provider("corp", "allowed_groups = [\"staff\"]"),
            "oidc.provider[0].allowed_groups",
        ),
        (
            provider("corp", "allowed_domains = [\"@example.test\"]"),
            "oidc.provider[0].allowed_domains[0]",
        ),
        (
            provider(
                "corp",
                "allowed_domains = [\"example.test\", \"*.example.test\"]",
            ),
            "oidc.provider[0].allowed_domains[1]",
        ),
        (
            provider("corp", "allowed_domains = [\"\"]"),
            "oidc.provider[0].allowed_domains[0]",
        ),
        (
            provider("corp", "user_claim = \"\""),
            "oidc.provider[0].user_claim",
        ),
        (
            provider("corp", "ca_file = \"tls/none.pem\""),
            "oidc.provider[0].ca_file",
        ),
        (
            provider("corp", "ca_file = \"tls/key.pem\""),
            "oidc.provider[0].ca_file",
        ),
        (
            provider("corp", "ca_file = \"users.toml\""),
            "oidc.provider[0].ca_file",
        ),
        (
            provider("corp", "client_secrets_env = \"X\""),
            "oidc.provider[0].client_secrets_env",
        ),
    ]);
    m
}

#[test]
fn each_mistake_in_a_provider_is_refused_naming_its_key() {
    let secret = random_secret();
    // A site in oidc mode with a secret file, an empty one and an empty variable, and `table`.
    let base = |table: &str| {
        let site = oidc_site(&secret).with_env("SG_TEST_OIDC_EMPTY", "");
        std::fs::create_dir_all(site.etc.join("secrets")).unwrap();
        std::fs::write(site.etc.join("secrets/corp"), format!("{secret}\n")).unwrap();
        std::fs::write(site.etc.join("secrets/empty"), "\n").unwrap();
        site.append(table)
    };
    for (table, key) in provider_mistakes() {
        let site = base(&table);
        let text = refused(&site, key, &table, &secret);
        let errors = text
            .lines()
            .filter(|l| l.starts_with("config error: "))
            .count();
        assert_eq!(errors, 1, "{table}: one mistake, one line:\n{text}");
    }
    // The neighbours that are right.
    for more in [
        "display_name = \"Société Générale\"",
        "scopes = [\"openid\"]",
        "scopes = [\"openid\", \"email\", \"offline_access\"]",
        "roles_claim = \"groups\"\nallowed_groups = [\"staff\", \"ops\"]",
        "allowed_domains = [\"Example.TEST\", \"example.org\"]",
        "user_claim = \"email\"",
        "ca_file = \"tls/ca.pem\"",
    ] {
        base(&provider("corp", more)).accepted(more);
    }
    for issuer in [
        "https://idp.example.test",
        "https://idp.example.test/",
        "https://127.0.0.1:9443/oidc",
    ] {
        let table = provider("corp", "").replace("https://idp.example.test/realms/main", issuer);
        base(&table).accepted(issuer);
    }
    // A client secret from a file (its newline is not part of it) instead of the environment.
    let from_file = provider("corp", "client_secret_file = \"secrets/corp\"")
        .replace(&format!("client_secret_env = \"{SECRET_ENV}\"\n"), "");
    base(&from_file).accepted("a secret file");
}

#[test]
fn every_problem_of_the_oidc_section_is_reported_at_once() {
    let secret = random_secret();
    let site = oidc_site(&secret)
        .set("oidc", "recheck_interval = \"0s\"")
        .append(&provider("Corp", "scopes = [\"email\"]"))
        .append(
            &provider("second", "allowed_groups = [\"staff\"]")
                .replace("https://", "http://")
                .replace("client_id = \"gateway\"", "client_id = \"second\""),
        );
    let out = site.check(&[]);
    assert!(!out.ok);
    let text = out.text();
    for key in [
        "oidc.recheck_interval",
        "oidc.provider[0].name",
        "oidc.provider[0].scopes",
        "oidc.provider[1].issuer",
        "oidc.provider[1].allowed_groups",
    ] {
        assert!(
            text.contains(&format!("config error: {key}: ")),
            "{key} is not reported:\n{text}"
        );
    }
}

#[test]
fn the_recheck_interval_is_at_least_10_seconds() {
    let secret = random_secret();
    for bad in ["\"0s\"", "\"9s\"", "\"9999ms\"", "30", "\"soon\""] {
        let site = oidc_site(&secret)
            .set("oidc", &format!("recheck_interval = {bad}"))
            .append(&provider("corp", ""));
        refused(&site, "oidc.recheck_interval", bad, &secret);
    }
    for ok in ["\"10s\"", "\"5m\"", "\"1h\""] {
        oidc_site(&secret)
            .set("oidc", &format!("recheck_interval = {ok}"))
            .append(&provider("corp", ""))
            .accepted(ok);
    }
}

#[test]
fn a_users_file_in_oidc_mode_is_read_only_when_written() {
    let secret = random_secret();
    // Not written: none is read (even though users.toml is there, and were it missing).
    let site = oidc_site(&secret)
        .unset("login", "users_file")
        .append(&provider("corp", ""));
    std::fs::remove_file(site.etc.join("users.toml")).unwrap();
    site.accepted("oidc mode without a users file");
    // Written: it must be there and parse, as in users_file mode.
    let site = oidc_site(&secret)
        .set("login", "users_file = \"staff.toml\"")
        .append(&provider("corp", ""));
    refused(&site, "login.users_file", "a missing users file", &secret);
    std::fs::write(site.etc.join("staff.toml"), "[[user]]\nname = \"a\"\n").unwrap();
    refused(
        &site,
        "login.users_file",
        "a users file without hashes",
        &secret,
    );
    std::fs::copy(site.etc.join("users.toml"), site.etc.join("staff.toml")).unwrap();
    site.accepted("oidc and a users file");
    // The upstream-login keys stay refused.
    refused(
        &site.set("login", "upstream_path = \"/login\""),
        "login.upstream_path",
        "upstream_path in oidc mode",
        &secret,
    );
}

#[test]
fn a_providers_files_are_read_from_the_configuration_directory() {
    let secret = random_secret();
    let table = provider(
        "corp",
        "client_secret_file = \"secrets/corp\"\nca_file = \"tls/ca.pem\"",
    )
    .replace(&format!("client_secret_env = \"{SECRET_ENV}\"\n"), "");
    let site = oidc_site(&secret).run_elsewhere().append(&table);
    std::fs::create_dir_all(site.etc.join("secrets")).unwrap();
    std::fs::write(site.etc.join("secrets/corp"), format!("{secret}\n")).unwrap();
    site.accepted("relative client_secret_file and ca_file, run from elsewhere/");
    let running = site
        .run(&[])
        .unwrap_or_else(|out| panic!("run from elsewhere/ refused:\n{}", out.text()));
    let stderr = running.stop();
    assert!(!stderr.contains(&secret), "{stderr}");

    // The same names in the working directory only are not what is read.
    let site = oidc_site(&secret)
        .run_elsewhere()
        .append(&table.replace("tls/ca.pem", "cwd-ca.pem"));
    std::fs::create_dir_all(site.etc.join("secrets")).unwrap();
    std::fs::write(site.etc.join("secrets/corp"), &secret).unwrap();
    std::fs::copy(
        site.etc.join("tls/ca.pem"),
        site.elsewhere.join("cwd-ca.pem"),
    )
    .unwrap();
    refused(
        &site,
        "oidc.provider[0].ca_file",
        "a CA in the working directory only",
        &secret,
    );
}

#[test]
fn run_refuses_a_broken_provider_and_starts_with_good_ones() {
    let secret = random_secret();
    let broken = oidc_site(&secret).append(
        &provider("corp", "").replace("https://idp.example.test", "http://idp.example.test"),
    );
    let out = broken
        .run(&[])
        .err()
        .expect("run started with an http:// issuer");
    assert_eq!(out.code, Some(2), "{}", out.text());
    assert!(
        out.stderr
            .contains("config error: oidc.provider[0].issuer: "),
        "{}",
        out.text()
    );
    let good = oidc_site(&secret)
        .set("oidc", "recheck_interval = \"5m\"")
        .append(&provider(
            "corp",
            "ca_file = \"tls/ca.pem\"\nroles_claim = \"groups\"",
        ))
        .append(&provider("partner", "").replace("client_id = \"gateway\"", "client_id = \"p\""));
    let running = good
        .run(&[])
        .unwrap_or_else(|out| panic!("run refused two good providers:\n{}", out.text()));
    let stderr = running.stop();
    assert!(
        !stderr.contains(&secret),
        "the client secret is logged:\n{stderr}"
    );
}

#[tokio::test]
async fn a_reload_takes_oidc_keys_and_refuses_a_broken_provider_naming_it() {
    let secret = random_secret();
    let mut gw = Gateway::start(GatewayConfig::new().env(SECRET_ENV, &secret)).await;
    let alice = gw.login_alice().await;
    let oidc = |extra: &str| {
        GatewayConfig::new()
            .env(SECRET_ENV, &secret)
            .set("login", "mode", "\"oidc\"")
            .extra(extra)
    };
    // Into oidc mode (the users file still offered), then another [oidc] key: no restart.
    let good = format!(
        "[oidc]\nrecheck_interval = \"5m\"\n{}",
        provider("corp", "")
    );
    gw.reload_with(oidc(&good), "ok", 1).await;
    gw.reload_with(oidc(&good.replace("\"5m\"", "\"10m\"")), "ok", 2)
        .await;
    let broken = [
        (
            provider("corp", "").replace("https://idp", "http://idp"),
            "oidc.provider[0].issuer",
        ),
        (
            format!(
                "{}{}",
                provider("corp", ""),
                provider("second", "")
                    .replace(SECRET_ENV, "SG_TEST_OIDC_UNSET")
                    .replace("client_id = \"gateway\"", "client_id = \"second\"")
            ),
            "oidc.provider[1].client_secret_env",
        ),
        (
            format!(
                "[oidc]\nrecheck_interval = \"1s\"\n{}",
                provider("corp", "")
            ),
            "oidc.recheck_interval",
        ),
        (String::new(), "oidc.provider"),
    ];
    for (i, (extra, key)) in broken.into_iter().enumerate() {
        gw.reload_with(oidc(&extra), "failed", i as u64 + 1).await;
        let err = gw.stderr_text();
        assert!(
            err.lines()
                .any(|l| l.contains("reload refused") && l.contains(key)),
            "the refusal names `{key}`:\n{err}"
        );
        assert!(
            !err.contains(&secret),
            "the client secret is logged:\n{err}"
        );
        assert_eq!(gw.readyz().await, Some(200), "{key}: still ready");
        assert_eq!(
            gw.access_status(&alice.access).await,
            200,
            "{key}: alice's session is untouched"
        );
    }
    // The running configuration is the last good one: the same reload goes through.
    gw.reload_with(oidc(&good), "ok", 3).await;
    assert_eq!(gw.access_status(&alice.access).await, 200);
}
