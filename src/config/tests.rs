//! `parse` + `validate` over whole configurations: keys named, every problem at once, secrets
//! from the injected source, and no file touched.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::*;

const A: &str = "Q3ZqkJ8v0mX2rB7tL9wE4yN6uH1sD5cF0aG8pK3iM2o";
const R: &str = "Zx9Lm2Nq4Rs6Tu8Vw0Yb1Cd3Ef5Gh7Jk9Pq2Sx4Vz6B";

fn env_with(access: &'static str, refresh: &'static str) -> impl Fn(&str) -> Option<String> {
    move |name| match name {
        "SESSIONGATE_ACCESS_SECRET" => Some(access.to_string()),
        "SESSIONGATE_REFRESH_SECRET" => Some(refresh.to_string()),
        _ => None,
    }
}

fn no_env(_: &str) -> Option<String> {
    None
}

/// An environment and files held in memory.
#[derive(Default)]
struct Fake {
    env: HashMap<&'static str, String>,
    files: HashMap<PathBuf, Vec<u8>>,
}

impl Source for Fake {
    fn env(&self, name: &str) -> Option<String> {
        self.env.get(name).cloned()
    }
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| std::io::ErrorKind::NotFound.into())
    }
}

/// The real file system, without the process environment.
struct Disk;

impl Source for Disk {
    fn env(&self, _: &str) -> Option<String> {
        None
    }
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        System.read(path)
    }
}

const BASE: &str = r#"
[[upstream]]
name = "app"
url = "http://127.0.0.1:3000"
[login]
mode = "users_file"
users_file = "/nonexistent/users.toml"
"#;

fn dev() -> LoadOptions {
    LoadOptions { dev: true }
}

/// Problems of `extra` appended to a base config, as key names.
fn problems(extra: &str, opts: LoadOptions, source: &dyn Source) -> Vec<ConfigError> {
    let raw = match parse(&format!("{BASE}\n{extra}")) {
        Ok(r) => r,
        Err(e) => return e.0,
    };
    match validate(raw, opts, source) {
        Ok(_) => vec![],
        Err(e) => e.0,
    }
}

fn keys_of(extra: &str, access: &'static str, refresh: &'static str) -> Vec<String> {
    let env = env_with(access, refresh);
    problems(extra, LoadOptions::default(), &env)
        .into_iter()
        .map(|e| e.key)
        .collect()
}

#[test]
fn a_good_config_has_no_problems_and_looks_at_no_file() {
    // The certificate and the users file do not exist: that is preflight's to say.
    assert_eq!(keys_of("", A, R), Vec::<String>::new());
}

#[test]
fn unknown_keys_are_named_with_their_table() {
    let k = keys_of("[session]\nacess_ttl = \"1m\"\n", A, R);
    assert_eq!(k.len(), 1);
    assert!(k[0].starts_with("session"), "{k:?}");
}

