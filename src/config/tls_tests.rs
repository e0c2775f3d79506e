//! Validation of the TLS client settings: `https://` upstreams (`ca_file`, `client_cert`,
//! `client_key`, `server_name`) and `rediss://` Redis (`store.ca_file`, `store.username`).
//! Every bad file or name stops the gateway under its own key; the files are read through the
//! source only.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::*;

const A: &str = "Q3ZqkJ8v0mX2rB7tL9wE4yN6uH1sD5cF0aG8pK3iM2o";
const R: &str = "Zx9Lm2Nq4Rs6Tu8Vw0Yb1Cd3Ef5Gh7Jk9Pq2Sx4Vz6B";

/// The secrets, `REDIS_PW`, and PEM files held in memory.
struct Files(HashMap<PathBuf, Vec<u8>>);

impl Source for Files {
    fn env(&self, name: &str) -> Option<String> {
        match name {
            "SESSIONGATE_ACCESS_SECRET" => Some(A.into()),
            "SESSIONGATE_REFRESH_SECRET" => Some(R.into()),
            "REDIS_PW" => Some("pw".into()),
            _ => None,
        }
    }
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        self.0
            .get(path)
            .cloned()
            .ok_or_else(|| std::io::ErrorKind::NotFound.into())
    }
}

/// A CA (`/pki/ca.pem`), a client certificate it signed with its key (`/pki/client.pem`,
/// `/pki/client-key.pem`), another key (`/pki/other-key.pem`), and files that are not what
/// their name says.
fn files() -> Files {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(vec!["gateway".to_string()])
        .unwrap()
        .signed_by(&client_key, &issuer)
        .unwrap();
    let garbage_cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    Files(HashMap::from([
        ("/pki/ca.pem".into(), ca_cert.pem().into_bytes()),
        ("/pki/client.pem".into(), client.pem().into_bytes()),
        (
            "/pki/client-key.pem".into(),
            client_key.serialize_pem().into_bytes(),
        ),
        (
            "/pki/other-key.pem".into(),
            KeyPair::generate().unwrap().serialize_pem().into_bytes(),
        ),
        ("/pki/empty.pem".into(), b"no PEM here\n".to_vec()),
        ("/pki/garbage-cert.pem".into(), garbage_cert.into()),
    ]))
}

/// A config with one upstream at `url` and these extra upstream keys, plus `rest`.
fn config(url: &str, upstream_keys: &str, rest: &str) -> String {
    format!(
        "[[upstream]]\nname = \"app\"\nurl = \"{url}\"\n{upstream_keys}\n\
         [login]\nmode = \"users_file\"\nusers_file = \"/nonexistent/users.toml\"\n{rest}"
    )
}

fn check(text: &str, src: &Files) -> Result<Config, Vec<(String, String)>> {
    let raw = parse(text).map_err(|e| vec![(e.0[0].key.clone(), e.0[0].message.clone())])?;
    validate(raw, LoadOptions::default(), src)
        .map_err(|e| e.0.into_iter().map(|e| (e.key, e.message)).collect())
}

/// The problems of an `https://` upstream with these keys.
fn upstream_problems(keys: &str) -> Vec<(String, String)> {
    check(&config("https://10.0.0.5:8443", keys, ""), &files())
        .err()
        .unwrap_or_default()
}

fn keys(p: &[(String, String)]) -> Vec<&str> {
    p.iter().map(|(k, _)| k.as_str()).collect()
}

#[test]
fn an_https_upstream_takes_its_ca_client_certificate_and_server_name() {
    let keys = "ca_file = \"/pki/ca.pem\"\nclient_cert = \"/pki/client.pem\"\n\
                client_key = \"/pki/client-key.pem\"\nserver_name = \"app.internal\"\n";
    let c = check(&config("https://10.0.0.5:8443/base", keys, ""), &files()).unwrap();
    let u = &c.upstreams[0];
    assert_eq!(u.scheme, http::uri::Scheme::HTTPS);
    assert_eq!(u.authority.as_str(), "10.0.0.5:8443");
    assert_eq!(u.base_path, "/base");
    let tls = u.tls.as_ref().unwrap();
    assert_eq!(tls.roots.as_ref().unwrap().len(), 1);
    assert!(tls.client_auth.is_some());
    assert_eq!(
        tls.server_name,
        Some(rustls_pki_types::ServerName::try_from("app.internal").unwrap())
    );
    // No key at all: the system's roots, the URL's host, no client certificate.
    for url in ["https://app.internal", "HTTPS://app.internal:443"] {
        let c = check(&config(url, "", ""), &files()).unwrap();
        let tls = c.upstreams[0].tls.as_ref().unwrap();
        assert!(tls.roots.is_none() && tls.client_auth.is_none() && tls.server_name.is_none());
        assert_eq!(c.upstreams[0].scheme, http::uri::Scheme::HTTPS, "{url}");
    }
    // http:// has no TLS.
    let c = check(&config("http://127.0.0.1:3000", "", ""), &files()).unwrap();
    assert!(c.upstreams[0].tls.is_none());
}

