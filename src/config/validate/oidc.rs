//! `[oidc]` and each `[[oidc.provider]]` (`login.mode = "oidc"`): names, issuers, client
//! credentials, scopes, claims, the domain and group filters and the provider's CA. Every
//! problem is recorded under its key (`oidc.provider[1].issuer`); a client secret is never
//! printed. Nothing is fetched from a provider here: an issuer is checked for its form only.

use std::path::Path;
use std::time::Duration;

use super::keys::rings_differ;
use super::{Errors, tls_files};
use crate::config::raw::{RawOidc, RawOidcProvider};
use crate::config::{
    KeysConfig, LoginMode, OidcConfig, OidcProviderConfig, RingSecret, Secret, SecretRing, Source,
};

/// `oidc.recheck_interval`'s least value: each re-check is a round trip to the provider.
const MIN_RECHECK: Duration = Duration::from_secs(10);

/// Longest `name` (the pattern `[a-z0-9][a-z0-9_-]{0,31}`).
const MAX_NAME: usize = 32;

/// Longest `display_name`, in characters (it is a button's text).
const MAX_DISPLAY_NAME: usize = 64;

/// The providers, and their client secrets under the key each came from (for
/// [`client_secrets_differ`]).
pub(super) fn validate(
    raw: &RawOidc,
    mode: LoginMode,
    source: &dyn Source,
    errs: &mut Errors,
) -> (OidcConfig, Vec<RingSecret>) {
    if mode != LoginMode::Oidc {
        let mode_word = match mode {
            LoginMode::UsersFile => "users_file",
            LoginMode::Upstream => "upstream",
            LoginMode::Oidc => "oidc",
        };
        for (set, what) in [
            (!raw.provider.is_empty(), "[[oidc.provider]] is configured"),
            (
                raw.recheck_interval.is_some(),
                "oidc.recheck_interval is set",
            ),
        ] {
            if set {
                errs.add(
                    "login.mode",
                    format!(
                        "is \"{mode_word}\", but {what}: set login.mode = \"oidc\" to sign in with \
                         OpenID Connect, or remove the [oidc] section"
                    ),
                );
            }
        }
    } else if raw.provider.is_empty() {
        errs.add(
            "oidc.provider",
            "login.mode = \"oidc\" needs at least one [[oidc.provider]] (name, issuer, \
             client_id, client_secret_env or client_secret_file)",
        );
    }
    if let Some(d) = raw.recheck_interval
        && d < MIN_RECHECK
    {
        errs.add(
            "oidc.recheck_interval",
            format!(
                "must be at least 10s (each re-check asks the provider); leave it out to keep \
                     no refresh token of the provider and re-check nothing (it is {})",
                humantime::format_duration(d)
            ),
        );
    }
    let mut providers = Vec::new();
    let mut secrets = Vec::new();
    for (i, p) in raw.provider.iter().enumerate() {
        let key = |k: &str| format!("oidc.provider[{i}].{k}");
        unique(raw, i, &key, errs);
        let Some(checked) = provider(p, &key, source, errs) else {
            continue;
        };
        let from = match p.client_secret_env {
            Some(_) => "client_secret_env",
            None => "client_secret_file",
        };
        secrets.push(RingSecret {
            key: key(from),
            secret: checked.client_secret.clone(),
        });
        providers.push(checked);
    }
    shared_user_ids(&providers, errs);
    let oidc = OidcConfig {
        recheck_interval: raw.recheck_interval,
        providers,
    };
    (oidc, secrets)
}

/// With several providers, a user id is one gateway user whichever provider vouched for it:
/// `sub` is only unique per provider, so two providers' subjects could be one user.
fn shared_user_ids(providers: &[OidcProviderConfig], errs: &mut Errors) {
    if providers.len() < 2 {
        return;
    }
    for (i, p) in providers.iter().enumerate() {
        if p.user_claim == "sub" {
            errs.warn(
                format!("oidc.provider[{i}].user_claim"),
                "is \"sub\" with several providers: a subject is unique only at its own \
                 provider, and the same value from two providers is one gateway user; prefer a \
                 claim the providers agree on (a verified email with allowed_domains)",
            );
        }
    }
}