#[test]
fn weak_placeholder_and_equal_secrets_are_refused() {
    assert_eq!(keys_of("", "short", R), vec!["keys.access_secret_env"]);
    assert_eq!(
        keys_of("", "changeme-changeme-changeme-changeme-00", R),
        vec!["keys.access_secret_env"]
    );
    assert_eq!(
        keys_of("", A, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
        vec!["keys.refresh_secret_env"]
    );
    assert_eq!(keys_of("", A, A), vec!["keys.refresh_secret_env"]);
}

#[test]
fn bad_values_name_their_keys() {
    assert_eq!(
        keys_of(
            "[server]\npublic_origin = \"http://localhost:8443\"\n",
            A,
            R
        ),
        vec!["server.public_origin"]
    );
    assert_eq!(
        keys_of("[session]\naccess_ttl = \"7d\"\n", A, R),
        vec!["session.access_ttl"]
    );
    assert_eq!(
        keys_of(
            "[[route]]\npath_prefix = \"/x/\"\nupstream = \"nope\"\n",
            A,
            R
        ),
        vec!["route[0].upstream"]
    );
    assert_eq!(
        keys_of("[[route]]\npath_prefix = \"x/../\"\n", A, R),
        vec!["route[0].path_prefix"]
    );
    assert_eq!(
        keys_of("[server]\nlisten = \"nowhere\"\n", A, R),
        vec!["server.listen"]
    );
    let k = keys_of("[session]\naccess_ttl = \"soon\"\n", A, R);
    assert_eq!(k, vec!["session.access_ttl"]);
    assert_eq!(
        keys_of("[[upstream]]\nname = \"b\"\nurl = \"ftp://x\"\n", A, R),
        vec!["upstream[1].url"]
    );
}

#[test]
fn all_problems_are_reported_at_once() {
    let k = keys_of(
        "[server]\npublic_origin = \"http://x\"\n[[route]]\npath_prefix = \"/a/\"\nupstream = \"b\"\n",
        "short",
        "short",
    );
    assert_eq!(k.len(), 4, "{k:?}");
}

#[test]
fn missing_upstream_is_required_outside_dev_only() {
    let raw = parse("").unwrap();
    let e = validate(raw, LoadOptions::default(), &env_with(A, R)).unwrap_err();
    assert!(e.0.iter().any(|e| e.key == "upstream"));
    let raw = parse("").unwrap();
    let c = validate(raw, dev(), &no_env).unwrap();
    assert!(c.builtin_whoami);
    assert_eq!(c.upstreams.len(), 1);
    assert_eq!(c.upstreams[0].name, WHOAMI_UPSTREAM);
}

#[test]
fn dev_fills_in_random_secrets_and_says_so() {
    let c = validate(parse(BASE).unwrap(), dev(), &no_env).unwrap();
    assert_ne!(
        c.keys.access_secrets.signing().expose(),
        c.keys.refresh_secrets.signing().expose()
    );
    assert_eq!(
        c.dev_notes
            .iter()
            .filter(|n| n.contains("random per-process secret"))
            .count(),
        2,
        "{:?}",
        c.dev_notes
    );
}

#[test]
fn the_algorithm_key_is_accepted_as_hs256_only() {
    assert_eq!(
        keys_of("[keys]\nalgorithm = \"HS256\"\n", A, R),
        Vec::<String>::new()
    );
    assert_eq!(
        keys_of("[keys]\nalgorithm = \"none\"\n", A, R),
        vec!["keys.algorithm"]
    );
}

/// `BASE` with the access secret from `file` instead of its variable.
fn access_secret_from(file: &str) -> RawConfig {
    parse(&format!("{BASE}\n[keys]\naccess_secret_file = {file:?}\n")).unwrap()
}

#[test]
fn secret_files_are_read_through_the_source_and_trimmed() {
    let mut src = Fake::default();
    src.env.insert("SESSIONGATE_REFRESH_SECRET", R.into());
    src.files
        .insert("/run/a".into(), format!("{A}\n").into_bytes());
    let c = validate(access_secret_from("/run/a"), LoadOptions::default(), &src).unwrap();
    assert_eq!(c.keys.access_secrets.signing().expose(), A.as_bytes());

    let e = validate(access_secret_from("/run/b"), dev(), &src).unwrap_err();
    assert_eq!(e.0.len(), 1, "{e}");
    assert_eq!(e.0[0].key, "keys.access_secret_file");
    assert!(e.0[0].message.starts_with("cannot read /run/b"), "{e}");
}

#[test]
fn the_assertion_key_is_read_through_the_source() {
    let mut src = Fake::default();
    src.env.insert("SESSIONGATE_ACCESS_SECRET", A.into());
    src.env.insert("SESSIONGATE_REFRESH_SECRET", R.into());
    src.files.insert("/k/current.pem".into(), b"PEM".to_vec());
    let extra = "[keys]\nassertion_key_file = \"/k/current.pem\"\n";
    let c = validate(
        parse(&format!("{BASE}{extra}")).unwrap(),
        LoadOptions::default(),
        &src,
    )
    .unwrap();
    let a = c.keys.assertion.unwrap();
    assert_eq!(a.key_pem.expose(), b"PEM");
    assert!(a.previous_pem.is_none());

    let missing = "[keys]\nassertion_key_file = \"/k/missing.pem\"\n";
    let e = problems(missing, LoadOptions::default(), &src);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].key, "keys.assertion_key_file");
    assert!(
        e[0].message.starts_with("cannot read /k/missing.pem"),
        "{e:?}"
    );
    // `--dev` leaves a missing key out, for `run --dev` to create.
    let c = validate(parse(&format!("{BASE}{missing}")).unwrap(), dev(), &src).unwrap();
    assert!(c.keys.assertion.is_none());

    let previous = format!("{extra}assertion_previous_key_file = \"/k/old.pem\"\n");
    let e = problems(&previous, dev(), &src);
    let keys: Vec<&str> = e.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["keys.assertion_previous_key_file"]);
}

#[test]
fn validation_in_dev_writes_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("keys/assertion.pem");
    let cert = dir.path().join("certs/localhost.pem");
    let text = format!(
        "[tls]\ncert = {cert:?}\nkey = {:?}\n[keys]\nassertion_key_file = {key:?}\n[login]\nusers_file = {:?}\n",
        dir.path().join("certs/localhost-key.pem"),
        dir.path().join("users.toml"),
    );
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    let c = validate(
        read(&path, dev()).unwrap().into_result().unwrap(),
        dev(),
        &Disk,
    )
    .unwrap();
    assert!(c.keys.assertion.is_none());
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["gateway.toml"], "validation created files");
}

#[test]
fn a_missing_config_file_is_every_default_in_dev_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    let e = read(&path, LoadOptions::default()).unwrap_err();
    assert_eq!(e.0[0].key, "--config");
    assert!(read(&path, dev()).is_ok());
}

#[test]
fn errors_print_one_line_each() {
    let e = ConfigErrors(vec![
        ConfigError::new("a.b", "is wrong"),
        ConfigError::new("c", "too"),
    ]);
    assert_eq!(
        e.to_string(),
        "config error: a.b: is wrong\nconfig error: c: too"
    );
}

