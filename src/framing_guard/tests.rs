//! The guard against fixed inputs, split at every byte, and against hyper itself: thousands
//! of generated connections (well-formed, ambiguous, and mutated byte by byte) are served by
//! hyper's real HTTP/1 server through the guard, and every request hyper serves before the
//! guard's first conflict must be the head the guard framed at that position.

use super::differential::Served;
use super::*;

const MAX_HEAD: usize = 16 * 1024;

/// Scan `chunks`; return the heads framed and the first refused request, if any.
fn run(chunks: &[&[u8]]) -> (u64, Option<u64>) {
    let f = differential::scan(chunks, MAX_HEAD);
    let first = f.conflict;
    (f.heads.len() as u64, (first != u64::MAX).then_some(first))
}

/// `run` on `input` whole and split in two at every byte: all must agree.
fn run_every_split(input: &[u8]) -> (u64, Option<u64>) {
    let whole = run(&[input]);
    for i in 1..input.len() {
        assert_eq!(run(&[&input[..i], &input[i..]]), whole, "split at {i}");
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(run(&bytes), whole, "one byte at a time");
    whole
}

#[test]
fn plain_requests_are_followed_across_any_split() {
    let input: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /c HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(run_every_split(input), (3, None));
}

#[test]
fn cl_te_conflict_is_recorded_for_its_request() {
    let input = b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_eq!(run(&[input]).1, Some(0));
    let te_first =
        b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nHost: x\r\ncontent-length: 10\r\n\r\n";
    assert_eq!(run(&[te_first]).1, Some(0));
}

#[test]
fn conflict_after_a_chunked_request_on_the_same_connection_is_found() {
    let first: &[u8] = b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n";
    let second: &[u8] = b"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n";
    assert_eq!(run_every_split(&[first, second].concat()).1, Some(1));
}

#[test]
fn a_fragment_in_the_target_is_recorded_with_its_reason() {
    let input: &[u8] =
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /public/x#/../admin HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(run(&[input]).1, Some(1));
    let log = Arc::new(FramingLog::default());
    let mut g = FramingGuard::new((), MAX_HEAD, log.clone());
    g.scan(b"GET /a?b=1#c HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(log.next_request_ambiguity(), Some(head::FRAGMENT));
    assert_eq!(run(&[b"GET /a%23b HTTP/1.1\r\nHost: x\r\n\r\n"]).1, None);
}

#[test]
fn the_service_sees_the_conflict_on_the_right_request_and_every_later_one() {
    let log = FramingLog::default();
    log.record(1, head::CL_TE);
    assert_eq!(log.next_request_ambiguity(), None);
    assert_eq!(log.next_request_ambiguity(), Some(head::CL_TE));
    assert_eq!(log.next_request_ambiguity(), Some(head::CL_TE));
}

#[test]
fn a_repeated_content_length_is_a_conflict_even_when_equal() {
    let input: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello";
    assert_eq!(run_every_split(input).1, Some(1));
}

#[test]
fn heads_ending_in_bare_lf_are_followed() {
    // hyper serves heads whose lines end in a bare LF; the next head starts right after.
    for first in [
        &b"GET /a HTTP/1.1\nHost: x\n\n"[..],
        b"GET /a HTTP/1.1\r\nHost: x\r\n\n",
        b"GET /a HTTP/1.1\nHost: x\n\r\n",
        b"POST /a HTTP/1.1\nHost: x\nContent-Length: 5\n\nhello",
    ] {
        let second: &[u8] = b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert_eq!(
            run_every_split(&[first, second].concat()),
            (1, Some(1)),
            "{:?}",
            String::from_utf8_lossy(first)
        );
    }
}

#[test]
fn long_chunk_sizes_are_followed() {
    let second: &[u8] =
        b"POST /b HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    for size in ["0000000000000005", "000000000000000000000000000000005", "5"] {
        let first = format!(
            "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{size}\r\nhello\r\n00000000000000000\r\n\r\n"
        );
        assert_eq!(
            run_every_split(&[first.as_bytes(), second].concat()),
            (1, Some(1)),
            "{size}"
        );
    }
}

#[test]
fn a_bare_lf_in_a_trailer_does_not_hide_the_next_head() {
    // hyper reads `X: a\n` and the decoy line after it as trailers, so the CL+TE request is
    // its second request, not its third.
    let input: &[u8] = b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: a\n\r\nGET /decoy HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_eq!(run_every_split(input), (1, Some(1)));
}

#[test]
fn an_upgrade_request_does_not_switch_the_guard_off() {
    let input: &[u8] = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_eq!(run_every_split(input), (1, Some(1)));
    let connect: &[u8] = b"CONNECT /x HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_eq!(run_every_split(connect), (1, Some(1)));
}

#[test]
fn an_accepted_upgrade_stops_the_guard() {
    let log = Arc::new(FramingLog::default());
    let mut g = FramingGuard::new((), MAX_HEAD, log.clone());
    g.scan(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n");
    log.on_response(&Method::GET, StatusCode::FORBIDDEN);
    assert!(!log.tunnel.load(Ordering::Relaxed));
    log.on_response(&Method::CONNECT, StatusCode::BAD_GATEWAY);
    assert!(!log.tunnel.load(Ordering::Relaxed));
    log.on_response(&Method::GET, StatusCode::SWITCHING_PROTOCOLS);
    assert!(log.tunnel.load(Ordering::Relaxed));
    let connect = FramingLog::default();
    connect.on_response(&Method::CONNECT, StatusCode::OK);
    assert!(connect.tunnel.load(Ordering::Relaxed));
}

#[test]
fn what_the_guard_cannot_frame_refuses_the_rest_of_the_connection() {
    // A head hyper refuses: hyper closes; were it to go on, nothing after would be served.
    let garbage: &[u8] = b"GET /a HTTP/1.1\r\n\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    assert_eq!(run_every_split(garbage), (1, Some(1)));
    assert!(differential::scan(&[garbage], MAX_HEAD).refused_head());
    // A chunked body hyper fails: the request it belongs to is served, not the next one.
    let body: &[u8] = b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
    assert_eq!(run_every_split(body), (1, Some(1)));
    // A head longer than hyper's buffer.
    let long = format!("GET /a HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
    assert_eq!(run(&[long.as_bytes()]), (0, Some(0)));
    let just_fits = format!(
        "GET /a HTTP/1.1\r\nX: {}\r\n\r\n",
        "a".repeat(MAX_HEAD - 30)
    );
    assert_eq!(run(&[just_fits.as_bytes()]), (1, None));
}

// ---- against hyper --------------------------------------------------------------------

/// A small deterministic generator (xorshift64*), so that a failure names its case.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        &from[self.below(from.len())]
    }
}

/// Body bytes that look like HTTP, so a guard that lost its place would frame them.
const BODY_BYTES: &[&str] = &[
    "hello",
    "\r\n",
    "\n",
    "0\r\n\r\n",
    "GET /fake HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
    "x",
];

fn body_text(rng: &mut Rng) -> String {
    (0..rng.below(4)).map(|_| *rng.pick(BODY_BYTES)).collect()
}

/// A chunked body hyper accepts, in the spellings it accepts.
fn chunked_body(rng: &mut Rng, clean: bool) -> String {
    let mut s = String::new();
    for _ in 0..rng.below(3) {
        let data = body_text(rng) + "d";
        let size = match rng.below(4) {
            0 => format!("{:x}", data.len()),
            1 => format!("{:X}", data.len()),
            2 => format!("{:020x}", data.len()),
            _ => format!("{:x} \t;ext=\"v\"", data.len()),
        };
        s.push_str(&format!("{size}\r\n{data}\r\n"));
    }
    let last: &&str = rng.pick(&["0", "000000000000000000", "0;last"]);
    s.push_str(last);
    s.push_str("\r\n");
    for _ in 0..rng.below(3) {
        let trailer = if clean {
            "X-T: 1\r\n"
        } else {
            *rng.pick(&["X-T: 1\r\n", "X: a\n", "GET /in-trailer HTTP/1.1\r\n"])
        };
        s.push_str(trailer);
    }
    s.push_str("\r\n");
    s
}

/// One request, with a target naming its place in the stream. `clean`: only what hyper
/// serves and the guard must let through.
fn request(rng: &mut Rng, i: usize, clean: bool) -> String {
    let eol = if rng.chance(70) { "\r\n" } else { "\n" };
    let line_eol = |rng: &mut Rng| {
        if clean || rng.chance(90) {
            eol
        } else {
            *rng.pick(&["\r\n", "\n", "\r", "\r\r\n"])
        }
    };
    let method = *rng.pick(&["GET", "POST", "PUT", "HEAD", "OPTIONS", "DELETE", "CONNECT"]);
    let version = if rng.chance(90) { "1.1" } else { "1.0" };
    let mut h = format!("{method} /r{i} HTTP/{version}{}", line_eol(rng));
    h.push_str(&format!("Host: x{}", line_eol(rng)));
    for _ in 0..rng.below(3) {
        let extra = *rng.pick(&[
            "Upgrade: websocket",
            "Upgrade: h2c",
            "Connection: Upgrade",
            "Connection: keep-alive",
            "Expect: 100-continue",
            "X-Pad: a b c",
        ]);
        h.push_str(&format!("{extra}{}", line_eol(rng)));
    }
    let te_spellings = [
        "chunked",
        "Chunked",
        " chunked ",
        "gzip, chunked",
        "identity, chunked",
    ];
    let mut body = String::new();
    match rng.below(if clean { 3 } else { 9 }) {
        0 => {}
        1 => {
            let b = body_text(rng);
            let cl = *rng.pick(&["", " ", "  ", "\t"]);
            h.push_str(&format!(
                "Content-Length:{cl}{}{cl}{}",
                b.len(),
                line_eol(rng)
            ));
            body = b;
        }
        2 if version == "1.1" => {
            h.push_str(&format!(
                "Transfer-Encoding: {}{}",
                rng.pick(&te_spellings),
                line_eol(rng)
            ));
            body = chunked_body(rng, clean);
        }
        2 => {}
        3 => {
            // CL and TE, in either order.
            let b = chunked_body(rng, clean);
            let (cl, te) = (
                format!("Content-Length: {}{eol}", b.len()),
                format!("Transfer-Encoding: chunked{eol}"),
            );
            h.push_str(&if rng.chance(50) { cl + &te } else { te + &cl });
            body = b;
        }
        4 => {
            let b = body_text(rng);
            let second = if rng.chance(50) { b.len() } else { b.len() + 1 };
            h.push_str(&format!(
                "Content-Length: {}{eol}content-length: {second}{eol}",
                b.len()
            ));
            body = b;
        }
        5 => {
            let b = body_text(rng);
            let v = *rng.pick(&["+", "-", "0x", "1, ", " 1 "]);
            h.push_str(&format!("Content-Length: {v}{}{eol}", b.len()));
            body = b;
        }
        6 => {
            let te = *rng.pick(&[
                "chunked, identity",
                "xchunked",
                "chunked;q=1",
                "",
                "identity",
            ]);
            h.push_str(&format!("Transfer-Encoding: {te}{eol}"));
            body = chunked_body(rng, clean);
        }
        7 => {
            h.push_str(&format!(
                "Transfer-Encoding: chunked{eol}Transfer-Encoding: {}{eol}",
                rng.pick(&["identity", "chunked"])
            ));
            body = chunked_body(rng, clean);
        }
        _ => {
            h = h.replacen(&format!("/r{i}"), &format!("/r{i}#frag"), 1);
        }
    }
    h.push_str(eol);
    h + &body
}

/// Damage one place of `s`: a byte inserted, removed or repeated.
fn mutate(rng: &mut Rng, s: &mut Vec<u8>) {
    if s.is_empty() {
        return;
    }
    let at = rng.below(s.len());
    match rng.below(3) {
        0 => s.insert(at, *rng.pick(b"\r\n \t:0a;#\x00\x80,")),
        1 => {
            s.remove(at);
        }
        _ => {
            let end = (at + 1 + rng.below(8)).min(s.len());
            let piece = s[at..end].to_vec();
            s.splice(at..at, piece);
        }
    }
}

async fn through_hyper(input: &[u8], pieces: &[usize], read_bodies: bool) -> Served {
    differential::through_hyper(input, pieces, read_bodies, MAX_HEAD).await
}

/// Every request hyper served before the guard's first conflict is the head the guard framed
/// at the same position (else a request could reach the app unseen).
fn assert_agrees(case: &str, s: &Served) {
    if let Some(d) = s.disagreement() {
        panic!("{case}: {d}");
    }
}

fn case(rng: &mut Rng, clean: bool) -> (Vec<u8>, Vec<usize>, bool) {
    let n = 1 + rng.below(6);
    // Mostly well-formed requests, so that hyper serves several before anything goes wrong.
    let mut input: Vec<u8> = (0..n)
        .flat_map(|i| {
            let well_formed = clean || rng.chance(75);
            request(rng, i, well_formed).into_bytes()
        })
        .collect();
    if !clean && rng.chance(60) {
        for _ in 0..1 + rng.below(2) {
            mutate(rng, &mut input);
        }
    }
    let pieces: Vec<usize> = (0..1 + rng.below(4))
        .map(|_| *rng.pick(&[1, 2, 3, 7, 64, 4096]))
        .collect();
    (input, pieces, rng.chance(80))
}

#[tokio::test]
async fn hyper_serves_nothing_the_guard_did_not_frame() {
    let mut rng = Rng(0x5e55_1011_9a7e);
    // How many connections had 0, 1, 2, 3, 4+ requests compared.
    let mut stats = [0usize; 5];
    for n in 0..3000 {
        let (input, pieces, read_bodies) = case(&mut rng, false);
        let s = through_hyper(&input, &pieces, read_bodies).await;
        let what = format!(
            "case {n} {:?} pieces {pieces:?}",
            String::from_utf8_lossy(&input)
        );
        assert_agrees(&what, &s);
        let compared = s
            .served
            .len()
            .min(usize::try_from(s.conflict).unwrap_or(usize::MAX));
        stats[compared.min(4)] += 1;
    }
    // The generator must keep producing connections where hyper serves several requests.
    assert!(
        stats[2..].iter().sum::<usize>() > 600,
        "requests compared per connection: {stats:?}"
    );
}

#[tokio::test]
async fn well_formed_connections_are_framed_like_hyper_with_no_conflict() {
    let mut rng = Rng(0x600d_f00d);
    for n in 0..500 {
        let (input, pieces, read_bodies) = case(&mut rng, true);
        let s = through_hyper(&input, &pieces, read_bodies).await;
        let what = format!(
            "case {n} {:?} pieces {pieces:?}",
            String::from_utf8_lossy(&input)
        );
        assert_eq!(
            s.conflict,
            u64::MAX,
            "{what}: guard refused\nhyper: {:?}\nguard: {:?}",
            s.served,
            s.heads
        );
        assert_agrees(&what, &s);
        assert!(!s.served.is_empty(), "{what}: hyper served nothing");
    }
}
