//! `[[upstream]]`: the apps behind the gateway (`http://`, or `https://` with its CA file,
//! client certificate and server name), and the built-in whoami page that stands in for them in
//! `--dev`.

use http::Uri;
use http::uri::Scheme;
use rustls_pki_types::{DnsName, ServerName};

use super::{Errors, check_duration, tls_files};
use crate::config::raw::{RawUpstream, default_connect_timeout, default_upstream_timeout};
use crate::config::{Source, UpstreamConfig, UpstreamTls, WHOAMI_UPSTREAM};

/// The upstreams, and whether the built-in whoami page is upstream 0 (`--dev` without any).
pub(super) fn validate(
    raw: &[RawUpstream],
    dev: bool,
    source: &dyn Source,
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
        if let Some(mut up) = upstream(u, &key("url"), errs) {
            up.tls = tls(u, &up.scheme, &key, source, errs);
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
        tls: None,
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
    let (Some(scheme @ ("http" | "https")), Some(authority)) =
        (uri.scheme_str(), uri.authority().cloned())
    else {
        errs.add(
            url_key,
            format!(
                "{:?} must be an http:// or https:// URL with a host, like \"http://127.0.0.1:3000\"",
                u.url
            ),
        );
        return None;
    };
    let scheme = if scheme == "https" {
        Scheme::HTTPS
    } else {
        Scheme::HTTP
    };
    if uri.query().is_some() {
        errs.add(url_key, "must not have a query");
    }
    Some(UpstreamConfig {
        name: u.name.clone(),
        scheme,
        authority,
        base_path: uri.path().trim_end_matches('/').to_string(),
        preserve_host: u.preserve_host,
        connect_timeout: u.connect_timeout,
        timeout: u.timeout,
        tls: None,
    })
}

/// The TLS settings of an `https://` upstream; on an `http://` one each is a problem (nothing
/// would use it, and the operator who wrote it expects TLS).
fn tls(
    u: &RawUpstream,
    scheme: &Scheme,
    key: &dyn Fn(&str) -> String,
    source: &dyn Source,
    errs: &mut Errors,
) -> Option<UpstreamTls> {
    if *scheme != Scheme::HTTPS {
        for (set, k) in [
            (u.ca_file.is_some(), "ca_file"),
            (u.client_cert.is_some(), "client_cert"),
            (u.client_key.is_some(), "client_key"),
            (u.server_name.is_some(), "server_name"),
        ] {
            if set {
                errs.add(key(k), "only applies to an https:// url");
            }
        }
        return None;
    }
    let roots = u
        .ca_file
        .as_deref()
        .and_then(|p| tls_files::ca_roots(source, errs, &key("ca_file"), p))
        .map(std::sync::Arc::new);
    let client_auth = tls_files::client_auth(
        source,
        errs,
        (&key("client_cert"), &key("client_key")),
        (u.client_cert.as_deref(), u.client_key.as_deref()),
    );
    let server_name = u
        .server_name
        .as_deref()
        .and_then(|n| server_name(n, &key("server_name"), errs));
    Some(UpstreamTls {
        roots,
        client_auth,
        server_name,
    })
}

/// `server_name`: a DNS name (an address is verified from the URL itself).
fn server_name(n: &str, key: &str, errs: &mut Errors) -> Option<ServerName<'static>> {
    let ip = n.trim_start_matches('[').trim_end_matches(']');
    if ip.parse::<std::net::IpAddr>().is_ok() {
        errs.add(
            key,
            format!("{n:?} is an IP address, not a DNS name: put the address in the url and leave server_name out"),
        );
        return None;
    }
    match DnsName::try_from(n.to_string()) {
        Ok(d) if !n.contains('*') => Some(ServerName::DnsName(d)),
        _ => {
            errs.add(
                key,
                format!("{n:?} is not a DNS name like \"app.internal\""),
            );
            None
        }
    }
}