#[test]
fn a_value_or_key_quoted_from_the_file_cannot_break_a_problem_into_lines() {
    // Found by the `config` fuzz target: a TOML string holds any character, and the schema's
    // message quotes it (`unknown variant ...`), so a NUL, an escape sequence or a carriage
    // return reached the `config error:` line raw (and, in a quoted key, a line break too).
    for text in [
        "[anomaly]\nip_change = \"\\u001b[31mauth\"\n",
        "[csrf]\nmode = \"origi\\t\"\n",
        "[url_tokens]\naction = \"a\\u0000b\"\n",
        "[log]\nformat = \"x\\nconfig error: forged: line\"\n",
        "[server]\n\"a\\rb\\u0007\" = 1\n",
    ] {
        let e = parse(text).unwrap_err();
        for p in &e.0 {
            assert!(
                !p.key.chars().any(char::is_control) && !p.message.chars().any(char::is_control),
                "{text:?}: {p:?}"
            );
        }
        assert_eq!(e.to_string().lines().count(), e.0.len(), "{e}");
    }
    let e = parse("[anomaly]\nip_change = \"\\u001bx\"\n").unwrap_err();
    assert!(e.0[0].message.contains("\\u{1b}x"), "{}", e.0[0].message);
    let e = parse("[server]\n\"a\\tb\" = 1\n").unwrap_err();
    assert_eq!(e.0[0].key, "server.a\\tb");
    // Found by the fuzz target next: validation quotes a path as written (`cannot read ...`).
    let text = format!("{BASE}[keys]\nrefresh_secret_file = \"secr\\nets/\\u001b[2Jr\"\n");
    let src = env_with(A, R);
    let e = validate(parse(&text).unwrap(), LoadOptions::default(), &src).unwrap_err();
    assert_eq!(e.0[0].key, "keys.refresh_secret_file", "{e}");
    assert!(e.0[0].message.contains("secr\\nets/\\u{1b}[2Jr"), "{e}");
    assert_eq!(e.to_string().lines().count(), e.0.len(), "{e}");
}

#[test]
fn a_secret_file_alone_replaces_the_default_variable() {
    let mut src = Fake::default();
    src.env.insert("SESSIONGATE_ACCESS_SECRET", A.into());
    src.files.insert("/run/r".into(), R.as_bytes().to_vec());
    let raw = parse(&format!("{BASE}[keys]\nrefresh_secret_file = \"/run/r\"\n")).unwrap();
    let c = validate(raw, LoadOptions::default(), &src).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.keys.refresh_secrets.signing().expose(), R.as_bytes());
    // Both written: refused.
    let both = format!(
        "{BASE}[keys]\nrefresh_secret_env = \"SESSIONGATE_REFRESH_SECRET\"\nrefresh_secret_file = \"/run/r\"\n"
    );
    let e = validate(parse(&both).unwrap(), LoadOptions::default(), &src).unwrap_err();
    assert_eq!(e.0.len(), 1, "{e}");
    assert_eq!(e.0[0].key, "keys.refresh_secret_file");
}

/// An upstream-login config whose grant secret is `grant`, validated against secrets A and R.
fn upstream_login_problems(grant: &'static str) -> Vec<ConfigError> {
    let text = r#"
[[upstream]]
name = "app"
url = "http://127.0.0.1:3000"
[login]
mode = "upstream"
upstream_path = "/login"
grant_secret_env = "GRANT"
"#;
    let env = move |name: &str| match name {
        "GRANT" => Some(grant.to_string()),
        other => env_with(A, R)(other),
    };
    match validate(parse(text).unwrap(), LoadOptions::default(), &env) {
        Ok(_) => vec![],
        Err(e) => e.0,
    }
}

#[test]
fn a_grant_secret_equal_to_a_token_secret_is_refused_naming_its_key() {
    const G: &str = "Gr4nt-k9Lm2Nq4Rs6Tu8Vw0Yb1Cd3Ef5Gh7Jk9Pq2Sx";
    assert!(upstream_login_problems(G).is_empty());
    for (same, which) in [(A, "access"), (R, "refresh")] {
        let errs = upstream_login_problems(same);
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            ["login.grant_secret_env"],
            "equal to the {which} secret"
        );
        let text = errs[0].to_string();
        assert!(text.contains(which), "{text}");
        assert!(!text.contains(same), "the secret is echoed: {text}");
    }
}

#[test]
fn the_account_wide_login_backstop_defaults_and_is_checked() {
    let login = |extra: &str| {
        let text = format!("{BASE}{extra}");
        validate(
            parse(&text).unwrap(),
            LoadOptions::default(),
            &env_with(A, R),
        )
        .map(|c| c.login)
    };
    let l = login("").unwrap();
    assert_eq!(
        (l.max_failures_per_user, l.max_failures_per_user_total),
        (5, 50)
    );
    let l = login("max_failures_per_user = 80\n").unwrap();
    assert_eq!(
        l.max_failures_per_user_total, 80,
        "never below the per-network limit"
    );
    let l = login("max_failures_per_user_total = 5\n").unwrap();
    assert_eq!(l.max_failures_per_user_total, 5);
    let errs = login("max_failures_per_user = 6\nmax_failures_per_user_total = 5\n").unwrap_err();
    let keys: Vec<&str> = errs.0.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["login.max_failures_per_user_total"]);
}

