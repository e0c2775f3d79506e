//! Assertions shared by several test files.

use reqwest::header::HeaderMap;

/// `strict-transport-security` with `max-age` ≥ one year.
pub fn assert_hsts_value(value: Option<&str>, what: &str) {
    let v = value.unwrap_or_else(|| panic!("{what}: no strict-transport-security header"));
    let max_age = v
        .split(';')
        .map(str::trim)
        .find_map(|d| {
            d.strip_prefix("max-age=")
                .or_else(|| d.strip_prefix("Max-Age="))
        })
        .and_then(|n| n.trim_matches('"').parse::<u64>().ok())
        .unwrap_or_else(|| panic!("{what}: HSTS without max-age: {v:?}"));
    assert!(
        max_age >= 31_536_000,
        "{what}: HSTS max-age {max_age} < 31536000"
    );
}

pub fn assert_hsts(headers: &HeaderMap, what: &str) {
    assert_hsts_value(
        headers
            .get("strict-transport-security")
            .and_then(|v| v.to_str().ok()),
        what,
    );
}
