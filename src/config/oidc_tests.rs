//! Validation of `login.mode = "oidc"`, `[oidc]` and `[[oidc.provider]]`: every bad key named
//! (`oidc.provider[1].issuer`), all at once, the client secret read through the source and
//! never printed, the defaults filled in, the provider's CA file parsed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::*;

const A: &str = "Q3ZqkJ8v0mX2rB7tL9wE4yN6uH1sD5cF0aG8pK3iM2o";
const R: &str = "Zx9Lm2Nq4Rs6Tu8Vw0Yb1Cd3Ef5Gh7Jk9Pq2Sx4Vz6B";
/// The client secret in `CORP_SECRET` and `/s/corp`: must never appear in a message.
const CLIENT_SECRET: &str = "oidc-client-secret-7Hq2";

/// The token secrets, `CORP_SECRET`, `EMPTY_SECRET` (set, empty) and files held in memory.
struct Src(HashMap<PathBuf, Vec<u8>>);

impl Source for Src {
    fn env(&self, name: &str) -> Option<String> {
        match name {
            "SESSIONGATE_ACCESS_SECRET" => Some(A.into()),
            "SESSIONGATE_REFRESH_SECRET" => Some(R.into()),
            "CORP_SECRET" => Some(CLIENT_SECRET.into()),
            "EMPTY_SECRET" => Some(String::new()),
            "ACCESS_AGAIN" => Some(A.into()),
            _ => None,
        }
    }
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        self.0
            .get(path)
            .cloned()
            .ok_or_else(|| std::io::ErrorKind::NotFound.into())
    }
}

/// A CA (`/pki/ca.pem`), files that are not CA certificates, and secret files.
fn src() -> Src {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&key).unwrap();
    let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    let files: [(&str, Vec<u8>); 11] = [
        ("/s/refresh", format!("{R}\n").into_bytes()),
        ("/pki/ca.pem", ca.pem().into_bytes()),
        ("/pki/key.pem", key.serialize_pem().into_bytes()),
        ("/pki/text.pem", b"not a certificate\n".to_vec()),
        ("/pki/garbage.pem", garbage.into()),
        ("/s/corp", format!("{CLIENT_SECRET}\n").into_bytes()),
        ("/s/crlf", format!("{CLIENT_SECRET}\r\n").into_bytes()),
        (
            "/s/two-newlines",
            format!("{CLIENT_SECRET}\n\n").into_bytes(),
        ),
        ("/s/empty", Vec::new()),
        ("/s/newline", b"\n".to_vec()),
        ("/s/latin1", b"caf\xe9".to_vec()),
    ];
    Src(files
        .into_iter()
        .map(|(p, b)| (PathBuf::from(p), b))
        .collect())
}

const UPSTREAM: &str = "[[upstream]]\nname = \"app\"\nurl = \"http://127.0.0.1:3000\"\n";

/// A provider with the keys it needs, and `more` keys.
fn provider(name: &str, more: &str) -> String {
    format!(
        "[[oidc.provider]]\nname = {name:?}\nissuer = \"https://idp.example.com/realms/main\"\n\
         client_id = \"gateway\"\nclient_secret_env = \"CORP_SECRET\"\n{more}\n"
    )
}

/// `login.mode = "oidc"` with `rest` (the providers, `[oidc]`, more `[login]` keys).
fn oidc(rest: &str) -> String {
    format!("{UPSTREAM}[login]\nmode = \"oidc\"\n{rest}")
}

fn pairs(e: ConfigErrors) -> Vec<(String, String)> {
    e.0.into_iter().map(|e| (e.key, e.message)).collect()
}

fn check(text: &str) -> Result<Config, Vec<(String, String)>> {
    let raw = parse(text).map_err(pairs)?;
    validate(raw, LoadOptions::default(), &src()).map_err(pairs)
}

fn problems(text: &str) -> Vec<(String, String)> {
    let p = check(text).err().unwrap_or_default();
    for (key, message) in &p {
        assert!(
            !message.contains(CLIENT_SECRET) && !key.contains(CLIENT_SECRET),
            "the client secret is printed: {key}: {message}"
        );
    }
    p
}

