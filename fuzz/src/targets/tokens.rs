//! Token verification (`tokens::KeyRing::verify_access`, `verify_refresh`). The first byte
//! picks a mode:
//! - 0: the rest is any string presented as a token;
//! - 1: a structurally valid token with an arbitrary header and claims: an option byte (bits
//!   0-2: signed with the access key, the refresh key, another key, an empty signature, or
//!   the signature given; bit 3: header and claims given already base64url-encoded), then
//!   header, claims and signature separated by NUL bytes; in them `$AK`, `$RK`, `$ISS`,
//!   `$NOW` stand for the access and refresh keys' `kid`, the issuer and the time;
//! - 2: a token minted by the ring, for claims taken from the input (NUL-separated `sub`,
//!   `sid`, roles, fingerprints; then eight bytes of lifetime and check time), then changed at
//!   one place.
//!
//! Oracle: nothing verifies that was not minted by our key with valid claims.
//! - mode 0: nothing verifies;
//! - mode 1: an access (refresh) token verifies only when the access (refresh) key signed it,
//!   its header holds nothing but `alg: HS256`, `typ` and that key's `kid`, and its claims —
//!   read here by `serde_json` — are valid: `iss` is ours, `aud` is (or holds) ours, `typ` is
//!   its type, `exp` is not past, `nbf` (access) is not to come, `iat` and `sub` are there;
//!   and then the claims it returns are the ones signed;
//! - mode 2: the minted token verifies, as its type only, exactly while its lifetime lasts,
//!   with the claims it was minted with; changed at any one place, it verifies as nothing.

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};
use sessiongate::config::{Secret, SecretRing};
use sessiongate::fuzzing::tokens::{AUDIENCE, AccessLifetime, Fingerprint, KeyRing};
use sessiongate::util::{b64, hmac_sha256};

use crate::support::{fields, num, text};

const A: &[u8] = b"fuzz access secret 0123456789abcdef";
const R: &[u8] = b"fuzz refresh secret 0123456789abcdef";
const OTHER: &[u8] = b"some other deployment's secret 0123456789";
const ISS: &str = "https://gw.example.com";
const NOW: u64 = 1_750_000_000;

struct Keys {
    ring: KeyRing,
    access_kid: String,
    refresh_kid: String,
}

fn keys() -> &'static Keys {
    static K: OnceLock<Keys> = OnceLock::new();
    K.get_or_init(|| {
        let ring = KeyRing::new(
            &SecretRing::single("a", Secret::new(A.to_vec())),
            &SecretRing::single("r", Secret::new(R.to_vec())),
            ISS,
        );
        let life = AccessLifetime {
            now: NOW,
            exp: NOW + 60,
            session_end: NOW + 600,
            auth_time: NOW,
        };
        let fp = Fingerprint::default();
        let access = ring.mint_access("u", "s", &[], life, &fp).ok();
        let refresh = ring.mint_refresh("u", "s", "j", NOW, NOW + 60, &fp).ok();
        let kid = |t: Option<String>| {
            t.and_then(|t| header_of(&t))
                .and_then(|h| h.get("kid").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_else(|| panic!("a minted token has no kid"))
        };
        Keys {
            access_kid: kid(access),
            refresh_kid: kid(refresh),
            ring,
        }
    })
}

fn header_of(token: &str) -> Option<Map<String, Value>> {
    let h = URL_SAFE_NO_PAD.decode(token.split('.').next()?).ok()?;
    serde_json::from_slice(&h).ok()
}

pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => arbitrary(&text(rest)),
        1 => structured(rest),
        _ => minted(rest),
    }
}

