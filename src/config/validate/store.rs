//! `[store]`: the embedded memory store, or Redis (one node or a cluster), whose password comes
//! from the environment and never from the URL, with an ACL user name and, for `rediss://`, the
//! CA that signed Redis's certificate.

use std::time::Duration;

use super::{Errors, tls_files};
use crate::config::raw::{RawStore, StoreKind};
use crate::config::{RedisConfig, Secret, Source, StoreConfig};

pub(super) fn validate(s: &RawStore, source: &dyn Source, errs: &mut Errors) -> StoreConfig {
    if s.kind == StoreKind::Memory {
        for (set, key) in [
            (s.url.is_some(), "store.url"),
            (!s.cluster_nodes.is_empty(), "store.cluster_nodes"),
            (s.password_env.is_some(), "store.password_env"),
            (s.username.is_some(), "store.username"),
            (s.ca_file.is_some(), "store.ca_file"),
        ] {
            if set {
                errs.add(key, "only applies to store.kind = \"redis\"");
            }
        }
        return StoreConfig::Memory;
    }
    let password = match &s.password_env {
        None => None,
        Some(name) => match source.env(name) {
            Some(p) if !p.is_empty() => Some(p),
            _ => {
                errs.add(
                    "store.password_env",
                    format!("names environment variable {name}, which is not set"),
                );
                None
            }
        },
    };
    let username = username(s, errs);
    let url = nodes(s, username.as_deref(), password.as_deref(), errs);
    let ca_pem = ca(s, source, errs);
    limits(s, errs);
    StoreConfig::Redis(RedisConfig {
        url,
        cluster_nodes: s.cluster_nodes.clone(),
        password: password.map(|p| Secret::new(p.into_bytes())),
        username,
        ca_pem,
        pool_size: s.pool_size,
        connect_timeout: s.connect_timeout,
        command_timeout: s.command_timeout,
        key_prefix: s.key_prefix.clone(),
    })
}

/// `store.username`: an ACL user, which authenticates with `store.password_env`'s password.
fn username(s: &RawStore, errs: &mut Errors) -> Option<String> {
    let u = s.username.as_ref()?;
    let ok = !u.is_empty()
        && u.len() <= 128
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok {
        errs.add(
            "store.username",
            "must be 1 to 128 letters, digits, '-', '_' or '.'",
        );
        return None;
    }
    if s.password_env.is_none() {
        errs.add(
            "store.username",
            "needs store.password_env: an ACL user authenticates with a password",
        );
        return None;
    }
    Some(u.clone())
}

/// `store.ca_file`, for `rediss://` nodes only (a plain connection would not use it).
fn ca(s: &RawStore, source: &dyn Source, errs: &mut Errors) -> Option<Vec<u8>> {
    let path = s.ca_file.as_deref()?;
    let mut urls = s.url.iter().chain(&s.cluster_nodes);
    if !urls.all(|u| url::Url::parse(u).is_ok_and(|p| p.scheme() == "rediss")) {
        errs.add(
            "store.ca_file",
            "only applies to rediss:// URLs (Redis over TLS): use rediss:// in store.url or store.cluster_nodes",
        );
        return None;
    }
    tls_files::ca_pem(source, errs, "store.ca_file", path)
}

/// `store.url` xor `store.cluster_nodes`; the single-node URL with the user and password
/// inserted.
fn nodes(
    s: &RawStore,
    username: Option<&str>,
    password: Option<&str>,
    errs: &mut Errors,
) -> Option<Secret> {
    match (&s.url, s.cluster_nodes.is_empty()) {
        (Some(_), false) => errs.add(
            "store.cluster_nodes",
            "set either store.url (one node) or store.cluster_nodes, not both",
        ),
        (None, true) => errs.add(
            "store.url",
            "store.kind = \"redis\" needs store.url (or store.cluster_nodes)",
        ),
        (Some(u), true) => {
            let mut p = redis_url(errs, "store.url", u)?;
            if let Some(user) = username {
                if !p.username().is_empty() {
                    errs.add(
                        "store.username",
                        "store.url names a user too: keep one of them",
                    );
                    return None;
                }
                let _ = p.set_username(user);
            }
            if let Some(pw) = password {
                let _ = p.set_password(Some(pw));
            }
            return Some(Secret::new(p.to_string().into_bytes()));
        }
        (None, false) => {
            for (i, n) in s.cluster_nodes.iter().enumerate() {
                redis_url(errs, &format!("store.cluster_nodes[{i}]"), n);
            }
        }
    }
    None
}

fn redis_url(errs: &mut Errors, key: &str, u: &str) -> Option<url::Url> {
    match url::Url::parse(u) {
        Ok(p) if (p.scheme() == "redis" || p.scheme() == "rediss") && p.host_str().is_some() => {
            if p.password().is_some() {
                errs.add(key, "must not contain a password; name its environment variable in store.password_env");
                return None;
            }
            if p.fragment().is_some() {
                errs.add(key, "must not have a #fragment (#insecure would turn certificate verification off; it is not supported)");
                return None;
            }
            Some(p)
        }
        _ => {
            errs.add(key, "must be a redis:// or rediss:// URL with a host, like \"redis://127.0.0.1:6379/0\"");
            None
        }
    }
}

fn limits(s: &RawStore, errs: &mut Errors) {
    if s.pool_size == 0 || s.pool_size > 1024 {
        errs.add("store.pool_size", "must be between 1 and 1024");
    }
    let timeout_ok = |d: Duration| d >= Duration::from_millis(50) && d <= Duration::from_secs(30);
    if !timeout_ok(s.connect_timeout) {
        errs.add("store.connect_timeout", "must be between 50ms and 30s");
    }
    if !timeout_ok(s.command_timeout) {
        errs.add("store.command_timeout", "must be between 50ms and 30s");
    }
    if s.key_prefix.is_empty()
        || !s
            .key_prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b':')
    {
        errs.add(
            "store.key_prefix",
            "must be non-empty letters, digits, '_', '-' or ':'",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redis(url: Option<&str>, password_env: Option<&str>) -> RawStore {
        RawStore {
            kind: StoreKind::Redis,
            url: url.map(str::to_string),
            password_env: password_env.map(str::to_string),
            ..RawStore::default()
        }
    }

    fn env(name: &str) -> Option<String> {
        (name == "REDIS_PW").then(|| "s3cret".to_string())
    }

    #[test]
    fn the_password_comes_from_the_environment_into_the_url() {
        let mut errs = Errors::default();
        let StoreConfig::Redis(r) = validate(
            &redis(Some("redis://127.0.0.1:6379/0"), Some("REDIS_PW")),
            &env,
            &mut errs,
        ) else {
            panic!("redis");
        };
        assert!(errs.0.is_empty(), "{errs:?}");
        let url = String::from_utf8(r.url.unwrap().expose().to_vec()).unwrap();
        assert_eq!(url, "redis://:s3cret@127.0.0.1:6379/0");
    }

    #[test]
    fn a_password_in_the_url_and_redis_keys_on_memory_are_refused() {
        let mut errs = Errors::default();
        validate(&redis(Some("redis://:pw@h:6379"), None), &env, &mut errs);
        let raw = RawStore {
            url: Some("redis://h".into()),
            ..RawStore::default()
        };
        validate(&raw, &env, &mut errs);
        let keys: Vec<&str> = errs.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["store.url", "store.url"]);
        assert!(errs.0[0].message.contains("password"), "{errs:?}");
    }
}
