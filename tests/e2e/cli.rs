//! The command line's contract (DESIGN, "CLI"): `-c/--config` before or after the command,
//! `SESSIONGATE_CONFIG` when neither names the file, and `gen-key` for the assertion key.
//!
//! Attacks and failures covered:
//! - a `--config` that is silently not the file checked or run (an option in the wrong place
//!   ignored, the variable ignored and `./gateway.toml` read instead);
//! - `gen-key` overwriting an existing key (the identity assertions of every running instance
//!   stop verifying; the old key is lost), following a planted link to write elsewhere, or
//!   leaving the new private key readable by other users;
//! - `gen-key` writing something `keys.assertion_key_file` refuses.

use std::ffi::OsStr;
use std::path::Path;

use crate::harness::*;

/// `check-config` of `site`'s file, named as `args` name it (with the site's secrets), from a
/// working directory that holds a *broken* `gateway.toml`: reading the default instead of the
/// named file is a failure.
fn check_named(site: &Site, args: &[&OsStr], env: &[(&str, &str)]) -> CliOutput {
    std::fs::write(site.elsewhere.join("gateway.toml"), "[server\n").unwrap();
    let mut env = env.to_vec();
    env.push(("SG_TEST_ACCESS_SECRET", &site.access_secret));
    env.push(("SG_TEST_REFRESH_SECRET", &site.refresh_secret));
    sessiongate(args, &site.elsewhere, &env)
}

#[test]
fn the_config_option_is_taken_before_and_after_the_command() {
    let site = Site::new();
    let path = site.config_path();
    let p = path.as_os_str();
    let eq = format!("--config={}", path.display());
    let cases: Vec<Vec<&OsStr>> = vec![
        vec!["-c".as_ref(), p, "check-config".as_ref()],
        vec!["--config".as_ref(), p, "check-config".as_ref()],
        vec![eq.as_ref(), "check-config".as_ref()],
        vec!["check-config".as_ref(), "-c".as_ref(), p],
        vec!["check-config".as_ref(), "--config".as_ref(), p],
        vec!["check-config".as_ref(), eq.as_ref()],
        vec!["-c".as_ref(), p, "check-config".as_ref(), "--dev".as_ref()],
    ];
    for args in cases {
        let out = check_named(&site, &args, &[]);
        assert!(out.ok, "{args:?}: {}", out.text());
        assert!(
            out.stdout.contains(&format!("{}: ok", path.display())),
            "{args:?}: {}",
            out.text()
        );
    }
    // `run`, and no command at all (`run` is the default), with the option first.
    for args in [
        vec![OsStr::new("-c"), p, OsStr::new("run")],
        vec![OsStr::new("-c"), p],
        vec![OsStr::new("run"), OsStr::new("-c"), p],
    ] {
        let env = [
            ("SG_TEST_ACCESS_SECRET", site.access_secret.as_str()),
            ("SG_TEST_REFRESH_SECRET", site.refresh_secret.as_str()),
        ];
        let running = run_until_ready(&args, &site.elsewhere, &env)
            .unwrap_or_else(|out| panic!("{args:?}: {}", out.text()));
        running.stop();
    }
}