fn arbitrary(token: &str) {
    let k = keys();
    assert!(
        k.ring.verify_access(token, NOW).is_err(),
        "{token:?} verifies as access"
    );
    assert!(
        k.ring.verify_refresh(token, NOW).is_err(),
        "{token:?} verifies as refresh"
    );
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Signer {
    Access,
    Refresh,
    Other,
    Empty,
    Given,
}

fn substitute(s: &str, k: &Keys) -> String {
    s.replace("$AK", &k.access_kid)
        .replace("$RK", &k.refresh_kid)
        .replace("$ISS", ISS)
        .replace("$NOW", &NOW.to_string())
}

fn structured(rest: &[u8]) {
    let k = keys();
    let Some((&opts, rest)) = rest.split_first() else {
        return;
    };
    let signer = match opts & 7 {
        0 => Signer::Access,
        1 => Signer::Refresh,
        2 => Signer::Other,
        3 => Signer::Empty,
        _ => Signer::Given,
    };
    let encoded = opts & 8 == 8;
    let f = fields(rest, 0, 3);
    let part = |i: usize| substitute(&text(f.get(i).copied().unwrap_or(b"")), k);
    let (header, claims, given) = (part(0), part(1), part(2));
    let (h, c) = if encoded {
        (header.clone(), claims.clone())
    } else {
        (b64(header.as_bytes()), b64(claims.as_bytes()))
    };
    let input = format!("{h}.{c}");
    let sig = match signer {
        Signer::Access => b64(&hmac_sha256(A, input.as_bytes())),
        Signer::Refresh => b64(&hmac_sha256(R, input.as_bytes())),
        Signer::Other => b64(&hmac_sha256(OTHER, input.as_bytes())),
        Signer::Empty => String::new(),
        Signer::Given => given,
    };
    let token = format!("{input}.{sig}");
    let decode = |s: &str| -> Option<Map<String, Value>> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).ok()?).ok()
    };
    let (hv, cv) = (decode(&h), decode(&c));
    if let Ok(got) = k.ring.verify_access(&token, NOW) {
        assert_eq!(
            signer,
            Signer::Access,
            "{token}: verifies as access, signed by {signer:?}"
        );
        let (Some(hv), Some(cv)) = (hv.as_ref(), cv.as_ref()) else {
            panic!("{token}: verifies, but is not JSON to serde_json");
        };
        valid_header(hv, &k.access_kid, &token);
        valid_claims(cv, "access", &token);
        let nbf = cv.get("nbf").and_then(Value::as_u64);
        assert!(nbf.is_some_and(|n| n <= NOW), "{token}: nbf {nbf:?}");
        assert_eq!(
            Some(got.sub.as_str()),
            cv.get("sub").and_then(Value::as_str)
        );
        assert_eq!(
            Some(got.sid.as_str()),
            cv.get("sid").and_then(Value::as_str)
        );
        assert_eq!(Some(got.exp), cv.get("exp").and_then(Value::as_u64));
    }
    if let Ok(got) = k.ring.verify_refresh(&token, NOW) {
        assert_eq!(
            signer,
            Signer::Refresh,
            "{token}: verifies as refresh, signed by {signer:?}"
        );
        let (Some(hv), Some(cv)) = (hv.as_ref(), cv.as_ref()) else {
            panic!("{token}: verifies, but is not JSON to serde_json");
        };
        valid_header(hv, &k.refresh_kid, &token);
        valid_claims(cv, "refresh", &token);
        assert_eq!(
            Some(got.sub.as_str()),
            cv.get("sub").and_then(Value::as_str)
        );
        assert_eq!(
            Some(got.jti.as_str()),
            cv.get("jti").and_then(Value::as_str)
        );
    }
}

fn valid_header(h: &Map<String, Value>, kid: &str, token: &str) {
    assert!(
        h.keys()
            .all(|k| matches!(k.as_str(), "alg" | "typ" | "kid")),
        "{token}: header {h:?}"
    );
    assert_eq!(
        h.get("alg").and_then(Value::as_str),
        Some("HS256"),
        "{token}"
    );
    assert_eq!(h.get("kid").and_then(Value::as_str), Some(kid), "{token}");
}

