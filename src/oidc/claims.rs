//! From a provider's claims to a gateway identity: the user id (`user_claim`), the roles
//! (`roles_claim`), and the admission rules (`allowed_domains`, `allowed_groups`).
//!
//! What reaches the app in `X-Auth-User` / `X-Auth-Roles` must be a header value it reads
//! exactly as we do: a user id outside printable ASCII is refused (never silently dropped from
//! the headers), and a role that is not a plain token (a comma would split it) is left out and
//! logged.

use serde_json::{Map, Value};

use crate::config::OidcProviderConfig;

/// Longest user id or role taken from a provider.
const MAX_LEN: usize = 256;
/// Most roles taken from one provider answer.
const MAX_ROLES: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    pub user: String,
    pub roles: Vec<String>,
}

/// Why a verified user is not let in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("the provider sent no usable {0} claim")]
    NoUser(String),
    #[error("the account's email is not verified")]
    EmailUnverified,
    #[error("the account's email domain is not allowed")]
    Domain,
    #[error("the account is in none of the allowed groups")]
    Group,
}

/// A claim by name: the exact key first (namespaced claims such as
/// `https://example.com/groups` contain dots), then a dotted path into nested objects
/// (Keycloak's `realm_access.roles`).
pub fn lookup<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    let mut parts = name.split('.');
    let mut cur = claims.get(parts.next()?)?;
    for p in parts {
        cur = cur.as_object()?.get(p)?;
    }
    Some(cur)
}

fn header_safe(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_LEN
        && s.bytes().all(|b| (0x21..0x7f).contains(&b) || b == b' ')
        && !s.starts_with(' ')
        && !s.ends_with(' ')
}

/// The gateway identity for `claims`, or why there is none.
pub fn map(cfg: &OidcProviderConfig, claims: &Map<String, Value>) -> Result<Mapped, Denied> {
    let user = match lookup(claims, &cfg.user_claim) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(Denied::NoUser(cfg.user_claim.clone())),
    };
    if !header_safe(&user) {
        return Err(Denied::NoUser(cfg.user_claim.clone()));
    }
    let roles = roles(cfg, claims);
    if !cfg.allowed_domains.is_empty() {
        if claims.get("email_verified").and_then(verified_flag) == Some(false) {
            return Err(Denied::EmailUnverified);
        }
        let domain = claims
            .get("email")
            .and_then(Value::as_str)
            .and_then(|e| e.rsplit_once('@'))
            .map(|(_, d)| d.to_ascii_lowercase());
        if !domain.is_some_and(|d| cfg.allowed_domains.contains(&d)) {
            return Err(Denied::Domain);
        }
    }
    if !cfg.allowed_groups.is_empty() && !roles.iter().any(|r| cfg.allowed_groups.contains(r)) {
        return Err(Denied::Group);
    }
    Ok(Mapped { user, roles })
}

/// `email_verified` as sent: a boolean, or (some providers) the string `"true"`/`"false"`.
fn verified_flag(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s == "true" => Some(true),
        Value::String(s) if s == "false" => Some(false),
        _ => None,
    }
}