fn keys(text: &str) -> Vec<String> {
    problems(text).into_iter().map(|(k, _)| k).collect()
}

/// The one problem of `text`, which must be under `key`; its message.
fn one(text: &str, key: &str) -> String {
    let p = problems(text);
    assert_eq!(p.len(), 1, "{key}: {p:?}\nin:\n{text}");
    assert_eq!(p[0].0, key, "{p:?}\nin:\n{text}");
    p[0].1.clone()
}

fn good(text: &str) -> Config {
    check(text).unwrap_or_else(|p| panic!("{p:?}\nin:\n{text}"))
}

#[test]
fn a_provider_with_only_the_keys_it_needs_takes_the_defaults() {
    let c = good(&oidc(&provider("corp", "")));
    assert_eq!(c.login.mode, LoginMode::Oidc);
    assert_eq!(c.login.users_file, None, "no users file unless written");
    assert_eq!(c.oidc.recheck_interval, None);
    let [p] = c.oidc.providers.as_slice() else {
        panic!("{:?}", c.oidc.providers);
    };
    assert_eq!(p.name, "corp");
    assert_eq!(p.display_name, "corp");
    assert_eq!(p.issuer, "https://idp.example.com/realms/main");
    assert_eq!(p.client_id, "gateway");
    assert_eq!(p.client_secret.expose(), CLIENT_SECRET.as_bytes());
    assert_eq!(p.scopes, ["openid", "email", "profile"]);
    assert_eq!(p.user_claim, "sub");
    assert_eq!(p.roles_claim, None);
    assert!(p.allowed_domains.is_empty() && p.allowed_groups.is_empty());
    assert_eq!(p.ca_file, None);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    // The secret is redacted wherever the configuration is printed.
    assert!(!format!("{c:?}").contains(CLIENT_SECRET));
}

#[test]
fn every_key_of_a_provider_is_read() {
    let text = oidc(&format!(
        "users_file = \"/etc/sg/users.toml\"\n[oidc]\nrecheck_interval = \"5m\"\n{}{}",
        provider(
            "corp",
            "display_name = \"Corp SSO\"\nscopes = [\"openid\", \"email\", \"groups\"]\n\
             user_claim = \"preferred_username\"\nroles_claim = \"groups\"\n\
             allowed_domains = [\"Example.COM\", \"example.com\", \"sub.example.org\"]\n\
             allowed_groups = [\"staff\", \"ops\", \"staff\"]\nca_file = \"/pki/ca.pem\"",
        ),
        "[[oidc.provider]]\nname = \"google\"\nissuer = \"https://accounts.google.com\"\n\
         client_id = \"123.apps.googleusercontent.com\"\nclient_secret_file = \"/s/corp\"\n",
    ));
    let c = good(&text);
    assert_eq!(
        c.login.users_file.as_deref(),
        Some(Path::new("/etc/sg/users.toml")),
        "oidc mode with a users file offers both"
    );
    assert_eq!(
        c.oidc.recheck_interval,
        Some(std::time::Duration::from_secs(300))
    );
    let [corp, google] = c.oidc.providers.as_slice() else {
        panic!("{:?}", c.oidc.providers);
    };
    assert_eq!(corp.display_name, "Corp SSO");
    assert_eq!(corp.scopes, ["openid", "email", "groups"]);
    assert_eq!(corp.user_claim, "preferred_username");
    assert_eq!(corp.roles_claim.as_deref(), Some("groups"));
    assert_eq!(corp.allowed_domains, ["example.com", "sub.example.org"]);
    assert_eq!(corp.allowed_groups, ["staff", "ops"]);
    assert_eq!(corp.ca_file.as_deref(), Some(Path::new("/pki/ca.pem")));
    assert_eq!(
        google.issuer, "https://accounts.google.com",
        "kept as written"
    );
    assert_eq!(google.client_secret.expose(), CLIENT_SECRET.as_bytes());
}

#[test]
fn a_secret_file_loses_one_trailing_newline_only() {
    for (file, want) in [
        ("/s/corp", CLIENT_SECRET.to_string()),
        ("/s/crlf", CLIENT_SECRET.to_string()),
        ("/s/two-newlines", format!("{CLIENT_SECRET}\n")),
    ] {
        let more = format!("client_secret_file = {file:?}");
        let text =
            oidc(&provider("corp", &more)).replace("client_secret_env = \"CORP_SECRET\"\n", "");
        let c = good(&text);
        assert_eq!(
            c.oidc.providers[0].client_secret.expose(),
            want.as_bytes(),
            "{file}"
        );
    }
}

