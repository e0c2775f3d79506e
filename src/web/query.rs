//! Query strings: finding and removing credential parameters (the policy is the url-tokens
//! stage's; the plain-HTTP redirect and `return_to` use the same scan).
//!
//! Credentials in URLs.
//!
//! Threat: tokens in query strings end up in browser history, `Referer` headers, proxy and
//! server logs (OWASP ASVS V3.1.1; RFC 6750 §2.3 discourages them). The gateway never accepts a
//! credential from a query parameter, never forwards one upstream and never logs one; the
//! configured action decides whether the client is redirected to the clean URL, the request is
//! forwarded without them, or refused.
//!
//! A parameter is a credential parameter when *some* common framework would read it as one, so
//! the scan reads the query as the most lenient of them does:
//! - `&` and `;` both separate parameters (PHP's `arg_separator.input = "&;"`, Rack, Python's
//!   `parse_qs` before 3.9.2, Go before 1.17);
//! - the name is percent-decoded (with `+` as a space), more than once if it still holds
//!   escapes (an app that decodes twice), cut at a NUL (PHP's C strings) and trimmed;
//! - letter case is ignored, Unicode case too (Java's `equalsIgnoreCase` reads `ſid` and `sİd`
//!   as `sid`);
//! - `.` and space read as `_` (PHP's `access.token` is `$_GET['access_token']`), and so does
//!   an unmatched `[` (PHP);
//! - an array or nested form is the parameter (`token[]`, `token[x]`, `token[a][b]`: PHP,
//!   Rails/Rack), and so is a name after brackets (Rack 2 reads `[token]`, `]token` and
//!   `[token` as `token`, as Express's `qs` reads `[token]`);
//! - a `+` that a decoding made (`%2B`) is a space to the next decoding.

use std::borrow::Cow;

/// The query split into what may pass and whether something had to be removed.
#[derive(Debug, PartialEq, Eq)]
pub struct QueryScan<'a> {
    pub found: bool,
    /// The query without credential parameters (`None` when nothing is left).
    pub clean: Option<Cow<'a, str>>,
}

/// How many times a parameter name is decoded at most (once, and again while escapes remain).
const MAX_DECODINGS: usize = 3;

/// The name of one `name=value` piece as a lenient framework reads it, case-folded.
fn param_name(piece: &str) -> String {
    let mut name = piece.split_once('=').map_or(piece, |(n, _)| n).to_string();
    // Each decoding reads `+` as a space, so a `+` that a decoding made (`%2B`) is a space to
    // an app that decodes again.
    for _ in 0..MAX_DECODINGS {
        if !has_escape(&name) && !name.contains('+') {
            break;
        }
        name = percent_encoding::percent_decode_str(&name.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned();
    }
    let name = name.split('\0').next().unwrap_or("").trim();
    fold_case(name)
}

fn has_escape(s: &str) -> bool {
    s.as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit())
}

/// Lower case, the way a case-insensitive comparison on either case would match (`ſ` is `s`,
/// the Kelvin sign is `k`, and `İ` is `i`: Java's `equalsIgnoreCase` compares the *simple*
/// lower case of the upper case, and `İ`'s is `i`, where its full lower case adds a dot).
fn fold_case(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    s.chars()
        .flat_map(char::to_uppercase)
        .map(|u| u.to_lowercase().next().unwrap_or(u))
        .collect()
}

/// Whether a (case-folded) name read from a query is the credential parameter `param`: the
/// name itself; the name before an array or nested form (`token[]`); the name Rack 2 reads,
/// which skips brackets before it and ends at the next one (`[token]`, `]token`, `token[x`);
/// or with an unmatched `[` read as `_` (PHP, which from version 8 also reads a later `[` so);
/// with `.` and space read as `_`.
fn names_param(name: &str, param: &str) -> bool {
    let same = |n: &str| {
        n.len() == param.len()
            && n.bytes()
                .zip(param.bytes())
                .all(|(a, b)| php_char(a) == php_char(b))
    };
    if same(name) {
        return true;
    }
    let rack = name.trim_start_matches(['[', ']']);
    if same(rack.split(['[', ']']).next().unwrap_or(rack)) {
        return true;
    }
    match name.split_once('[') {
        Some((base, rest)) if rest.contains(']') => same(base),
        Some((base, rest)) => {
            same(&format!("{base}_{rest}")) || same(&format!("{base}_{}", rest.replace('[', "_")))
        }
        None => false,
    }
}

/// A name byte as PHP registers it: `.` and space become `_`.
fn php_char(b: u8) -> u8 {
    match b {
        b'.' | b' ' => b'_',
        b => b,
    }
}

/// The pieces of a query and the separator before each (`None` for the first).
fn pieces(q: &str) -> impl Iterator<Item = (Option<char>, &str)> {
    let mut seps = std::iter::once(None).chain(q.matches(['&', ';']).map(|s| s.chars().next()));
    q.split(['&', ';']).map(move |p| (seps.next().flatten(), p))
}

/// Split `query` against the lower-case credential parameter names.
pub fn scan<'a>(query: Option<&'a str>, params: &[String]) -> QueryScan<'a> {
    let Some(q) = query.filter(|q| !q.is_empty()) else {
        return QueryScan {
            found: false,
            clean: None,
        };
    };
    let is_cred = |piece: &str| {
        let n = param_name(piece);
        params.iter().any(|p| names_param(&n, p))
    };
    if !pieces(q).any(|(_, p)| is_cred(p)) {
        return QueryScan {
            found: false,
            clean: Some(Cow::Borrowed(q)),
        };
    }
    let mut kept = String::with_capacity(q.len());
    for (sep, piece) in pieces(q) {
        if piece.is_empty() || is_cred(piece) {
            continue;
        }
        if !kept.is_empty() {
            kept.push(sep.unwrap_or('&'));
        }
        kept.push_str(piece);
    }
    QueryScan {
        found: true,
        clean: (!kept.is_empty()).then_some(Cow::Owned(kept)),
    }
}

