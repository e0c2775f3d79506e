//! Steady load for the fault scenarios: virtual users that log in, browse, refresh and log out
//! against one or more gateway instances, every response checked and tallied by the phase in
//! which its request started.
//!
//! A virtual user has its own HTTPS client (its own connections, like a browser; half of them
//! HTTP/2, half HTTP/1.1) leaving from its own loopback address, and carries its cookies by
//! hand. Its loop: log in with the form, browse `BROWSE` protected pages (the gateway refreshes
//! the short-lived access token on the way, and the user takes the new cookies), ask for an
//! explicit refresh every tenth page, log out, and check that the cookies it just logged out
//! are refused. With several instances it sends each request to the next one (client-side
//! round robin) and stops using an instance that refuses connections.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::harness::{ALICE_PASSWORD, BOB_PASSWORD, Gateway, Session, form_urlencode};

/// Pages a virtual user browses between its login and its logout.
pub const BROWSE: usize = 60;

/// When a request started, relative to the fault the scenario injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Before = 0,
    Fault = 1,
    After = 2,
}

impl Phase {
    pub const ALL: [Phase; 3] = [Phase::Before, Phase::Fault, Phase::After];
    fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::Before,
            1 => Phase::Fault,
            _ => Phase::After,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Phase::Before => "before",
            Phase::Fault => "fault",
            Phase::After => "after",
        }
    }
}

/// What one response (or the lack of one) was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// The answer the request should get: 200 page, 303 login, 204 logout, 200/204 refresh,
    /// 401 for the cookies of a session just logged out.
    Ok,
    /// `503` `session_store_unavailable` with `Retry-After` (login, refresh, logout while the
    /// store cannot be reached): documented.
    Store503,
    /// `502` from the gateway for a page whose upstream cannot be reached: documented.
    Upstream502,
    /// `401` for a session the user holds as valid: a session lost.
    Lost401,
    /// A logged-out session's cookies were accepted: a revocation lost.
    RevokedAccepted,
    /// The connection could not be made (refused): the instance is down.
    Connect,
    /// The connection broke, or no answer within the client's timeout, after the request was
    /// sent.
    Transport,
    /// Any other status.
    Other(u16),
}

impl Outcome {
    pub fn label(self) -> String {
        match self {
            Outcome::Ok => "ok".into(),
            Outcome::Store503 => "503 store".into(),
            Outcome::Upstream502 => "502 upstream".into(),
            Outcome::Lost401 => "401 lost".into(),
            Outcome::RevokedAccepted => "revoked accepted".into(),
            Outcome::Connect => "connect".into(),
            Outcome::Transport => "transport".into(),
            Outcome::Other(s) => format!("status {s}"),
        }
    }
}

/// What a request was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Login,
    Page,
    Refresh,
    Logout,
    /// The page asked with the cookies of a session just logged out.
    CheckRefused,
}

/// Counts and latencies of one phase.
#[derive(Default, Clone)]
pub struct PhaseTally {
    pub outcomes: BTreeMap<Outcome, u64>,
    /// The same counts by instance (its index in `Load::start`'s list: where the request was
    /// last sent) and kind of request.
    pub by: BTreeMap<(usize, Kind, Outcome), u64>,
    /// Latency of every answered request, in microseconds.
    pub micros: Vec<u32>,
    /// The first answer of each unexpected outcome (status and the start of the body), to
    /// say what it was.
    pub samples: BTreeMap<Outcome, String>,
}

impl PhaseTally {
    pub fn requests(&self) -> u64 {
        self.outcomes.values().sum()
    }
    pub fn count(&self, o: Outcome) -> u64 {
        self.outcomes.get(&o).copied().unwrap_or(0)
    }
    /// How many requests matched `pick(instance, kind, outcome)`.
    pub fn count_by(&self, pick: impl Fn(usize, Kind, Outcome) -> bool) -> u64 {
        self.by
            .iter()
            .filter(|((i, k, o), _)| pick(*i, *k, *o))
            .map(|(_, n)| n)
            .sum()
    }
    pub fn merge(&mut self, other: PhaseTally) {
        for (k, v) in other.outcomes {
            *self.outcomes.entry(k).or_default() += v;
        }
        for (k, v) in other.by {
            *self.by.entry(k).or_default() += v;
        }
        self.micros.extend(other.micros);
        for (k, v) in other.samples {
            self.samples.entry(k).or_insert(v);
        }
    }
    /// The `p`-quantile latency (0 < p ≤ 1) in milliseconds, or `None` without answers.
    pub fn quantile_ms(&self, p: f64) -> Option<f64> {
        if self.micros.is_empty() {
            return None;
        }
        let mut v = self.micros.clone();
        v.sort_unstable();
        let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
        Some(f64::from(v[i]) / 1000.0)
    }
}