#[test]
fn proxy_protocol_needs_the_balancers_named() {
    assert_eq!(
        keys_of("[server]\nproxy_protocol = true\n", A, R),
        vec!["server.proxy_protocol"]
    );
    let behind = "[server]\nproxy_protocol = true\ntrusted_proxies = [\"10.0.0.0/8\"]\n";
    assert_eq!(keys_of(behind, A, R), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------------
// Key rings: `keys.access_secret_env = ["NEW", "OLD"]` and the like.

const NEW: &str = "n3wKey-Q3ZqkJ8v0mX2rB7tL9wE4yN6uH1sD5cF0aG8";
const OLD: &str = "0ldKey-Zx9Lm2Nq4Rs6Tu8Vw0Yb1Cd3Ef5Gh7Jk9Pq2";
const G1: &str = "Gr4nt1-k9Lm2Nq4Rs6Tu8Vw0Yb1Cd3Ef5Gh7Jk9Pq2Sx";
const G2: &str = "Gr4nt2-Tu8Vw0Yb1Cd3Ef5Gh7Jk9Pq2Sx4Vz6Bk9Lm2N";

/// An environment with `vars`, and the default variables holding A and R unless `vars` sets
/// them.
fn ring_env(vars: &[(&'static str, &'static str)]) -> Fake {
    let mut src = Fake::default();
    src.env.insert("SESSIONGATE_ACCESS_SECRET", A.into());
    src.env.insert("SESSIONGATE_REFRESH_SECRET", R.into());
    for (k, v) in vars {
        src.env.insert(k, v.to_string());
    }
    src
}

/// Problems of a `[keys]` table (and optionally `[login]` lines) as `key: message` lines.
fn ring_problems(keys: &str, src: &Fake) -> Vec<String> {
    problems(&format!("[keys]\n{keys}"), LoadOptions::default(), src)
        .into_iter()
        .map(|e| e.to_string())
        .collect()
}

#[test]
fn a_key_ring_parses_from_a_list_and_the_first_key_signs() {
    let src = ring_env(&[("NEW", NEW), ("OLD", OLD)]);
    let text = format!("{BASE}[keys]\naccess_secret_env = [\"NEW\", \"OLD\"]\n");
    let c = validate(parse(&text).unwrap(), LoadOptions::default(), &src).unwrap();
    let ring: Vec<(&str, &[u8])> = c
        .keys
        .access_secrets
        .iter()
        .map(|s| (s.key.as_str(), s.secret.expose()))
        .collect();
    assert_eq!(
        ring,
        [
            ("keys.access_secret_env[0]", NEW.as_bytes()),
            ("keys.access_secret_env[1]", OLD.as_bytes())
        ]
    );
    assert_eq!(c.keys.access_secrets.signing().expose(), NEW.as_bytes());
    // One name, a list of one and the refresh ring too.
    for keys in [
        "access_secret_env = \"NEW\"\n",
        "access_secret_env = [\"NEW\"]\n",
        "access_secret_env = \"NEW\"\nrefresh_secret_env = [\"SESSIONGATE_REFRESH_SECRET\", \"OLD\"]\n",
    ] {
        assert_eq!(ring_problems(keys, &src), Vec::<String>::new(), "{keys}");
    }
}

#[test]
fn secret_files_make_a_ring_too() {
    let mut src = ring_env(&[]);
    src.files
        .insert("/run/new".into(), format!("{NEW}\n").into_bytes());
    src.files.insert("/run/old".into(), OLD.as_bytes().to_vec());
    let text = format!("{BASE}[keys]\naccess_secret_file = [\"/run/new\", \"/run/old\"]\n");
    let c = validate(parse(&text).unwrap(), LoadOptions::default(), &src).unwrap();
    assert_eq!(c.keys.access_secrets.len(), 2);
    assert_eq!(c.keys.access_secrets.signing().expose(), NEW.as_bytes());
    let e = ring_problems("access_secret_file = [\"/run/new\", \"/run/gone\"]\n", &src);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("keys.access_secret_file[1]: cannot read /run/gone"),
        "{e:?}"
    );
    // A list of variables and a list of files for one ring: refused as for one of each.
    let both = "access_secret_env = [\"NEW\"]\naccess_secret_file = [\"/run/old\"]\n";
    let e = ring_problems(both, &ring_env(&[("NEW", NEW)]));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("keys.access_secret_file: set either"),
        "{e:?}"
    );
}

#[test]
fn each_key_of_a_ring_is_checked_and_named_with_its_index() {
    let src = ring_env(&[
        ("NEW", NEW),
        ("OLD", OLD),
        ("SHORT", "short"),
        ("PLACEHOLDER", "changeme-changeme-changeme-changeme-00"),
    ]);
    let keys = |text: &str| -> Vec<String> {
        ring_problems(text, &src)
            .into_iter()
            .map(|l| l.split(": ").next().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        keys("access_secret_env = [\"NEW\", \"SHORT\", \"PLACEHOLDER\"]\n"),
        ["keys.access_secret_env[1]", "keys.access_secret_env[2]"]
    );
    assert_eq!(
        keys("access_secret_env = [\"NEW\", \"UNSET\"]\n"),
        ["keys.access_secret_env[1]"]
    );
    let unset = ring_problems("access_secret_env = [\"NEW\", \"UNSET\"]\n", &src);
    assert!(unset[0].contains("UNSET, which is not set"), "{unset:?}");
    assert_eq!(
        keys("access_secret_env = []\n"),
        ["keys.access_secret_env"],
        "an empty ring"
    );
    assert_eq!(
        keys("refresh_secret_file = []\n"),
        ["keys.refresh_secret_file"]
    );
    // The same secret twice in one ring, under one name or two.
    assert_eq!(
        keys("access_secret_env = [\"NEW\", \"OLD\", \"NEW\"]\n"),
        ["keys.access_secret_env[2]"]
    );
    let mut twice = ring_env(&[("NEW", NEW), ("AGAIN", NEW)]);
    twice.env.insert("SESSIONGATE_REFRESH_SECRET", R.into());
    let e = ring_problems("access_secret_env = [\"NEW\", \"AGAIN\"]\n", &twice);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with(
            "keys.access_secret_env[1]: is the same secret as keys.access_secret_env[0]"
        ),
        "{e:?}"
    );
    assert!(!e[0].contains(NEW), "the secret is echoed: {e:?}");
}

