//! Minting and verifying the gateway's tokens (RFC 7519 JWTs).
//!
//! Threats answered: forged tokens (HMAC-SHA256 with a 32-byte+ secret; the algorithm is pinned,
//! so `alg: none` or an algorithm swap is refused), confusion between token kinds (access and
//! refresh tokens use different keys *and* carry `typ`, each checked), replay after expiry
//! (`exp`, `nbf`, no leeway: the gateway mints its own tokens), tokens from another deployment
//! (`iss` is the public origin, `aud` is fixed). Claims carry identifiers only.
//!
//! Key rotation: each token type has a key ring (`keys.access_secret_env = ["NEW", "OLD"]`):
//! the first key signs, and a token is verified by the one key its `kid` names — a token whose
//! `kid` is not in the ring is refused, and no other key is ever tried. What else the access
//! secret keys (the CSRF binding, the session fingerprints) is a [`DerivedKeys`] ring named by
//! the same `kid`s, so it verifies through an overlap as the tokens do. The session handle is
//! keyed by nothing that rotates ([`session_handle`]).

use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::{Config, Secret, SecretRing};
use crate::util::{b64, hmac_sha256};

pub const AUDIENCE: &str = "sessiongate";
pub const TYP_ACCESS: &str = "access";
pub const TYP_REFRESH: &str = "refresh";

/// Claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub sid: String,
    pub jti: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    pub typ: String,
    pub roles: Vec<String>,
    /// The session's absolute end (Unix seconds): what a WebSocket tunnel opened with this
    /// token may not outlive. Absent from tokens minted before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sxp: Option<u64>,
    /// Keyed fingerprint of the login network (anomaly detection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipn: Option<String>,
    /// Keyed fingerprint of the user agent's exact text: what earlier releases compare (still
    /// minted for them, during a rolling upgrade); ignored where `uad` is present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uah: Option<String>,
    /// The `kid` of the access key whose fingerprint key made `ipn` and `uah` (absent in
    /// tokens minted before key rings, and when nothing is bound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fpk: Option<String>,
    /// Keyed fingerprint of the login user agent's device: browser family, system and class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uad: Option<String>,
    /// When the user last authenticated (Unix seconds; the OpenID claim's name): what
    /// `max_auth_age` is judged by, without a store round trip. Absent from tokens minted
    /// before it existed (judged too old).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<u64>,
}

/// Claims of a refresh token. `jti` is the rotation counter the store checks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RefreshClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub sid: String,
    pub jti: String,
    pub iat: u64,
    pub exp: u64,
    pub typ: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uah: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fpk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uad: Option<String>,
}

/// When an access token is valid (Unix seconds): from `now` to `exp`, for a session that ends
/// at `session_end` (its `sxp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessLifetime {
    pub now: u64,
    pub exp: u64,
    pub session_end: u64,
    /// When the session's user last authenticated (its `auth_time`).
    pub auth_time: u64,
}

/// The fingerprints a session was bound to at login (see `sessions::anomaly`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprint {
    pub ipn: Option<String>,
    /// The first version of the user-agent binding, the exact text: compared only in tokens of
    /// earlier releases, which carry no `uad`.
    pub uah: Option<String>,
    /// The `kid` of the access key they were made under (`None`: a token from before key
    /// rings, whose fingerprints any key of the ring may have made).
    pub key: Option<String>,
    /// The user agent's device (`web::user_agent::Device`).
    pub uad: Option<String>,
}

impl AccessClaims {
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint {
            ipn: self.ipn.clone(),
            uah: self.uah.clone(),
            key: self.fpk.clone(),
            uad: self.uad.clone(),
        }
    }
}

impl RefreshClaims {
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint {
            ipn: self.ipn.clone(),
            uah: self.uah.clone(),
            key: self.fpk.clone(),
            uad: self.uad.clone(),
        }
    }
}

