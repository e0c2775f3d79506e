//! Preflight: the checks of the files a configuration names, through the modules that will use
//! them — the TLS certificate and key (`server::tls`), the users file (`login::users`), the
//! identity assertion keys (`assertion`), the system's CA certificates when an `https://`
//! upstream names no `ca_file` (`proxy`). `run` and `check-config` both run it beside
//! `config::validate`, so a configuration that passes `check-config` starts, and the problems of
//! both are reported at once. It writes nothing; each problem names its key, like validation's.

use std::path::{Path, PathBuf};

use crate::assertion::Signer;
use crate::config::raw::RawConfig;
use crate::config::{Config, ConfigError, ConfigErrors, LoadOptions, Parsed, Source, validate};
use crate::login::users::Users;

/// The files a configuration names, as written: known before validation, so that their
/// problems are found even when other keys are wrong.
#[derive(Debug, Clone)]
pub struct Files {
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// `login.users_file`: in `users_file` mode, and in `oidc` mode when written.
    pub users_file: Option<PathBuf>,
    /// `keys.assertion_key_file` and `keys.assertion_previous_key_file`, by key.
    pub assertion_keys: Vec<(&'static str, PathBuf)>,
    /// The host of `server.public_origin`, which the certificate must be valid for (`None`
    /// when the origin is not a URL: validation's to report).
    pub public_host: Option<String>,
    /// `upstream[i].ca_file` of each `https://` upstream that names none: it trusts the
    /// system's CA certificates, which must then be there.
    pub system_roots_for: Vec<String>,
}

impl Files {
    pub fn named_by(raw: &RawConfig) -> Self {
        let k = &raw.keys;
        let assertion_keys = [
            ("keys.assertion_key_file", &k.assertion_key_file),
            (
                "keys.assertion_previous_key_file",
                &k.assertion_previous_key_file,
            ),
        ]
        .into_iter()
        .filter_map(|(key, p)| Some((key, p.clone()?)))
        .collect();
        let system_roots_for = raw
            .upstream
            .iter()
            .enumerate()
            .filter(|(_, u)| {
                let https = u
                    .url
                    .get(..8)
                    .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
                https && u.ca_file.is_none()
            })
            .map(|(i, _)| format!("upstream[{i}].ca_file"))
            .collect();
        Self {
            system_roots_for,
            tls_cert: raw.tls.cert.clone(),
            tls_key: raw.tls.key.clone(),
            users_file: raw.login.users_file_in_use(),
            assertion_keys,
            public_host: url::Url::parse(&raw.server.public_origin)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string)),
        }
    }
}

/// What preflight read, for `run` to use as checked.
#[derive(Debug)]
pub struct Checked {
    /// The users of `login.users_file` (none in `upstream` mode, in `oidc` mode without one, or
    /// in `--dev` without a file).
    pub users: Users,
    /// What `--dev` left out, to tell the operator at start.
    pub notes: Vec<String>,
    /// What the files allow but an operator should know (in `--dev`, a certificate that is not
    /// valid for the public origin).
    pub warnings: Vec<ConfigError>,
}

/// Validate a parsed configuration (see `config::validate`) and check the files it names:
/// every problem of the three — the schema's (keys that do not fit), validation's, the files' —
/// in that order. A key the schema refused holds its default, so what validation or the files
/// then say about that key (or in its name) would be about a value nobody wrote, and is left
/// out; when the schema had to drop an entry, only the schema's problems are reported.
pub fn validate_and_check(
    parsed: impl Into<Parsed>,
    opts: LoadOptions,
    source: &dyn Source,
) -> Result<(Config, Checked), ConfigErrors> {
    let Parsed {
        raw,
        problems,
        complete,
    } = parsed.into();
    if !complete {
        return Err(ConfigErrors(problems));
    }
    let files = Files::named_by(&raw);
    match (validate(raw, opts, source), check(&files, opts.dev)) {
        (Ok(cfg), Ok(mut checked)) if problems.is_empty() => {
            let known = policy_names(&cfg, &checked.users);
            checked.warnings.extend(known);
            Ok((cfg, checked))
        }
        (cfg, checked) => {
            let mut later = cfg.err().map_or_else(Vec::new, |e| e.0);
            later.extend(checked.err().map_or_else(Vec::new, |e| e.0));
            let mut errs = problems;
            let unwritten = |e: &ConfigError| errs.iter().any(|p| follows_from(e, p));
            later.retain(|e| !unwritten(e));
            errs.extend(later);
            Err(ConfigErrors(errs))
        }
    }
}

