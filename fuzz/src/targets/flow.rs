//! The OpenID Connect flow cookie (`oidc::flow`): sealed at `/.auth/oidc/start`, opened by
//! `take` at the callback. The input is lines: the callback's `state`; the time; then either
//! `flow STATE EXPIRES PROVIDER RETURN_TO` (a flow the gateway starts: its cookie is sealed
//! here, with the real key) or a `Cookie` header value, in which `{cN}` stands for flow N's
//! cookie (`name=value`), `{nN}` for its name and `{vN}` for its sealed value.
//!
//! Oracle: nothing opens that was not sealed.
//! - a flow `take` returns is one of the flows sealed here, for the callback's `state`, not
//!   expired;
//! - the sealer opens nothing that it did not seal: no value in the headers but a sealed one;
//! - and a flow sealed for this `state`, presented as its cookie first under its name and not
//!   expired, is the one taken.

use std::sync::OnceLock;

use http::header::{COOKIE, HeaderMap, HeaderValue};
use sessiongate::config::{Secret, SecretRing};
use sessiongate::fuzzing::oidc::{Flow, Sealer, begin, take};

use crate::support::text;

const PURPOSE: &str = "oidc flow";

fn sealer() -> &'static Sealer {
    static S: OnceLock<Sealer> = OnceLock::new();
    S.get_or_init(|| {
        Sealer::new(&SecretRing::single(
            "r",
            Secret::new(b"fuzz refresh secret 0123456789abcdef".to_vec()),
        ))
    })
}

struct Sealed {
    flow: Flow,
    name: String,
    value: String,
}

pub fn run(data: &[u8]) {
    let input = text(data);
    let mut lines = input.split('\n');
    let state = lines.next().unwrap_or("").to_string();
    let now: u64 = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(1000);
    let s = sealer();
    let mut sealed: Vec<Sealed> = Vec::new();
    let mut headers: Vec<String> = Vec::new();
    for line in lines {
        if let Some(spec) = line.strip_prefix("flow ") {
            let mut w = spec.splitn(4, ' ');
            let flow = Flow {
                state: w.next().unwrap_or("").to_string(),
                expires: w.next().and_then(|e| e.parse().ok()).unwrap_or(now + 600),
                provider: w.next().unwrap_or("corp").to_string(),
                nonce: "n".into(),
                verifier: "v".into(),
                return_to: w.next().unwrap_or("/").to_string(),
                // Distinct per flow, in order, as `now_micros` gives them.
                // (Saturating: `now` is the input's, and may be any u64.)
                started: now
                    .saturating_mul(1_000_000)
                    .saturating_add(sealed.len() as u64),
            };
            let Some(set) = begin(s, &flow, &HeaderMap::new(), now) else {
                continue;
            };
            let first = set.first().and_then(|v| v.to_str().ok()).unwrap_or("");
            let pair = first.split(';').next().unwrap_or("");
            if let Some((name, value)) = pair.split_once('=') {
                let (name, value) = (name.to_string(), value.to_string());
                sealed.push(Sealed { flow, name, value });
            }
        } else if sealed.len() <= 8 {
            let mut h = line.to_string();
            for (i, f) in sealed.iter().enumerate() {
                h = h
                    .replace(&format!("{{c{i}}}"), &format!("{}={}", f.name, f.value))
                    .replace(&format!("{{n{i}}}"), &f.name)
                    .replace(&format!("{{v{i}}}"), &f.value);
            }
            headers.push(h);
        }
    }
    let mut h = HeaderMap::new();
    for v in &headers {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.append(COOKIE, v);
        }
    }
    let (taken, _clear) = take(s, &state, &h, now);
    if let Ok(f) = &taken {
        assert!(
            sealed.iter().any(|x| x.flow == *f),
            "{f:?} opened, and was never sealed"
        );
        assert_eq!(f.state, state, "a flow for another state");
        assert!(f.expires > now, "an expired flow");
    }
    for v in &headers {
        for c in cookie::Cookie::split_parse(v.as_str()).flatten() {
            if !sealed.iter().any(|x| x.value == c.value()) {
                assert!(
                    s.open(PURPOSE, c.value()).is_none(),
                    "{:?} opens",
                    c.value()
                );
            }
        }
    }
    // The flow this state names, when its cookie comes first under its name.
    let Some(mine) = sealed.iter().find(|x| x.flow.state == state) else {
        return;
    };
    let first = h
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| cookie::Cookie::split_parse(v).flatten().collect::<Vec<_>>())
        .find(|c| c.name() == mine.name)
        .map(|c| c.value().to_string());
    if let Some(x) = first.and_then(|v| sealed.iter().find(|x| x.value == v)) {
        if x.flow.state == state && x.flow.expires > now {
            assert_eq!(
                taken.as_ref().ok(),
                Some(&x.flow),
                "a sealed, live flow is lost"
            );
        }
    }
}