/// Why a token was refused. Never shown to clients in detail.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("malformed or badly signed token")]
    Invalid,
    #[error("token expired")]
    Expired,
    #[error("token from an unknown key")]
    UnknownKey,
    #[error("token of the wrong type")]
    WrongType,
    #[error("token not valid yet")]
    NotYetValid,
    /// A header parameter the gateway does not set (`crit`, `jku`, `x5u`, `jwk`, …): refused
    /// rather than ignored (RFC 7515 §4.1.11; RFC 8725 §3.10).
    #[error("token header has a parameter the gateway does not set")]
    UnexpectedHeader,
}

/// The only JWS header parameters the gateway's own tokens carry.
const HEADER_PARAMETERS: &[&str] = &["alg", "typ", "kid"];

/// Whether the token's protected header is a JSON object with only [`HEADER_PARAMETERS`].
/// (jsonwebtoken ignores parameters it does not know, `crit` included.)
pub(crate) fn plain_header(token: &str) -> bool {
    plain_header_object(token).is_some()
}

/// The token's protected header, when [`plain_header`] holds.
fn plain_header_object(token: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    use base64::Engine as _;
    let h = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(h)
        .ok()?;
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&bytes)
        .ok()
        .filter(|m| m.keys().all(|k| HEADER_PARAMETERS.contains(&k.as_str())))
}