/// Route policies naming roles or users the users file does not have: a warning each, with the
/// known ones listed (a typo would keep everyone out, or let nobody in past `deny_roles`). Only
/// where the users file is the one source of users and roles (`login.mode = "users_file"`,
/// with a file): the app's grant and an identity provider bring names the file cannot know.
fn policy_names(cfg: &crate::config::Config, users: &Users) -> Vec<ConfigError> {
    if cfg.login.mode != crate::config::LoginMode::UsersFile || users.is_empty() {
        return Vec::new();
    }
    let roles = users.roles();
    let known_roles = roles.iter().copied().collect::<Vec<_>>().join(", ");
    let mut out = Vec::new();
    for (i, r) in cfg.routes.iter().enumerate() {
        let p = &r.policy;
        let lists = [
            ("allow_roles", p.allow_roles.as_deref().unwrap_or_default()),
            ("deny_roles", p.deny_roles.as_slice()),
        ];
        for (key, list) in lists {
            for (j, role) in list.iter().enumerate() {
                if !roles.contains(role.as_str()) {
                    out.push(ConfigError::new(
                        format!("route[{i}].{key}[{j}]"),
                        format!("no user of login.users_file has the role {role:?} (known roles: {known_roles})"),
                    ));
                }
            }
        }
        for (j, user) in p
            .allow_users
            .as_deref()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            if !users.has(user) {
                out.push(ConfigError::new(
                    format!("route[{i}].allow_users[{j}]"),
                    format!("login.users_file has no user {user:?}"),
                ));
            }
        }
    }
    out
}

/// Whether `e` is about the default that stands in for the refused key of `p`.
fn follows_from(e: &ConfigError, p: &ConfigError) -> bool {
    let under = e
        .key
        .strip_prefix(p.key.as_str())
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']));
    under || e.message.contains(p.key.as_str())
}

/// Check the files. `dev`: as `run --dev` starts (a missing certificate, assertion key or users
/// file is allowed: `run --dev` creates the first two and goes without the third; a certificate
/// that is not valid for the public origin is a warning).
pub fn check(files: &Files, dev: bool) -> Result<Checked, ConfigErrors> {
    let mut errs = Vec::new();
    let mut notes = Vec::new();
    let mut warnings = Vec::new();
    if tls_pair(&files.tls_cert, &files.tls_key, dev, &mut errs) {
        let mismatch = files.public_host.as_deref().and_then(|host| {
            let covered = crate::server::tls::covers_host(&files.tls_cert, host)?;
            (!covered).then(|| not_covered(&files.tls_cert, host))
        });
        match mismatch {
            Some(e) if dev => warnings.push(e),
            Some(e) => errs.push(e),
            None => {}
        }
    }
    for (key, path) in &files.assertion_keys {
        assertion_key(key, path, &mut errs);
    }
    distinct_assertion_keys(&files.assertion_keys, &mut errs);
    if !files.system_roots_for.is_empty()
        && let Err(e) = crate::proxy::system_roots()
    {
        for key in &files.system_roots_for {
            errs.push(ConfigError::new(key.clone(), e.clone()));
        }
    }
    let users = users(files.users_file.as_deref(), dev, &mut errs, &mut notes);
    match users {
        Some(users) if errs.is_empty() => Ok(Checked {
            users,
            notes,
            warnings,
        }),
        _ => Err(ConfigErrors(errs)),
    }
}

fn not_covered(cert: &Path, host: &str) -> ConfigError {
    ConfigError::new(
        "tls.cert",
        format!(
            "the certificate in {} is not valid for {host}, the host of server.public_origin: \
             browsers would refuse every connection (its subjectAltName must name {host})",
            cert.display()
        ),
    )
}