fn valid_claims(c: &Map<String, Value>, typ: &str, token: &str) {
    assert_eq!(
        c.get("iss").and_then(Value::as_str),
        Some(ISS),
        "{token}: iss"
    );
    let aud_ok = match c.get("aud") {
        Some(Value::String(a)) => a == AUDIENCE,
        Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(AUDIENCE)),
        _ => false,
    };
    assert!(aud_ok, "{token}: aud {:?}", c.get("aud"));
    assert_eq!(
        c.get("typ").and_then(Value::as_str),
        Some(typ),
        "{token}: typ"
    );
    let exp = c.get("exp").and_then(Value::as_u64);
    assert!(exp.is_some_and(|e| e >= NOW), "{token}: exp {exp:?}");
    assert!(
        c.get("iat").and_then(Value::as_u64).is_some(),
        "{token}: iat"
    );
    assert!(c.get("sub").is_some_and(Value::is_string), "{token}: sub");
}

fn minted(rest: &[u8]) {
    let k = keys();
    let f = fields(rest, 0, 6);
    let get = |i: usize| text(f.get(i).copied().unwrap_or(b"")).into_owned();
    let (sub, sid) = (get(0), get(1));
    let roles: Vec<String> = get(2)
        .split(',')
        .filter(|r| !r.is_empty())
        .map(String::from)
        .collect();
    let opt = |s: String| (!s.is_empty()).then_some(s);
    let fp = Fingerprint {
        ipn: opt(get(3)),
        uah: None,
        key: None,
        uad: opt(get(4)),
    };
    let tail = f.get(5).copied().unwrap_or(b"");
    let ttl = num(tail.get(..2).unwrap_or(b"")) % 4000;
    let offset = num(tail.get(2..4).unwrap_or(b"")) % 8000;
    let at = (NOW + offset).saturating_sub(2000);
    let change = usize::try_from(num(tail.get(4..6).unwrap_or(b""))).unwrap_or(0);
    let with = tail.get(6).copied().unwrap_or(b'A');
    let life = AccessLifetime {
        now: NOW,
        exp: NOW + ttl,
        session_end: NOW + ttl + 600,
        auth_time: NOW,
    };
    let live = NOW <= at && at <= NOW + ttl;
    if let Ok(t) = k.ring.mint_access(&sub, &sid, &roles, life, &fp) {
        match k.ring.verify_access(&t, at) {
            Ok(c) => {
                assert!(
                    live,
                    "access token verifies at {at}, minted for {NOW}..={}",
                    NOW + ttl
                );
                assert_eq!(
                    (c.sub, c.sid, c.roles),
                    (sub.clone(), sid.clone(), roles.clone())
                );
                assert_eq!((c.ipn, c.uad), (fp.ipn.clone(), fp.uad.clone()));
            }
            Err(e) => assert!(!live, "{t}: a live access token is refused: {e:?}"),
        }
        assert!(
            k.ring.verify_refresh(&t, at).is_err(),
            "an access token verifies as refresh"
        );
        changed_verifies_as_nothing(k, &t, change, with, at);
    }
    if let Ok(t) = k.ring.mint_refresh(&sub, &sid, "jti", NOW, NOW + ttl, &fp) {
        match k.ring.verify_refresh(&t, at) {
            Ok(c) => {
                assert!(at <= NOW + ttl, "refresh token verifies after its exp");
                assert_eq!((c.sub, c.sid, c.jti.as_str()), (sub, sid, "jti"));
            }
            Err(e) => assert!(
                at > NOW + ttl,
                "{t}: a live refresh token is refused: {e:?}"
            ),
        }
        assert!(
            k.ring.verify_access(&t, at).is_err(),
            "a refresh token verifies as access"
        );
        changed_verifies_as_nothing(k, &t, change, with, at);
    }
}

fn changed_verifies_as_nothing(k: &Keys, t: &str, at_byte: usize, with: u8, at: u64) {
    let mut b = t.as_bytes().to_vec();
    let i = at_byte % b.len();
    if b[i] == with {
        return;
    }
    b[i] = with;
    let changed = String::from_utf8_lossy(&b);
    assert!(
        k.ring.verify_access(&changed, at).is_err(),
        "{changed}: changed, verifies"
    );
    assert!(
        k.ring.verify_refresh(&changed, at).is_err(),
        "{changed}: changed, verifies"
    );
}