/// Everything the load saw.
#[derive(Default, Clone)]
pub struct Tally {
    pub phases: [PhaseTally; 3],
    /// Sessions that were valid and then answered `401` without being logged out.
    pub sessions_lost: u64,
    /// Sessions started (logins answered `303`).
    pub sessions: u64,
    /// Logouts whose cookies were then checked and refused.
    pub revocations_checked: u64,
    /// Requests sent in one phase and answered in another: in flight when the fault began or
    /// ended, so judged as the fault phase's.
    pub crossed: u64,
}

impl Tally {
    /// Add `other`'s counts to these (the tallies of several loads in one report).
    pub fn merge(&mut self, other: Tally) {
        for (mine, theirs) in self.phases.iter_mut().zip(other.phases) {
            mine.merge(theirs);
        }
        self.sessions_lost += other.sessions_lost;
        self.sessions += other.sessions;
        self.revocations_checked += other.revocations_checked;
        self.crossed += other.crossed;
    }
    pub fn phase(&self, p: Phase) -> &PhaseTally {
        &self.phases[p as usize]
    }
    /// Every phase together.
    pub fn total(&self) -> PhaseTally {
        let mut t = PhaseTally::default();
        for p in &self.phases {
            t.merge(p.clone());
        }
        t
    }
}

/// One gateway instance as the load reaches it.
struct Instance {
    /// Per virtual user: a client that connects to this instance.
    clients: Vec<reqwest::Client>,
    /// Cleared once a connection to it was refused: the client-side balancer's health check.
    up: AtomicBool,
}

/// How the load behaves.
#[derive(Clone, Copy)]
pub struct LoadSpec {
    pub users: usize,
    /// Pause between two requests of one user.
    pub think: Duration,
}

/// The running load: stop it to get the [`Tally`].
pub struct Load {
    stop: Arc<AtomicBool>,
    phase: Arc<AtomicU8>,
    live: Arc<LiveCounts>,
    tasks: Vec<tokio::task::JoinHandle<Tally>>,
}

/// Requests answered so far and how many of them were not [`Outcome::Ok`], readable while the
/// load runs (the soak prints them once a minute).
#[derive(Default)]
struct LiveCounts {
    requests: AtomicU64,
    not_ok: AtomicU64,
}

/// A loopback source address per virtual user, each in its own /24 (`127.<1 + i/250>.<i%250>.1`):
/// users sharing a network and an account would look like one guesser to the login throttle,
/// which counts attempts in flight per account and network.
pub fn user_address(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 1 + (i / 250) as u8, (i % 250) as u8, 1))
}

impl Load {
    /// Start `spec.users` virtual users against `gateways` (round robin when several).
    pub fn start(gateways: &[&Gateway], spec: LoadSpec) -> Load {
        let instances: Arc<Vec<Instance>> = Arc::new(
            gateways
                .iter()
                .map(|gw| Instance {
                    clients: (0..spec.users)
                        .map(|i| {
                            if i % 2 == 0 {
                                gw.client_from(user_address(i))
                            } else {
                                gw.client_h1_from(user_address(i))
                            }
                        })
                        .collect(),
                    up: AtomicBool::new(true),
                })
                .collect(),
        );
        let url = |p: &str| gateways[0].url(p);
        let origin = gateways[0].origin();
        let stop = Arc::new(AtomicBool::new(false));
        let phase = Arc::new(AtomicU8::new(Phase::Before as u8));
        let live = Arc::new(LiveCounts::default());
        let tasks = (0..spec.users)
            .map(|i| {
                let user = User {
                    index: i,
                    instances: instances.clone(),
                    next: AtomicUsize::new(i),
                    last: 0,
                    stop: stop.clone(),
                    phase: phase.clone(),
                    live: live.clone(),
                    think: spec.think,
                    login_url: url("/.auth/login"),
                    logout_url: url("/.auth/logout"),
                    refresh_url: url("/.auth/refresh"),
                    page_url: url(&format!("/app/user-{i}/page")),
                    origin: origin.clone(),
                    tally: Tally::default(),
                };
                tokio::spawn(user.run())
            })
            .collect();
        Load {
            stop,
            phase,
            live,
            tasks,
        }
    }