/// A token could not be signed (never expected with the gateway's own keys and claims; an
/// error rather than an empty token, so nothing sets a cookie nobody can use).
#[derive(Debug, thiserror::Error)]
#[error("cannot sign a token: {0}")]
pub struct MintError(#[from] jsonwebtoken::errors::Error);

/// The `kid` labels of the two token types (kept from before key rings: a token minted then
/// still names its key).
const ACCESS_KID: &str = "sessiongate access kid";
const REFRESH_KID: &str = "sessiongate refresh kid";

/// The key id of a secret: a keyed fingerprint, stable for a secret, revealing nothing of it.
fn kid_of(secret: &[u8], label: &str) -> String {
    b64(&hmac_sha256(secret, label.as_bytes())[..9])
}

struct HmacKey {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl HmacKey {
    fn new(secret: &[u8], label: &str) -> Self {
        Self {
            kid: kid_of(secret, label),
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }
}

/// One token type's keys: the first signs, each verifies the tokens that name its `kid`.
struct Ring {
    signing: HmacKey,
    others: Vec<HmacKey>,
}

impl Ring {
    fn new(secrets: &SecretRing, label: &str) -> Self {
        Self {
            signing: HmacKey::new(secrets.signing().expose(), label),
            others: secrets
                .iter()
                .skip(1)
                .map(|s| HmacKey::new(s.secret.expose(), label))
                .collect(),
        }
    }

    /// The key a token's `kid` names, if it is in the ring.
    fn find(&self, kid: &str) -> Option<&HmacKey> {
        std::iter::once(&self.signing)
            .chain(&self.others)
            .find(|k| k.kid == kid)
    }
}

/// A key derived from each access key for one purpose (binding CSRF tokens, session
/// fingerprints), named by that access key's `kid`: what was made under one access key keeps
/// verifying while that key is in the ring, and stops when it is dropped.
pub struct DerivedKeys {
    signing: DerivedKey,
    others: Vec<DerivedKey>,
}

pub struct DerivedKey {
    /// The access key's `kid`.
    pub kid: String,
    pub key: [u8; 32],
    /// Distinguishes this key in per-thread caches (tests run several runtimes in a process).
    pub id: u64,
}

impl DerivedKeys {
    /// `purpose` labels the derivation (`b"sessiongate csrf"`).
    pub fn from_access(access: &SecretRing, purpose: &[u8]) -> Self {
        Self::derive(access, purpose, ACCESS_KID)
    }

    /// Keys named by the refresh keys' `kid`s: for what must open as long as a session lives.
    pub fn from_refresh(refresh: &SecretRing, purpose: &[u8]) -> Self {
        Self::derive(refresh, purpose, REFRESH_KID)
    }

    fn derive(ring: &SecretRing, purpose: &[u8], label: &str) -> Self {
        let derive = |s: &Secret| DerivedKey {
            kid: kid_of(s.expose(), label),
            key: hmac_sha256(s.expose(), purpose),
            id: rand::random(),
        };
        Self {
            signing: derive(ring.signing()),
            others: ring.iter().skip(1).map(|s| derive(&s.secret)).collect(),
        }
    }

    /// The key that binds anything new.
    pub fn signing(&self) -> &DerivedKey {
        &self.signing
    }

    /// The key `kid` names, if its access key is in the ring.
    pub fn find(&self, kid: &str) -> Option<&DerivedKey> {
        self.iter().find(|k| k.kid == kid)
    }

    /// Every key, the signing one first.
    pub fn iter(&self) -> impl Iterator<Item = &DerivedKey> {
        std::iter::once(&self.signing).chain(&self.others)
    }
}

/// The non-secret handle of a session, shown to the app (`X-Auth-Session`, the assertion's
/// `sid`), on the sessions page and in audit events. One-way (a hash of the 192-bit random
/// session id, so it cannot be turned into the id) and keyed by nothing that rotates: a
/// handle stays the same through a key rotation, so the sessions page, the admin API, an app
/// that files data under it and the audit trail keep naming the same session.
pub fn session_handle(sid: &str) -> String {
    let d = ring::digest::digest(
        &ring::digest::SHA256,
        format!("sessiongate session handle\0{sid}").as_bytes(),
    );
    b64(&d.as_ref()[..12])
}

/// The gateway's signing keys and the validation rules, built once at start.
pub struct KeyRing {
    access: Ring,
    refresh: Ring,
    issuer: String,
    /// Whether access tokens must carry `nbf`.
    access_validation: Validation,
    refresh_validation: Validation,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("access_kid", &self.access.signing.kid)
            .field("refresh_kid", &self.refresh.signing.kid)
            .finish()
    }
}

fn validation(issuer: &str, required: &[&str]) -> Validation {
    let mut v = Validation::new(jsonwebtoken::Algorithm::HS256);
    v.leeway = 0;
    // Time is checked against the gateway's clock (see `verify`), not the crate's.
    v.validate_exp = false;
    v.validate_nbf = false;
    v.set_issuer(&[issuer]);
    v.set_audience(&[AUDIENCE]);
    v.set_required_spec_claims(required);
    v
}

impl KeyRing {
    pub fn new(access: &SecretRing, refresh: &SecretRing, issuer: &str) -> Self {
        Self {
            access: Ring::new(access, ACCESS_KID),
            refresh: Ring::new(refresh, REFRESH_KID),
            issuer: issuer.to_string(),
            access_validation: validation(issuer, &["exp", "nbf", "iat", "iss", "aud", "sub"]),
            refresh_validation: validation(issuer, &["exp", "iat", "iss", "aud", "sub"]),
        }
    }

    pub fn from_config(cfg: &Config) -> Self {
        Self::new(
            &cfg.keys.access_secrets,
            &cfg.keys.refresh_secrets,
            &cfg.server.public_origin.origin,
        )
    }

    /// An access token for `sub`'s session `sid`, valid over `life`.
    pub fn mint_access(
        &self,
        sub: &str,
        sid: &str,
        roles: &[String],
        life: AccessLifetime,
        fp: &Fingerprint,
    ) -> Result<String, MintError> {
        let AccessLifetime {
            now,
            exp,
            session_end,
            auth_time,
        } = life;
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            aud: AUDIENCE.into(),
            sub: sub.into(),
            sid: sid.into(),
            jti: crate::util::random_token(12),
            iat: now,
            nbf: now,
            exp,
            typ: TYP_ACCESS.into(),
            roles: roles.to_vec(),
            sxp: Some(session_end),
            ipn: fp.ipn.clone(),
            uah: fp.uah.clone(),
            fpk: fp.key.clone(),
            uad: fp.uad.clone(),
            auth_time: Some(auth_time),
        };
        self.sign(&self.access.signing, &claims)
    }

    pub fn mint_refresh(
        &self,
        sub: &str,
        sid: &str,
        jti: &str,
        now: u64,
        exp: u64,
        fp: &Fingerprint,
    ) -> Result<String, MintError> {
        let claims = RefreshClaims {
            iss: self.issuer.clone(),
            aud: AUDIENCE.into(),
            sub: sub.into(),
            sid: sid.into(),
            jti: jti.into(),
            iat: now,
            exp,
            typ: TYP_REFRESH.into(),
            ipn: fp.ipn.clone(),
            uah: fp.uah.clone(),
            fpk: fp.key.clone(),
            uad: fp.uad.clone(),
        };
        self.sign(&self.refresh.signing, &claims)
    }

    fn sign<T: Serialize>(&self, key: &HmacKey, claims: &T) -> Result<String, MintError> {
        let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some(key.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &key.encoding)?)
    }

    /// Verify an access token at `now` (Unix seconds).
    pub fn verify_access(&self, token: &str, now: u64) -> Result<AccessClaims, TokenError> {
        let c: AccessClaims = verify(token, &self.access, &self.access_validation)?;
        check_time(c.exp, Some(c.nbf), now)?;
        if c.typ != TYP_ACCESS {
            return Err(TokenError::WrongType);
        }
        Ok(c)
    }

    /// Verify a refresh token at `now` (Unix seconds).
    pub fn verify_refresh(&self, token: &str, now: u64) -> Result<RefreshClaims, TokenError> {
        let c: RefreshClaims = verify(token, &self.refresh, &self.refresh_validation)?;
        check_time(c.exp, None, now)?;
        if c.typ != TYP_REFRESH {
            return Err(TokenError::WrongType);
        }
        Ok(c)
    }
}

