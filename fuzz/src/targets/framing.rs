//! The HTTP/1 framing guard (`framing_guard`), fed an arbitrary byte stream split at arbitrary
//! points: the input is a flag byte (bit 0: the service reads each body; bits 1-3: how many
//! piece sizes follow, 1 to 8), the piece sizes (a byte each, 0 meaning 4096), then the bytes
//! a client sends on one connection.
//!
//! Oracle:
//! - the guard frames the stream the same whole, in the given pieces, and one byte at a time:
//!   the same heads, and the same first conflict — except a head hyper refuses itself (a
//!   `400`, the connection closed), which the guard, like hyper (`is_complete_fast`), parses
//!   again only when a line end that may end it arrives, so it may be noticed later or not at
//!   all in one split, never earlier;
//! - whatever the guard accepts, hyper frames the same way: served through hyper's real HTTP/1
//!   server (as the gateway builds it) behind the guard, in those pieces, every request hyper
//!   serves before the guard's first conflict is the head the guard framed at that position —
//!   else a request would reach the app unseen by the guard.

use std::sync::OnceLock;

use sessiongate::fuzzing::framing::{scan, through_hyper};

/// `server.max_header_bytes` in the unit tests: small, so that the fuzzer reaches it.
const MAX_HEAD: usize = 16 * 1024;
const MAX_INPUT: usize = 64 * 1024;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("tokio runtime: {e}"))
    })
}

pub fn run(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let n = 1 + usize::from((flags >> 1) & 7);
    if rest.len() < n || rest.len() > MAX_INPUT {
        return;
    }
    let (sizes, input) = rest.split_at(n);
    let pieces: Vec<usize> = sizes
        .iter()
        .map(|b| if *b == 0 { 4096 } else { usize::from(*b) })
        .collect();
    let read_bodies = flags & 1 == 1;

    let whole = scan(&[input], MAX_HEAD);
    let mut chunks = Vec::new();
    let mut at = 0;
    for size in pieces.iter().cycle() {
        if at >= input.len() {
            break;
        }
        let end = (at + size).min(input.len());
        chunks.push(&input[at..end]);
        at = end;
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    for (how, split) in [
        ("in pieces", scan(&chunks, MAX_HEAD)),
        ("bytewise", scan(&bytes, MAX_HEAD)),
    ] {
        assert_eq!(split.heads, whole.heads, "{how} {pieces:?}: other heads");
        if whole.refused_head() || split.refused_head() {
            let (first, later) = if whole.refused_head() {
                (&whole, &split)
            } else {
                (&split, &whole)
            };
            assert!(
                later.conflict >= first.conflict,
                "{how} {pieces:?}: whole {whole:?}, split {split:?}"
            );
        } else {
            assert_eq!(split, whole, "{how} {pieces:?}");
        }
    }

    let served = runtime().block_on(through_hyper(input, &pieces, read_bodies, MAX_HEAD));
    if let Some(d) = served.disagreement() {
        panic!("hyper served a request the guard did not frame: {d}");
    }
}
