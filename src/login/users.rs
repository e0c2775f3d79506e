//! Users of `login.mode = "users_file"`: `users.toml` with argon2id password hashes.
//!
//! Threats: offline cracking of a leaked file (argon2id, RFC 9106), user enumeration by timing
//! (an unknown user costs one verification against a dummy hash, like a wrong password).
//! Hashing runs on the blocking pool, never on a request thread.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    user: Vec<UserEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    name: String,
    password_hash: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    disabled: bool,
}

#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub roles: Vec<String>,
    phc: String,
    disabled: bool,
}

/// Characters allowed in user names and roles: they travel in headers and token claims.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-+".contains(&b))
}

#[derive(Debug, Clone)]
pub struct Users {
    map: Arc<HashMap<String, User>>,
    /// Each user by their passkey handle (`login::passkeys::user_handle`): a passwordless
    /// sign-in names the user by it alone.
    handles: Arc<HashMap<[u8; 16], String>>,
    dummy_phc: Arc<String>,
    /// At most this many argon2 verifications at once: each takes ~19 MiB and a core, so
    /// unbounded concurrency would let a burst of logins exhaust memory.
    hashing: Arc<tokio::sync::Semaphore>,
}

fn hash_slots() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) * 2
}

/// Verified for unknown users, so that an unknown name costs what a wrong password costs (no
/// user enumeration by timing). The hash of a random password nobody knows, with the same
/// parameters `hash_password` uses (argon2 0.6 defaults); a test checks they still match.
const DUMMY_PHC: &str = "$argon2id$v=19$m=19456,t=2,p=1$IsvLTgUbK39Q3+acPmNpKw$lrEw9TvB9VMaUvX6VvDkjpOchbeN8QODIxiC0zUNj6k";

/// Hash a password as an argon2id PHC string (default parameters, random salt).
pub fn hash_password(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

impl Users {
    pub fn empty() -> Self {
        Self {
            map: Arc::new(HashMap::new()),
            handles: Arc::new(HashMap::new()),
            dummy_phc: Arc::new(DUMMY_PHC.to_string()),
            hashing: Arc::new(tokio::sync::Semaphore::new(hash_slots())),
        }
    }

    /// Read and check a users file. Errors name the entry.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let file: UsersFile =
            toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message()))?;
        let mut users = Self::empty();
        let map = Arc::make_mut(&mut users.map);
        for (i, u) in file.user.into_iter().enumerate() {
            if !valid_name(&u.name) {
                return Err(format!(
                    "user[{i}].name: {:?} must be 1-128 of A-Z a-z 0-9 . _ @ - +",
                    u.name
                ));
            }
            if let Some(r) = u.roles.iter().find(|r| !valid_name(r)) {
                return Err(format!(
                    "user[{i}].roles: {r:?} must be 1-128 of A-Z a-z 0-9 . _ @ - +"
                ));
            }
            if !u.password_hash.starts_with("$argon2id$")
                || PasswordHash::new(&u.password_hash).is_err()
            {
                return Err(format!(
                    "user[{i}].password_hash: not an argon2id PHC string (make one with `sessiongate hash-password`)"
                ));
            }
            if map.contains_key(&u.name) {
                return Err(format!("user[{i}].name: {:?} is defined twice", u.name));
            }
            map.insert(
                u.name.clone(),
                User {
                    name: u.name,
                    roles: u.roles,
                    phc: u.password_hash,
                    disabled: u.disabled,
                },
            );
        }
        users.index_handles();
        Ok(users)
    }

    fn index_handles(&mut self) {
        self.handles = Arc::new(
            self.map
                .keys()
                .map(|n| (*super::passkeys::user_handle(n).as_bytes(), n.clone()))
                .collect(),
        );
    }

    /// The active user whose passkey handle this is.
    pub fn by_passkey_handle(&self, handle: &[u8]) -> Option<User> {
        let h: [u8; 16] = handle.try_into().ok()?;
        self.active(self.handles.get(&h)?)
    }

    /// Add a user (the `--dev` demo user).
    pub fn add(&mut self, name: &str, password: &str, roles: Vec<String>) -> Result<(), String> {
        let phc = hash_password(password)?;
        Arc::make_mut(&mut self.map).insert(
            name.into(),
            User {
                name: name.into(),
                roles,
                phc,
                disabled: false,
            },
        );
        self.index_handles();
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the file has a user of this name.
    pub fn has(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// The user of this name, unless the file disables them (a sign-in finished with a second
    /// factor, after the password was checked).
    pub fn active(&self, name: &str) -> Option<User> {
        self.map.get(name).filter(|u| !u.disabled).cloned()
    }

    /// Every role some user holds, sorted.
    pub fn roles(&self) -> std::collections::BTreeSet<&str> {
        self.map
            .values()
            .flat_map(|u| u.roles.iter().map(String::as_str))
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Check a password. Unknown and disabled users cost the same work as a wrong password.
    pub async fn verify(&self, name: &str, password: &str) -> Option<User> {
        let user = self.map.get(name).cloned();
        let phc = user
            .as_ref()
            .map_or_else(|| self.dummy_phc.as_str().to_owned(), |u| u.phc.clone());
        let password = password.to_owned();
        // The permit moves into the blocking task, so it is held exactly while hashing.
        let Ok(permit) = self.hashing.clone().acquire_owned().await else {
            return None;
        };
        let ok = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            PasswordHash::new(&phc).is_ok_and(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
        })
        .await
        .unwrap_or(false);
        user.filter(|u| ok && !u.disabled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dummy_hash_costs_what_a_real_one_costs() {
        let real = hash_password("x").unwrap();
        let params = |phc: &str| phc.split('$').nth(3).map(str::to_owned);
        assert_eq!(params(DUMMY_PHC), params(&real));
        assert!(argon2::PasswordHash::new(DUMMY_PHC).is_ok());
    }

    #[tokio::test]
    async fn verify_accepts_the_right_password_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("users.toml");
        let h = hash_password("correct horse").unwrap();
        std::fs::write(
            &p,
            format!("[[user]]\nname = \"alice\"\npassword_hash = \"{h}\"\nroles = [\"admin\"]\n"),
        )
        .unwrap();
        let u = Users::load(&p).unwrap();
        assert_eq!(
            u.verify("alice", "correct horse").await.unwrap().roles,
            vec!["admin".to_string()]
        );
        assert!(u.verify("alice", "wrong").await.is_none());
        assert!(u.verify("nobody", "correct horse").await.is_none());
    }

    #[test]
    fn bad_entries_are_refused_with_their_index() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("users.toml");
        std::fs::write(&p, "[[user]]\nname = \"bad name\"\npassword_hash = \"x\"\n").unwrap();
        assert!(Users::load(&p).unwrap_err().starts_with("user[0].name"));
        std::fs::write(
            &p,
            "[[user]]\nname = \"bob\"\npassword_hash = \"plaintext\"\n",
        )
        .unwrap();
        assert!(
            Users::load(&p)
                .unwrap_err()
                .starts_with("user[0].password_hash")
        );
    }
}
