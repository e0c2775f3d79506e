//! A real browser through the gateway's own pages: headless Chromium (Debian's, driven by
//! `tests/browser/walk.mjs` with playwright-core) walks the password login, the sessions page,
//! TOTP enrolment, a second-factor sign-in, passkey registration (Chromium's virtual
//! authenticator), a passwordless sign-in with it and logout against a gateway started here.
//!
//! What a browser sees that the HTTP-level tests cannot:
//! - the session cookies as the browser stores them (`__Host-`, Secure, HttpOnly, Path=/,
//!   host-only), and gone after logout;
//! - every gateway page under its Content-Security-Policy with no violation reported, no
//!   console error and no uncaught script error (a page that needs what its CSP forbids);
//! - the pages' forms working as a user submits them (return_to carried through the login and
//!   the second-factor step; the sessions page's buttons), the product name on every page;
//! - a replayed TOTP code refused in the browser's second step, the next step's code accepted;
//! - the origin is a secure context with the test CA trusted for real (an NSS database, no
//!   `ignoreHTTPSErrors`), so WebAuthn is not refused: a virtual authenticator (CTAP2,
//!   resident keys, user verification) registers a discoverable passkey from the sessions
//!   page, and signs in with it alone.
//!
//! Needs `/usr/bin/chromium`, `certutil` and `tests/browser/node_modules` (`scripts/test`
//! installs them); without them the test fails and says so.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const WALK_TIMEOUT: Duration = Duration::from_secs(120);
/// Distinctive, so that finding it on a page means the setting reached the page.
const PRODUCT: &str = "Walkway Gate 7f3";

/// The steps the walk must report ok, in order. A step dropped or renamed in the script fails
/// this test; a new step is added here as it is added there.
const STEPS: &[&str] = &[
    "the browser trusts the test CA (NSS database)",
    "launch chromium",
    "a protected page redirects to the login page",
    "webauthn virtual authenticator on the gateway origin",
    "password login lands on the app with the identity",
    "sessions page",
    "totp enrolment page",
    "totp confirmation shows the recovery codes",
    "sessions page shows the factor on",
    "logout (sign out everywhere, from the sessions page)",
    "password login asks for the second factor",
    "a replayed code is refused",
    "the next step's code signs in",
    "passkey registration from the sessions page",
    "logout (POST /.auth/logout)",
    "passwordless login with the passkey",
    "the sessions page shows the passkey used",
    "logout after the passkey sign-in",
    "password login, then the passkey as the second factor",
    "logout after the second factor by passkey",
    "signed out: a protected page asks for a login again",
];

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// What the walk needs on this machine; a missing piece fails the test (no silent skip).
fn require_browser_tier() {
    let mut missing = Vec::new();
    if !Path::new(CHROMIUM).exists() {
        missing.push(format!("{CHROMIUM} (Debian package chromium)"));
    }
    if !browser_dir()
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        missing.push("tests/browser/node_modules (npm ci in tests/browser)".into());
    }
    for (tool, package) in [("node", "nodejs"), ("certutil", "libnss3-tools")] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            missing.push(format!("{tool} (Debian package {package})"));
        }
    }
    assert!(
        missing.is_empty(),
        "the browser tier needs {}: run scripts/test, which installs them",
        missing.join(", ")
    );
}

/// The walk's outcome: its exit status (`None`: killed at the timeout) and its output.
struct Walk {
    status: Option<std::process::ExitStatus>,
    stdout: String,
    stderr: String,
    took: Duration,
}

fn run_walk(envs: Vec<(&'static str, String)>) -> Walk {
    use std::os::unix::process::CommandExt as _;
    let started = Instant::now();
    let mut child = Command::new("node")
        .arg(browser_dir().join("walk.mjs"))
        .current_dir(browser_dir())
        .envs(envs)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: at the timeout, node and the Chromium it started go together.
        .process_group(0)
        .spawn()
        .expect("spawn node tests/browser/walk.mjs");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = started + WALK_TIMEOUT;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Walk {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        took: started.elapsed(),
    }
}

/// The steps the walk reported ok, in order; a failed step's line, if any.
fn reported(stdout: &str) -> (Vec<String>, Option<Value>) {
    let mut ok = Vec::new();
    let mut failed = None;
    for line in stdout.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        match (v["step"].as_str(), v["ok"].as_bool()) {
            (Some(step), Some(true)) => ok.push(step.to_string()),
            (Some(_), Some(false)) => failed = Some(v),
            _ => {}
        }
    }
    (ok, failed)
}

#[tokio::test]
async fn a_browser_walks_login_totp_passkeys_and_logout() {
    require_browser_tier();
    let gw =
        Gateway::start(GatewayConfig::new().set("ui", "product_name", &format!("\"{PRODUCT}\"")))
            .await;
    let out = tempfile::Builder::new()
        .prefix("sessiongate-browser-")
        .tempdir()
        .expect("tempdir");
    let envs = vec![
        // The gateway's public origin (https://localhost), reached at its bound address: the
        // browser maps the origin's host and port there, as the harness's clients do.
        ("SG_BROWSER_ORIGIN", gw.public_origin()),
        ("SG_BROWSER_CONNECT", gw.https.to_string()),
        ("SG_BROWSER_USER", "alice".to_string()),
        ("SG_BROWSER_PASSWORD", ALICE_PASSWORD.to_string()),
        ("SG_BROWSER_PRODUCT", PRODUCT.to_string()),
        (
            "SG_BROWSER_CA",
            gw.dir.path().join("ca.pem").display().to_string(),
        ),
        ("SG_BROWSER_OUT", out.path().display().to_string()),
        ("SG_BROWSER_CHROMIUM", CHROMIUM.to_string()),
    ];
    let walk = tokio::task::spawn_blocking(move || run_walk(envs))
        .await
        .expect("walk task");
    let (ok, failed) = reported(&walk.stdout);
    let missing: Vec<&str> = STEPS
        .iter()
        .copied()
        .filter(|s| !ok.iter().any(|o| o == s))
        .collect();
    let passed = walk.status.is_some_and(|s| s.success()) && missing.is_empty() && ok == STEPS;
    if !passed {
        // Keep the screenshots for the report.
        let kept = out.keep();
        panic!(
            "the browser walk failed ({}; {:.1?}).\nfailed step: {}\nsteps missing: {missing:?}\n\
             screenshots and the browser's HOME kept in {}\n--- walk stdout ---\n{}\n\
             --- walk stderr ---\n{}\n--- gateway stderr ---\n{}",
            match walk.status {
                Some(s) => format!("exit {s}"),
                None => format!("killed after {WALK_TIMEOUT:?}"),
            },
            walk.took,
            failed.map_or("none reported".into(), |v| v.to_string()),
            kept.display(),
            walk.stdout,
            walk.stderr,
            gw.stderr_text(),
        );
    }
    println!(
        "browser walk: {} steps in {:.1?}\n{}",
        ok.len(),
        walk.took,
        walk.stdout
    );
}