#[test]
fn a_ring_that_is_not_a_string_or_a_list_of_strings_is_named() {
    for (value, key) in [
        ("42", "keys.access_secret_env"),
        ("{ a = 1 }", "keys.access_secret_env"),
        ("[\"A\", 1]", "keys.access_secret_env[1]"),
        ("[[\"A\"]]", "keys.access_secret_env[0]"),
    ] {
        let e = parse(&format!("{BASE}[keys]\naccess_secret_env = {value}\n")).unwrap_err();
        assert_eq!(e.0.len(), 1, "{e}");
        assert_eq!(e.0[0].key, key, "{value}: {e}");
        assert!(e.0[0].message.contains("string"), "{value}: {e}");
    }
    let e = parse("[login]\ngrant_secret_env = false\n").unwrap_err();
    assert_eq!(e.0[0].key, "login.grant_secret_env", "{e}");
    // Unknown keys beside a ring are still refused.
    let e = parse(&format!("{BASE}[keys]\naccess_secret_envs = [\"A\"]\n")).unwrap_err();
    assert!(e.0[0].key.starts_with("keys"), "{e}");
}

#[test]
fn no_secret_is_shared_between_the_access_refresh_and_grant_rings() {
    let src = ring_env(&[("NEW", NEW), ("OLD", OLD), ("G1", G1), ("G2", G2)]);
    let e = ring_problems(
        "access_secret_env = [\"NEW\", \"OLD\"]\nrefresh_secret_env = [\"SESSIONGATE_REFRESH_SECRET\", \"OLD\"]\n",
        &src,
    );
    assert_eq!(
        e,
        [
            "keys.refresh_secret_env[1]: must differ from the access secret (keys.access_secret_env[1]): \
          a refresh token must never verify as an access token"
        ]
    );
    let upstream = |grant: &str| {
        let text = format!(
            "[[upstream]]\nname = \"app\"\nurl = \"http://127.0.0.1:3000\"\n[keys]\n\
             access_secret_env = [\"NEW\", \"OLD\"]\n[login]\nmode = \"upstream\"\n\
             upstream_path = \"/login\"\ngrant_secret_env = {grant}\n"
        );
        match validate(parse(&text).unwrap(), LoadOptions::default(), &src) {
            Ok(c) => Ok(c.login.upstream.unwrap().grant_secrets.len()),
            Err(e) => Err(e.0.into_iter().map(|e| e.to_string()).collect::<Vec<_>>()),
        }
    };
    assert_eq!(upstream("[\"G1\", \"G2\"]"), Ok(2));
    assert_eq!(upstream("\"G1\""), Ok(1));
    let e = upstream("[\"G1\", \"OLD\"]").unwrap_err();
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with(
            "login.grant_secret_env[1]: must differ from the access secret (keys.access_secret_env[1])"
        ),
        "{e:?}"
    );
    let e = upstream("[\"G1\", \"SESSIONGATE_REFRESH_SECRET\"]").unwrap_err();
    assert!(
        e[0].starts_with("login.grant_secret_env[1]: must differ from the refresh secret"),
        "{e:?}"
    );
    let e = upstream("[\"G1\", \"G1\"]").unwrap_err();
    assert!(
        e[0].starts_with("login.grant_secret_env[1]: is the same secret"),
        "{e:?}"
    );
    let e = upstream("[]").unwrap_err();
    assert!(
        e[0].starts_with("login.grant_secret_env: is an empty list"),
        "{e:?}"
    );
    let e = upstream("[\"G1\", \"UNSET\"]").unwrap_err();
    assert!(
        e[0].starts_with("login.grant_secret_env[1]: names environment variable UNSET"),
        "{e:?}"
    );
}

#[test]
fn dev_fills_in_a_random_secret_only_when_no_key_of_the_ring_is_set() {
    let text = format!("{BASE}[keys]\naccess_secret_env = [\"UNSET1\", \"UNSET2\"]\n");
    let c = validate(parse(&text).unwrap(), dev(), &no_env).unwrap();
    assert_eq!(c.keys.access_secrets.len(), 1);
    let src = ring_env(&[("NEW", NEW)]);
    let text = format!("{BASE}[keys]\naccess_secret_env = [\"NEW\", \"UNSET\"]\n");
    let e = validate(parse(&text).unwrap(), dev(), &src).unwrap_err();
    assert_eq!(e.0[0].key, "keys.access_secret_env[1]", "{e}");
}

#[test]
fn the_paths_of_a_file_ring_can_be_resolved_in_place() {
    let text = format!("{BASE}[keys]\naccess_secret_file = [\"new\", \"/run/old\"]\n");
    let mut raw = parse(&text).unwrap();
    raw.resolve_paths(Path::new("/etc/sessiongate"));
    let files = raw.keys.access_secret_file.as_ref().unwrap();
    assert_eq!(
        files.items(),
        [
            PathBuf::from("/etc/sessiongate/new"),
            PathBuf::from("/run/old")
        ]
    );
}

