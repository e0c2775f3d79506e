//! `[keys]`: the access and refresh key rings (from `*_env` or `*_file`, one name or a list:
//! the first signs, every one verifies), and the identity assertion's signing keys. The
//! secrets are read through the injected [`Source`]; a weak one (short, a placeholder, too few
//! distinct characters), one listed twice in a ring, or one shared between rings is refused,
//! naming the key with its index (`keys.access_secret_env[1]`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Errors;
use crate::config::raw::{
    DEFAULT_ACCESS_SECRET_ENV, DEFAULT_REFRESH_SECRET_ENV, OneOrList, RawKeys,
};
use crate::config::{AssertionConfig, KeysConfig, RingSecret, Secret, SecretRing, Source};

/// `None` when a secret is missing or refused (recorded).
pub(super) fn validate(
    k: &RawKeys,
    dev: bool,
    source: &dyn Source,
    errs: &mut Errors,
    notes: &mut Vec<String>,
) -> Option<KeysConfig> {
    let access_default = OneOrList::One(DEFAULT_ACCESS_SECRET_ENV.to_string());
    let refresh_default = OneOrList::One(DEFAULT_REFRESH_SECRET_ENV.to_string());
    let mut read = |keys: RingKeys<'_>| read_ring(keys, dev, source, errs, notes);
    let access = read(RingKeys {
        env_key: "keys.access_secret_env",
        env: env_or_default(&k.access_secret_env, &k.access_secret_file, &access_default),
        file_key: "keys.access_secret_file",
        files: k.access_secret_file.as_ref(),
    });
    let refresh = read(RingKeys {
        env_key: "keys.refresh_secret_env",
        env: env_or_default(
            &k.refresh_secret_env,
            &k.refresh_secret_file,
            &refresh_default,
        ),
        file_key: "keys.refresh_secret_file",
        files: k.refresh_secret_file.as_ref(),
    });
    if let (Some(a), Some(r)) = (&access, &refresh) {
        rings_differ(
            a,
            r,
            "the access secret",
            "a refresh token must never verify as an access token",
            errs,
        );
    }
    let assertion = assertion(k, dev, source, errs);
    Some(KeysConfig {
        assertion,
        access_secrets: access?,
        refresh_secrets: refresh?,
    })
}

/// Every secret of `ring` must differ from every secret of `other` (`what` names `other`'s
/// secrets, `why` says what sharing one would allow); a problem is recorded under the key of
/// `ring`'s secret.
pub(super) fn rings_differ(
    other: &SecretRing,
    ring: &SecretRing,
    what: &str,
    why: &str,
    errs: &mut Errors,
) {
    for s in ring.iter() {
        if let Some(o) = other.iter().find(|o| same(&o.secret, &s.secret)) {
            errs.add(
                &s.key,
                format!("must differ from {what} ({}): {why}", o.key),
            );
        }
    }
}

fn same(a: &Secret, b: &Secret) -> bool {
    crate::util::ct_eq(a.expose(), b.expose())
}

/// The variables a ring comes from: the ones written, else the default unless a file is named.
fn env_or_default<'a>(
    env: &'a Option<OneOrList<String>>,
    file: &Option<OneOrList<PathBuf>>,
    default: &'a OneOrList<String>,
) -> Option<&'a OneOrList<String>> {
    match (env, file) {
        (Some(names), _) => Some(names),
        (None, None) => Some(default),
        (None, Some(_)) => None,
    }
}

/// The two keys that may give one ring, and what they name.
pub(super) struct RingKeys<'a> {
    pub(super) env_key: &'static str,
    pub(super) env: Option<&'a OneOrList<String>>,
    pub(super) file_key: &'static str,
    pub(super) files: Option<&'a OneOrList<PathBuf>>,
}

/// One secret of a ring as found: its key (with the index when a list is written) and its
/// bytes (`None`: the variable is not set).
struct Found {
    key: String,
    bytes: Option<Vec<u8>>,
}

/// What the ring's keys name, read: the key written (for a problem with the whole list) and
/// each secret. `None` when a problem is recorded already.
fn found(k: &RingKeys<'_>, source: &dyn Source, errs: &mut Errors) -> Option<(String, Vec<Found>)> {
    let (env_key, file_key) = (k.env_key, k.file_key);
    match (k.env, k.files) {
        (Some(_), Some(_)) => {
            errs.add(
                file_key,
                format!("set either {env_key} or {file_key}, not both"),
            );
            None
        }
        (None, Some(files)) => {
            let mut out = Vec::new();
            for (i, path) in files.items().iter().enumerate() {
                let key = files.item_key(file_key, i);
                match source.read(path) {
                    Ok(b) => out.push(Found {
                        key,
                        bytes: Some(trimmed(b)),
                    }),
                    Err(e) => errs.add(key, format!("cannot read {}: {e}", path.display())),
                }
            }
            (out.len() == files.items().len()).then(|| (file_key.to_string(), out))
        }
        (Some(names), None) => {
            let found = names.items().iter().enumerate().map(|(i, n)| Found {
                key: names.item_key(env_key, i),
                bytes: source.env(n).map(String::into_bytes),
            });
            Some((env_key.to_string(), found.collect()))
        }
        (None, None) => Some((
            env_key.to_string(),
            vec![Found {
                key: env_key.to_string(),
                bytes: None,
            }],
        )),
    }
}

