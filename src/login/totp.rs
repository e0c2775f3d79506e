//! The second factor's own logic: TOTP (RFC 6238: HMAC-SHA-1, 6 digits, 30 s steps, as every
//! authenticator app reads an `otpauth://` URI) and recovery codes. The endpoints that use it
//! are `auth::second_factor`'s; what is kept per user is the store's ([`crate::store::FactorRecord`]).
//!
//! Threats: a code seen over a shoulder or phished and replayed (each time step is accepted
//! once per user, and no earlier one after it: [`crate::store::SessionStore::use_factor_step`]);
//! codes guessed online (the login throttle counts wrong codes as failed logins); a clock a
//! little off (one step either side, RFC 6238 §5.2, and no more); a leaked store (the secret
//! is sealed, recovery codes are hashed); timing (tokens and hashes are compared in constant
//! time, by `totp-rs` and [`crate::util::ct_eq`]).

use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use totp_rs::{Algorithm, Builder, Secret, Totp};

/// Seconds per time step.
pub const STEP: u64 = 30;
/// Steps accepted either side of the current one (clock skew).
pub const SKEW: u16 = 1;
/// Recovery codes made at each enrolment.
pub const RECOVERY_CODES: usize = 10;
/// Bytes of a TOTP secret: 160 bits, RFC 4226 §4's recommendation.
const SECRET_BYTES: usize = 20;
/// Bytes of a recovery code: 80 bits, 16 base32 characters.
const RECOVERY_BYTES: usize = 10;

/// A new random secret from the operating system's generator; `None` if it fails.
pub fn new_secret() -> Option<Vec<u8>> {
    let mut s = vec![0u8; SECRET_BYTES];
    SystemRandom::new().fill(&mut s).ok()?;
    Some(s)
}

/// The secret as an authenticator app takes it typed in (RFC 4648 base32, no padding).
pub fn base32(secret: &[u8]) -> String {
    Secret::from(secret.to_vec()).to_base32()
}

fn totp(secret: &[u8], issuer: &str, account: &str) -> Option<Totp> {
    // An issuer or account with a colon cannot be written in an otpauth label.
    let issuer: String = issuer.replace(':', " ");
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(SKEW)
        .with_step_duration(STEP)
        .with_secret(secret.to_vec())
        .with_issuer(Some(issuer))
        .with_account_name(account.replace(':', " "))
        .build()
        .ok()
}

/// The `otpauth://totp/…` URI an authenticator app reads from the QR code.
pub fn otpauth_uri(secret: &[u8], issuer: &str, account: &str) -> Option<String> {
    totp(secret, issuer, account)?.to_url().ok()
}

/// The time step whose code `code` is at `now` (Unix seconds), within [`SKEW`] steps; `None`
/// for a wrong or malformed code. Spaces are ignored (apps show `123 456`).
pub fn check(secret: &[u8], code: &str, now: u64) -> Option<u64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // `Totp::check` compares each candidate token in constant time.
    totp(secret, "", "")?.check(&code, now)
}

/// The code of `secret` at `now` (tests, and nothing else, need one).
#[cfg(test)]
pub fn code_at(secret: &[u8], now: u64) -> String {
    totp(secret, "", "").map_or_else(String::new, |t| t.generate(now).to_string())
}

/// New recovery codes, shown once: `XXXX-XXXX-XXXX-XXXX`, 80 random bits each; `None` if the
/// operating system's generator fails.
pub fn recovery_codes() -> Option<Vec<String>> {
    let rng = SystemRandom::new();
    (0..RECOVERY_CODES)
        .map(|_| {
            let mut b = [0u8; RECOVERY_BYTES];
            rng.fill(&mut b).ok()?;
            let s = base32(&b);
            Some(
                s.as_bytes()
                    .chunks(4)
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .collect::<Vec<_>>()
                    .join("-"),
            )
        })
        .collect()
}