#[test]
fn every_schema_problem_is_reported_in_file_order_with_its_line() {
    let text = "[server]\nlisten = 5\n[session]\nsame_site = \"laxx\"\nidle_timout = \"3m\"\n\
                access_ttl = \"soon\"\n[log]\nformat = \"jsn\"\n[sesion]\n";
    let p = parse::parse(text, "gateway.toml").unwrap();
    assert!(p.complete);
    let got: Vec<(&str, &str)> = p
        .problems
        .iter()
        .map(|e| (e.key.as_str(), e.message.as_str()))
        .collect();
    let keys: Vec<&str> = got.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        keys,
        [
            "server.listen",
            "session.same_site",
            "session.idle_timout",
            "session.access_ttl",
            "log.format",
            "sesion"
        ]
    );
    for ((_, message), line) in got.iter().zip([2, 4, 5, 6, 8, 9]) {
        assert!(message.ends_with(&format!("(line {line})")), "{message}");
    }
    assert!(got[1].1.contains("expected `lax` or `strict`"), "{got:?}");
    // The refused keys hold their defaults.
    assert_eq!(p.raw.session.same_site, SameSite::Lax);
    assert_eq!(p.raw.server.listen, "127.0.0.1:8443");
}

#[test]
fn schema_messages_name_no_rust_type() {
    let p = parse::parse("server = 5\n[[route]]\npath_prefix = 1\n", "g.toml").unwrap();
    for e in &p.problems {
        assert!(!e.message.contains("Raw"), "{e}");
    }
    assert!(
        p.problems[0].message.contains("a [server] table"),
        "{:?}",
        p.problems
    );
}

#[test]
fn a_syntax_error_names_the_file_it_is_in() {
    let e = parse::parse("[server]\nlisten = \n", "/etc/sg/prod.toml").unwrap_err();
    assert_eq!(e.0[0].key, "/etc/sg/prod.toml");
    assert!(e.0[0].message.ends_with("(line 2)"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.toml");
    std::fs::write(&path, "[server\n").unwrap();
    let e = read(&path, LoadOptions::default()).unwrap_err();
    assert_eq!(e.0[0].key, path.display().to_string());
}

#[test]
fn an_entry_without_a_required_key_is_dropped_and_later_indices_stay_as_written() {
    let text = "[[upstream]]\nname = \"a\"\n[[upstream]]\nname = \"b\"\nurl = \"http://x\"\n\
                timeout = 3\n[[upstream]]\nname = \"c\"\nurl = 7\n";
    let p = parse::parse(text, "g.toml").unwrap();
    assert!(!p.complete);
    let keys: Vec<&str> = p.problems.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        ["upstream[0]", "upstream[1].timeout", "upstream[2].url"]
    );
    assert!(
        p.problems[0].message.contains("missing field `url`"),
        "{:?}",
        p.problems
    );
    // Incomplete: validation does not add "route to an unknown upstream" and the like.
    let e = preflight_free_validate(p);
    assert_eq!(e.len(), 3, "{e:?}");
}

fn preflight_free_validate(p: Parsed) -> Vec<ConfigError> {
    match p.complete {
        true => validate(p.raw, LoadOptions::default(), &env_with(A, R))
            .err()
            .map_or_else(Vec::new, |e| e.0),
        false => p.problems,
    }
}

#[test]
fn every_path_key_is_resolved_against_the_config_directory() {
    let text = "[tls]\ncert = \"c.pem\"\nkey = \"k/k.pem\"\n[keys]\naccess_secret_file = \"a\"\n\
                refresh_secret_file = \"r\"\nassertion_key_file = \"as.pem\"\n\
                assertion_previous_key_file = \"old.pem\"\n[login]\nusers_file = \"u.toml\"\n\
                [audit]\nfile = \"audit.log\"\n[[oidc.provider]]\nname = \"a\"\n\
                issuer = \"https://idp\"\nclient_id = \"c\"\nclient_secret_file = \"oidc/a\"\n\
                ca_file = \"idp-ca.pem\"\n";
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("etc");
    std::fs::create_dir(&conf).unwrap();
    let path = conf.join("gw.toml");
    std::fs::write(&path, text).unwrap();
    let raw = read(&path, LoadOptions::default())
        .unwrap()
        .into_result()
        .unwrap();
    let k = &raw.keys;
    let got = [
        &raw.tls.cert,
        &raw.tls.key,
        &k.access_secret_file.as_ref().unwrap().items()[0],
        &k.refresh_secret_file.as_ref().unwrap().items()[0],
        k.assertion_key_file.as_ref().unwrap(),
        k.assertion_previous_key_file.as_ref().unwrap(),
        raw.login.users_file.as_ref().unwrap(),
        raw.audit.file.as_ref().unwrap(),
        raw.oidc.provider[0].client_secret_file.as_ref().unwrap(),
        raw.oidc.provider[0].ca_file.as_ref().unwrap(),
    ];
    let want = [
        "c.pem",
        "k/k.pem",
        "a",
        "r",
        "as.pem",
        "old.pem",
        "u.toml",
        "audit.log",
        "oidc/a",
        "idp-ca.pem",
    ];
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!(**g, conf.join(w));
    }
    // Absolute paths stay; so do relative ones of a file named without a directory.
    let mut raw = parse("[tls]\ncert = \"/abs/c.pem\"\n").unwrap();
    raw.resolve_paths(&conf);
    assert_eq!(raw.tls.cert, Path::new("/abs/c.pem"));
    // The default users file is beside the configuration too; in oidc mode there is none.
    assert_eq!(raw.login.users_file, Some(conf.join("users.toml")));
    let mut raw = parse("[login]\nmode = \"oidc\"\n").unwrap();
    raw.resolve_paths(&conf);
    assert_eq!(raw.login.users_file, None);
    assert_eq!(base_dir(Path::new("gateway.toml")), Path::new(""));
    assert_eq!(Path::new("").join("certs/x.pem"), Path::new("certs/x.pem"));
}

