//! The identity assertion: `X-Auth-Assertion`, a short-lived JWT (EdDSA / Ed25519, RFC 8037)
//! that the app can verify with the public keys at `/.auth/jwks.json`, so an app that wants
//! more than "trust the network" can check that the identity headers came from the gateway.
//!
//! Signing costs tens of microseconds, so an assertion is minted once per session and reused
//! until half its lifetime has passed; the hot path usually does a map lookup.

use dashmap::DashMap;
use jsonwebtoken::{EncodingKey, Header};
use ring::signature::{Ed25519KeyPair, KeyPair};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};

use crate::config::AssertionConfig;
use crate::util::{b64, now_unix};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AssertionClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub roles: Vec<String>,
    /// The session handle (never the session id).
    pub sid: String,
    pub iat: u64,
    pub exp: u64,
}

struct PublicKey {
    kid: String,
    x: String,
}

fn parse(pem: &[u8]) -> Result<(Ed25519KeyPair, Vec<u8>), String> {
    let der = PrivatePkcs8KeyDer::from_pem_slice(pem)
        .map_err(|e| crate::util::pem_reason(&e, "PRIVATE KEY"))?;
    let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der.secret_pkcs8_der())
        .map_err(|_| "the PKCS#8 key is not an Ed25519 key".to_string())?;
    Ok((pair, der.secret_pkcs8_der().to_vec()))
}

fn public(pair: &Ed25519KeyPair) -> PublicKey {
    let raw = pair.public_key().as_ref();
    let digest = ring::digest::digest(&ring::digest::SHA256, raw);
    PublicKey {
        kid: b64(&digest.as_ref()[..12]),
        x: b64(raw),
    }
}

/// Cached assertions, at most (one per session with recent traffic, a few hundred bytes each):
/// when full, expired ones are dropped, and if it is still full, all of them.
const CACHE_MAX: usize = 50_000;

pub struct Signer {
    encoding: EncodingKey,
    current: PublicKey,
    previous: Option<PublicKey>,
    issuer: String,
    audience: String,
    ttl: u64,
    /// Per session id, the assertion and when it was minted; bounded by [`CACHE_MAX`]. Keys
    /// are the ids of verified sessions, never client input.
    cache: DashMap<String, (String, u64)>,
}

impl Signer {
    /// Whether `pem` holds a usable Ed25519 private key.
    pub fn check_pem(pem: &[u8]) -> Result<(), String> {
        parse(pem).map(|_| ())
    }

    /// The `kid` the JWKS publishes for the key in `pem`.
    pub fn kid_of_pem(pem: &[u8]) -> Result<String, String> {
        parse(pem).map(|(pair, _)| public(&pair).kid)
    }

    pub fn new(cfg: &AssertionConfig, issuer: &str) -> Result<Self, String> {
        let (pair, der) = parse(cfg.key_pem.expose())?;
        let previous = match &cfg.previous_pem {
            Some(p) => Some(public(&parse(p.expose())?.0)),
            None => None,
        };
        Ok(Self {
            encoding: EncodingKey::from_ed_der(&der),
            current: public(&pair),
            previous,
            issuer: issuer.to_string(),
            audience: cfg.audience.clone(),
            ttl: cfg.ttl.as_secs(),
            cache: DashMap::new(),
        })
    }

    /// The assertion for a session, minted afresh when the cached one is past half its life.
    pub fn assertion(
        &self,
        sub: &str,
        roles: &[String],
        sid: &str,
        handle: &str,
    ) -> Option<String> {
        let now = now_unix();
        if let Some(e) = self.cache.get(sid)
            && now < e.1 + self.ttl / 2
        {
            return Some(e.0.clone());
        }
        let claims = AssertionClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: sub.into(),
            roles: roles.to_vec(),
            sid: handle.into(),
            iat: now,
            exp: now + self.ttl,
        };
        let mut header = Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(self.current.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding).ok()?;
        make_room(&self.cache, CACHE_MAX, now, self.ttl);
        self.cache.insert(sid.to_string(), (token.clone(), now));
        Some(token)
    }

    /// Forget a session's cached assertion (it was revoked).
    pub fn forget(&self, sid: &str) {
        self.cache.remove(sid);
    }

    /// The JWK Set (RFC 7517) with the current and, after a rotation, the previous key.
    pub fn jwks(&self) -> serde_json::Value {
        let jwk = |k: &PublicKey| serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": k.x, "kid": k.kid, "alg": "EdDSA", "use": "sig"});
        let mut keys = vec![jwk(&self.current)];
        if let Some(p) = &self.previous {
            keys.push(jwk(p));
        }
        serde_json::json!({ "keys": keys })
    }
}

/// Keep `cache` under `cap` entries before an insert: expired ones go first; if it is still
/// full of live ones, it is a cache, so it starts over rather than grow.
fn make_room(cache: &DashMap<String, (String, u64)>, cap: usize, now: u64, ttl: u64) {
    if cache.len() >= cap {
        cache.retain(|_, (_, at)| now < *at + ttl);
        if cache.len() >= cap {
            cache.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_cache_stays_under_its_bound_with_live_and_with_expired_entries() {
        let cache = DashMap::new();
        for i in 0..1000 {
            make_room(&cache, 100, 10, 60);
            cache.insert(format!("sid-{i}"), (String::new(), 10));
            assert!(cache.len() <= 100, "{} live entries", cache.len());
        }
        // Expired entries go before live ones.
        cache.clear();
        for i in 0..99 {
            cache.insert(format!("old-{i}"), (String::new(), 0));
        }
        cache.insert("live".into(), (String::new(), 100));
        make_room(&cache, 100, 100, 60);
        assert_eq!(cache.len(), 1);
        assert!(cache.contains_key("live"));
    }

    #[test]
    fn assertion_verifies_against_the_published_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.pem");
        crate::dev::write_new_key(&p).unwrap();
        let pem = std::fs::read(&p).unwrap();
        let cfg = AssertionConfig {
            key_pem: crate::config::Secret::new(pem),
            previous_pem: None,
            audience: "upstream".into(),
            ttl: Duration::from_secs(60),
        };
        let s = Signer::new(&cfg, "https://gw.test").unwrap();
        let t = s
            .assertion("alice", &["admin".into()], "sid", "handle")
            .unwrap();
        assert_eq!(
            s.assertion("alice", &["admin".into()], "sid", "handle")
                .unwrap(),
            t,
            "cached"
        );
        let jwks = s.jwks();
        let x = jwks["keys"][0]["x"].as_str().unwrap();
        let key = jsonwebtoken::DecodingKey::from_ed_components(x).unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
        v.set_audience(&["upstream"]);
        v.set_issuer(&["https://gw.test"]);
        let c = jsonwebtoken::decode::<AssertionClaims>(&t, &key, &v)
            .unwrap()
            .claims;
        assert_eq!(c.sub, "alice");
        assert_eq!(c.sid, "handle");
        assert!(c.exp - c.iat <= 300);
    }
}
