//! Checks of the harness itself, independent of the gateway: the upstream process echoes and
//! journals as the tests expect, and the generated certificates make a valid TLS chain for
//! `localhost`. When a gateway test fails, these say whether the harness can be trusted.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

#[tokio::test]
async fn upstream_echoes_requests_and_keeps_a_journal() {
    let up = tokio::task::spawn_blocking(Upstream::start).await.unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let resp = client
        .post(format!("{}/a/b?x=1&y=%2F", up.url()))
        .header("x-multi", "1")
        .header("cookie", "theme=dark")
        .body("hello")
        .send()
        .await
        .unwrap();
    let echo = Echo::from(resp).await;
    assert_eq!(echo.method, "POST");
    assert_eq!(echo.path, "/a/b");
    assert_eq!(echo.query, "x=1&y=%2F");
    assert_eq!(echo.body, "hello");
    assert_eq!(echo.header("cookie"), Some("theme=dark"));

    let resp = client
        .get(format!("{}/p/set-cookie", up.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers().get("set-cookie").unwrap().to_str().unwrap(),
        "appcookie=v1; Path=/"
    );

    // Chunked body and duplicate headers, raw.
    let mut s = tokio::net::TcpStream::connect(up.addr).await.unwrap();
    s.write_all(
        b"PUT /chunked HTTP/1.1\r\nHost: x\r\nX-Dup: one\r\nX-Dup: two\r\n\
          Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .await
    .unwrap();
    let resp = read_response(&mut s, true).await.unwrap();
    let echo = Echo::from_raw(&resp);
    assert_eq!(echo.body, "hello world");
    assert_eq!(echo.header_all("x-dup"), vec!["one", "two"]);

    let journal: Vec<JournalEntry> = client
        .get(format!("{}/__journal", up.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths: Vec<&str> = journal.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, vec!["/a/b", "/p/set-cookie", "/chunked"]);
    assert_eq!(journal[0].query, "x=1&y=%2F");
}

#[tokio::test]
async fn generated_certificate_chains_to_the_test_ca_for_localhost() {
    install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&pki.cert_path)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(certs.len(), 2, "leaf + CA");
    let key = PrivateKeyDer::from_pem_file(&pki.key_path).unwrap();
    let server_cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.unwrap();
        tls.write_all(b"ok").await.unwrap();
        tls.shutdown().await.unwrap();
    });
    let connector = tokio_rustls::TlsConnector::from(Arc::new(pki.client_config(&[b"http/1.1"])));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = connector
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .expect("TLS handshake against the generated leaf");
    let mut buf = Vec::new();
    tls.read_to_end(&mut buf).await.unwrap();
    assert_eq!(buf, b"ok");
    server.await.unwrap();
}