/// Build `path?query` (or just `path`).
pub fn with_query(path: &str, query: Option<&str>) -> String {
    match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Vec<String> {
        crate::config::DEFAULT_CREDENTIAL_PARAMS
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn credential_params_are_found_in_any_case_and_encoding() {
        for q in [
            "access_token=x",
            "a=1&ACCESS_TOKEN=x",
            "a=1&access%5Ftoken=x",
            "Sid",
            "jwt=&b=2",
            "refresh_token=a=b",
        ] {
            assert!(scan(Some(q), &params()).found, "{q}");
        }
    }

    #[test]
    fn credential_params_are_found_in_every_spelling_a_framework_reads() {
        for q in [
            "a=1;token=x",
            "a=1;ACCESS_TOKEN=x;b=2",
            "access_token[]=x",
            "access_token[x]=y",
            "refresh_token[a][b]=y",
            "access%5B%5D=1&access_token%5B%5D=x",
            "access.token=x",
            "access+token=x",
            "access%20token=x",
            "access%2Etoken=x",
            "ACCESS.Token=x",
            "access[token=x",
            "%61ccess_token=x",
            "%2561ccess_token=x",
            "+access_token=x",
            "access_token%00junk=x",
            "\u{17f}id=x",
            "to\u{212a}en=x",
            "id.token=x",
        ] {
            assert!(scan(Some(q), &params()).found, "{q}");
        }
        let extra = vec!["api.key".to_string()];
        assert!(scan(Some("api_key=x"), &extra).found);
        assert!(scan(Some("API.KEY[]=x"), &extra).found);
    }

    #[test]
    fn names_rack_2_reads_after_brackets_are_credential_params() {
        // Found by the `query` fuzz target: Rack 2 skips brackets before a name and ends it at
        // the next bracket; `qs` reads `[token]` as `token` too.
        for q in [
            "[access_token]=x",
            "[refresh_token=v",
            "]token=x",
            "[[[session[[[][=1",
            "%5Bsession=1",
            "token[8000=x",
            "a=1;sid[=y",
        ] {
            let s = scan(Some(q), &params());
            assert!(s.found, "{q}");
        }
        assert_eq!(
            scan(Some("a=1&[token]=x&b=2"), &params()).clean.as_deref(),
            Some("a=1&b=2")
        );
    }

    #[test]
    fn a_plus_a_decoding_made_is_a_space_to_the_next() {
        // `%2B` decodes to `+`, which an app that decodes again reads as a space, and PHP then
        // as `_`: `access_token`.
        for q in ["access%2Btoken=x", "access%252Btoken=x", "id%2Btoken=x"] {
            assert!(scan(Some(q), &params()).found, "{q}");
        }
        assert!(!scan(Some("my%2Btoken=x"), &params()).found);
    }

    #[test]
    fn a_dotted_capital_i_is_an_i_to_java() {
        // Java's `equalsIgnoreCase` reads `İ` (U+0130) as `i`: its simple lower case.
        for q in [
            "s\u{130}d=x",
            "s%C4%B0d=x",
            "SESS\u{130}ON=x",
            "\u{130}d_token=x",
        ] {
            assert!(scan(Some(q), &params()).found, "{q}");
        }
        let extra = vec!["api.key".to_string(), "x_y_z".to_string()];
        assert!(scan(Some("api[key=1"), &extra).found);
        assert!(
            scan(Some("x[y[z=1"), &extra).found,
            "PHP 8 reads a later [ as _"
        );
    }

    #[test]
    fn lookalikes_that_are_no_credential_param_stay() {
        for q in [
            "tokenizer=1",
            "my_token=1",
            "token_type=bearer",
            "x[token]=1",
            "access-token=1",
            "a=token",
            "a=1%26token%3Dx",
            "sessions=2",
        ] {
            let s = scan(Some(q), &params());
            assert!(!s.found, "{q}");
            assert_eq!(s.clean.as_deref(), Some(q));
        }
    }

    #[test]
    fn clean_query_keeps_the_separators_it_had() {
        let s = scan(Some("a=1;token=x;b=2&sid[]=y&c=3"), &params());
        assert_eq!(s.clean.as_deref(), Some("a=1;b=2&c=3"));
        let s = scan(Some("jwt=x;a=1"), &params());
        assert_eq!(s.clean.as_deref(), Some("a=1"));
        let s = scan(Some("token=x;&;id_token=y"), &params());
        assert_eq!(s.clean, None);
    }

    #[test]
    fn clean_query_keeps_everything_else_in_order() {
        let s = scan(Some("a=1&token=x&b=2&id_token=y"), &params());
        assert!(s.found);
        assert_eq!(s.clean.as_deref(), Some("a=1&b=2"));
        let s = scan(Some("token=x"), &params());
        assert_eq!(s.clean, None);
        let s = scan(Some("tokenizer=1&sessions=2"), &params());
        assert!(!s.found);
        assert_eq!(s.clean.as_deref(), Some("tokenizer=1&sessions=2"));
    }
}