/// Every key whose value is one of a few words, with a word it does not take.
const WORD_KEYS: &[(&str, &str, &str)] = &[
    ("session", "same_site", "lax"),
    ("keys", "algorithm", "HS256"),
    ("store", "kind", "memory"),
    ("login", "mode", "users_file"),
    ("url_tokens", "action", "redirect"),
    ("csrf", "mode", "origin"),
    ("anomaly", "ip_change", "log"),
    ("anomaly", "user_agent_change", "revoke"),
    ("log", "format", "text"),
    ("log", "level", "info"),
];

/// The problem keys of `table` text after a bare upstream (no `[login]`, unlike `BASE`).
fn word_keys(table: &str) -> Vec<String> {
    let text = format!("[[upstream]]\nname = \"app\"\nurl = \"http://127.0.0.1:3000\"\n{table}");
    let raw = match parse(&text) {
        Ok(raw) => raw,
        Err(e) => return e.0.into_iter().map(|e| e.key).collect(),
    };
    match validate(raw, LoadOptions::default(), &env_with(A, R)) {
        Ok(_) => vec![],
        Err(e) => e.0.into_iter().map(|e| e.key).collect(),
    }
}

#[test]
fn every_word_key_refuses_a_word_it_does_not_take() {
    for (table, key, good) in WORD_KEYS {
        let name = format!("{table}.{key}");
        let ok = format!("[{table}]\n{key} = {good:?}\n");
        assert_eq!(word_keys(&ok), Vec::<String>::new(), "{name} = {good:?}");
        let typo = format!("{good}s");
        let shout = good.to_ascii_uppercase();
        let quiet = good.to_ascii_lowercase();
        let case = if shout == *good { quiet } else { shout };
        for bad in [typo.as_str(), case.as_str(), "", " ", "on", "default"] {
            if *key == "level" && bad == case {
                continue; // levels are read without case, as RUST_LOG's are
            }
            let text = format!("[{table}]\n{key} = {bad:?}\n");
            assert_eq!(word_keys(&text), vec![name.clone()], "{name} = {bad:?}");
        }
        let padded = format!("[{table}]\n{key} = \" {good}\"\n");
        if *key != "level" {
            // (a filter reads " info" as info: nothing is silenced)
            assert_eq!(word_keys(&padded), vec![name.clone()], "{name} padded");
        }
        let number = format!("[{table}]\n{key} = 1\n");
        assert_eq!(word_keys(&number), vec![name.clone()], "{name} = 1");
    }
}

#[test]
fn log_level_takes_levels_and_filters_of_levels_only() {
    for good in [
        "info",
        "INFO",
        "warn",
        "off",
        "debug,hyper=warn",
        "sessiongate=debug",
        "info,sessiongate::proxy=trace",
    ] {
        let text = format!("[log]\nlevel = {good:?}\n");
        assert_eq!(keys_of(&text, A, R), Vec::<String>::new(), "{good:?}");
    }
    for bad in [
        "inof",
        "warning",
        "verbose",
        "",
        "info,",
        "sessiongate=",
        "info,sessiongate=verbose",
        "sessiongate",
    ] {
        let text = format!("[log]\nlevel = {bad:?}\n");
        if bad == "info," {
            // A trailing comma adds no directive: accepted.
            assert_eq!(keys_of(&text, A, R), Vec::<String>::new());
            continue;
        }
        assert_eq!(keys_of(&text, A, R), vec!["log.level"], "{bad:?}");
    }
}

fn server_problems(extra: &str) -> (Vec<String>, Vec<ConfigError>) {
    let text = format!("{BASE}\n[server]\n{extra}");
    let raw = match parse(&text) {
        Ok(raw) => raw,
        Err(e) => return (e.0.into_iter().map(|e| e.key).collect(), vec![]),
    };
    match validate(raw, LoadOptions::default(), &env_with(A, R)) {
        Ok(c) => (vec![], c.warnings),
        Err(e) => (e.0.into_iter().map(|e| e.key).collect(), vec![]),
    }
}

#[test]
fn trusted_proxies_take_addresses_and_blocks_and_name_a_bad_one_with_examples() {
    let text = format!(
        "{BASE}\n[server]\ntrusted_proxies = [\"10.0.0.7\", \"10.1.0.0/16\", \"2001:db8::1\", \
         \"192.168.1.9/24\"]\n"
    );
    let c = validate(
        parse(&text).unwrap(),
        LoadOptions::default(),
        &env_with(A, R),
    )
    .unwrap();
    let nets: Vec<String> = c
        .server
        .trusted_proxies
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(
        nets,
        [
            "10.0.0.7/32",
            "10.1.0.0/16",
            "2001:db8::1/128",
            "192.168.1.0/24"
        ]
    );
    for bad in ["10.0.0.300", "10.0.0.0/33", "proxy.local", "", "10.0.0.1 "] {
        let text = format!("{BASE}\n[server]\ntrusted_proxies = [\"10.0.0.1\", {bad:?}]\n");
        let e = validate(
            parse(&text).unwrap(),
            LoadOptions::default(),
            &env_with(A, R),
        )
        .unwrap_err();
        assert_eq!(e.0.len(), 1, "{e}");
        assert_eq!(e.0[0].key, "server.trusted_proxies[1]");
        assert!(e.0[0].message.contains("\"10.0.0.0/8\""), "{e}");
    }
    let (errs, warnings) = server_problems("trusted_proxies = [\"0.0.0.0/0\"]\n");
    assert!(errs.is_empty());
    assert_eq!(warnings[0].key, "server.trusted_proxies[0]");
}

