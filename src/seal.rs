//! Sealed values: what the gateway keeps for itself but must leave with a client or in the
//! store — an OpenID Connect flow in a cookie, a provider's tokens in a session record — is
//! encrypted and authenticated (AES-256-GCM, `ring`) under a key derived from the refresh key
//! ring and named by its `kid`, so a value opens for as long as its key is in the ring (the
//! ring outlives every session it signs). The `purpose` is authenticated too: a value sealed
//! for one use never opens for another.
//!
//! Format: `<kid>.<base64url(nonce ‖ ciphertext ‖ tag)>`. Nonces are random (96 bits), far
//! below the birthday bound at a gateway's rate of new flows and sessions per key.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use crate::config::SecretRing;
use crate::tokens::DerivedKeys;
use crate::util::b64;

pub struct Sealer {
    keys: DerivedKeys,
    rng: SystemRandom,
}

impl Sealer {
    pub fn new(refresh: &SecretRing) -> Self {
        Self {
            keys: DerivedKeys::from_refresh(refresh, b"sessiongate seal v1"),
            rng: SystemRandom::new(),
        }
    }

    /// `plain`, sealed for `purpose` under the signing key; `None` only if the system's
    /// random source fails.
    pub fn seal(&self, purpose: &str, plain: &[u8]) -> Option<String> {
        let k = self.keys.signing();
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &k.key).ok()?);
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut buf = plain.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(purpose.as_bytes()),
            &mut buf,
        )
        .ok()?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Some(format!("{}.{}", k.kid, b64(&out)))
    }

    /// What `sealed` holds, if a key of the ring sealed it for `purpose` and nothing changed.
    pub fn open(&self, purpose: &str, sealed: &str) -> Option<Vec<u8>> {
        use base64::Engine;
        let (kid, data) = sealed.split_once('.')?;
        let k = self.keys.find(kid)?;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(data)
            .ok()?;
        if raw.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &k.key).ok()?);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = ct.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(purpose.as_bytes()), &mut buf)
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Secret, SecretRing};

    fn ring(s: &str) -> SecretRing {
        SecretRing::single("k", Secret::new(s.as_bytes().to_vec()))
    }

    #[test]
    fn a_sealed_value_opens_for_its_purpose_only_and_any_change_is_refused() {
        let s = Sealer::new(&ring("one secret that is long enough for a key"));
        let v = s.seal("flow", b"hello").unwrap();
        assert_eq!(s.open("flow", &v).as_deref(), Some(&b"hello"[..]));
        assert_eq!(s.open("idp", &v), None, "another purpose");
        let (kid, data) = v.split_once('.').unwrap();
        let mut bytes: Vec<u8> = data.bytes().collect();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let tampered = format!("{kid}.{}", String::from_utf8(bytes).unwrap());
        assert_eq!(s.open("flow", &tampered), None, "a changed byte");
        assert_eq!(s.open("flow", "x.y"), None);
        assert_eq!(s.open("flow", ""), None);
        assert_ne!(s.seal("flow", b"hello").unwrap(), v, "random nonce");
    }

    #[test]
    fn a_value_opens_while_its_key_is_in_the_ring_and_not_after() {
        let old = ring("the old secret, long enough to be a key");
        let a = Sealer::new(&old);
        let v = a.seal("idp", b"t").unwrap();
        let both = SecretRing::new(vec![
            crate::config::RingSecret {
                key: "new".into(),
                secret: Secret::new(b"the new secret, long enough to be a key".to_vec()),
            },
            crate::config::RingSecret {
                key: "old".into(),
                secret: Secret::new(b"the old secret, long enough to be a key".to_vec()),
            },
        ])
        .unwrap();
        assert_eq!(
            Sealer::new(&both).open("idp", &v).as_deref(),
            Some(&b"t"[..])
        );
        let b = Sealer::new(&ring("the new secret, long enough to be a key"));
        assert_eq!(b.open("idp", &v), None);
    }
}