/// A key ring from its environment variables or files, each secret checked on its own, none
/// twice. In `--dev`, a random secret when none of its variables is set.
pub(super) fn read_ring(
    k: RingKeys<'_>,
    dev: bool,
    source: &dyn Source,
    errs: &mut Errors,
    notes: &mut Vec<String>,
) -> Option<SecretRing> {
    let (key, entries) = found(&k, source, errs)?;
    if entries.is_empty() {
        errs.add(
            key,
            "is an empty list: name at least one secret (the first signs, every one verifies)",
        );
        return None;
    }
    if dev && entries.iter().all(|f| f.bytes.is_none()) {
        notes.push(format!(
            "{}: not set, using a random per-process secret (sessions end at restart)",
            k.env_key
        ));
        return Some(SecretRing::single(k.env_key, Secret::random()));
    }
    let names = k.env.map(OneOrList::items).unwrap_or_default();
    let mut ring: Vec<RingSecret> = Vec::new();
    let mut ok = true;
    for (i, Found { key, bytes }) in entries.into_iter().enumerate() {
        let Some(bytes) = bytes else {
            let what = names.get(i).map_or_else(
                || "is not set".to_string(),
                |n| format!("names environment variable {n}, which is not set (make a secret with `sessiongate gen-secret`)"),
            );
            errs.add(key, what);
            ok = false;
            continue;
        };
        if let Some(why) = secret_weakness(&bytes) {
            errs.add(key, why);
            ok = false;
            continue;
        }
        let secret = Secret::new(bytes);
        if let Some(first) = ring.iter().find(|r| same(&r.secret, &secret)) {
            let why = format!(
                "is the same secret as {}: each key of a ring must be another secret",
                first.key
            );
            errs.add(key, why);
            ok = false;
            continue;
        }
        ring.push(RingSecret { key, secret });
    }
    if !ok {
        return None;
    }
    SecretRing::new(ring)
}

/// A secret file's contents without trailing whitespace (the newline editors add).
fn trimmed(mut b: Vec<u8>) -> Vec<u8> {
    while b.last().is_some_and(|c| c.is_ascii_whitespace()) {
        b.pop();
    }
    b
}

/// The assertion keys, when `keys.assertion_key_file` is set. In `--dev` a missing key file is
/// left out: `run --dev` creates it before validating, `check-config --dev` only looks.
fn assertion(
    k: &RawKeys,
    dev: bool,
    source: &dyn Source,
    errs: &mut Errors,
) -> Option<AssertionConfig> {
    if k.assertion_ttl < Duration::from_secs(10) || k.assertion_ttl > Duration::from_secs(300) {
        errs.add("keys.assertion_ttl", "must be between 10s and 5m");
    }
    if k.assertion_audience.is_empty() {
        errs.add("keys.assertion_audience", "must not be empty");
    }
    let path = k.assertion_key_file.as_ref()?;
    let key_pem = match source.read(path) {
        Err(e) if dev && e.kind() == std::io::ErrorKind::NotFound => return None,
        read => key_file(read, path, "keys.assertion_key_file", errs)?,
    };
    let previous_pem = match &k.assertion_previous_key_file {
        Some(p) => Some(key_file(
            source.read(p),
            p,
            "keys.assertion_previous_key_file",
            errs,
        )?),
        None => None,
    };
    Some(AssertionConfig {
        key_pem,
        previous_pem,
        audience: k.assertion_audience.clone(),
        ttl: k.assertion_ttl,
    })
}

fn key_file(
    read: std::io::Result<Vec<u8>>,
    path: &Path,
    key: &str,
    errs: &mut Errors,
) -> Option<Secret> {
    match read {
        Ok(b) => Some(Secret::new(b)),
        Err(e) => {
            let hint = if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    " (make a key with `sessiongate gen-key --out {}`)",
                    path.display()
                )
            } else {
                String::new()
            };
            errs.add(key, format!("cannot read {}: {e}{hint}", path.display()));
            None
        }
    }
}

/// Placeholder fragments that mark a secret copied from documentation.
const PLACEHOLDERS: &[&str] = &[
    "changeme",
    "change-me",
    "change_me",
    "replaceme",
    "replace-me",
    "replace_me",
    "placeholder",
    "your-secret",
    "your_secret",
    "yoursecret",
    "example",
    "insecure",
    "notsecret",
    "not-secret",
    "secretsecret",
    "password",
];

/// Why a secret is unacceptable, if it is.
pub fn secret_weakness(secret: &[u8]) -> Option<String> {
    if secret.len() < 32 {
        return Some(format!(
            "the secret is {} bytes; at least 32 are required (make one with `sessiongate gen-secret`)",
            secret.len()
        ));
    }
    let lower = String::from_utf8_lossy(secret).to_ascii_lowercase();
    if let Some(p) = PLACEHOLDERS.iter().find(|p| lower.contains(**p)) {
        return Some(format!(
            "the secret contains the placeholder text {p:?}; make a real one with `sessiongate gen-secret`"
        ));
    }
    let mut distinct = [false; 256];
    secret.iter().for_each(|b| distinct[*b as usize] = true);
    if distinct.iter().filter(|d| **d).count() < 8 {
        return Some(
            "the secret has fewer than 8 distinct characters; make one with `sessiongate gen-secret`"
                .into(),
        );
    }
    None
}
