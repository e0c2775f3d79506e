//! The sections about reading client input the way the app will: `[identity]` (request headers
//! no client may set) and `[paths]` (double encoding).

use super::Errors;
use crate::config::raw::{RawIdentity, RawPaths};
use crate::config::{IdentityConfig, PathsConfig};

/// Headers the gateway needs to frame and route a request: removing them would break it.
const FRAMING_HEADERS: &[&str] = &["host", "content-length", "transfer-encoding"];

/// `identity.strip_headers`: header names (RFC 9110 tokens), a trailing `*` for a prefix,
/// lower-cased.
pub(super) fn identity(raw: &RawIdentity, errs: &mut Errors) -> IdentityConfig {
    let mut strip_headers = Vec::new();
    for (i, entry) in raw.strip_headers.iter().enumerate() {
        let key = format!("identity.strip_headers[{i}]");
        let name = entry.strip_suffix('*').unwrap_or(entry);
        if name.is_empty() || !name.bytes().all(is_tchar) {
            errs.add(
                key,
                format!("{entry:?} is not a header name (a trailing * makes a prefix, like \"X-Tenant-*\")"),
            );
            continue;
        }
        let lower = entry.to_ascii_lowercase();
        let prefix = lower.strip_suffix('*');
        if let Some(f) = FRAMING_HEADERS
            .iter()
            .find(|f| prefix.map_or(**f == lower, |p| f.starts_with(p)))
        {
            errs.add(
                key,
                format!("{entry:?} would remove {f}, which every request needs"),
            );
            continue;
        }
        if !strip_headers.contains(&lower) {
            strip_headers.push(lower);
        }
    }
    IdentityConfig { strip_headers }
}

pub(super) fn paths(raw: &RawPaths) -> PathsConfig {
    PathsConfig {
        allow_double_encoding: raw.allow_double_encoding,
    }
}

/// RFC 9110 §5.6.2 `tchar`, without `*` (which marks a prefix here).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_headers_are_lower_cased_once_and_bad_ones_named() {
        let raw = RawIdentity {
            strip_headers: vec![
                "X-Employee-Id".into(),
                "x-employee-id".into(),
                "X-Tenant-*".into(),
                "a b".into(),
                "*".into(),
                "X-Auth*Thing".into(),
                "Content-*".into(),
                "HOST".into(),
                "".into(),
            ],
        };
        let mut errs = Errors::default();
        let id = identity(&raw, &mut errs);
        assert_eq!(id.strip_headers, ["x-employee-id", "x-tenant-*"]);
        let keys: Vec<&str> = errs.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "identity.strip_headers[3]",
                "identity.strip_headers[4]",
                "identity.strip_headers[5]",
                "identity.strip_headers[6]",
                "identity.strip_headers[7]",
                "identity.strip_headers[8]",
            ]
        );
    }
}