#[test]
fn oidc_mode_needs_a_provider() {
    let m = one(&oidc(""), "oidc.provider");
    assert!(m.contains("[[oidc.provider]]"), "{m}");
    // An [oidc] table without one is no provider either.
    one(
        &oidc("[oidc]\nrecheck_interval = \"5m\"\n"),
        "oidc.provider",
    );
}

#[test]
fn providers_or_a_recheck_interval_in_another_mode_are_refused_at_login_mode() {
    let users_file = "[login]\nmode = \"users_file\"\nusers_file = \"/nonexistent/users.toml\"\n";
    let upstream = "[login]\nmode = \"upstream\"\nupstream_path = \"/login\"\n\
                    grant_secret_env = \"SESSIONGATE_GRANT\"\n";
    for login in [users_file, upstream, ""] {
        for rest in [
            provider("corp", ""),
            "[oidc]\nrecheck_interval = \"5m\"\n".to_string(),
        ] {
            let text = format!("{UPSTREAM}{login}{rest}");
            let p = problems(&text);
            let at_mode: Vec<_> = p.iter().filter(|(k, _)| k == "login.mode").collect();
            assert_eq!(at_mode.len(), 1, "{p:?}\nin:\n{text}");
            assert!(at_mode[0].1.contains("login.mode = \"oidc\""), "{p:?}");
        }
    }
    // An empty [oidc] table in another mode says nothing.
    assert_eq!(
        keys(&format!("{UPSTREAM}{users_file}[oidc]\n")),
        Vec::<String>::new()
    );
}

#[test]
fn upstream_login_keys_are_refused_in_oidc_mode() {
    for line in [
        "upstream_path = \"/login\"",
        "page_path = \"/login\"",
        "grant_secret_env = \"G\"",
        "drop_cookies = [\"PHPSESSID\"]",
        "logout_paths = [\"/logout\"]",
    ] {
        let key = format!("login.{}", line.split(' ').next().unwrap());
        let m = one(&oidc(&format!("{line}\n{}", provider("corp", ""))), &key);
        assert!(m.contains("upstream"), "{m}");
    }
}

#[test]
fn the_mode_word_is_oidc_exactly() {
    for bad in ["OIDC", "Oidc", "openid", "oidc ", "openid_connect"] {
        let text = format!("{UPSTREAM}[login]\nmode = {bad:?}\n");
        assert_eq!(keys(&text), ["login.mode"], "{bad:?}");
    }
}

#[test]
fn provider_names_are_short_lower_case_words_and_unique() {
    for bad in [
        "",
        "Corp",
        "CORP",
        "-corp",
        "_corp",
        "corp sso",
        "corp.sso",
        "corp/sso",
        "körp",
        "corp\n",
        &"a".repeat(33),
    ] {
        one(&oidc(&provider(bad, "")), "oidc.provider[0].name");
    }
    for ok in ["a", "0", "corp-sso_2", "9lives", &"a".repeat(32)] {
        good(&oidc(&provider(ok, "")));
    }
    let text = oidc(&format!(
        "{}{}{}",
        provider("corp", ""),
        provider("other", "client_id = \"x\"").replace("client_id = \"gateway\"\n", ""),
        provider("corp", "client_id = \"y\"").replace("client_id = \"gateway\"\n", ""),
    ));
    let m = one(&text, "oidc.provider[2].name");
    assert!(m.contains("oidc.provider[0]"), "{m}");
}

#[test]
fn the_display_name_is_text_for_a_button() {
    let long = format!("{:?}", "x".repeat(65));
    for bad in [
        "\"\"",
        "\"   \"",
        "\"Corp\\nSSO\"",
        "\"Corp\\u0007\"",
        "\"\\t\"",
        &long,
    ] {
        let more = format!("display_name = {bad}");
        one(
            &oidc(&provider("corp", &more)),
            "oidc.provider[0].display_name",
        );
    }
    for ok in [
        "Corp SSO",
        "Sign in with Google",
        "Société Générale",
        &"x".repeat(64),
    ] {
        let more = format!("display_name = {ok:?}");
        let c = good(&oidc(&provider("corp", &more)));
        assert_eq!(c.oidc.providers[0].display_name, ok);
    }
}

