//! TLS to `https://` upstreams: rustls (ring), TLS 1.2 and 1.3, HTTP/1.1.
//!
//! Threat: a network position between the gateway and the app (another tenant of the network,
//! a spoofed address) that reads the identity headers or impersonates the app. The app's
//! certificate is always verified — against `ca_file`'s CAs, or the system's — for
//! `server_name` or else the URL's host; a DNS name is also sent as SNI (an IP address is
//! verified against the certificate's IP addresses and sends none, RFC 6066 §3). With
//! `client_cert` the gateway proves itself to an app that requires mutual TLS. There is no
//! switch that turns verification off.

use std::error::Error;
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};

use crate::config::UpstreamTls;

/// The system's CA certificates (`SSL_CERT_FILE` / `SSL_CERT_DIR`, else the platform's store);
/// an error when none can be loaded, so an upstream that relies on them fails at start.
pub fn system_roots() -> Result<Arc<RootCertStore>, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let why = found
            .errors
            .first()
            .map_or_else(|| "none found".to_string(), ToString::to_string);
        return Err(format!(
            "no CA certificate could be loaded from the system's store ({why}); name the CA of the app's certificate in ca_file"
        ));
    }
    Ok(Arc::new(roots))
}

/// The client configuration for one upstream; `system` supplies the system's roots when the
/// upstream names no `ca_file`.
pub(super) fn client_config(
    tls: &UpstreamTls,
    system: &mut dyn FnMut() -> Result<Arc<RootCertStore>, String>,
) -> Result<ClientConfig, String> {
    let roots = match &tls.roots {
        Some(r) => r.clone(),
        None => system()?,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    // No ALPN: the connector speaks HTTP/1.1 only (WebSocket upgrades need it), which a
    // server assumes when none is offered (hyper-rustls refuses a preset list).
    Ok(match &tls.client_auth {
        Some(ck) => builder
            .with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(ck.clone()))),
        None => builder.with_no_client_auth(),
    })
}

/// The TLS error behind a failed upstream request, if TLS is what failed: a handshake refused
/// by either side (an unverifiable certificate, a client certificate the app wants or rejects).
pub(super) fn tls_cause<'a>(e: &'a (dyn Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return Some(t);
        }
        // io::Error hides the error it wraps from `source()`; look inside.
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            let inner: &(dyn Error + 'static) = inner;
            if let Some(t) = tls_cause(inner) {
                return Some(t);
            }
        }
        next = err.source();
    }
    None
}

/// An error and its causes on one line (`client error (Connect): invalid peer certificate:
/// UnknownIssuer`), each message once.
pub fn chain(e: &(dyn Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let s = err.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        next = err.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::CertificateError;

    #[derive(Debug, thiserror::Error)]
    #[error("client error (Connect)")]
    struct Wrapped(#[source] std::io::Error);

    #[test]
    fn the_tls_cause_is_found_inside_nested_io_errors() {
        // hyper-rustls wraps tokio-rustls's io::Error, which wraps the rustls error.
        let unknown = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let inner = std::io::Error::new(std::io::ErrorKind::InvalidData, unknown.clone());
        let e = Wrapped(std::io::Error::other(inner));
        assert_eq!(tls_cause(&e), Some(&unknown));
        assert_eq!(
            chain(&e),
            "client error (Connect): invalid peer certificate: UnknownIssuer"
        );
        let refused = Wrapped(std::io::ErrorKind::ConnectionRefused.into());
        assert_eq!(tls_cause(&refused), None);
        assert_eq!(
            chain(&refused),
            "client error (Connect): connection refused"
        );
    }
}