#[test]
fn unreadable_or_invalid_ca_files_are_refused_naming_the_key() {
    for (file, says) in [
        ("/pki/missing.pem", "cannot read /pki/missing.pem"),
        ("/pki/empty.pem", "holds no PEM CERTIFICATE block"),
        ("/pki/garbage-cert.pem", "is not a usable CA certificate"),
        ("/pki/client-key.pem", "holds no PEM CERTIFICATE block"),
    ] {
        let p = upstream_problems(&format!("ca_file = \"{file}\"\n"));
        assert_eq!(keys(&p), ["upstream[0].ca_file"], "{file}: {p:?}");
        assert!(p[0].1.contains(says), "{file}: {p:?}");
    }
}

#[test]
fn a_client_certificate_needs_its_own_key() {
    let cert = "client_cert = \"/pki/client.pem\"\n";
    let key = "client_key = \"/pki/client-key.pem\"\n";
    let p = upstream_problems(cert);
    assert_eq!(keys(&p), ["upstream[0].client_key"], "{p:?}");
    assert!(p[0].1.contains("upstream[0].client_cert is set"), "{p:?}");
    let p = upstream_problems(key);
    assert_eq!(keys(&p), ["upstream[0].client_cert"], "{p:?}");

    let p = upstream_problems(&format!("{cert}client_key = \"/pki/other-key.pem\"\n"));
    assert_eq!(keys(&p), ["upstream[0].client_cert"], "{p:?}");
    assert!(p[0].1.contains("is not the one of the key"), "{p:?}");

    for (k, says) in [
        ("/pki/empty.pem", "is not a PEM private key"),
        ("/pki/missing.pem", "cannot read /pki/missing.pem"),
        ("/pki/ca.pem", "is not a PEM private key"),
    ] {
        let p = upstream_problems(&format!("{cert}client_key = \"{k}\"\n"));
        assert_eq!(keys(&p), ["upstream[0].client_key"], "{k}: {p:?}");
        assert!(p[0].1.contains(says), "{k}: {p:?}");
        // The key file's contents are never repeated.
        assert!(!p[0].1.contains("PRIVATE KEY"), "{p:?}");
    }
    let p = upstream_problems(&format!("client_cert = \"/pki/empty.pem\"\n{key}"));
    assert_eq!(keys(&p), ["upstream[0].client_cert"], "{p:?}");
}

#[test]
fn server_name_must_be_a_dns_name() {
    for bad in [
        "",
        "app internal",
        "app.internal/",
        "https://app.internal",
        "127.0.0.1",
        "::1",
        "[::1]",
        "*.internal",
        "app..internal",
        "-app.internal",
    ] {
        let p = upstream_problems(&format!("server_name = {bad:?}\n"));
        assert_eq!(keys(&p), ["upstream[0].server_name"], "{bad:?}: {p:?}");
    }
    for good in [
        "app.internal",
        "localhost",
        "APP.Internal",
        "app-1.internal.",
    ] {
        assert!(
            upstream_problems(&format!("server_name = {good:?}\n")).is_empty(),
            "{good}"
        );
    }
}

#[test]
fn tls_keys_on_an_http_upstream_are_refused() {
    let keys_text = "ca_file = \"/pki/ca.pem\"\nclient_cert = \"/pki/client.pem\"\n\
                     client_key = \"/pki/client-key.pem\"\nserver_name = \"app.internal\"\n";
    let p = check(&config("http://127.0.0.1:3000", keys_text, ""), &files()).unwrap_err();
    assert_eq!(
        keys(&p),
        [
            "upstream[0].ca_file",
            "upstream[0].client_cert",
            "upstream[0].client_key",
            "upstream[0].server_name"
        ]
    );
    assert!(p.iter().all(|(_, m)| m.contains("https://")), "{p:?}");
    for url in [
        "ftp://127.0.0.1",
        "ws://127.0.0.1:3000",
        "127.0.0.1:3000",
        "https:///x",
    ] {
        let p = check(&config(url, "", ""), &files()).unwrap_err();
        assert_eq!(keys(&p), ["upstream[0].url"], "{url}: {p:?}");
    }
}