    /// `(requests, not ok)` recorded so far, every phase together.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.live.requests.load(Ordering::Relaxed),
            self.live.not_ok.load(Ordering::Relaxed),
        )
    }

    /// From now on, requests count in `p`.
    pub fn phase(&self, p: Phase) {
        self.phase.store(p as u8, Ordering::SeqCst);
    }

    /// Stop every user after its current request and collect what they saw.
    pub async fn stop(self) -> Tally {
        self.stop.store(true, Ordering::SeqCst);
        let mut tally = Tally::default();
        for t in self.tasks {
            tally.merge(t.await.expect("virtual user task"));
        }
        tally
    }
}

struct User {
    index: usize,
    instances: Arc<Vec<Instance>>,
    next: AtomicUsize,
    /// The instance the last request went to.
    last: usize,
    stop: Arc<AtomicBool>,
    phase: Arc<AtomicU8>,
    live: Arc<LiveCounts>,
    think: Duration,
    login_url: String,
    logout_url: String,
    refresh_url: String,
    page_url: String,
    origin: String,
    tally: Tally,
}

/// What a request got back, before it is judged. A failure carries the error's chain of
/// causes, for the report's sample.
enum Answer {
    Status(StatusCode, reqwest::header::HeaderMap, String),
    Connect(String),
    Transport(String),
}

/// An error and its sources, `: `-separated.
pub fn causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        out.push_str(": ");
        out.push_str(&s.to_string());
        next = s.source();
    }
    out
}

impl User {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The next live instance's client (round robin), or `None` when every instance refuses.
    fn client(&self) -> Option<(usize, reqwest::Client)> {
        let n = self.instances.len();
        for _ in 0..n {
            let k = self.next.fetch_add(1, Ordering::Relaxed) % n;
            let inst = &self.instances[k];
            if inst.up.load(Ordering::Relaxed) {
                return Some((k, inst.clients[self.index].clone()));
            }
        }
        None
    }

    /// Send the request `build` makes on the next live instance (or on the instance of the
    /// last request, `same`). A refused connection marks that instance down and is tried on
    /// the next one, as a client-side balancer does; it is an outcome only when no instance
    /// is left.
    async fn send(
        &mut self,
        same: bool,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> (Phase, Duration, Answer) {
        let (began, elapsed, answer) = self.send_once(same, build).await;
        // A request in flight when the fault began (or ended) met the fault: judge it there.
        // Phases only move forward, so a different phase at the end means it crossed one.
        let ended = Phase::from_u8(self.phase.load(Ordering::SeqCst));
        if ended != began {
            self.tally.crossed += 1;
            return (Phase::Fault, elapsed, answer);
        }
        (began, elapsed, answer)
    }

    async fn send_once(
        &mut self,
        same: bool,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> (Phase, Duration, Answer) {
        let phase = Phase::from_u8(self.phase.load(Ordering::SeqCst));
        let started = Instant::now();
        let mut pinned = same.then_some(self.last);
        loop {
            let picked = match pinned.take() {
                Some(k) if self.instances[k].up.load(Ordering::Relaxed) => {
                    Some((k, self.instances[k].clients[self.index].clone()))
                }
                _ => self.client(),
            };
            let Some((k, client)) = picked else {
                let why = "every instance refused a connection".to_string();
                return (phase, started.elapsed(), Answer::Connect(why));
            };
            self.last = k;
            match build(&client).send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    let body = resp.text().await;
                    let elapsed = started.elapsed();
                    return match body {
                        Ok(b) => (phase, elapsed, Answer::Status(status, headers, b)),
                        Err(e) => (phase, elapsed, Answer::Transport(causes(&e))),
                    };
                }
                Err(e) if e.is_connect() && self.instances.len() > 1 => {
                    self.instances[k].up.store(false, Ordering::Relaxed);
                }
                Err(e) if e.is_connect() => {
                    return (phase, started.elapsed(), Answer::Connect(causes(&e)));
                }
                Err(e) => return (phase, started.elapsed(), Answer::Transport(causes(&e))),
            }
        }
    }