/// No client secret may be a token secret: the provider (and whoever administers it) knows
/// its client secret, and must not be able to sign the gateway's access or refresh tokens.
pub(super) fn client_secrets_differ(
    secrets: Vec<RingSecret>,
    keys: &KeysConfig,
    errs: &mut Errors,
) {
    let Some(clients) = SecretRing::new(secrets) else {
        return;
    };
    for (ring, which) in [
        (&keys.access_secrets, "the access secret"),
        (&keys.refresh_secrets, "the refresh secret"),
    ] {
        rings_differ(
            ring,
            &clients,
            which,
            "the provider knows its client secret, so it could sign the gateway's tokens",
            errs,
        );
    }
}

/// No provider's name twice (it picks the provider at `/.auth/oidc/start`), nor an issuer
/// and client id twice (a back-channel logout token names only those two).
fn unique(raw: &RawOidc, i: usize, key: &dyn Fn(&str) -> String, errs: &mut Errors) {
    let p = &raw.provider[i];
    if let Some(j) = raw.provider[..i].iter().position(|o| o.name == p.name) {
        errs.add(
            key("name"),
            format!("{:?} is the name of oidc.provider[{j}] too", p.name),
        );
    }
    let same_client = |o: &RawOidcProvider| o.issuer == p.issuer && o.client_id == p.client_id;
    if let Some(j) = raw.provider[..i].iter().position(same_client) {
        errs.add(
            key("client_id"),
            format!(
                "oidc.provider[{j}] has the same issuer and client_id: the provider's logout \
                 tokens could not tell the two apart"
            ),
        );
    }
}

/// One provider, or `None` when one of its keys is refused (recorded).
fn provider(
    p: &RawOidcProvider,
    key: &dyn Fn(&str) -> String,
    source: &dyn Source,
    errs: &mut Errors,
) -> Option<OidcProviderConfig> {
    let mut ok = name(&p.name, &key("name"), errs);
    let display_name = match &p.display_name {
        Some(d) => {
            ok &= display_name(d, &key("display_name"), errs);
            d.clone()
        }
        None => p.name.clone(),
    };
    ok &= issuer(&p.issuer, &key("issuer"), errs);
    ok &= claim_like(&p.client_id, &key("client_id"), "the client id", errs);
    let client_secret = client_secret(p, key, source, errs);
    ok &= scopes(&p.scopes, &key("scopes"), errs);
    ok &= claim_like(&p.user_claim, &key("user_claim"), "a claim name", errs);
    if let Some(c) = &p.roles_claim {
        ok &= claim_like(c, &key("roles_claim"), "a claim name", errs);
    }
    let allowed_domains = domains(&p.allowed_domains, &key("allowed_domains"), errs);
    if !p.allowed_domains.is_empty() && !p.scopes.iter().any(|s| s == "email") {
        errs.warn(
            key("allowed_domains"),
            "scopes do not include \"email\": a provider that then sends no email claim has              every sign-in refused",
        );
    }
    let allowed_groups = groups(p, &key("allowed_groups"), errs);
    if let Some(path) = &p.ca_file {
        ok &= tls_files::ca_roots(source, errs, &key("ca_file"), path).is_some();
    }
    let (client_secret, allowed_domains, allowed_groups) =
        (client_secret?, allowed_domains?, allowed_groups?);
    ok.then(|| OidcProviderConfig {
        name: p.name.clone(),
        display_name,
        issuer: p.issuer.clone(),
        client_id: p.client_id.clone(),
        client_secret,
        scopes: p.scopes.clone(),
        user_claim: p.user_claim.clone(),
        roles_claim: p.roles_claim.clone(),
        allowed_domains,
        allowed_groups,
        ca_file: p.ca_file.clone(),
    })
}

/// `[a-z0-9][a-z0-9_-]{0,31}`: it goes into a URL's query and a cookie as it is.
fn name(n: &str, key: &str, errs: &mut Errors) -> bool {
    let first_ok = n
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let rest_ok = n
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    let ok = first_ok && rest_ok && n.len() <= MAX_NAME;
    if !ok {
        errs.add(
            key,
            format!(
                "{n:?} must be 1 to {MAX_NAME} lower-case letters, digits, '_' or '-', starting \
                 with a letter or digit (like \"corp\")"
            ),
        );
    }
    ok
}