/// A provider whose issuer is `issuer`.
fn with_issuer(issuer: &str) -> String {
    oidc(&provider("corp", "")).replace(
        "issuer = \"https://idp.example.com/realms/main\"",
        &format!("issuer = {issuer:?}"),
    )
}

#[test]
fn the_issuer_is_an_https_url_without_query_fragment_or_user() {
    for bad in [
        "",
        "idp.example.com",
        "http://idp.example.com",
        "HTTPS://idp.example.com",
        "Https://idp.example.com",
        "https:idp.example.com",
        "https:/idp.example.com",
        "https://",
        "https:///realms/main",
        "https://idp.example.com?x=1",
        "https://idp.example.com/?",
        "https://idp.example.com/realms/main#x",
        "https://idp.example.com/#",
        "https://admin@idp.example.com",
        "https://admin:pw@idp.example.com",
        "https://@idp.example.com",
        " https://idp.example.com",
        "https://idp.example.com ",
        "https://idp.example.com/realms/my realm",
        "https://idp.example.com/realms\tmain",
        "https://idp.example.com\\realms",
        "https://idp.example.com:99999",
        "wss://idp.example.com",
    ] {
        one(&with_issuer(bad), "oidc.provider[0].issuer");
    }
    for ok in [
        "https://idp.example.com",
        "https://idp.example.com/",
        "https://idp.example.com/realms/main",
        "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0",
        "https://idp.example.com:8443/oidc/",
        "https://127.0.0.1:9443",
        "https://[::1]:9443/idp",
    ] {
        let c = good(&with_issuer(ok));
        assert_eq!(c.oidc.providers[0].issuer, ok, "kept exactly as written");
    }
}

#[test]
fn the_client_id_is_not_empty_and_one_client_is_configured_once() {
    for bad in ["", " ", "gate way", "gateway\n"] {
        let text = oidc(&provider("corp", ""))
            .replace("client_id = \"gateway\"", &format!("client_id = {bad:?}"));
        one(&text, "oidc.provider[0].client_id");
    }
    // The same issuer and client id under two names.
    let text = oidc(&format!("{}{}", provider("a", ""), provider("b", "")));
    let m = one(&text, "oidc.provider[1].client_id");
    assert!(m.contains("oidc.provider[0]"), "{m}");
    // The same issuer with another client (two apps' registrations) is fine.
    let other = provider("b", "").replace("client_id = \"gateway\"", "client_id = \"other\"");
    good(&oidc(&format!("{}{other}", provider("a", ""))));
}

/// A provider with these secret keys instead of `client_secret_env = "CORP_SECRET"`.
fn with_secret(lines: &str) -> String {
    oidc(&provider("corp", "")).replace(
        "client_secret_env = \"CORP_SECRET\"\n",
        &format!("{lines}\n"),
    )
}

#[test]
fn the_client_secret_comes_from_one_readable_non_empty_source() {
    for (lines, key, says) in [
        ("", "client_secret_env", "client_secret_file"),
        (
            "client_secret_env = \"CORP_SECRET\"\nclient_secret_file = \"/s/corp\"",
            "client_secret_file",
            "not both",
        ),
        (
            "client_secret_env = \"UNSET_SECRET\"",
            "client_secret_env",
            "UNSET_SECRET, which is not set",
        ),
        (
            "client_secret_env = \"EMPTY_SECRET\"",
            "client_secret_env",
            "EMPTY_SECRET, which is empty",
        ),
        (
            "client_secret_env = \"\"",
            "client_secret_env",
            "environment variable",
        ),
        (
            "client_secret_file = \"/s/none\"",
            "client_secret_file",
            "cannot read /s/none",
        ),
        (
            "client_secret_file = \"/s/empty\"",
            "client_secret_file",
            "empty",
        ),
        (
            "client_secret_file = \"/s/newline\"",
            "client_secret_file",
            "empty",
        ),
        (
            "client_secret_file = \"/s/latin1\"",
            "client_secret_file",
            "UTF-8",
        ),
    ] {
        let m = one(&with_secret(lines), &format!("oidc.provider[0].{key}"));
        assert!(m.contains(says), "{lines}: {m}");
    }
}

