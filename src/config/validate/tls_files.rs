//! PEM files that TLS clients of the gateway use — to `https://` upstreams and to `rediss://`
//! Redis: CA certificates, a client certificate and its key. Each is read through the
//! [`Source`] and parsed here, so that a file that cannot be read, holds no PEM block of its
//! kind, or pairs a certificate with another certificate's key stops the gateway at start under
//! its own key, never at the first connection. Nothing of a key file is ever printed.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::Errors;
use crate::config::Source;

/// The file's bytes, or a problem under `key`.
fn read(source: &dyn Source, errs: &mut Errors, key: &str, path: &Path) -> Option<Vec<u8>> {
    source
        .read(path)
        .map_err(|e| errs.add(key, format!("cannot read {}: {e}", path.display())))
        .ok()
}

/// Every `CERTIFICATE` block of a PEM file (at least one).
fn certificates(
    source: &dyn Source,
    errs: &mut Errors,
    key: &str,
    path: &Path,
) -> Option<Vec<CertificateDer<'static>>> {
    let pem = read(source, errs, key, path)?;
    match CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>() {
        Ok(certs) if !certs.is_empty() => Some(certs),
        Ok(_) => {
            errs.add(
                key,
                format!("{} holds no PEM CERTIFICATE block", path.display()),
            );
            None
        }
        Err(e) => {
            errs.add(
                key,
                format!("{} is not a PEM certificate file: {e}", path.display()),
            );
            None
        }
    }
}

/// The CA certificates of `path` as trust anchors: each one must parse as an X.509 certificate.
pub(super) fn ca_roots(
    source: &dyn Source,
    errs: &mut Errors,
    key: &str,
    path: &Path,
) -> Option<RootCertStore> {
    let certs = certificates(source, errs, key, path)?;
    let mut roots = RootCertStore::empty();
    for (i, c) in certs.into_iter().enumerate() {
        if let Err(e) = roots.add(c) {
            errs.add(
                key,
                format!(
                    "certificate {} of {} is not a usable CA certificate: {e}",
                    i + 1,
                    path.display()
                ),
            );
            return None;
        }
    }
    Some(roots)
}

/// The PEM text of a CA file, once checked like [`ca_roots`] (for clients that parse it again).
pub(super) fn ca_pem(
    source: &dyn Source,
    errs: &mut Errors,
    key: &str,
    path: &Path,
) -> Option<Vec<u8>> {
    ca_roots(source, errs, key, path)?;
    read(source, errs, key, path)
}

/// A client certificate chain and its private key, checked to be a pair. `keys` names the two
/// settings (`upstream[0].client_cert`, `upstream[0].client_key`); either without the other is
/// a problem under the missing one.
pub(super) fn client_auth(
    source: &dyn Source,
    errs: &mut Errors,
    keys: (&str, &str),
    files: (Option<&Path>, Option<&Path>),
) -> Option<Arc<CertifiedKey>> {
    let (cert_key, key_key) = keys;
    let (cert, key) = match files {
        (None, None) => return None,
        (Some(_), None) => {
            errs.add(
                key_key,
                format!("{cert_key} is set: name the PEM file of its private key too"),
            );
            return None;
        }
        (None, Some(_)) => {
            errs.add(
                cert_key,
                format!("{key_key} is set: name the PEM file of its certificate too"),
            );
            return None;
        }
        (Some(c), Some(k)) => (c, k),
    };
    let chain = certificates(source, errs, cert_key, cert);
    let private = read(source, errs, key_key, key).and_then(|pem| {
        PrivateKeyDer::from_pem_slice(&pem)
            .map_err(|e| {
                errs.add(
                    key_key,
                    format!("{} is not a PEM private key: {e}", key.display()),
                );
            })
            .ok()
    });
    let (chain, private) = (chain?, private?);
    let provider = rustls::crypto::ring::default_provider();
    match CertifiedKey::from_der(chain, private, &provider) {
        Ok(ck) => Some(Arc::new(ck)),
        Err(rustls::Error::InconsistentKeys(_)) => {
            errs.add(
                cert_key,
                format!(
                    "the certificate in {} is not the one of the key in {} ({key_key})",
                    cert.display(),
                    key.display()
                ),
            );
            None
        }
        Err(e) => {
            errs.add(
                key_key,
                format!("{} holds no usable private key: {e}", key.display()),
            );
            None
        }
    }
}
