//! `return_to` validation (`auth::return_to`): the first byte picks the function — `validate`,
//! or `validate_with_origin` for `https://gw.example.com` or `https://127.0.0.1:8443` — and the
//! rest is the `return_to` a login link carries.
//!
//! Oracle: the target never leaves the origin, never points into the gateway, carries no
//! credential, and is a fixed point:
//! - it is a local path (`/`, not `//` or `/\`), with no `\`, `#`, space or control
//!   character, and a valid `Location` header value;
//! - resolved by a WHATWG URL parser (the `url` crate, as a browser resolves `Location`)
//!   against a page of the origin, it is on the origin; its path, normalised as requests are,
//!   is not under `/.auth/`; its query holds no credential parameter;
//! - validating it again gives it back.

use http::HeaderValue;
use sessiongate::config::DEFAULT_CREDENTIAL_PARAMS;
use sessiongate::fuzzing::query::scan;
use sessiongate::fuzzing::return_to::{validate, validate_with_origin};
use sessiongate::web::path::{is_gateway_path, normalise};

use crate::support::text;

const ORIGINS: &[&str] = &["https://gw.example.com", "https://127.0.0.1:8443"];

pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let raw = text(rest);
    let params: Vec<String> = DEFAULT_CREDENTIAL_PARAMS
        .iter()
        .map(|p| p.to_string())
        .collect();
    let (out, origin) = match mode % 3 {
        0 => (validate(Some(&raw), &params), ORIGINS[0]),
        m => {
            let o = ORIGINS[usize::from(m) - 1];
            (validate_with_origin(Some(&raw), &params, o), o)
        }
    };
    let what = format!("{raw:?} -> {out:?}");
    assert!(out.starts_with('/'), "{what}: not a path");
    assert!(
        !out.starts_with("//") && !out.starts_with("/\\"),
        "{what}: another host"
    );
    assert!(
        !out.contains(['\\', '#', ' ']) && !out.chars().any(char::is_control),
        "{what}: a character a browser reads otherwise"
    );
    assert!(
        HeaderValue::from_str(&out).is_ok(),
        "{what}: not a Location value"
    );
    let Ok(base) = url::Url::parse(&format!("{origin}/some/page?x=1")) else {
        panic!("base URL");
    };
    let Ok(joined) = base.join(&out) else {
        panic!("{what}: a browser cannot resolve it");
    };
    assert_eq!(
        joined.origin().ascii_serialization(),
        origin,
        "{what}: leaves the origin ({joined})"
    );
    assert!(
        joined.username().is_empty() && joined.password().is_none(),
        "{what}: {joined}"
    );
    match normalise(joined.path()) {
        Ok(p) => assert!(!is_gateway_path(&p), "{what}: into the gateway ({p})"),
        Err(e) => panic!(
            "{what}: the browser's path {:?} is refused: {e:?}",
            joined.path()
        ),
    }
    assert!(
        !scan(joined.query(), &params).found,
        "{what}: a credential in the query"
    );
    assert_eq!(
        validate(Some(&out), &params),
        out,
        "{what}: not a fixed point"
    );
}
