//! `[[upstream]]`: the apps behind the gateway, and the built-in whoami page that stands in for
//! them in `--dev`.

use http::Uri;

use super::{Errors, check_duration};
use crate::config::raw::{RawUpstream, default_connect_timeout, default_upstream_timeout};
use crate::config::{UpstreamConfig, WHOAMI_UPSTREAM};

/// The upstreams, and whether the built-in whoami page is upstream 0 (`--dev` without any).
pub(super) fn validate(
    raw: &[RawUpstream],
    dev: bool,
    errs: &mut Errors,
    notes: &mut Vec<String>,
) -> (Vec<UpstreamConfig>, bool) {
    let mut upstreams = Vec::new();
    for (i, u) in raw.iter().enumerate() {
        let key = |k: &str| format!("upstream[{i}].{k}");
        if u.name.is_empty()
            || !u
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            errs.add(key("name"), "must be non-empty letters, digits, '-' or '_'");
        }
        if raw[..i].iter().any(|o| o.name == u.name) {
            errs.add(key("name"), format!("{:?} is defined twice", u.name));
        }
        check_duration(errs, &key("connect_timeout"), u.connect_timeout);
        check_duration(errs, &key("timeout"), u.timeout);
        if let Some(up) = upstream(u, &key("url"), errs) {
            upstreams.push(up);
        }
    }
    if !raw.is_empty() {
        return (upstreams, false);
    }
    if !dev {
        errs.add(
            "upstream",
            "at least one [[upstream]] is required (name, url); `run --dev` uses a built-in whoami page instead",
        );
        return (upstreams, false);
    }
    notes.push("no [[upstream]] configured: proxying to the built-in whoami page".into());
    // The server points it at the built-in page once that listens; a placeholder until then.
    upstreams.push(UpstreamConfig {
        name: WHOAMI_UPSTREAM.into(),
        scheme: http::uri::Scheme::HTTP,
        authority: http::uri::Authority::from_static("127.0.0.1:1"),
        base_path: String::new(),
        preserve_host: true,
        connect_timeout: default_connect_timeout(),
        timeout: default_upstream_timeout(),
    });
    (upstreams, true)
}

/// One upstream from its `url` (`url_key` names it in problems).
fn upstream(u: &RawUpstream, url_key: &str, errs: &mut Errors) -> Option<UpstreamConfig> {
    let uri = match u.url.parse::<Uri>() {
        Ok(uri) => uri,
        Err(e) => {
            errs.add(url_key, format!("{:?} is not a URL: {e}", u.url));
            return None;
        }
    };
    let (Some("http"), Some(authority)) = (uri.scheme_str(), uri.authority().cloned()) else {
        errs.add(
            url_key,
            format!(
                "{:?} must be an http:// URL with a host, like \"http://127.0.0.1:3000\"",
                u.url
            ),
        );
        return None;
    };
    if uri.query().is_some() {
        errs.add(url_key, "must not have a query");
    }
    Some(UpstreamConfig {
        name: u.name.clone(),
        scheme: http::uri::Scheme::HTTP,
        authority,
        base_path: uri.path().trim_end_matches('/').to_string(),
        preserve_host: u.preserve_host,
        connect_timeout: u.connect_timeout,
        timeout: u.timeout,
    })
}