/// `tls.cert` and `tls.key`: readable, and a certificate chain and key that form a pair.
/// Whether they do (`false` also when `--dev` will create them).
fn tls_pair(cert: &Path, key: &Path, dev: bool, errs: &mut Vec<ConfigError>) -> bool {
    let mut readable = true;
    for (name, p) in [("tls.cert", cert), ("tls.key", key)] {
        if dev && !p.exists() {
            readable = false;
            continue; // `run --dev` creates a localhost certificate
        }
        if let Err(e) = std::fs::File::open(p) {
            readable = false;
            let hint = if e.kind() == std::io::ErrorKind::NotFound {
                " (for development, `sessiongate dev-cert` makes a localhost certificate and \
                 key, and `run --dev` makes them when they are missing)"
            } else {
                ""
            };
            errs.push(ConfigError::new(
                name,
                format!("cannot read {}: {e}{hint}", p.display()),
            ));
        }
    }
    if !readable {
        return false;
    }
    match crate::server::tls::load_server_config(cert, key) {
        Ok(_) => true,
        Err(e) => {
            errs.push(ConfigError::new(e.key(), e.to_string()));
            false
        }
    }
}

/// An assertion key file holds an Ed25519 private key. A file that cannot be read is
/// validation's to report (it reads the key into the config).
fn assertion_key(key: &str, path: &Path, errs: &mut Vec<ConfigError>) {
    let Ok(pem) = std::fs::read(path) else {
        return;
    };
    if Signer::check_pem(&pem).is_err() {
        errs.push(ConfigError::new(
            key,
            format!(
                "{} is not an Ed25519 PKCS#8 PEM private key (make one with `sessiongate \
                 gen-key --out FILE`)",
                path.display()
            ),
        ));
    }
}