    fn record(
        &mut self,
        (phase, elapsed, kind): (Phase, Duration, Kind),
        outcome: Outcome,
        answer: &Answer,
    ) {
        let t = &mut self.tally.phases[phase as usize];
        *t.outcomes.entry(outcome).or_default() += 1;
        *t.by.entry((self.last, kind, outcome)).or_default() += 1;
        self.live.requests.fetch_add(1, Ordering::Relaxed);
        if outcome != Outcome::Ok {
            self.live.not_ok.fetch_add(1, Ordering::Relaxed);
        }
        if outcome != Outcome::Ok {
            t.samples.entry(outcome).or_insert_with(|| {
                let what = match answer {
                    Answer::Status(status, _, body) => {
                        let body: String = body.chars().take(160).collect();
                        format!("{status} {body}")
                    }
                    Answer::Connect(e) | Answer::Transport(e) => e.clone(),
                };
                format!(
                    "{kind:?} on instance {}, after {elapsed:.1?}: {what}",
                    self.last
                )
            });
        }
        if !matches!(outcome, Outcome::Connect | Outcome::Transport) {
            t.micros
                .push(u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX));
        }
    }

    /// The outcome of an answer that was not the expected one.
    fn unexpected(status: StatusCode, headers: &reqwest::header::HeaderMap, body: &str) -> Outcome {
        match status.as_u16() {
            // The JSON answer, or the page a navigation gets.
            503 if headers.contains_key("retry-after")
                && (body.contains("session_store_unavailable")
                    || body.contains("Temporarily unavailable")) =>
            {
                Outcome::Store503
            }
            502 => Outcome::Upstream502,
            401 => Outcome::Lost401,
            s => Outcome::Other(s),
        }
    }

    async fn pause(&self, d: Duration) {
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }

    /// Until stopped: log in, browse, log out, check the logout.
    async fn run(mut self) -> Tally {
        let (user, password) = if self.index.is_multiple_of(2) {
            ("alice", ALICE_PASSWORD)
        } else {
            ("bob", BOB_PASSWORD)
        };
        while !self.stopped() {
            let Some(mut session) = self.login(user, password).await else {
                continue;
            };
            self.tally.sessions += 1;
            let mut lost = false;
            for i in 0..BROWSE {
                if self.stopped() {
                    break;
                }
                self.pause(self.think).await;
                let ok = if i % 10 == 9 {
                    self.refresh(&mut session).await
                } else {
                    self.page(&mut session).await
                };
                if ok == Some(false) {
                    lost = true;
                    break;
                }
            }
            if lost {
                self.tally.sessions_lost += 1;
                continue;
            }
            if self.stopped() {
                break;
            }
            if self.logout(&session).await {
                self.check_refused(&session).await;
            }
        }
        self.tally
    }

    /// Form login; retried (after the think time) while the answer is a documented 503.
    async fn login(&mut self, user: &str, password: &str) -> Option<Session> {
        let body = form_urlencode(&[
            ("username", user),
            ("password", password),
            ("return_to", "/"),
        ]);
        let (url, origin) = (self.login_url.clone(), self.origin.clone());
        let (phase, elapsed, answer) = self
            .send(false, |c| {
                c.post(&url)
                    .header("origin", &origin)
                    .header("sec-fetch-site", "same-origin")
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header("accept", "text/html")
                    .body(body.clone())
            })
            .await;
        let outcome = match &answer {
            Answer::Status(s, h, _) if *s == StatusCode::SEE_OTHER => {
                match Session::from_response_headers(h) {
                    Some(session) => {
                        self.record((phase, elapsed, Kind::Login), Outcome::Ok, &answer);
                        return Some(session);
                    }
                    None => Outcome::Other(303),
                }
            }
            Answer::Status(s, h, b) => match Self::unexpected(*s, h, b) {
                // A 401 at login is a refused password, not a lost session.
                Outcome::Lost401 => Outcome::Other(401),
                o => o,
            },
            Answer::Connect(_) => Outcome::Connect,
            Answer::Transport(_) => Outcome::Transport,
        };
        self.record((phase, elapsed, Kind::Login), outcome, &answer);
        self.pause(self.think.max(Duration::from_millis(100))).await;
        None
    }

    /// A protected page. `Some(true)` answered, `Some(false)` the session was refused, `None`
    /// another failure (the session is kept).
    async fn page(&mut self, session: &mut Session) -> Option<bool> {
        let (url, cookie) = (self.page_url.clone(), session.cookie_header());
        let (phase, elapsed, answer) = self
            .send(false, |c| {
                c.get(&url)
                    .header("cookie", &cookie)
                    .header("accept", "application/json")
            })
            .await;
        let (outcome, result) = match &answer {
            Answer::Status(s, h, b) if *s == StatusCode::OK => {
                session.update(h);
                // The app must see who it is: the upstream's echo names the user.
                if b.contains("x-auth-user") {
                    (Outcome::Ok, Some(true))
                } else {
                    (Outcome::Other(200), None)
                }
            }
            Answer::Status(s, h, b) => {
                let o = Self::unexpected(*s, h, b);
                (
                    o,
                    if o == Outcome::Lost401 {
                        Some(false)
                    } else {
                        None
                    },
                )
            }
            Answer::Connect(_) => (Outcome::Connect, None),
            Answer::Transport(_) => (Outcome::Transport, None),
        };
        self.record((phase, elapsed, Kind::Page), outcome, &answer);
        result
    }

    /// `POST /.auth/refresh` with the refresh cookie, as the page's script would.
    async fn refresh(&mut self, session: &mut Session) -> Option<bool> {
        let (url, origin, cookie) = (
            self.refresh_url.clone(),
            self.origin.clone(),
            session.refresh_only(),
        );
        let (phase, elapsed, answer) = self
            .send(false, |c| {
                c.post(&url)
                    .header("origin", &origin)
                    .header("sec-fetch-site", "same-origin")
                    .header("cookie", &cookie)
                    .header("accept", "application/json")
            })
            .await;
        let (outcome, result) = match &answer {
            Answer::Status(s, h, _) if s.is_success() => {
                let before = session.refresh.clone();
                session.update(h);
                if session.refresh != before {
                    (Outcome::Ok, Some(true))
                } else {
                    (Outcome::Other(s.as_u16()), None)
                }
            }
            Answer::Status(s, h, b) => {
                let o = Self::unexpected(*s, h, b);
                (
                    o,
                    if o == Outcome::Lost401 {
                        Some(false)
                    } else {
                        None
                    },
                )
            }
            Answer::Connect(_) => (Outcome::Connect, None),
            Answer::Transport(_) => (Outcome::Transport, None),
        };
        self.record((phase, elapsed, Kind::Refresh), outcome, &answer);
        result
    }

    /// `POST /.auth/logout`: `true` once it answered `204`.
    async fn logout(&mut self, session: &Session) -> bool {
        let (url, origin, cookie) = (
            self.logout_url.clone(),
            self.origin.clone(),
            session.cookie_header(),
        );
        let (phase, elapsed, answer) = self
            .send(false, |c| {
                c.post(&url)
                    .header("origin", &origin)
                    .header("sec-fetch-site", "same-origin")
                    .header("cookie", &cookie)
                    .header("accept", "application/json")
            })
            .await;
        let outcome = match &answer {
            Answer::Status(s, _, _) if *s == StatusCode::NO_CONTENT => Outcome::Ok,
            Answer::Status(s, h, b) => Self::unexpected(*s, h, b),
            Answer::Connect(_) => Outcome::Connect,
            Answer::Transport(_) => Outcome::Transport,
        };
        self.record((phase, elapsed, Kind::Logout), outcome, &answer);
        outcome == Outcome::Ok
    }

    /// The cookies of the session just logged out must be refused (`401`) by the instance that
    /// logged it out (the others learn it through the revocation feed, which the scenarios
    /// check on their own, after it had time to arrive).
    async fn check_refused(&mut self, session: &Session) {
        let (url, cookie) = (self.page_url.clone(), session.cookie_header());
        let (phase, elapsed, answer) = self
            .send(true, |c| {
                c.get(&url)
                    .header("cookie", &cookie)
                    .header("accept", "application/json")
            })
            .await;
        let outcome = match &answer {
            Answer::Status(s, _, _) if *s == StatusCode::UNAUTHORIZED => {
                self.tally.revocations_checked += 1;
                Outcome::Ok
            }
            Answer::Status(s, _, _) if *s == StatusCode::OK => Outcome::RevokedAccepted,
            Answer::Status(s, h, b) => Self::unexpected(*s, h, b),
            Answer::Connect(_) => Outcome::Connect,
            Answer::Transport(_) => Outcome::Transport,
        };
        self.record((phase, elapsed, Kind::CheckRefused), outcome, &answer);
    }
}