#[test]
fn a_client_secret_is_no_token_secret() {
    let m = one(
        &with_secret("client_secret_env = \"ACCESS_AGAIN\""),
        "oidc.provider[0].client_secret_env",
    );
    assert!(
        m.contains("the access secret (keys.access_secret_env)"),
        "{m}"
    );
    let m = one(
        &with_secret("client_secret_file = \"/s/refresh\""),
        "oidc.provider[0].client_secret_file",
    );
    assert!(
        m.contains("the refresh secret (keys.refresh_secret_env)"),
        "{m}"
    );
    assert!(!m.contains(A) && !m.contains(R), "{m}");
    // Named by its own index when an earlier provider was refused.
    let text = oidc(&format!(
        "{}{}",
        provider("Bad", ""),
        provider("b", "client_id = \"b\"")
            .replace("client_id = \"gateway\"\n", "")
            .replace("CORP_SECRET", "ACCESS_AGAIN")
    ));
    assert_eq!(
        keys(&text),
        [
            "oidc.provider[0].name",
            "oidc.provider[1].client_secret_env"
        ]
    );
}

#[test]
fn scopes_include_openid_once_each_and_are_scope_tokens() {
    let with = |scopes: &str| oidc(&provider("corp", &format!("scopes = {scopes}")));
    for bad in [
        "[]",
        "[\"email\", \"profile\"]",
        "[\"OpenID\"]",
        "[\"openid email\"]",
    ] {
        let p = problems(&with(bad));
        assert!(
            p.iter()
                .any(|(k, m)| k == "oidc.provider[0].scopes" && m.contains("\"openid\"")),
            "{bad}: {p:?}"
        );
    }
    for (bad, at) in [
        ("[\"openid\", \"email\", \"email\"]", 2),
        ("[\"openid\", \"openid\"]", 1),
        ("[\"openid\", \"\"]", 1),
        ("[\"openid\", \"a b\"]", 1),
        ("[\"openid\", \"a\\\"b\"]", 1),
        ("[\"openid\", \"a\\\\b\"]", 1),
        ("[\"openid\", \"gruppé\"]", 1),
        ("[\"openid\", \"tab\\t\"]", 1),
    ] {
        one(&with(bad), &format!("oidc.provider[0].scopes[{at}]"));
    }
    let c = good(&with("[\"openid\"]"));
    assert_eq!(c.oidc.providers[0].scopes, ["openid"]);
    good(&with(
        "[\"email\", \"openid\", \"offline_access\", \"api://gw/.default\"]",
    ));
}

#[test]
fn claim_names_are_not_empty() {
    for (line, key) in [
        ("user_claim = \"\"", "user_claim"),
        ("user_claim = \"preferred username\"", "user_claim"),
        ("roles_claim = \"\"", "roles_claim"),
        ("roles_claim = \" groups\"", "roles_claim"),
    ] {
        one(
            &oidc(&provider("corp", line)),
            &format!("oidc.provider[0].{key}"),
        );
    }
    for line in [
        "user_claim = \"email\"",
        "roles_claim = \"realm_access.roles\"",
    ] {
        good(&oidc(&provider("corp", line)));
    }
}

#[test]
fn allowed_domains_are_exact_lower_case_domains() {
    for bad in [
        "",
        "@example.com",
        "user@example.com",
        " example.com",
        "example.com ",
        "exa mple.com",
        "*.example.com",
        "*",
        ".example.com",
        "example.com.",
        "example.com\n",
    ] {
        let line = format!("allowed_domains = [\"example.org\", {bad:?}]");
        one(
            &oidc(&provider("corp", &line)),
            "oidc.provider[0].allowed_domains[1]",
        );
    }
    let line = "allowed_domains = [\"EXAMPLE.org\", \"Example.Org\", \"bücher.example\"]";
    let c = good(&oidc(&provider("corp", line)));
    assert_eq!(
        c.oidc.providers[0].allowed_domains,
        ["example.org", "bücher.example"]
    );
}

