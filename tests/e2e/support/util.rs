//! Small shared pieces: the binary under test, free ports, time, random secrets, the rustls
//! crypto provider, form encoding, and waiting for a child process with a deadline.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The gateway binary: the one cargo built for this test, unless `SG_E2E_BIN` names another
/// (a release build, or a deliberately broken build to check that the suite notices).
pub fn bin() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("SG_E2E_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_sessiongate").into())
    })
}

pub fn upstream_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/upstream.py")
}

/// A free loopback port: bind `127.0.0.1:0`, note the port, drop the listener. Another process
/// may take it before it is used, so only for what cannot bind port 0 and report the port
/// (`redis-server`, whose start retries on a taken port) and for a port that nothing should
/// listen on (an upstream that is down). The gateway and the upstream bind port 0 themselves.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A random 43-character base64url string (32 random bytes).
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("read /dev/urandom");
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn form_urlencode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", pct(k), pct(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub fn pct(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Wait for a child's output, killing it after `within`.
pub(super) fn wait_output_within(
    mut child: Child,
    within: Duration,
    what: &str,
) -> std::process::Output {
    let deadline = Instant::now() + within;
    while !matches!(child.try_wait(), Ok(Some(_))) {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().ok();
            panic!(
                "{what} did not finish within {within:?}: {:?}",
                out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("child output")
}