/// `keys.assertion_previous_key_file` is another key than `keys.assertion_key_file` (in a
/// rotation, the next key, then the one replaced): the same key twice publishes nothing new,
/// and means a step of the rotation went wrong (one path changed, not the other).
fn distinct_assertion_keys(keys: &[(&'static str, PathBuf)], errs: &mut Vec<ConfigError>) {
    let kids: Vec<Option<String>> = keys
        .iter()
        .map(|(_, p)| {
            let pem = std::fs::read(p).ok()?;
            Signer::kid_of_pem(&pem).ok()
        })
        .collect();
    if let [(current, _), (previous, _)] = keys
        && let [Some(a), Some(b)] = kids.as_slice()
        && a == b
    {
        errs.push(ConfigError::new(
            *previous,
            format!(
                "holds the same key as {current}: it must be another key (during a \
                         rotation, the next key, then the one it replaced)"
            ),
        ));
    }
}

/// The users of `login.users_file`; `None` when the file is refused (recorded).
fn users(
    file: Option<&Path>,
    dev: bool,
    errs: &mut Vec<ConfigError>,
    notes: &mut Vec<String>,
) -> Option<Users> {
    let Some(p) = file else {
        return Some(Users::empty());
    };
    if p.exists() {
        return Users::load(p)
            .map_err(|e| errs.push(ConfigError::new("login.users_file", e)))
            .ok();
    }
    if dev {
        notes.push(format!(
            "login.users_file: {} not found, only the demo user can log in",
            p.display()
        ));
        return Some(Users::empty());
    }
    errs.push(ConfigError::new(
        "login.users_file",
        format!(
            "cannot read {}: not found (create users with `sessiongate hash-password`)",
            p.display()
        ),
    ));
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    const A: &str = "Q3ZqkJ8v0mX2rB7tL9wE4yN6uH1sD5cF0aG8pK3iM2o";
    const R: &str = "Zx9Lm2Nq4Rs6Tu8Vw0Yb1Cd3Ef5Gh7Jk9Pq2Sx4Vz6B";

    /// Test secrets in the environment, the real file system.
    struct Disk;

    impl Source for Disk {
        fn env(&self, name: &str) -> Option<String> {
            match name {
                "SESSIONGATE_ACCESS_SECRET" => Some(A.into()),
                "SESSIONGATE_REFRESH_SECRET" => Some(R.into()),
                _ => None,
            }
        }
        fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
            config::System.read(path)
        }
    }

    struct Dir {
        dir: tempfile::TempDir,
        cert: PathBuf,
        key: PathBuf,
        users: PathBuf,
    }

    /// A directory with a localhost certificate and an empty users file.
    fn dir() -> Dir {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        crate::dev::write_dev_cert(&cert, &key).unwrap();
        let users = dir.path().join("users.toml");
        std::fs::write(&users, "").unwrap();
        Dir {
            dir,
            cert,
            key,
            users,
        }
    }

    /// A config naming these files, with `[keys]` lines and other text appended.
    fn raw(cert: &Path, key: &Path, users: &Path, keys: &str) -> RawConfig {
        let text = format!(
            "[[upstream]]\nname = \"app\"\nurl = \"http://127.0.0.1:3000\"\n\
             [tls]\ncert = {cert:?}\nkey = {key:?}\n[login]\nusers_file = {users:?}\n[keys]\n{keys}"
        );
        config::parse(&text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn problems(raw: &RawConfig, dev: bool) -> Vec<(String, String)> {
        match check(&Files::named_by(raw), dev) {
            Ok(_) => vec![],
            Err(e) => e.0.into_iter().map(|e| (e.key, e.message)).collect(),
        }
    }

    #[test]
    fn good_files_pass_and_their_users_are_returned() {
        let d = dir();
        let r = raw(&d.cert, &d.key, &d.users, "");
        let (_, checked) =
            validate_and_check(r, LoadOptions::default(), &Disk).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(checked.users.len(), 0);
        assert!(checked.notes.is_empty());
    }

    #[test]
    fn a_missing_certificate_is_refused_outside_dev_only() {
        let d = dir();
        let missing = d.dir.path().join("none.pem");
        let r = raw(&missing, &d.key, &d.users, "");
        let p = problems(&r, false);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].0, "tls.cert");
        assert!(
            p[0].1
                .starts_with(&format!("cannot read {}", missing.display()))
        );
        assert!(problems(&r, true).is_empty());
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let d = dir();
        let other = d.dir.path().join("other");
        crate::dev::write_dev_cert(&other.join("c.pem"), &other.join("k.pem")).unwrap();
        let p = problems(&raw(&d.cert, &other.join("k.pem"), &d.users, ""), false);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].0, "tls.key");
        assert!(p[0].1.contains("tls.cert"), "{p:?}");
    }

    #[test]
    fn a_certificate_for_another_host_is_refused_outside_dev_and_a_warning_in_dev() {
        let d = dir();
        let mut r = raw(&d.cert, &d.key, &d.users, "");
        r.server.public_origin = "https://sso.example.com".into();
        let p = problems(&r, false);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].0, "tls.cert");
        assert!(p[0].1.contains("sso.example.com"), "{p:?}");
        let checked = check(&Files::named_by(&r), true).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(checked.warnings.len(), 1, "{:?}", checked.warnings);
        assert_eq!(checked.warnings[0].key, "tls.cert");
        for covered in [
            "https://localhost:8443",
            "https://127.0.0.1",
            "https://[::1]:8443",
        ] {
            r.server.public_origin = covered.into();
            assert!(problems(&r, false).is_empty(), "{covered}");
        }
    }

    #[test]
    fn schema_problems_come_first_and_hide_what_their_defaults_cause() {
        let d = dir();
        let text = format!(
            "[[upstream]]\nname = \"app\"\nurl = \"http://127.0.0.1:3000\"\n\
             [tls]\ncert = 5\nkey = {:?}\n[login]\nusers_file = {:?}\n\
             [store]\nkind = \"redsi\"\nurl = \"redis://127.0.0.1:1\"\n\
             [session]\nrefresh_grace = \"10m\"\n",
            d.key, d.users
        );
        let parsed = config::parse::parse(&text, "g.toml").unwrap();
        let e = validate_and_check(parsed, LoadOptions::default(), &Disk).unwrap_err();
        let keys: Vec<&str> = e.0.iter().map(|e| e.key.as_str()).collect();
        // The default certificate path (certs/localhost.pem) is not reported, nor
        // `store.url: only applies to store.kind = "redis"`.
        assert_eq!(
            keys,
            ["tls.cert", "store.kind", "session.refresh_grace"],
            "{e}"
        );
    }

    #[test]
    fn the_users_file_is_required_outside_dev_and_parsed() {
        let d = dir();
        let missing = d.dir.path().join("nobody.toml");
        let r = raw(&d.cert, &d.key, &missing, "");
        assert_eq!(
            problems(&r, false),
            [(
                "login.users_file".to_string(),
                format!(
                    "cannot read {}: not found (create users with `sessiongate hash-password`)",
                    missing.display()
                )
            )]
        );
        let checked = check(&Files::named_by(&r), true).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            checked.notes[0].contains("only the demo user"),
            "{:?}",
            checked.notes
        );

        std::fs::write(&d.users, "[[user]]\nname = \"a\"\npassword_hash = \"x\"\n").unwrap();
        let p = problems(&raw(&d.cert, &d.key, &d.users, ""), false);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].0, "login.users_file");
        assert!(p[0].1.contains("password_hash"), "{p:?}");
    }

    #[test]
    fn oidc_mode_reads_a_users_file_only_when_one_is_written() {
        let d = dir();
        let provider = "[[oidc.provider]]\nname = \"corp\"\nissuer = \"https://idp.example.com\"\n\
                        client_id = \"gw\"\nclient_secret_file = \"/dev/null\"\n";
        let text = |login: &str| {
            format!(
                "[[upstream]]\nname = \"app\"\nurl = \"http://127.0.0.1:3000\"\n\
                 [tls]\ncert = {:?}\nkey = {:?}\n[login]\nmode = \"oidc\"\n{login}\n{provider}",
                d.cert, d.key
            )
        };
        let r = config::parse(&text("")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(Files::named_by(&r).users_file, None);
        assert_eq!(problems(&r, false), []);
        let missing = d.dir.path().join("nobody.toml");
        let r = config::parse(&text(&format!("users_file = {missing:?}")))
            .unwrap_or_else(|e| panic!("{e}"));
        let p = problems(&r, false);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].0, "login.users_file");
        std::fs::write(&missing, "[[user]]\nname = \"a\"\npassword_hash = \"x\"\n").unwrap();
        let p = problems(&r, false);
        assert!(p[0].1.contains("password_hash"), "{p:?}");
    }

    #[test]
    fn assertion_keys_must_be_ed25519() {
        let d = dir();
        let good = d.dir.path().join("a.pem");
        crate::dev::write_new_key(&good).unwrap();
        // The TLS key is a PKCS#8 PEM too, but ECDSA.
        let keys = format!(
            "assertion_key_file = {good:?}\nassertion_previous_key_file = {:?}\n",
            d.key
        );
        assert_eq!(
            problems(&raw(&d.cert, &d.key, &d.users, &keys), false),
            [(
                "keys.assertion_previous_key_file".to_string(),
                format!(
                    "{} is not an Ed25519 PKCS#8 PEM private key (make one with `sessiongate \
                     gen-key --out FILE`)",
                    d.key.display()
                )
            )]
        );
    }

    #[test]
    fn the_previous_assertion_key_must_be_another_key() {
        let d = dir();
        let a = d.dir.path().join("a.pem");
        let b = d.dir.path().join("b.pem");
        crate::dev::write_new_key(&a).unwrap();
        crate::dev::write_new_key(&b).unwrap();
        let copy = d.dir.path().join("a-copy.pem");
        std::fs::copy(&a, &copy).unwrap();
        let keys = |cur: &Path, prev: &Path| {
            format!("assertion_key_file = {cur:?}\nassertion_previous_key_file = {prev:?}\n")
        };
        assert_eq!(
            problems(&raw(&d.cert, &d.key, &d.users, &keys(&a, &b)), false),
            []
        );
        for prev in [&a, &copy] {
            let p = problems(&raw(&d.cert, &d.key, &d.users, &keys(&a, prev)), false);
            assert_eq!(p.len(), 1, "{p:?}");
            assert_eq!(p[0].0, "keys.assertion_previous_key_file");
            assert!(
                p[0].1
                    .starts_with("holds the same key as keys.assertion_key_file"),
                "{p:?}"
            );
        }
    }

    #[test]
    fn file_problems_come_with_the_other_problems() {
        let d = dir();
        let mut r = raw(&d.dir.path().join("none.pem"), &d.key, &d.users, "");
        r.session.refresh_grace = std::time::Duration::from_secs(600);
        let e = validate_and_check(r, LoadOptions::default(), &Disk).unwrap_err();
        let keys: Vec<&str> = e.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["session.refresh_grace", "tls.cert"]);
    }

    #[test]
    fn dev_checks_write_no_file() {
        let d = dir();
        let cert = d.dir.path().join("certs/localhost.pem");
        let assertion = d.dir.path().join("keys/assertion.pem");
        let keys = format!("assertion_key_file = {assertion:?}\n");
        let r = raw(&cert, &d.key, &d.dir.path().join("u.toml"), &keys);
        let before = std::fs::read_dir(d.dir.path()).unwrap().count();
        let opts = LoadOptions { dev: true };
        let (cfg, _) = validate_and_check(r, opts, &Disk).unwrap_or_else(|e| panic!("{e}"));
        assert!(cfg.keys.assertion.is_none());
        assert_eq!(std::fs::read_dir(d.dir.path()).unwrap().count(), before);
    }
}