#[test]
fn allowed_domains_without_the_email_scope_is_a_warning() {
    let line = "allowed_domains = [\"example.com\"]\nscopes = [\"openid\", \"profile\"]";
    let c = good(&oidc(&provider("corp", line)));
    let keys: Vec<&str> = c.warnings.iter().map(|w| w.key.as_str()).collect();
    assert_eq!(keys, ["oidc.provider[0].allowed_domains"]);
    assert!(
        c.warnings[0].message.contains("\"email\""),
        "{:?}",
        c.warnings
    );
}

#[test]
fn allowed_groups_need_the_roles_claim() {
    let m = one(
        &oidc(&provider("corp", "allowed_groups = [\"staff\"]")),
        "oidc.provider[0].allowed_groups",
    );
    assert!(m.contains("roles_claim"), "{m}");
    one(
        &oidc(&provider(
            "corp",
            "roles_claim = \"groups\"\nallowed_groups = [\"staff\", \"\"]",
        )),
        "oidc.provider[0].allowed_groups[1]",
    );
    good(&oidc(&provider(
        "corp",
        "roles_claim = \"groups\"\nallowed_groups = [\"staff\"]",
    )));
    // A roles claim alone (roles for the app, no filter) is fine.
    good(&oidc(&provider("corp", "roles_claim = \"groups\"")));
}

#[test]
fn the_ca_file_must_hold_ca_certificates() {
    for (file, says) in [
        ("/pki/none.pem", "cannot read /pki/none.pem"),
        ("/pki/text.pem", "no PEM CERTIFICATE"),
        ("/pki/key.pem", "no PEM CERTIFICATE"),
        ("/pki/garbage.pem", "/pki/garbage.pem"),
    ] {
        let line = format!("ca_file = {file:?}");
        let m = one(&oidc(&provider("corp", &line)), "oidc.provider[0].ca_file");
        assert!(m.contains(says), "{file}: {m}");
    }
}

#[test]
fn the_recheck_interval_is_at_least_10_seconds() {
    let with = |v: &str| {
        oidc(&format!(
            "[oidc]\nrecheck_interval = {v}\n{}",
            provider("corp", "")
        ))
    };
    for bad in ["\"0s\"", "\"9s\"", "\"9999ms\"", "\"1ms\""] {
        one(&with(bad), "oidc.recheck_interval");
    }
    for bad in ["5", "\"soon\"", "\"-5m\""] {
        one(&with(bad), "oidc.recheck_interval");
    }
    for (ok, secs) in [("\"10s\"", 10), ("\"5m\"", 300), ("\"1h\"", 3600)] {
        let c = good(&with(ok));
        assert_eq!(
            c.oidc.recheck_interval,
            Some(std::time::Duration::from_secs(secs))
        );
    }
}

#[test]
fn schema_mistakes_in_the_oidc_tables_are_named() {
    // A typo of a key, in [oidc] and in a provider.
    assert_eq!(
        keys(&oidc(&format!(
            "[oidc]\nrecheck = \"5m\"\n{}",
            provider("corp", "")
        ))),
        ["oidc.recheck"]
    );
    assert_eq!(
        keys(&oidc(&provider("corp", "client_secrets_env = \"X\""))),
        ["oidc.provider[0].client_secrets_env"]
    );
    // A provider without a key it needs.
    for missing in ["issuer", "client_id"] {
        let text = oidc(&provider("corp", "")).replace(&format!("\n{missing} ="), "\nx_unused =");
        let p = problems(&text);
        assert!(
            p.iter().any(|(k, _)| k.starts_with("oidc.provider[0]")),
            "{missing}: {p:?}"
        );
    }
    let p = parse::parse(
        &oidc("[[oidc.provider]]\nname = \"corp\"\nclient_id = \"gateway\"\n"),
        "gw.toml",
    )
    .unwrap();
    assert!(!p.complete);
    assert_eq!(p.problems[0].key, "oidc.provider[0]");
    assert!(
        p.problems[0].message.contains("missing field `issuer`"),
        "{:?}",
        p.problems
    );
    // Wrong types.
    assert_eq!(
        keys(&oidc(&provider("corp", "scopes = \"openid\""))),
        ["oidc.provider[0].scopes"]
    );
    assert_eq!(keys(&oidc("oidc = 5\n")), ["login.oidc"]);
}