/// What the store keeps of a recovery code: SHA-256 of its normalised form (hex). A fast hash
/// is enough here, unlike for passwords: each code carries 80 random bits, so a leaked hash
/// cannot be reversed by guessing (2^80 tries), and no salt is needed with no dictionary to
/// precompute. Dashes, spaces and case are ignored, as people type them.
pub fn recovery_hash(code: &str) -> String {
    let norm: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let digest = Sha256::digest(norm.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `presented` is a well-formed recovery code (16 base32 characters once normalised):
/// anything else is not looked up.
pub fn looks_like_recovery_code(presented: &str) -> bool {
    let n = presented
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .count();
    n == 16 && presented.len() <= 64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use crate::store::{FactorRecord, SessionStore};

    const NOW: u64 = 1_700_000_015; // mid-step

    #[test]
    fn the_current_step_and_one_either_side_are_accepted_and_no_more() {
        let s = new_secret().unwrap();
        let step = NOW / STEP;
        assert_eq!(check(&s, &code_at(&s, NOW), NOW), Some(step));
        assert_eq!(check(&s, &code_at(&s, NOW - STEP), NOW), Some(step - 1));
        assert_eq!(check(&s, &code_at(&s, NOW + STEP), NOW), Some(step + 1));
        for far in [
            NOW - 2 * STEP,
            NOW + 2 * STEP,
            NOW - 3 * STEP,
            NOW + 3 * STEP,
        ] {
            assert_eq!(check(&s, &code_at(&s, far), NOW), None, "{far}");
        }
        let spaced = code_at(&s, NOW);
        let spaced = format!("{} {}", &spaced[..3], &spaced[3..]);
        assert_eq!(check(&s, &spaced, NOW), Some(step));
        for bad in ["", "12345", "1234567", "abcdef", "12345x"] {
            assert_eq!(check(&s, bad, NOW), None, "{bad:?}");
        }
        let other = new_secret().unwrap();
        assert_eq!(check(&other, &code_at(&s, NOW), NOW), None);
    }

    #[test]
    fn the_uri_names_the_issuer_and_the_account_and_carries_the_secret() {
        let s = new_secret().unwrap();
        let uri = otpauth_uri(&s, "Acme: Intranet", "alice").unwrap();
        assert!(uri.starts_with("otpauth://totp/"), "{uri}");
        assert!(uri.contains("alice"), "{uri}");
        assert!(uri.contains(&format!("secret={}", base32(&s))), "{uri}");
        assert!(uri.contains("issuer=Acme"), "{uri}");
        assert_eq!(base32(&s).len(), 32);
    }

    #[tokio::test]
    async fn a_step_is_accepted_once_and_no_earlier_one_after_it() {
        let store = MemoryStore::new();
        let rec = FactorRecord {
            secret_sealed: "sealed".into(),
            enrolled_at: NOW,
        };
        let step = NOW / STEP;
        assert!(
            !store.use_factor_step("alice", step).await.unwrap(),
            "no factor yet"
        );
        store
            .set_factor("alice", &rec, step - 5, &[])
            .await
            .unwrap();
        assert!(store.use_factor_step("alice", step).await.unwrap());
        assert!(
            !store.use_factor_step("alice", step).await.unwrap(),
            "replay"
        );
        assert!(
            !store.use_factor_step("alice", step - 1).await.unwrap(),
            "older"
        );
        assert!(store.use_factor_step("alice", step + 1).await.unwrap());
    }

    #[tokio::test]
    async fn recovery_codes_are_random_hashed_and_used_once() {
        let codes = recovery_codes().unwrap();
        assert_eq!(codes.len(), RECOVERY_CODES);
        let unique: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(unique.len(), RECOVERY_CODES);
        assert!(
            codes
                .iter()
                .all(|c| c.len() == 19 && looks_like_recovery_code(c))
        );
        let hashes: Vec<String> = codes.iter().map(|c| recovery_hash(c)).collect();
        assert!(
            !hashes
                .iter()
                .any(|h| codes.iter().any(|c| h.contains(c.as_str())))
        );
        let store = MemoryStore::new();
        let rec = FactorRecord {
            secret_sealed: "sealed".into(),
            enrolled_at: NOW,
        };
        store.set_factor("bob", &rec, 0, &hashes).await.unwrap();
        let typed = codes[3].to_lowercase().replace('-', " ");
        assert!(
            store
                .use_recovery_code("bob", &recovery_hash(&typed))
                .await
                .unwrap()
        );
        assert!(
            !store
                .use_recovery_code("bob", &recovery_hash(&codes[3]))
                .await
                .unwrap()
        );
        assert_eq!(
            store.recovery_codes_left("bob").await.unwrap(),
            RECOVERY_CODES - 1
        );
        assert!(
            !store.use_recovery_code("eve", &hashes[0]).await.unwrap(),
            "another user"
        );
        assert!(!looks_like_recovery_code("123456"));
    }
}