fn roles(cfg: &OidcProviderConfig, claims: &Map<String, Value>) -> Vec<String> {
    let Some(name) = &cfg.roles_claim else {
        return Vec::new();
    };
    let raw: Vec<&str> = match lookup(claims, name) {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let mut out: Vec<String> = Vec::new();
    for r in raw {
        if out.len() == MAX_ROLES {
            tracing::warn!(provider = %cfg.name, "oidc: more than {MAX_ROLES} roles; the rest are left out");
            break;
        }
        if header_safe(r) && !r.contains(',') {
            if !out.iter().any(|o| o == r) {
                out.push(r.to_string());
            }
        } else {
            tracing::warn!(provider = %cfg.name, "oidc: a role that is not a plain token (empty, a comma, non-ASCII or too long) is left out");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use serde_json::json;

    fn cfg() -> OidcProviderConfig {
        OidcProviderConfig {
            name: "corp".into(),
            display_name: "Corp".into(),
            issuer: "https://idp.example".into(),
            client_id: "gw".into(),
            client_secret: Secret::new(b"s".to_vec()),
            scopes: vec!["openid".into()],
            user_claim: "sub".into(),
            roles_claim: Some("groups".into()),
            allowed_domains: Vec::new(),
            allowed_groups: Vec::new(),
            ca_file: None,
        }
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn user_and_roles_come_from_the_configured_claims_flat_nested_or_namespaced() {
        let c = obj(json!({"sub": "u1", "groups": ["a", "b", "a"]}));
        assert_eq!(
            map(&cfg(), &c).unwrap(),
            Mapped {
                user: "u1".into(),
                roles: vec!["a".into(), "b".into()]
            }
        );
        let mut k = cfg();
        k.roles_claim = Some("realm_access.roles".into());
        k.user_claim = "preferred_username".into();
        let c = obj(
            json!({"sub": "x", "preferred_username": "alice", "realm_access": {"roles": ["admin"]}}),
        );
        assert_eq!(map(&k, &c).unwrap().roles, vec!["admin".to_string()]);
        assert_eq!(map(&k, &c).unwrap().user, "alice");
        k.roles_claim = Some("https://example.com/roles".into());
        let c =
            obj(json!({"sub": "x", "preferred_username": "a", "https://example.com/roles": "ops"}));
        assert_eq!(map(&k, &c).unwrap().roles, vec!["ops".to_string()]);
    }

    #[test]
    fn a_user_id_the_app_could_not_read_exactly_is_refused_and_bad_roles_left_out() {
        for bad in [
            json!(""),
            json!("a\nb"),
            json!("jörg"),
            json!(" x"),
            json!(true),
            json!("x".repeat(300)),
        ] {
            let c = obj(json!({"sub": bad}));
            assert!(matches!(map(&cfg(), &c), Err(Denied::NoUser(_))), "{c:?}");
        }
        let c = obj(json!({"sub": 42, "groups": ["ok", "a,b", "", "ünï", 7]}));
        let m = map(&cfg(), &c).unwrap();
        assert_eq!(m.user, "42");
        assert_eq!(m.roles, vec!["ok".to_string()]);
    }

    #[test]
    fn domains_need_a_verified_email_of_an_allowed_domain() {
        let mut k = cfg();
        k.allowed_domains = vec!["example.com".into()];
        let ok = obj(json!({"sub": "u", "email": "A@Example.COM", "email_verified": true}));
        assert!(map(&k, &ok).is_ok());
        let absent_flag = obj(json!({"sub": "u", "email": "a@example.com"}));
        assert!(map(&k, &absent_flag).is_ok());
        let unverified =
            obj(json!({"sub": "u", "email": "a@example.com", "email_verified": "false"}));
        assert_eq!(map(&k, &unverified), Err(Denied::EmailUnverified));
        for e in [
            "a@example.com.evil",
            "a@sub.example.com",
            "example.com",
            "a@evil@example.org",
        ] {
            let c = obj(json!({"sub": "u", "email": e}));
            assert_eq!(map(&k, &c), Err(Denied::Domain), "{e}");
        }
        assert_eq!(map(&k, &obj(json!({"sub": "u"}))), Err(Denied::Domain));
    }

    #[test]
    fn groups_need_one_allowed_group() {
        let mut k = cfg();
        k.allowed_groups = vec!["staff".into()];
        assert!(map(&k, &obj(json!({"sub": "u", "groups": ["x", "staff"]}))).is_ok());
        assert_eq!(
            map(&k, &obj(json!({"sub": "u", "groups": ["Staff"]}))),
            Err(Denied::Group)
        );
        assert_eq!(map(&k, &obj(json!({"sub": "u"}))), Err(Denied::Group));
    }
}
