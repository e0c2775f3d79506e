//! The two test users (alice: admin + dev, bob: dev), their passwords, and the users file,
//! hashed once per test binary with the gateway's own `hash-password`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use super::util::bin;

pub const ALICE_PASSWORD: &str = "alice-Correct-Horse-Battery-71";
pub const BOB_PASSWORD: &str = "bob-Tr0ub4dor-and-three-33";

/// `sessiongate hash-password`, password on stdin, PHC string on stdout.
pub fn hash_password(password: &str) -> String {
    let mut child = Command::new(bin())
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sessiongate hash-password");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "hash-password failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let phc = stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("$argon2id$"))
        .unwrap_or_else(|| panic!("hash-password printed no argon2id PHC string: {stdout:?}"))
        .to_string();
    assert!(
        !phc.contains(password),
        "the PHC string must not contain the password"
    );
    phc
}

pub struct Hashes {
    pub alice: String,
    pub bob: String,
}

pub fn hashes() -> &'static Hashes {
    static HASHES: OnceLock<Hashes> = OnceLock::new();
    HASHES.get_or_init(|| Hashes {
        alice: hash_password(ALICE_PASSWORD),
        bob: hash_password(BOB_PASSWORD),
    })
}

pub fn users_toml() -> String {
    let h = hashes();
    format!(
        "[[user]]\nname = \"alice\"\npassword_hash = \"{}\"\nroles = [\"admin\", \"dev\"]\n\n\
         [[user]]\nname = \"bob\"\npassword_hash = \"{}\"\nroles = [\"dev\"]\n",
        h.alice, h.bob
    )
}
