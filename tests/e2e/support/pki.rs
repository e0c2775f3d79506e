//! Certificates generated at test time with rcgen: a throwaway CA and a `localhost` leaf, and
//! a rustls client config that trusts only that CA.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::util::install_crypto_provider;

/// A test CA and a leaf for `localhost`, `127.0.0.1` and `*.example.test` (the public origins
/// of the tests that run instances with their own origins: the gateway refuses a certificate
/// that is not valid for its public origin), written as PEM files into `dir`.
pub struct Pki {
    pub ca_der: rustls::pki_types::CertificateDer<'static>,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

impl Pki {
    pub fn generate(dir: &Path) -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, DistinguishedName, DnType,
            ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        };
        let ca_key = KeyPair::generate().expect("ca key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "sessiongate e2e test CA");
        ca_params.distinguished_name = dn;
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign ca");
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf_key = KeyPair::generate().expect("leaf key");
        let mut leaf_params = CertificateParams::new(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "*.example.test".to_string(),
        ])
        .expect("leaf params");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "localhost");
        leaf_params.distinguished_name = dn;
        leaf_params.is_ca = IsCa::ExplicitNoCa;
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_cert = leaf_params
            .signed_by(&leaf_key, &issuer)
            .expect("sign leaf");

        let cert_path = dir.join("cert.pem");
        let key_path = dir.join("key.pem");
        // Leaf first, then the chain.
        std::fs::write(&cert_path, format!("{}{}", leaf_cert.pem(), ca_cert.pem())).unwrap();
        std::fs::write(&key_path, leaf_key.serialize_pem()).unwrap();
        std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
        Pki {
            ca_der: ca_cert.der().clone(),
            cert_path,
            key_path,
        }
    }

    pub fn client_config(&self, alpn: &[&[u8]]) -> rustls::ClientConfig {
        install_crypto_provider();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).expect("add test CA");
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        cfg
    }
}

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A throwaway CA of its own (for an upstream's or Redis's certificates, or the client
/// certificates an upstream accepts), written as `<stem>-ca.pem` in its directory.
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// `<stem>-ca.pem`: the CA certificate, for a `ca_file`.
    pub path: PathBuf,
    dir: PathBuf,
}

impl TestCa {
    pub fn new(dir: &Path, stem: &str) -> TestCa {
        use rcgen::{
            BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
            KeyUsagePurpose,
        };
        let key = KeyPair::generate().expect("ca key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("sessiongate e2e {stem} CA"));
        params.distinguished_name = dn;
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("self-sign ca");
        let path = dir.join(format!("{stem}-ca.pem"));
        std::fs::write(&path, cert.pem()).unwrap();
        TestCa {
            issuer: Issuer::new(params, key),
            path,
            dir: dir.to_path_buf(),
        }
    }

    /// A server certificate for `names` (DNS names or IP addresses), valid now.
    pub fn server(&self, stem: &str, names: &[&str]) -> CertFiles {
        self.leaf(
            stem,
            names,
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            false,
        )
    }

    /// A server certificate for `names` whose validity ended yesterday.
    pub fn expired_server(&self, stem: &str, names: &[&str]) -> CertFiles {
        self.leaf(
            stem,
            names,
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            true,
        )
    }

    /// A client certificate whose subject CN is `cn`.
    pub fn client(&self, stem: &str, cn: &str) -> CertFiles {
        self.leaf(
            stem,
            &[cn],
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
            false,
        )
    }

    fn leaf(
        &self,
        stem: &str,
        names: &[&str],
        usage: rcgen::ExtendedKeyUsagePurpose,
        expired: bool,
    ) -> CertFiles {
        let (params, key) = leaf_params(names, usage, expired);
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        write_leaf(&self.dir, stem, &cert, &key)
    }
}

/// A self-signed server certificate for `names`: no CA vouches for it.
pub fn self_signed_server(dir: &Path, stem: &str, names: &[&str]) -> CertFiles {
    let (params, key) = leaf_params(names, rcgen::ExtendedKeyUsagePurpose::ServerAuth, false);
    let cert = params.self_signed(&key).expect("self-sign leaf");
    write_leaf(dir, stem, &cert, &key)
}

fn leaf_params(
    names: &[&str],
    usage: rcgen::ExtendedKeyUsagePurpose,
    expired: bool,
) -> (rcgen::CertificateParams, rcgen::KeyPair) {
    use rcgen::{CertificateParams, DistinguishedName, DnType, IsCa, KeyPair};
    let key = KeyPair::generate().expect("leaf key");
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("leaf params");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, names.first().copied().unwrap_or("leaf"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.extended_key_usages = vec![usage];
    if expired {
        let now = std::time::SystemTime::now();
        let day = std::time::Duration::from_secs(86_400);
        params.not_before = (now - 2 * day).into();
        params.not_after = (now - day).into();
    }
    (params, key)
}

fn write_leaf(
    dir: &Path,
    stem: &str,
    cert: &rcgen::Certificate,
    key: &rcgen::KeyPair,
) -> CertFiles {
    let files = CertFiles {
        cert: dir.join(format!("{stem}.pem")),
        key: dir.join(format!("{stem}-key.pem")),
    };
    std::fs::write(&files.cert, cert.pem()).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    files
}
