//! The URL-token scanner (`web::query::scan`): the input is a query string.
//!
//! Oracle, for the default credential parameters and a configured `api.key`:
//! - nothing that any of a set of framework readings (written here, independently of the
//!   scanner) takes for a credential parameter is left in the clean query: the name percent-
//!   decoded zero to three times with `+` as a space (apps that decode twice), cut at a NUL or
//!   not (PHP's C strings), leading spaces or all surrounding spaces dropped; compared exactly,
//!   in ASCII case, and as Java's `equalsIgnoreCase` compares (simple upper case, then simple
//!   lower case, character by character); and each of those read as PHP registers it (`.`
//!   and space as `_`, an array `name[...]`, an unmatched `[` as `_`, PHP 7 and 8), and as
//!   Rack 2 reads a name (brackets before it skipped, up to the next bracket: `[token`,
//!   `]token`, `token]`; `qs`, Express's parser, reads `[token]` as `token` too);
//! - the clean query keeps every other piece, byte for byte, in order, with the separator it
//!   had; a query with nothing found is returned as it came;
//! - scanning the clean query finds nothing (the scan is idempotent).

use sessiongate::config::DEFAULT_CREDENTIAL_PARAMS;
use sessiongate::fuzzing::query::scan;

pub fn run(data: &[u8]) {
    let Ok(q) = std::str::from_utf8(data) else {
        return;
    };
    let mut params: Vec<String> = DEFAULT_CREDENTIAL_PARAMS
        .iter()
        .map(|p| p.to_string())
        .collect();
    params.push("api.key".into());
    let s = scan(Some(q), &params);
    let Some(clean) = s.clean.as_deref() else {
        assert!(
            q.is_empty() || s.found,
            "{q:?}: nothing found, nothing left"
        );
        return;
    };
    for piece in clean.split(['&', ';']) {
        assert!(
            !is_credential(piece, &params),
            "{q:?}: {piece:?} reads as a credential parameter, and was kept"
        );
    }
    if !s.found {
        assert_eq!(clean, q, "nothing found, yet the query changed");
        return;
    }
    // The kept pieces are a subsequence of the original ones, each with the separator it had
    // (the first one kept has none).
    let original = pieces(q);
    let mut at = 0;
    for (i, (sep, piece)) in pieces(clean).into_iter().enumerate() {
        assert!(!piece.is_empty(), "{q:?} -> {clean:?}: an empty piece kept");
        let found = original[at..]
            .iter()
            .position(|(s, p)| *p == piece && (i == 0 || *s == sep))
            .unwrap_or_else(|| panic!("{q:?} -> {clean:?}: {piece:?} is not as it was"));
        at += found + 1;
    }
    assert!(
        !scan(Some(clean), &params).found,
        "{q:?} -> {clean:?}: found again"
    );
}

/// The pieces of a query and the separator before each (`None` for the first).
fn pieces(q: &str) -> Vec<(Option<char>, &str)> {
    let mut out = Vec::new();
    let mut sep = None;
    let mut start = 0;
    for (i, c) in q.char_indices() {
        if c == '&' || c == ';' {
            out.push((sep, &q[start..i]));
            sep = Some(c);
            start = i + 1;
        }
    }
    out.push((sep, &q[start..]));
    out
}

/// Whether some framework reading of `piece`'s name is one of `params`.
fn is_credential(piece: &str, params: &[String]) -> bool {
    let raw = piece.split_once('=').map_or(piece, |(n, _)| n);
    let params: Vec<String> = params.iter().map(|p| php_plain(&fold(p))).collect();
    let mut seen = std::collections::HashSet::new();
    readings(raw)
        .into_iter()
        .filter(|r| seen.insert(r.clone()))
        .any(|r| {
            let mut forms = vec![r.clone()];
            forms.extend(php(&r));
            forms.push(rack2(&r));
            forms.iter().any(|f| {
                let folded = fold(f);
                params
                    .iter()
                    .any(|p| *p == folded || *p == php_plain(&folded))
            })
        })
}

/// The name as apps decode it: not at all, once, twice, three times (`+` as a space each
/// time); each cut at a NUL or not; each as it is, without leading spaces, trimmed.
fn readings(raw: &str) -> Vec<String> {
    let mut decoded = vec![raw.to_string()];
    let mut cur = raw.to_string();
    for _ in 0..3 {
        if !cur.contains(['%', '+']) {
            break;
        }
        cur = percent_encoding::percent_decode_str(&cur.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned();
        decoded.push(cur.clone());
    }
    let mut out = Vec::new();
    for d in decoded {
        let cut = d.split('\0').next().unwrap_or("").to_string();
        for f in [d, cut] {
            out.push(f.trim_start_matches(' ').to_string());
            out.push(f.trim().to_string());
            out.push(f);
        }
    }
    out
}

/// `.` and space as `_`.
fn php_plain(s: &str) -> String {
    s.chars()
        .map(|c| if c == '.' || c == ' ' { '_' } else { c })
        .collect()
}

/// PHP's `php_register_variable_ex`: leading spaces dropped, `.` and space as `_` up to the
/// first `[`; `name[...]` is `name`; an unmatched `[` becomes `_` (PHP 8 also turns later
/// `.`, space and `[` into `_`; PHP 7 leaves them).
fn php(n: &str) -> Vec<String> {
    let n = n.trim_start_matches(' ');
    let Some(open) = n.find('[') else {
        return vec![php_plain(n)];
    };
    let (base, rest) = (&n[..open], &n[open + 1..]);
    if rest.contains(']') {
        return vec![php_plain(base)];
    }
    let php8: String = rest
        .chars()
        .map(|c| if matches!(c, '.' | ' ' | '[') { '_' } else { c })
        .collect();
    vec![
        format!("{}_{}", php_plain(base), rest),
        format!("{}_{}", php_plain(base), php8),
    ]
}

/// Rack 2's `normalize_params` (Rails before 7.1, Sinatra): brackets before the name are
/// skipped (`\A[\[\]]*([^\[\]]+)`), and the name is the first run without brackets.
fn rack2(n: &str) -> String {
    n.trim_start_matches(['[', ']'])
        .chars()
        .take_while(|c| *c != '[' && *c != ']')
        .collect()
}

/// Case as Java's `String.equalsIgnoreCase` ignores it: two characters are equal when the
/// simple lower cases of their simple upper cases are (its last check; the others imply it),
/// so this folds a name for `==`.
fn fold(s: &str) -> String {
    s.chars().map(|c| simple_lower(simple_upper(c))).collect()
}

fn simple_upper(c: char) -> char {
    let mut u = c.to_uppercase();
    match (u.next(), u.next()) {
        (Some(one), None) => one,
        _ => c,
    }
}

/// The simple lower-case mapping: the full one when it is one character, else its first
/// (only U+0130, `İ`, lower-cases to two: `i` and a combining dot; its simple mapping is `i`).
fn simple_lower(c: char) -> char {
    c.to_lowercase().next().unwrap_or(c)
}