#[test]
fn hsts_defaults_to_a_year_with_subdomains_and_preload_needs_its_terms() {
    let hsts = |extra: &str| {
        let text = format!("{BASE}\n[server]\n{extra}");
        validate(
            parse(&text).unwrap(),
            LoadOptions::default(),
            &env_with(A, R),
        )
        .map(|c| c.server.hsts.header_value())
    };
    assert_eq!(hsts("").unwrap(), "max-age=31536000; includeSubDomains");
    assert_eq!(
        hsts("hsts_max_age = \"30d\"\nhsts_include_subdomains = false\n").unwrap(),
        "max-age=2592000"
    );
    assert_eq!(
        hsts("hsts_max_age = \"730d\"\nhsts_preload = true\n").unwrap(),
        "max-age=63072000; includeSubDomains; preload"
    );
    assert_eq!(
        hsts("hsts_max_age = \"1y\"\nhsts_preload = true\n").unwrap(),
        "max-age=31557600; includeSubDomains; preload"
    );
    for (extra, want) in [
        (
            "hsts_preload = true\nhsts_max_age = \"364d\"\n",
            vec!["server.hsts_max_age"],
        ),
        (
            "hsts_preload = true\nhsts_include_subdomains = false\n",
            vec!["server.hsts_include_subdomains"],
        ),
        (
            "hsts_preload = true\nhsts_include_subdomains = false\nhsts_max_age = \"0s\"\n",
            vec!["server.hsts_max_age", "server.hsts_include_subdomains"],
        ),
        ("hsts_max_age = 31536000\n", vec!["server.hsts_max_age"]),
        ("hsts_preload = \"yes\"\n", vec!["server.hsts_preload"]),
    ] {
        assert_eq!(server_problems(extra).0, want, "{extra}");
    }
    let (errs, warnings) = server_problems("hsts_max_age = \"0s\"\n");
    assert!(errs.is_empty());
    assert_eq!(warnings[0].key, "server.hsts_max_age");
}

#[test]
fn listeners_on_one_port_are_refused() {
    for (extra, want) in [
        (
            "listen = \"127.0.0.1:8443\"\nredirect_listen = \"127.0.0.1:8443\"\n",
            vec!["server.redirect_listen"],
        ),
        (
            "listen = \"0.0.0.0:8443\"\nadmin_listen = \"127.0.0.1:8443\"\n",
            vec!["server.admin_listen"],
        ),
        (
            "redirect_listen = \"[::]:9090\"\nadmin_listen = \"127.0.0.1:9090\"\n",
            vec!["server.admin_listen"],
        ),
        (
            "listen = \"127.0.0.1:8443\"\nredirect_listen = \"[::ffff:127.0.0.1]:8443\"\n",
            vec!["server.redirect_listen"],
        ),
        (
            "listen = \"127.0.0.1:7000\"\nredirect_listen = \"127.0.0.1:7000\"\n\
             admin_listen = \"127.0.0.1:7000\"\n",
            vec!["server.redirect_listen", "server.admin_listen"],
        ),
    ] {
        assert_eq!(server_problems(extra).0, want, "{extra}");
    }
    for fine in [
        "listen = \"127.0.0.1:0\"\nredirect_listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n",
        "listen = \"127.0.0.1:8443\"\nredirect_listen = \"127.0.0.2:8443\"\n",
        "listen = \"127.0.0.1:8443\"\nredirect_listen = \"\"\nadmin_listen = \"\"\n",
    ] {
        assert_eq!(server_problems(fine).0, Vec::<String>::new(), "{fine}");
    }
}

#[test]
fn a_reachable_admin_listener_needs_the_admin_token() {
    for addr in ["0.0.0.0:9090", "10.0.0.5:9090", "[::]:9090"] {
        let (errs, _) = server_problems(&format!("admin_listen = {addr:?}\n"));
        assert_eq!(errs, ["server.admin_listen"], "{addr}");
    }
    for addr in [
        "127.0.0.1:9090",
        "127.0.0.9:9090",
        "[::1]:9090",
        "[::ffff:127.0.0.1]:9090",
        "",
    ] {
        let (errs, _) = server_problems(&format!("admin_listen = {addr:?}\n"));
        assert!(errs.is_empty(), "{addr}: {errs:?}");
    }
    let text =
        format!("{BASE}\n[server]\nadmin_listen = \"0.0.0.0:9090\"\n[admin]\ntoken_env = \"T\"\n");
    let env = |n: &str| match n {
        "T" => Some("t0k3n-0123456789-abcdefghij-ABCDEFGHIJ".to_string()),
        other => env_with(A, R)(other),
    };
    assert!(validate(parse(&text).unwrap(), LoadOptions::default(), &env).is_ok());
}

#[test]
fn csrf_off_is_a_warning_not_an_error() {
    let c = validate(
        parse(&format!("{BASE}\n[csrf]\nmode = \"off\"\n")).unwrap(),
        LoadOptions::default(),
        &env_with(A, R),
    )
    .unwrap();
    let keys: Vec<&str> = c.warnings.iter().map(|w| w.key.as_str()).collect();
    assert_eq!(keys, ["csrf.mode"]);
    let c = validate(
        parse(BASE).unwrap(),
        LoadOptions::default(),
        &env_with(A, R),
    )
    .unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}
