//! TLS termination: rustls with the ring provider, TLS 1.2 and 1.3, ALPN `h2` and
//! `http/1.1`, no 0-RTT (early data can be replayed).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read a PEM certificate chain from {path}: {reason}")]
    Cert { path: PathBuf, reason: String },
    #[error("cannot read a PEM private key from {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("certificate and key do not form a usable pair: {0}")]
    Pair(#[source] rustls::Error),
}

impl TlsError {
    /// The configuration key the problem belongs to.
    pub fn key(&self) -> &'static str {
        match self {
            TlsError::Cert { .. } | TlsError::Pair(_) => "tls.cert",
            TlsError::Key { .. } => "tls.key",
        }
    }
}

pub fn load_server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Cert {
            path: cert.into(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Cert {
            path: cert.into(),
            reason: "no CERTIFICATE block".into(),
        });
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.into(),
        reason: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Pair)?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(TlsError::Pair)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    cfg.max_early_data_size = 0;
    Ok(cfg)
}