fn display_name(d: &str, key: &str, errs: &mut Errors) -> bool {
    let ok = !d.trim().is_empty()
        && d.chars().count() <= MAX_DISPLAY_NAME
        && !d.chars().any(char::is_control);
    if !ok {
        errs.add(
            key,
            format!(
                "must be 1 to {MAX_DISPLAY_NAME} characters of text, not blank and without \
                 control characters (the login button's text; leave it out to show the name)"
            ),
        );
    }
    ok
}

/// An `https://` URL with a host and no query, fragment or user, written as the provider
/// writes it (OpenID Connect Discovery 1.0 §3: the discovery document's `issuer` must be
/// identical to it, so it is kept as written and never normalised).
fn issuer(v: &str, key: &str, errs: &mut Errors) -> bool {
    let example = "like \"https://idp.example.com/realms/main\"";
    let problem = if v.is_empty() {
        Some(format!("must be the provider's issuer URL, {example}"))
    } else if v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some(format!(
            "{v:?} has a space or control character: the issuer is compared byte for byte"
        ))
    } else if !v.starts_with("https://") {
        Some(format!(
            "{v:?} must start with https:// (in lower case): the gateway fetches the provider's \
             discovery document and keys over TLS only"
        ))
    } else if v.contains('\\') {
        Some(format!("{v:?} has a '\\': write the URL with '/' only"))
    } else if authority(v).is_empty() || authority(v).contains('@') {
        Some(format!(
            "{v:?} must name the provider's host right after https:// (no user), {example}"
        ))
    } else {
        match url::Url::parse(v) {
            Err(e) => Some(format!("{v:?} is not a URL: {e}")),
            Ok(u) if u.host_str().is_none_or(str::is_empty) => {
                Some(format!("{v:?} has no host, {example}"))
            }
            Ok(u) if !u.username().is_empty() || u.password().is_some() => Some(
                "must not name a user or password (an issuer is https://host[:port][/path])"
                    .to_string(),
            ),
            Ok(u) if u.query().is_some() || u.fragment().is_some() => Some(format!(
                "{v:?} must not have a query or fragment (OpenID Connect Discovery: an issuer \
                 is https://host[:port][/path])"
            )),
            Ok(_) => None,
        }
    };
    if let Some(p) = &problem {
        errs.add(key, p.as_str());
    }
    problem.is_none()
}

/// What follows `https://` up to the path, query or fragment, as written.
fn authority(v: &str) -> &str {
    let rest = v.get("https://".len()..).unwrap_or("");
    rest.split(['/', '?', '#']).next().unwrap_or("")
}

/// A client id or claim name: not empty, no spaces or control characters.
fn claim_like(v: &str, key: &str, what: &str, errs: &mut Errors) -> bool {
    let ok = !v.is_empty() && !v.chars().any(|c| c.is_whitespace() || c.is_control());
    if !ok {
        errs.add(
            key,
            format!("must be {what}: not empty, without spaces or control characters"),
        );
    }
    ok
}

/// `client_secret_env` xor `client_secret_file`. The value is never printed.
fn client_secret(
    p: &RawOidcProvider,
    key: &dyn Fn(&str) -> String,
    source: &dyn Source,
    errs: &mut Errors,
) -> Option<Secret> {
    let (env_key, file_key) = (key("client_secret_env"), key("client_secret_file"));
    let text = match (&p.client_secret_env, &p.client_secret_file) {
        (Some(_), Some(_)) => {
            errs.add(
                &file_key,
                format!("set either {env_key} or {file_key}, not both"),
            );
            return None;
        }
        (None, None) => {
            errs.add(
                &env_key,
                format!(
                    "the provider's client secret is needed: name its environment variable \
                     here, or its file in {file_key}"
                ),
            );
            return None;
        }
        (Some(name), None) => secret_from_env(name, &env_key, source, errs)?,
        (None, Some(path)) => secret_from_file(path, &file_key, source, errs)?,
    };
    Some(Secret::new(text.into_bytes()))
}