#[test]
fn every_problem_of_every_provider_is_named_at_once() {
    let text = oidc(&format!(
        "[oidc]\nrecheck_interval = \"9s\"\n{}{}{}",
        provider("Corp", "scopes = [\"email\"]"),
        provider("ok", "client_id = \"x\"").replace("client_id = \"gateway\"\n", ""),
        provider(
            "third",
            "allowed_groups = [\"staff\"]\nca_file = \"/pki/text.pem\""
        )
        .replace(
            "https://idp.example.com/realms/main",
            "http://idp.example.com"
        )
        .replace(
            "client_secret_env = \"CORP_SECRET\"",
            "client_secret_env = \"UNSET\""
        ),
    ));
    assert_eq!(
        keys(&text),
        [
            "oidc.recheck_interval",
            "oidc.provider[0].name",
            "oidc.provider[0].scopes",
            "oidc.provider[2].issuer",
            "oidc.provider[2].client_secret_env",
            "oidc.provider[2].allowed_groups",
            "oidc.provider[2].ca_file",
        ]
    );
}

#[test]
fn the_uris_to_register_are_on_the_https_public_origin() {
    let text = format!(
        "[server]\npublic_origin = \"https://sso.example.com\"\n{}",
        oidc(&format!(
            "{}{}",
            provider("corp", ""),
            provider("b", "").replace("gateway", "b")
        ))
    );
    let c = good(&text);
    let uris = c.server.public_origin.oidc_client_uris();
    assert_eq!(uris.redirect, "https://sso.example.com/.auth/oidc/callback");
    assert_eq!(
        uris.backchannel_logout,
        "https://sso.example.com/.auth/oidc/backchannel-logout"
    );
    assert_eq!(
        uris.post_logout_redirect,
        "https://sso.example.com/.auth/login?signed_out=1"
    );
    let lines: Vec<String> = c
        .oidc
        .registration(&c.server.public_origin)
        .iter()
        .map(|l| l.to_string())
        .collect();
    assert_eq!(lines.len(), 6, "{lines:?}");
    assert_eq!(
        lines[0],
        "oidc.provider[0]: \"corp\" redirect URI (register it): https://sso.example.com/.auth/oidc/callback"
    );
    assert!(
        lines[5].starts_with("oidc.provider[1]: \"b\" post-logout"),
        "{lines:?}"
    );
    // A port is part of the origin; the origin is always https:// (anything else is refused).
    let c = good(&text.replace("https://sso.example.com", "https://localhost:8443"));
    assert_eq!(
        c.server.public_origin.oidc_client_uris().redirect,
        "https://localhost:8443/.auth/oidc/callback"
    );
    for origin in ["http://sso.example.com", "https://sso.example.com/app"] {
        let p = problems(&text.replace("https://sso.example.com", origin));
        assert_eq!(p.len(), 1, "{origin}: {p:?}");
        assert_eq!(p[0].0, "server.public_origin");
    }
    // Other modes register nothing.
    let c = good(UPSTREAM);
    assert!(c.oidc.registration(&c.server.public_origin).is_empty());
}

#[test]
fn several_providers_naming_users_by_sub_is_a_warning() {
    let second = |claim: &str| {
        format!(
            "[[oidc.provider]]\nname = \"other\"\nissuer = \"https://other.example.com\"\n\
             client_id = \"gateway\"\nclient_secret_env = \"CORP_SECRET\"\nuser_claim = {claim:?}\n"
        )
    };
    let c = good(&oidc(&format!(
        "{}{}",
        provider("corp", ""),
        second("email")
    )));
    let keys: Vec<&str> = c.warnings.iter().map(|w| w.key.as_str()).collect();
    assert_eq!(keys, ["oidc.provider[0].user_claim"]);
    assert!(
        c.warnings[0].message.contains("several providers"),
        "{:?}",
        c.warnings
    );
    let c = good(&oidc(&format!(
        "{}{}",
        provider("corp", "user_claim = \"email\""),
        second("email")
    )));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}
