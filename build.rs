//! The git revision that `sessiongate --version` names (`SESSIONGATE_REVISION` for the crate):
//! `git rev-parse --short=12 HEAD` where the source is a git checkout; else the
//! `SESSIONGATE_REVISION` environment variable (a container build, where `.git` is not copied,
//! passes it as a build argument); else `unknown`. The build reruns when HEAD moves: on a new
//! commit, a checkout, or another value of the variable.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=SESSIONGATE_REVISION");
    let revision = git_revision()
        .or_else(|| std::env::var("SESSIONGATE_REVISION").ok())
        .filter(|r| is_revision(r))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=SESSIONGATE_REVISION={revision}");
}

/// A short revision, or a name a build system gave: letters, digits, `.`, `_`, `-`.
fn is_revision(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 64
        && r.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

fn git_revision() -> Option<String> {
    let revision = git(&["rev-parse", "--short=12", "HEAD"])?;
    // Rerun when HEAD changes: HEAD itself (a checkout), and the ref it points to (a commit),
    // or packed-refs where the ref is packed. The paths come from git: in a worktree they are
    // not under ./.git. Only existing files are named (a missing one would rerun every build).
    let mut watch = vec!["HEAD".to_string()];
    if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch.push(reference);
    }
    watch.push("packed-refs".to_string());
    for name in watch {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]).map(PathBuf::from) {
            let path = if path.is_relative() {
                std::env::current_dir().ok()?.join(path)
            } else {
                path
            };
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    Some(revision)
}