#[test]
fn sessiongate_config_names_the_file_when_no_option_does() {
    let site = Site::new();
    let path = site.config_path();
    let named = path.display().to_string();
    let env = [("SESSIONGATE_CONFIG", named.as_str())];
    let out = check_named(&site, &[OsStr::new("check-config")], &env);
    assert!(out.ok, "{}", out.text());
    assert!(
        out.stdout.contains(&format!("{named}: ok")),
        "{}",
        out.text()
    );

    // The option wins over the variable, before or after the command.
    let broken = site.etc.join("broken.toml");
    std::fs::write(&broken, "[tls\n").unwrap();
    let broken_env = broken.display().to_string();
    let env = [("SESSIONGATE_CONFIG", broken_env.as_str())];
    for args in [
        vec![
            OsStr::new("check-config"),
            OsStr::new("-c"),
            path.as_os_str(),
        ],
        vec![
            OsStr::new("-c"),
            path.as_os_str(),
            OsStr::new("check-config"),
        ],
    ] {
        let out = check_named(&site, &args, &env);
        assert!(
            out.ok,
            "{args:?} with SESSIONGATE_CONFIG={broken_env}: {}",
            out.text()
        );
    }
    // The variable alone, naming the broken file: that file is what is read.
    let out = check_named(&site, &[OsStr::new("check-config")], &env);
    assert!(!out.ok);
    assert!(
        out.stderr
            .contains(&format!("config error: {broken_env}: ")),
        "{}",
        out.text()
    );

    // `run` reads it too.
    let env = [
        ("SESSIONGATE_CONFIG", named.as_str()),
        ("SG_TEST_ACCESS_SECRET", site.access_secret.as_str()),
        ("SG_TEST_REFRESH_SECRET", site.refresh_secret.as_str()),
    ];
    let running = run_until_ready(&[OsStr::new("run")], &site.elsewhere, &env)
        .unwrap_or_else(|out| panic!("{}", out.text()));
    running.stop();
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn gen_key_writes_a_new_private_key_that_the_assertion_key_file_takes() {
    let site = Site::new();
    let key = site.etc.join("keys/assertion.pem");
    let args = [OsStr::new("gen-key"), OsStr::new("--out"), key.as_os_str()];
    let out = sessiongate(&args, &site.elsewhere, &[]);
    assert!(out.ok, "{}", out.text());
    let pem = std::fs::read_to_string(&key).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
    assert!(
        !out.text().contains("PRIVATE KEY"),
        "the key is printed: {}",
        out.text()
    );
    #[cfg(unix)]
    assert_eq!(mode(&key), 0o600, "the key is readable by others");
    let site = site.set("keys", "assertion_key_file = \"keys/assertion.pem\"");
    site.accepted("the key gen-key wrote");

    // Without --out: standard output, a different key each time.
    let a = sessiongate(&[OsStr::new("gen-key")], &site.elsewhere, &[]);
    let b = sessiongate(&[OsStr::new("gen-key")], &site.elsewhere, &[]);
    assert!(a.ok && b.ok, "{} {}", a.text(), b.text());
    assert!(
        a.stdout.starts_with("-----BEGIN PRIVATE KEY-----"),
        "{}",
        a.stdout
    );
    assert_ne!(a.stdout, b.stdout);
    assert_ne!(a.stdout, pem);
}

#[test]
fn gen_key_never_overwrites_nor_follows_a_link() {
    let site = Site::new();
    let key = site.etc.join("assertion.pem");
    let args = [OsStr::new("gen-key"), OsStr::new("--out"), key.as_os_str()];
    let out = sessiongate(&args, &site.elsewhere, &[]);
    assert!(out.ok, "control: a new file is written: {}", out.text());
    let first = std::fs::read_to_string(&key).unwrap();
    // Run again on the key it wrote, and on a file someone else put there.
    let out = sessiongate(&args, &site.elsewhere, &[]);
    assert!(!out.ok, "an existing key was overwritten: {}", out.text());
    assert!(
        out.stderr.contains(&format!("{} exists", key.display())),
        "{}",
        out.text()
    );
    assert_eq!(std::fs::read_to_string(&key).unwrap(), first);
    let other = site.etc.join("in-use.pem");
    std::fs::write(&other, "the key in use\n").unwrap();
    let args = [
        OsStr::new("gen-key"),
        OsStr::new("--out"),
        other.as_os_str(),
    ];
    assert!(!sessiongate(&args, &site.elsewhere, &[]).ok);
    assert_eq!(std::fs::read_to_string(&other).unwrap(), "the key in use\n");

    #[cfg(unix)]
    {
        // A link planted where the key goes, to a file elsewhere or to none yet.
        let target = site.root.path().join("target.pem");
        let link = site.etc.join("link.pem");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let args = [OsStr::new("gen-key"), OsStr::new("--out"), link.as_os_str()];
        let out = sessiongate(&args, &site.elsewhere, &[]);
        assert!(!out.ok, "gen-key followed a dangling link: {}", out.text());
        assert!(!target.exists(), "gen-key wrote through the link");
    }
}