/// No leeway: the gateway mints its own tokens. Valid while `now <= exp`, from `nbf` on.
fn check_time(exp: u64, nbf: Option<u64>, now: u64) -> Result<(), TokenError> {
    if exp < now {
        return Err(TokenError::Expired);
    }
    if nbf.is_some_and(|nbf| nbf > now) {
        return Err(TokenError::NotYetValid);
    }
    Ok(())
}

/// Verify under the one key of `ring` that the token's `kid` names: a token without a `kid`,
/// or with one the ring does not hold (a dropped key, another deployment), is refused before
/// any signature is checked, and no other key is tried.
fn verify<T: serde::de::DeserializeOwned>(
    token: &str,
    ring: &Ring,
    v: &Validation,
) -> Result<T, TokenError> {
    if token.len() > 4096 {
        return Err(TokenError::Invalid);
    }
    let Some(header) = plain_header_object(token) else {
        return Err(TokenError::UnexpectedHeader);
    };
    let key = header
        .get("kid")
        .and_then(serde_json::Value::as_str)
        .and_then(|kid| ring.find(kid))
        .ok_or(TokenError::UnknownKey)?;
    let data =
        jsonwebtoken::decode::<T>(token, &key.decoding, v).map_err(|_| TokenError::Invalid)?;
    Ok(data.claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Valid access claims for `ring()`'s issuer, of type `typ`.
    fn claims_of_type(typ: &str) -> AccessClaims {
        AccessClaims {
            iss: "https://gw.test".into(),
            aud: AUDIENCE.into(),
            sub: "alice".into(),
            sid: "s".into(),
            jti: "j".into(),
            iat: now(),
            nbf: now(),
            exp: now() + 60,
            typ: typ.into(),
            roles: vec![],
            sxp: None,
            ipn: None,
            uah: None,
            fpk: None,
            uad: None,
            auth_time: None,
        }
    }

    #[test]
    fn access_tokens_carry_the_sessions_end_and_tokens_without_it_still_verify() {
        let k = ring();
        let life = AccessLifetime {
            now: now(),
            exp: now() + 60,
            session_end: now() + 600,
            auth_time: 0,
        };
        let t = k
            .mint_access("alice", "s", &[], life, &Fingerprint::default())
            .unwrap();
        assert_eq!(k.verify_access(&t, now()).unwrap().sxp, Some(now() + 600));
        // Minted by a gateway from before `sxp`: still a valid token, with no session end.
        let legacy = k
            .sign(&k.access.signing, &claims_of_type(TYP_ACCESS))
            .unwrap();
        assert!(!jwt_payload_has(&legacy, "sxp"));
        assert_eq!(k.verify_access(&legacy, now()).unwrap().sxp, None);
    }

    fn jwt_payload_has(token: &str, claim: &str) -> bool {
        use base64::Engine as _;
        let payload = token.split('.').nth(1).unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()[claim]
            != serde_json::Value::Null
    }

    #[test]
    fn unexpected_header_parameters_are_refused_even_when_signed() {
        let k = ring();
        let claims = claims_of_type(TYP_ACCESS);
        let sign = |header: serde_json::Value| {
            let h = b64(header.to_string().as_bytes());
            let p = b64(serde_json::to_string(&claims).unwrap().as_bytes());
            let mac = hmac_sha256(A, format!("{h}.{p}").as_bytes());
            format!("{h}.{p}.{}", b64(&mac))
        };
        let kid = k.access.signing.kid.clone();
        let plain = sign(serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": kid}));
        assert!(k.verify_access(&plain, now()).is_ok(), "control");
        for extra in [
            serde_json::json!({"crit": ["exp"], "exp": 1}),
            serde_json::json!({"crit": ["b64"], "b64": false}),
            serde_json::json!({"jku": "https://evil.example/jwks"}),
            serde_json::json!({"x5u": "https://evil.example/cert"}),
            serde_json::json!({"jwk": {"kty": "oct", "k": "AAAA"}}),
            serde_json::json!({"zip": "DEF"}),
        ] {
            let mut h = serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": kid});
            for (key, v) in extra.as_object().unwrap() {
                h[key] = v.clone();
            }
            assert_eq!(
                k.verify_access(&sign(h.clone()), now()),
                Err(TokenError::UnexpectedHeader),
                "{h}"
            );
        }
        assert!(!plain_header("not base64!.x.y"));
        assert!(!plain_header("W10.x.y"), "a header that is not an object");
    }

    const A: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCD";
    const R: &[u8] = b"ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxw";

    fn one(secret: &[u8]) -> SecretRing {
        SecretRing::single("k", Secret::new(secret.to_vec()))
    }

    fn ring_of(secrets: &[&[u8]]) -> SecretRing {
        let keys = secrets
            .iter()
            .enumerate()
            .map(|(i, s)| crate::config::RingSecret {
                key: format!("k[{i}]"),
                secret: Secret::new(s.to_vec()),
            });
        SecretRing::new(keys.collect()).unwrap()
    }

    fn ring() -> KeyRing {
        KeyRing::new(&one(A), &one(R), "https://gw.test")
    }

    fn now() -> u64 {
        crate::util::now_unix()
    }

    #[test]
    fn access_token_round_trips_with_all_claims() {
        let k = ring();
        let t = k
            .mint_access(
                "alice",
                "sid1",
                &["admin".into()],
                AccessLifetime {
                    now: now(),
                    exp: now() + 60,
                    session_end: now() + 60 + 3600,
                    auth_time: 0,
                },
                &Fingerprint::default(),
            )
            .unwrap();
        let c = k.verify_access(&t, now()).unwrap();
        assert_eq!(c.sub, "alice");
        assert_eq!(c.sid, "sid1");
        assert_eq!(c.roles, vec!["admin".to_string()]);
        assert_eq!(c.iss, "https://gw.test");
        assert_eq!(c.aud, AUDIENCE);
        assert_eq!(c.typ, TYP_ACCESS);
    }

    #[test]
    fn expired_access_token_is_refused() {
        let k = ring();
        let t = k
            .mint_access(
                "alice",
                "sid1",
                &[],
                AccessLifetime {
                    now: now() - 100,
                    exp: now() - 1,
                    session_end: now() - 1 + 3600,
                    auth_time: 0,
                },
                &Fingerprint::default(),
            )
            .unwrap();
        assert_eq!(k.verify_access(&t, now()), Err(TokenError::Expired));
    }

    #[test]
    fn refresh_token_is_not_an_access_token() {
        let k = ring();
        let t = k
            .mint_refresh(
                "alice",
                "sid1",
                "j1",
                now(),
                now() + 60,
                &Fingerprint::default(),
            )
            .unwrap();
        assert!(k.verify_access(&t, now()).is_err());
        assert_eq!(k.verify_refresh(&t, now()).unwrap().jti, "j1");
    }

    #[test]
    fn wrong_typ_under_the_access_key_is_refused() {
        let k = ring();
        let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some(k.access.signing.kid.clone());
        let claims = claims_of_type("refresh");
        let t = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(A)).unwrap();
        assert_eq!(k.verify_access(&t, now()), Err(TokenError::WrongType));
    }

    #[test]
    fn alg_none_and_foreign_issuer_are_refused() {
        let k = ring();
        let good = k
            .mint_access(
                "alice",
                "s",
                &[],
                AccessLifetime {
                    now: now(),
                    exp: now() + 60,
                    session_end: now() + 60 + 3600,
                    auth_time: 0,
                },
                &Fingerprint::default(),
            )
            .unwrap();
        let mut parts = good.split('.');
        let _ = parts.next();
        let payload = parts.next().unwrap();
        let none = format!("{}.{}.", b64(br#"{"alg":"none","typ":"JWT"}"#), payload);
        assert!(k.verify_access(&none, now()).is_err());
        let other = KeyRing::new(&one(A), &one(R), "https://other.test");
        let t = other
            .mint_access(
                "alice",
                "s",
                &[],
                AccessLifetime {
                    now: now(),
                    exp: now() + 60,
                    session_end: now() + 60 + 3600,
                    auth_time: 0,
                },
                &Fingerprint::default(),
            )
            .unwrap();
        assert!(k.verify_access(&t, now()).is_err());
    }

    #[test]
    fn tampered_payload_is_refused() {
        let k = ring();
        let t = k
            .mint_access(
                "alice",
                "s",
                &[],
                AccessLifetime {
                    now: now(),
                    exp: now() + 60,
                    session_end: now() + 60 + 3600,
                    auth_time: 0,
                },
                &Fingerprint::default(),
            )
            .unwrap();
        let parts: Vec<&str> = t.split('.').collect();
        let forged_payload = b64(format!(r#"{{"iss":"https://gw.test","aud":"sessiongate","sub":"admin","sid":"s","jti":"j","iat":{n},"nbf":{n},"exp":{e},"typ":"access","roles":["admin"]}}"#, n = now(), e = now() + 60).as_bytes());
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(k.verify_access(&forged, now()), Err(TokenError::Invalid));
    }

    #[test]
    fn session_handle_is_stable_and_not_the_id() {
        assert_eq!(session_handle("abc"), session_handle("abc"));
        assert_ne!(session_handle("abc"), session_handle("abd"));
        assert!(!session_handle("abc").contains("abc"));
        assert_eq!(session_handle("abc").len(), 16);
    }

    const OLD: &[u8] = b"0ld-k3y-0123456789abcdefghijklmnopqrstuv";
    const NEW: &[u8] = b"n3w-k3y-ZYXWVUTSRQPONMLKJIHGFEDCBA987654";

    fn access_token(k: &KeyRing) -> String {
        k.mint_access(
            "alice",
            "s",
            &[],
            AccessLifetime {
                now: now(),
                exp: now() + 60,
                session_end: now() + 600,
                auth_time: 0,
            },
            &Fingerprint::default(),
        )
        .unwrap()
    }

    fn refresh_token(k: &KeyRing) -> String {
        k.mint_refresh(
            "alice",
            "s",
            "j",
            now(),
            now() + 60,
            &Fingerprint::default(),
        )
        .unwrap()
    }

    #[test]
    fn the_first_key_signs_and_every_key_verifies_through_a_rotation() {
        let step0 = KeyRing::new(&one(OLD), &one(R), "https://gw.test");
        let step1 = KeyRing::new(&ring_of(&[OLD, NEW]), &one(R), "https://gw.test");
        let step2 = KeyRing::new(&ring_of(&[NEW, OLD]), &one(R), "https://gw.test");
        let step3 = KeyRing::new(&one(NEW), &one(R), "https://gw.test");
        let (t0, t1, t2) = (
            access_token(&step0),
            access_token(&step1),
            access_token(&step2),
        );
        assert_eq!(
            jsonwebtoken::decode_header(&t0).unwrap().kid,
            jsonwebtoken::decode_header(&t1).unwrap().kid,
            "adding a verifier changes no signature"
        );
        assert_ne!(
            jsonwebtoken::decode_header(&t1).unwrap().kid,
            jsonwebtoken::decode_header(&t2).unwrap().kid,
            "promotion signs with the new key"
        );
        for (k, name) in [(&step1, "step 1"), (&step2, "step 2")] {
            for t in [&t0, &t1, &t2] {
                assert!(k.verify_access(t, now()).is_ok(), "{name}");
            }
        }
        assert!(step3.verify_access(&t2, now()).is_ok());
        assert_eq!(
            step3.verify_access(&t0, now()),
            Err(TokenError::UnknownKey),
            "a dropped key verifies nothing"
        );
        assert_eq!(
            step0.verify_access(&t2, now()),
            Err(TokenError::UnknownKey),
            "an instance without the new key"
        );
    }

    #[test]
    fn a_token_is_checked_under_the_key_its_kid_names_and_no_other() {
        let k = KeyRing::new(&ring_of(&[NEW, OLD]), &one(R), "https://gw.test");
        let new_kid = k.access.signing.kid.clone();
        let old_kid = k.access.others[0].kid.clone();
        let claims = claims_of_type(TYP_ACCESS);
        let sign = |kid: Option<&str>, secret: &[u8]| {
            let mut h = Header::new(jsonwebtoken::Algorithm::HS256);
            h.kid = kid.map(str::to_string);
            jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(secret)).unwrap()
        };
        assert!(
            k.verify_access(&sign(Some(&old_kid), OLD), now()).is_ok(),
            "control"
        );
        // Signed by a key of the ring, but named as the other one: not tried under its own.
        assert_eq!(
            k.verify_access(&sign(Some(&new_kid), OLD), now()),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            k.verify_access(&sign(Some(&old_kid), NEW), now()),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            k.verify_access(&sign(None, NEW), now()),
            Err(TokenError::UnknownKey)
        );
        assert_eq!(
            k.verify_access(&sign(Some("nope"), NEW), now()),
            Err(TokenError::UnknownKey)
        );
        // The refresh ring is another ring: an access key's kid names nothing there.
        let r = refresh_token(&k);
        assert!(k.verify_refresh(&r, now()).is_ok());
        assert_eq!(k.verify_access(&r, now()), Err(TokenError::UnknownKey));
    }

    #[test]
    fn tokens_minted_before_key_rings_still_verify() {
        // The kid an earlier version put in its tokens: HMAC-SHA256(secret, label), 9 bytes.
        let kid = b64(&hmac_sha256(A, b"sessiongate access kid")[..9]);
        let mut h = Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = Some(kid);
        let t = jsonwebtoken::encode(
            &h,
            &claims_of_type(TYP_ACCESS),
            &EncodingKey::from_secret(A),
        )
        .unwrap();
        let c = ring().verify_access(&t, now()).unwrap();
        assert_eq!(c.fingerprint().key, None, "no fingerprint key named");
    }

    #[test]
    fn derived_keys_are_named_by_the_access_kid_and_differ_per_key() {
        let access = ring_of(&[NEW, OLD]);
        let k = KeyRing::new(&access, &one(R), "https://gw.test");
        let d = DerivedKeys::from_access(&access, b"sessiongate csrf");
        let kid = jsonwebtoken::decode_header(access_token(&k))
            .unwrap()
            .kid
            .unwrap();
        assert_eq!(d.signing().kid, kid);
        assert!(d.find(&k.access.others[0].kid).is_some());
        assert!(d.find("nope").is_none());
        let keys: Vec<[u8; 32]> = d.iter().map(|k| k.key).collect();
        assert_eq!(keys.len(), 2);
        assert_ne!(keys[0], keys[1]);
        let other = DerivedKeys::from_access(&access, b"sessiongate anomaly fingerprint");
        assert_ne!(other.signing().key, d.signing().key, "one key per purpose");
    }
}
