//! Minting and verifying the gateway's tokens (RFC 7519 JWTs).
//!
//! Threats answered: forged tokens (HMAC-SHA256 with a 32-byte+ secret; the algorithm is pinned,
//! so `alg: none` or an algorithm swap is refused), confusion between token kinds (access and
//! refresh tokens use different keys *and* carry `typ`, each checked), replay after expiry
//! (`exp`, `nbf`, no leeway: the gateway mints its own tokens), tokens from another deployment
//! (`iss` is the public origin, `aud` is fixed). Claims carry identifiers only.

use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::Config;
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
    /// Keyed fingerprint of the login user agent's device: browser family, system and class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uad: Option<String>,
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
    pub uad: Option<String>,
}

/// When an access token is valid (Unix seconds): from `now` to `exp`, for a session that ends
/// at `session_end` (its `sxp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessLifetime {
    pub now: u64,
    pub exp: u64,
    pub session_end: u64,
}

/// The fingerprints a session was bound to at login (see `sessions::anomaly`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprint {
    pub ipn: Option<String>,
    /// The first version of the user-agent binding, the exact text: compared only in tokens of
    /// earlier releases, which carry no `uad`.
    pub uah: Option<String>,
    /// The user agent's device (`web::user_agent::Device`).
    pub uad: Option<String>,
}

impl AccessClaims {
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint {
            ipn: self.ipn.clone(),
            uah: self.uah.clone(),
            uad: self.uad.clone(),
        }
    }
}

impl RefreshClaims {
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint {
            ipn: self.ipn.clone(),
            uah: self.uah.clone(),
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
    use base64::Engine as _;
    let Some(h) = token.split('.').next() else {
        return false;
    };
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(h) else {
        return false;
    };
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&bytes)
        .is_ok_and(|m| m.keys().all(|k| HEADER_PARAMETERS.contains(&k.as_str())))
}

/// A token could not be signed (never expected with the gateway's own keys and claims; an
/// error rather than an empty token, so nothing sets a cookie nobody can use).
#[derive(Debug, thiserror::Error)]
#[error("cannot sign a token: {0}")]
pub struct MintError(#[from] jsonwebtoken::errors::Error);

struct HmacKey {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl HmacKey {
    fn new(secret: &[u8], label: &str) -> Self {
        // The key id is a keyed fingerprint: stable for a secret, revealing nothing about it.
        let kid = b64(&hmac_sha256(secret, label.as_bytes())[..9]);
        Self {
            kid,
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }
}

/// The gateway's signing keys and the validation rules, built once at start.
pub struct KeyRing {
    access: HmacKey,
    refresh: HmacKey,
    issuer: String,
    /// Whether access tokens must carry `nbf`.
    access_validation: Validation,
    refresh_validation: Validation,
    /// Key for deriving session handles from session ids.
    handle_key: [u8; 32],
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("access_kid", &self.access.kid)
            .field("refresh_kid", &self.refresh.kid)
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
    pub fn new(access_secret: &[u8], refresh_secret: &[u8], issuer: &str) -> Self {
        Self {
            access: HmacKey::new(access_secret, "sessiongate access kid"),
            refresh: HmacKey::new(refresh_secret, "sessiongate refresh kid"),
            issuer: issuer.to_string(),
            access_validation: validation(issuer, &["exp", "nbf", "iat", "iss", "aud", "sub"]),
            refresh_validation: validation(issuer, &["exp", "iat", "iss", "aud", "sub"]),
            handle_key: hmac_sha256(access_secret, b"sessiongate session handle"),
        }
    }

    pub fn from_config(cfg: &Config) -> Self {
        Self::new(
            cfg.keys.access_secret.expose(),
            cfg.keys.refresh_secret.expose(),
            &cfg.server.public_origin.origin,
        )
    }

    /// The non-secret handle of a session, shown to the app and on the sessions page.
    /// Derived, so it needs no store lookup; one-way, so it cannot be turned into the id.
    pub fn session_handle(&self, sid: &str) -> String {
        b64(&hmac_sha256(&self.handle_key, sid.as_bytes())[..12])
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
            uad: fp.uad.clone(),
        };
        self.sign(&self.access, &claims)
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
            uad: fp.uad.clone(),
        };
        self.sign(&self.refresh, &claims)
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

fn verify<T: serde::de::DeserializeOwned>(
    token: &str,
    key: &HmacKey,
    v: &Validation,
) -> Result<T, TokenError> {
    if token.len() > 4096 {
        return Err(TokenError::Invalid);
    }
    if !plain_header(token) {
        return Err(TokenError::UnexpectedHeader);
    }
    let data =
        jsonwebtoken::decode::<T>(token, &key.decoding, v).map_err(|_| TokenError::Invalid)?;
    if data.header.kid.as_deref() != Some(key.kid.as_str()) {
        return Err(TokenError::UnknownKey);
    }
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
            uad: None,
        }
    }

    #[test]
    fn access_tokens_carry_the_sessions_end_and_tokens_without_it_still_verify() {
        let k = ring();
        let life = AccessLifetime {
            now: now(),
            exp: now() + 60,
            session_end: now() + 600,
        };
        let t = k
            .mint_access("alice", "s", &[], life, &Fingerprint::default())
            .unwrap();
        assert_eq!(k.verify_access(&t, now()).unwrap().sxp, Some(now() + 600));
        // Minted by a gateway from before `sxp`: still a valid token, with no session end.
        let legacy = k.sign(&k.access, &claims_of_type(TYP_ACCESS)).unwrap();
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
        let kid = k.access.kid.clone();
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

    fn ring() -> KeyRing {
        KeyRing::new(A, R, "https://gw.test")
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
        header.kid = Some(k.access.kid.clone());
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
                },
                &Fingerprint::default(),
            )
            .unwrap();
        let mut parts = good.split('.');
        let _ = parts.next();
        let payload = parts.next().unwrap();
        let none = format!("{}.{}.", b64(br#"{"alg":"none","typ":"JWT"}"#), payload);
        assert!(k.verify_access(&none, now()).is_err());
        let other = KeyRing::new(A, R, "https://other.test");
        let t = other
            .mint_access(
                "alice",
                "s",
                &[],
                AccessLifetime {
                    now: now(),
                    exp: now() + 60,
                    session_end: now() + 60 + 3600,
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
        let k = ring();
        assert_eq!(k.session_handle("abc"), k.session_handle("abc"));
        assert_ne!(k.session_handle("abc"), k.session_handle("abd"));
        assert!(!k.session_handle("abc").contains("abc"));
    }
}
