//! TLS termination: rustls with the ring provider, TLS 1.2 and 1.3, ALPN `h2` and
//! `http/1.1`, no 0-RTT (early data can be replayed).
//!
//! A problem with the certificate or key is told in the operator's words, naming `tls.cert` or
//! `tls.key`: rustls's and the PEM reader's own messages print Rust names
//! (`InconsistentKeys(KeyMismatch)`, the bytes of a PEM marker), which say nothing to whoever
//! has to fix the file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;

use crate::util::pem_reason;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read a PEM certificate chain from {}: {reason}", .path.display())]
    Cert { path: PathBuf, reason: String },
    #[error("cannot read a PEM private key from {}: {reason}", .path.display())]
    Key { path: PathBuf, reason: String },
    #[error(
        "{} is not the private key of the certificate in tls.cert ({}); give tls.key the key \
         the certificate was issued for",
        .key.display(), .cert.display()
    )]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error(
        "the private key in {} is of a kind that cannot sign TLS handshakes (use an ECDSA \
         P-256/P-384, Ed25519 or RSA key)",
        .path.display()
    )]
    KeyUnusable { path: PathBuf },
    #[error("the first certificate in {} cannot be used: {reason}", .path.display())]
    CertUnusable { path: PathBuf, reason: String },
}

impl TlsError {
    /// The configuration key the problem belongs to.
    pub fn key(&self) -> &'static str {
        match self {
            TlsError::Cert { .. } | TlsError::CertUnusable { .. } => "tls.cert",
            TlsError::Key { .. } | TlsError::Mismatch { .. } | TlsError::KeyUnusable { .. } => {
                "tls.key"
            }
        }
    }
}

pub fn load_server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Cert {
            path: cert.into(),
            reason: pem_reason(&e, "CERTIFICATE"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Cert {
            path: cert.into(),
            reason: "no BEGIN CERTIFICATE block".into(),
        });
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.into(),
        reason: pem_reason(&e, "PRIVATE KEY"),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let pair_error = |e: rustls::Error| pair_error(e, cert, key);
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(pair_error)?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(pair_error)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    cfg.max_early_data_size = 0;
    Ok(cfg)
}

/// Whether the first certificate in `cert` (a PEM file that [`load_server_config`] accepts) is
/// valid for `host`, a DNS name or an IP address, the way a browser checks it (subjectAltName,
/// wildcards one label deep). `None` when the file or the host cannot be read.
pub fn covers_host(cert: &Path, host: &str) -> Option<bool> {
    let leaf = CertificateDer::pem_file_iter(cert).ok()?.next()?.ok()?;
    let parsed = rustls::server::ParsedCertificate::try_from(&leaf).ok()?;
    let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']')).ok()?;
    Some(rustls::client::verify_server_name(&parsed, &name).is_ok())
}

/// What rustls's refusal of a certificate and key means.
fn pair_error(e: rustls::Error, cert: &Path, key: &Path) -> TlsError {
    match e {
        rustls::Error::InconsistentKeys(_) => TlsError::Mismatch {
            cert: cert.into(),
            key: key.into(),
        },
        rustls::Error::General(_) => TlsError::KeyUnusable { path: key.into() },
        rustls::Error::InvalidCertificate(_) => TlsError::CertUnusable {
            path: cert.into(),
            reason: "it is not a well-formed X.509 certificate".into(),
        },
        _ => TlsError::CertUnusable {
            path: cert.into(),
            reason: "rustls refuses it with this key".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_of_another_certificate_is_named_without_rust_names() {
        let dir = tempfile::tempdir().unwrap();
        let (c1, k1) = (dir.path().join("c1.pem"), dir.path().join("k1.pem"));
        let (c2, k2) = (dir.path().join("c2.pem"), dir.path().join("k2.pem"));
        crate::dev::write_dev_cert(&c1, &k1).unwrap();
        crate::dev::write_dev_cert(&c2, &k2).unwrap();
        assert!(load_server_config(&c1, &k1).is_ok());
        let e = load_server_config(&c1, &k2).unwrap_err();
        assert_eq!(e.key(), "tls.key");
        let text = e.to_string();
        assert!(text.contains(&k2.display().to_string()), "{text}");
        assert!(text.contains("tls.cert"), "{text}");
        assert!(
            !text.contains("Inconsistent") && !text.contains("KeyMismatch"),
            "{text}"
        );
    }

    #[test]
    fn pem_problems_are_said_in_words() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        crate::dev::write_dev_cert(&c, &k).unwrap();
        let cut = dir.path().join("cut.pem");
        let pem = std::fs::read_to_string(&c).unwrap();
        std::fs::write(&cut, &pem[..pem.len() / 2]).unwrap();
        let not_pem = dir.path().join("none.pem");
        std::fs::write(&not_pem, "hello\n").unwrap();
        for (cert, key, want) in [
            (&cut, &k, "no END line"),
            (&not_pem, &k, "no BEGIN CERTIFICATE block"),
            (&c, &not_pem, "no BEGIN PRIVATE KEY block"),
            (&c, &c, "no BEGIN PRIVATE KEY block"),
        ] {
            let e = load_server_config(cert, key).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
            assert!(!e.contains("[45, 45"), "{e}");
        }
    }

    #[test]
    fn host_coverage_follows_the_subject_alt_names() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        crate::dev::write_dev_cert(&c, &k).unwrap();
        for (host, covered) in [
            ("localhost", true),
            ("LOCALHOST", true),
            ("127.0.0.1", true),
            ("[::1]", true),
            ("sso.example.com", false),
            ("127.0.0.2", false),
            ("localhost.example.com", false),
        ] {
            assert_eq!(covers_host(&c, host), Some(covered), "{host}");
        }
    }
}