fn secret_from_env(
    name: &str,
    key: &str,
    source: &dyn Source,
    errs: &mut Errors,
) -> Option<String> {
    if name.is_empty() {
        errs.add(key, "must name an environment variable");
        return None;
    }
    match source.env(name) {
        None => errs.add(
            key,
            format!("names environment variable {name}, which is not set"),
        ),
        Some(v) if v.is_empty() => errs.add(
            key,
            format!("names environment variable {name}, which is empty"),
        ),
        Some(v) => return Some(v),
    }
    None
}

/// The file's text without one trailing newline (`\n` or `\r\n`), which editors and `echo`
/// add; any other byte is part of the secret.
fn secret_from_file(
    path: &Path,
    key: &str,
    source: &dyn Source,
    errs: &mut Errors,
) -> Option<String> {
    let bytes = source
        .read(path)
        .map_err(|e| errs.add(key, format!("cannot read {}: {e}", path.display())))
        .ok()?;
    let Ok(mut text) = String::from_utf8(bytes) else {
        errs.add(key, format!("{} is not UTF-8 text", path.display()));
        return None;
    };
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    if text.is_empty() {
        errs.add(
            key,
            format!("{} holds no secret (it is empty)", path.display()),
        );
        return None;
    }
    Some(text)
}

/// Scope tokens (RFC 6749 §3.3: printable ASCII without space, `"` or `\`), each once, with
/// `openid` (OpenID Connect Core §3.1.2.1: without it the request is plain OAuth 2.0).
fn scopes(scopes: &[String], key: &str, errs: &mut Errors) -> bool {
    let mut ok = true;
    for (i, s) in scopes.iter().enumerate() {
        let token_ok = !s.is_empty()
            && s.bytes()
                .all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E));
        if !token_ok {
            errs.add(
                format!("{key}[{i}]"),
                format!(
                    "{s:?} is not a scope: printable ASCII without spaces, '\"' or '\\' \
                     (RFC 6749 §3.3)"
                ),
            );
            ok = false;
        } else if scopes[..i].contains(s) {
            errs.add(format!("{key}[{i}]"), format!("{s:?} is listed twice"));
            ok = false;
        }
    }
    if !scopes.iter().any(|s| s == "openid") {
        errs.add(
            key,
            "must include \"openid\" (without it the provider sends no ID token)",
        );
        ok = false;
    }
    ok
}

/// Email domains, lower-cased, each once; exact names (no `@`, wildcard or blank).
fn domains(raw: &[String], key: &str, errs: &mut Errors) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    let mut ok = true;
    for (i, d) in raw.iter().enumerate() {
        let why = if d.is_empty() {
            Some("is empty")
        } else if d.contains('@') {
            Some("must be a domain, not an address: write \"example.com\" for user@example.com")
        } else if d.chars().any(|c| c.is_whitespace() || c.is_control()) {
            Some("must not contain spaces or control characters")
        } else if d.contains('*') {
            Some("must be an exact domain: wildcards are not supported (list each domain)")
        } else if d.starts_with('.') || d.ends_with('.') {
            Some("must not start or end with '.': write the domain as in an email address")
        } else {
            None
        };
        if let Some(why) = why {
            errs.add(format!("{key}[{i}]"), format!("{d:?} {why}"));
            ok = false;
            continue;
        }
        let lower = d.to_lowercase();
        if !out.contains(&lower) {
            out.push(lower);
        }
    }
    ok.then_some(out)
}

/// `allowed_groups`: values of `roles_claim`, which it needs.
fn groups(p: &RawOidcProvider, key: &str, errs: &mut Errors) -> Option<Vec<String>> {
    if p.allowed_groups.is_empty() {
        return Some(Vec::new());
    }
    let mut ok = true;
    if p.roles_claim.is_none() {
        errs.add(
            key,
            "needs roles_claim: the claim whose values are the user's groups (like \"groups\")",
        );
        ok = false;
    }
    let mut out: Vec<String> = Vec::new();
    for (i, g) in p.allowed_groups.iter().enumerate() {
        if g.is_empty() {
            errs.add(format!("{key}[{i}]"), "is empty");
            ok = false;
        } else if !out.contains(g) {
            out.push(g.clone());
        }
    }
    ok.then_some(out)
}
