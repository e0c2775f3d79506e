//! `[keys]`: the access and refresh secrets (from `*_env` or `*_file`), and the identity
//! assertion's signing keys. The secrets are read through the injected [`Source`]; a weak one
//! (short, a placeholder, too few distinct characters) or two equal ones are refused.

use std::path::Path;
use std::time::Duration;

use super::Errors;
use crate::config::raw::{DEFAULT_ACCESS_SECRET_ENV, DEFAULT_REFRESH_SECRET_ENV, RawKeys};
use crate::config::{AssertionConfig, KeysConfig, Secret, Source};

/// `None` when a secret is missing or refused (recorded).
pub(super) fn validate(
    k: &RawKeys,
    dev: bool,
    source: &dyn Source,
    errs: &mut Errors,
    notes: &mut Vec<String>,
) -> Option<KeysConfig> {
    let mut read = |keys: SecretKeys<'_>| read_secret(keys, dev, source, errs, notes);
    let access = read(SecretKeys {
        env_key: "keys.access_secret_env",
        env_name: env_or_default(
            &k.access_secret_env,
            &k.access_secret_file,
            DEFAULT_ACCESS_SECRET_ENV,
        ),
        file_key: "keys.access_secret_file",
        file: k.access_secret_file.as_deref(),
    });
    let refresh = read(SecretKeys {
        env_key: "keys.refresh_secret_env",
        env_name: env_or_default(
            &k.refresh_secret_env,
            &k.refresh_secret_file,
            DEFAULT_REFRESH_SECRET_ENV,
        ),
        file_key: "keys.refresh_secret_file",
        file: k.refresh_secret_file.as_deref(),
    });
    if let (Some(a), Some(r)) = (&access, &refresh) {
        if subtle::ConstantTimeEq::ct_eq(a.expose(), r.expose()).into() {
            errs.add("keys.refresh_secret_env", "must differ from the access secret: a refresh token must never verify as an access token");
        }
    }
    let assertion = assertion(k, dev, source, errs);
    Some(KeysConfig {
        assertion,
        access_secret: access?,
        refresh_secret: refresh?,
    })
}

/// The variable a secret comes from: the one written, else the default unless a file is named.
fn env_or_default<'a>(
    env: &'a Option<String>,
    file: &Option<std::path::PathBuf>,
    default: &'static str,
) -> Option<&'a str> {
    match (env, file) {
        (Some(name), _) => Some(name),
        (None, None) => Some(default),
        (None, Some(_)) => None,
    }
}

/// The two keys that may give one secret, and what they name.
struct SecretKeys<'a> {
    env_key: &'static str,
    env_name: Option<&'a str>,
    file_key: &'static str,
    file: Option<&'a Path>,
}

/// A secret from its environment variable or file; in `--dev` a random one when neither is set.
fn read_secret(
    k: SecretKeys<'_>,
    dev: bool,
    source: &dyn Source,
    errs: &mut Errors,
    notes: &mut Vec<String>,
) -> Option<Secret> {
    let (env_key, file_key) = (k.env_key, k.file_key);
    let value = match (k.env_name, k.file) {
        (Some(_), Some(_)) => {
            errs.add(
                file_key,
                format!("set either {env_key} or {file_key}, not both"),
            );
            return None;
        }
        (None, Some(path)) => match source.read(path) {
            Ok(mut b) => {
                while b.last().is_some_and(|c| c.is_ascii_whitespace()) {
                    b.pop();
                }
                Some((file_key, b))
            }
            Err(e) => {
                errs.add(file_key, format!("cannot read {}: {e}", path.display()));
                return None;
            }
        },
        (Some(name), None) => source.env(name).map(|v| (env_key, v.into_bytes())),
        (None, None) => None,
    };
    match value {
        Some((key, bytes)) => match secret_weakness(&bytes) {
            Some(why) => {
                errs.add(key, why);
                None
            }
            None => Some(Secret::new(bytes)),
        },
        None if dev => {
            notes.push(format!(
                "{env_key}: not set, using a random per-process secret (sessions end at restart)"
            ));
            Some(Secret::random())
        }
        None => {
            let what = k.env_name.map_or_else(
                || "is not set".to_string(),
                |n| format!("names environment variable {n}, which is not set (make a secret with `sessiongate gen-secret`)"),
            );
            errs.add(env_key, what);
            None
        }
    }
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