fn store_problems(store: &str) -> Vec<(String, String)> {
    check(
        &config("http://127.0.0.1:3000", "", &format!("[store]\n{store}")),
        &files(),
    )
    .err()
    .unwrap_or_default()
}

#[test]
fn rediss_takes_a_ca_file_and_an_acl_user() {
    let text = config(
        "http://127.0.0.1:3000",
        "",
        "[store]\nkind = \"redis\"\nurl = \"rediss://127.0.0.1:6380/0\"\nusername = \"gateway\"\n\
         password_env = \"REDIS_PW\"\nca_file = \"/pki/ca.pem\"\n",
    );
    let src = files();
    let c = check(&text, &src).unwrap();
    let StoreConfig::Redis(r) = c.store else {
        panic!("redis")
    };
    let url = String::from_utf8(r.url.unwrap().expose().to_vec()).unwrap();
    assert_eq!(url, "rediss://gateway:pw@127.0.0.1:6380/0");
    assert_eq!(r.username.as_deref(), Some("gateway"));
    assert_eq!(r.ca_pem, src.read(Path::new("/pki/ca.pem")).ok());

    let cluster = "kind = \"redis\"\ncluster_nodes = [\"rediss://a:7001\", \"rediss://b:7002\"]\n\
                   username = \"gateway\"\npassword_env = \"REDIS_PW\"\nca_file = \"/pki/ca.pem\"\n";
    assert!(store_problems(cluster).is_empty());
}

#[test]
fn redis_tls_and_user_problems_name_their_keys() {
    let redis = "kind = \"redis\"\npassword_env = \"REDIS_PW\"\n";
    for (store, key, says) in [
        (
            format!("{redis}url = \"redis://h:6379\"\nca_file = \"/pki/ca.pem\"\n"),
            "store.ca_file",
            "only applies to rediss://",
        ),
        (
            format!(
                "{redis}cluster_nodes = [\"rediss://a:7001\", \"redis://b:7002\"]\nca_file = \"/pki/ca.pem\"\n"
            ),
            "store.ca_file",
            "only applies to rediss://",
        ),
        (
            format!("{redis}url = \"rediss://h:6380\"\nca_file = \"/pki/missing.pem\"\n"),
            "store.ca_file",
            "cannot read /pki/missing.pem",
        ),
        (
            format!("{redis}url = \"rediss://h:6380\"\nca_file = \"/pki/empty.pem\"\n"),
            "store.ca_file",
            "holds no PEM CERTIFICATE block",
        ),
        (
            format!("{redis}url = \"rediss://h:6380\"\nca_file = \"/pki/garbage-cert.pem\"\n"),
            "store.ca_file",
            "is not a usable CA certificate",
        ),
        (
            "kind = \"redis\"\nurl = \"rediss://h:6380\"\nusername = \"gateway\"\n".to_string(),
            "store.username",
            "needs store.password_env",
        ),
        (
            format!("{redis}url = \"rediss://h:6380\"\nusername = \"gate way\"\n"),
            "store.username",
            "letters, digits",
        ),
        (
            format!("{redis}url = \"rediss://h:6380\"\nusername = \"\"\n"),
            "store.username",
            "letters, digits",
        ),
        (
            format!("{redis}url = \"rediss://other@h:6380\"\nusername = \"gateway\"\n"),
            "store.username",
            "names a user too",
        ),
        (
            format!("{redis}url = \"rediss://h:6380/#insecure\"\n"),
            "store.url",
            "#insecure",
        ),
        (
            "kind = \"memory\"\nusername = \"gateway\"\nca_file = \"/pki/ca.pem\"\n".to_string(),
            "store.username",
            "only applies to store.kind",
        ),
    ] {
        let p = store_problems(&store);
        assert_eq!(keys(&p).first(), Some(&key), "{store}: {p:?}");
        assert!(p[0].1.contains(says), "{store}: {p:?}");
    }
}
