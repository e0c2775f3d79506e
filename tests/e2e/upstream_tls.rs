//! `https://` upstreams: the gateway's TLS client to the app, against a real Python upstream
//! serving TLS with certificates made here by a CA of the test's own.
//!
//! Attacks covered:
//! - someone on the network between the gateway and the app impersonating the app to read the
//!   identity headers and the users' traffic: a self-signed certificate, one from another CA,
//!   one for another name, an expired one — each refused (`502`, a log line that names the
//!   upstream and the verification error, nothing about it in the page the client gets);
//! - SNI and name checks bypassed: `server_name` is what is sent and what is verified, and
//!   without it the URL's host (an IP address is verified against the certificate's IP
//!   addresses);
//! - an app that accepts only the gateway (mutual TLS): the configured client certificate is
//!   presented, and without it — or with one from another CA — the app refuses the handshake;
//! - a TLS setting that silently does nothing: an unreadable or invalid CA file, a client
//!   certificate without its key or with another certificate's key, a `server_name` that is no
//!   DNS name, TLS keys on an `http://` upstream, no system CA store — every one refuses to
//!   start, naming the key.

use std::path::Path;

use crate::harness::*;

/// A TLS upstream and the CA that signed its certificate, in their own directory.
struct TlsApp {
    dir: tempfile::TempDir,
    ca: TestCa,
    upstream: Upstream,
}

impl TlsApp {
    /// An upstream serving a certificate for `names` from a fresh CA; with `client_ca`, it
    /// requires a client certificate from that CA.
    fn start(names: &[&str], client_ca: Option<&Path>) -> TlsApp {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new(dir.path(), "app");
        let leaf = ca.server("app", names);
        TlsApp::serving(dir, ca, &leaf, client_ca)
    }

    fn serving(
        dir: tempfile::TempDir,
        ca: TestCa,
        leaf: &CertFiles,
        client_ca: Option<&Path>,
    ) -> TlsApp {
        let upstream = Upstream::start_tls(&UpstreamTlsFiles {
            cert: &leaf.cert,
            key: &leaf.key,
            client_ca,
        });
        TlsApp { dir, ca, upstream }
    }

    fn url(&self, host: &str) -> String {
        self.upstream.https_url(host)
    }
}

/// An empty directory, for `SSL_CERT_DIR`: the system store is then `SSL_CERT_FILE` alone
/// (the machine running the tests may name its own store in both).
fn empty_dir(parent: &Path) -> String {
    let d = parent.join("no-certs");
    std::fs::create_dir_all(&d).unwrap();
    d.display().to_string()
}

fn ca_file(p: &Path) -> String {
    format!("ca_file = {:?}\n", p.display().to_string())
}

fn client_pair(c: &CertFiles) -> String {
    format!(
        "client_cert = {:?}\nclient_key = {:?}\n",
        c.cert.display().to_string(),
        c.key.display().to_string()
    )
}

/// `GET <path>` as alice (a JSON client): the response.
async fn get_as(gw: &Gateway, s: &Session, path: &str) -> reqwest::Response {
    gw.get(path)
        .header("cookie", s.cookie_header())
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
}

/// A refused upstream: `502`, the generic page, nothing about the upstream or the certificate
/// in it; and the gateway's log names the upstream and says why.
async fn assert_refused(gw: &Gateway, s: &Session, name: &str, port: u16, why: &str) {
    let resp = get_as(gw, s, &format!("/{name}/x")).await;
    assert_eq!(resp.status(), 502, "{name}");
    let headers = format!("{:?}", resp.headers());
    let body = resp.text().await.unwrap();
    assert_eq!(body, "Bad gateway: the application could not be reached.\n");
    for leak in [port.to_string(), name.to_string(), why.to_string()] {
        assert!(!headers.contains(&leak), "{name}: headers leak {leak}");
    }
    let logs = gw.stderr_plain();
    let line = logs
        .lines()
        .find(|l| l.contains("upstream TLS failed") && l.contains(&format!("upstream={name}")))
        .unwrap_or_else(|| panic!("{name}: no log line names the upstream's TLS failure:\n{logs}"));
    assert!(
        line.contains(why),
        "{name}: the log line should say {why:?}: {line}"
    );
}

#[tokio::test]
async fn an_https_upstream_is_verified_and_gets_the_identity_over_tls() {
    let app = TlsApp::start(&["localhost", "127.0.0.1"], None);
    let gw = Gateway::start(
        GatewayConfig::new()
            .upstream_with("secure", &app.url("localhost"), &ca_file(&app.ca.path))
            .upstream_with("byip", &app.url("127.0.0.1"), &ca_file(&app.ca.path))
            .route(Route::protected("/secure/").to("secure"))
            .route(Route::protected("/byip/").to("byip")),
    )
    .await;
    let s = gw.login_alice().await;

    let echo = Echo::from(get_as(&gw, &s, "/secure/page?q=1").await).await;
    assert_eq!(
        (echo.path.as_str(), echo.query.as_str()),
        ("/secure/page", "q=1")
    );
    assert_eq!(echo.header("x-auth-user"), Some("alice"));
    assert!(echo.header("cookie").is_none_or(|c| !c.contains("sg-")));
    let tls = echo.tls.expect("the request arrived over TLS");
    assert_eq!(
        tls.sni.as_deref(),
        Some("localhost"),
        "the URL's host is the SNI"
    );
    assert_eq!(tls.client_cert, None);

    // A body streams through, and the pooled connection is reused for the next request.
    let resp = gw
        .post("/secure/form")
        .header("cookie", s.cookie_header())
        .body("a=1&b=2")
        .send()
        .await
        .unwrap();
    assert_eq!(Echo::from(resp).await.body, "a=1&b=2");

    // An IP address is verified against the certificate's IP addresses and sends no SNI.
    let echo = Echo::from(get_as(&gw, &s, "/byip/x").await).await;
    assert_eq!(echo.tls.expect("tls").sni, None);

    // A WebSocket upgrade goes through the TLS connection too.
    let mut ws = open_ws(&gw, "/secure/ws", &s.cookie_header(), &[]).await;
    assert_echoes(&mut ws, "over tls both ways").await;
}

#[tokio::test]
async fn an_upstream_certificate_that_cannot_be_verified_is_refused_with_502() {
    let dir = tempfile::tempdir().unwrap();
    let trusted = TestCa::new(dir.path(), "trusted");
    let other = TestCa::new(dir.path(), "other");
    let names = &["localhost", "127.0.0.1"];
    let start = |leaf: CertFiles| {
        Upstream::start_tls(&UpstreamTlsFiles {
            cert: &leaf.cert,
            key: &leaf.key,
            client_ca: None,
        })
    };
    let selfsigned = start(self_signed_server(dir.path(), "selfsigned", names));
    let foreign = start(other.server("foreign", names));
    let misnamed = start(trusted.server("misnamed", &["other.example"]));
    let expired = start(trusted.expired_server("expired", names));
    let good = start(trusted.server("good", names));
    // The system store is the trusted CA alone: the self-signed certificate is refused without
    // a ca_file, not because of what this machine's store holds.
    let system = trusted.path.display().to_string();
    let no_dir = empty_dir(dir.path());
    let trusted_ca = ca_file(&trusted.path);
    let gw = Gateway::start(
        GatewayConfig::new()
            .env("SSL_CERT_FILE", &system)
            .env("SSL_CERT_DIR", &no_dir)
            .upstream_with("selfsigned", &selfsigned.https_url("localhost"), "")
            .upstream_with("foreign", &foreign.https_url("localhost"), &trusted_ca)
            .upstream_with("misnamed", &misnamed.https_url("localhost"), &trusted_ca)
            .upstream_with("expired", &expired.https_url("localhost"), &trusted_ca)
            .upstream_with("good", &good.https_url("localhost"), &trusted_ca)
            .route(Route::protected("/selfsigned/").to("selfsigned"))
            .route(Route::protected("/foreign/").to("foreign"))
            .route(Route::protected("/misnamed/").to("misnamed"))
            .route(Route::protected("/expired/").to("expired"))
            .route(Route::protected("/good/").to("good")),
    )
    .await;
    let s = gw.login_alice().await;
    for (name, up, why) in [
        ("selfsigned", &selfsigned, "UnknownIssuer"),
        ("foreign", &foreign, "UnknownIssuer"),
        ("misnamed", &misnamed, "not valid for name"),
        ("expired", &expired, "certificate expired"),
    ] {
        assert_refused(&gw, &s, name, up.addr.port(), why).await;
    }
    let echo = Echo::from(get_as(&gw, &s, "/good/x").await).await;
    assert_eq!(echo.header("x-auth-user"), Some("alice"));
}

#[tokio::test]
async fn server_name_is_the_sni_sent_and_the_name_verified() {
    // The app's certificate names app.internal only; the gateway reaches it by address.
    let app = TlsApp::start(&["app.internal"], None);
    let ca = ca_file(&app.ca.path);
    let by_ip = app.url("127.0.0.1");
    let gw = Gateway::start(
        GatewayConfig::new()
            .upstream_with(
                "named",
                &by_ip,
                &format!("{ca}server_name = \"app.internal\"\n"),
            )
            .upstream_with("unnamed", &by_ip, &ca)
            .upstream_with(
                "misnamed",
                &by_ip,
                &format!("{ca}server_name = \"db.internal\"\n"),
            )
            .upstream_with("asis", &app.url("localhost"), &ca)
            .route(Route::protected("/named/").to("named"))
            .route(Route::protected("/unnamed/").to("unnamed"))
            .route(Route::protected("/misnamed/").to("misnamed"))
            .route(Route::protected("/asis/").to("asis")),
    )
    .await;
    let s = gw.login_alice().await;
    let echo = Echo::from(get_as(&gw, &s, "/named/x").await).await;
    let tls = echo.tls.as_ref().expect("tls");
    assert_eq!(tls.sni.as_deref(), Some("app.internal"));
    // The client's Host still reaches the app (preserve_host).
    assert_eq!(echo.header("host"), Some("localhost"));

    let port = app.upstream.addr.port();
    assert_refused(&gw, &s, "unnamed", port, "not valid for name").await;
    assert_refused(&gw, &s, "misnamed", port, "not valid for name").await;
    assert_refused(&gw, &s, "asis", port, "not valid for name").await;
    assert!(app.dir.path().exists());
}

#[tokio::test]
async fn mutual_tls_presents_the_configured_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let clients = TestCa::new(dir.path(), "clients");
    let strangers = TestCa::new(dir.path(), "strangers");
    let gateway_cert = clients.client("gateway-client", "sessiongate-gateway");
    let stranger_cert = strangers.client("stranger-client", "sessiongate-gateway");
    let app = TlsApp::start(&["localhost"], Some(&clients.path));
    let url = app.url("localhost");
    let ca = ca_file(&app.ca.path);
    let gw = Gateway::start(
        GatewayConfig::new()
            .upstream_with("mtls", &url, &format!("{ca}{}", client_pair(&gateway_cert)))
            .upstream_with("anonymous", &url, &ca)
            .upstream_with(
                "stranger",
                &url,
                &format!("{ca}{}", client_pair(&stranger_cert)),
            )
            .route(Route::protected("/mtls/").to("mtls"))
            .route(Route::protected("/anonymous/").to("anonymous"))
            .route(Route::protected("/stranger/").to("stranger")),
    )
    .await;
    let s = gw.login_alice().await;
    let echo = Echo::from(get_as(&gw, &s, "/mtls/x").await).await;
    assert_eq!(
        echo.tls.as_ref().expect("tls").client_cert.as_deref(),
        Some("sessiongate-gateway"),
        "the app saw the gateway's client certificate"
    );
    assert_eq!(echo.header("x-auth-user"), Some("alice"));
    let port = app.upstream.addr.port();
    assert_refused(&gw, &s, "anonymous", port, "alert").await;
    assert_refused(&gw, &s, "stranger", port, "alert").await;
}

#[tokio::test]
async fn without_a_ca_file_the_system_store_is_trusted() {
    let app = TlsApp::start(&["localhost"], None);
    let system = app.ca.path.display().to_string();
    let no_dir = empty_dir(app.dir.path());
    let gw = Gateway::start(
        GatewayConfig::new()
            .env("SSL_CERT_FILE", &system)
            .env("SSL_CERT_DIR", &no_dir)
            .upstream_with("secure", &app.url("localhost"), "")
            .route(Route::protected("/secure/").to("secure")),
    )
    .await;
    let s = gw.login_alice().await;
    let echo = Echo::from(get_as(&gw, &s, "/secure/x").await).await;
    assert!(echo.tls.is_some());
}

#[tokio::test]
async fn bad_upstream_tls_settings_refuse_to_start_naming_each_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = TestCa::new(d, "app");
    let client = ca.client("client", "gw");
    let other = ca.client("other", "gw");
    let not_pem = d.join("not-pem.txt");
    std::fs::write(&not_pem, "hello\n").unwrap();
    let missing = d.join("missing.pem");
    let p = |p: &Path| format!("{:?}", p.display().to_string());
    let cfg = GatewayConfig::new()
        .upstream_with(
            "a",
            "https://app.internal",
            &format!("ca_file = {}\n", p(&missing)),
        )
        .upstream_with(
            "b",
            "https://app.internal",
            &format!("ca_file = {}\n", p(&not_pem)),
        )
        .upstream_with(
            "c",
            "https://app.internal",
            &format!("{}client_cert = {}\n", ca_file(&ca.path), p(&client.cert)),
        )
        .upstream_with(
            "d",
            "https://app.internal",
            &format!(
                "{}client_cert = {}\nclient_key = {}\n",
                ca_file(&ca.path),
                p(&client.cert),
                p(&other.key)
            ),
        )
        .upstream_with(
            "e",
            "https://10.0.0.5",
            &format!("{}server_name = \"10.0.0.6\"\n", ca_file(&ca.path)),
        )
        .upstream_with(
            "f",
            "https://10.0.0.5",
            &format!("{}server_name = \"app internal\"\n", ca_file(&ca.path)),
        )
        .upstream_with("g", "http://10.0.0.5", &ca_file(&ca.path))
        .upstream_with(
            "h",
            "https://app.internal",
            &format!("{}client_key = {}\n", ca_file(&ca.path), p(&client.key)),
        );
    let path = write_gateway_toml(d, &cfg);
    let expected = [
        ("upstream[1].ca_file", "cannot read"),
        ("upstream[2].ca_file", "holds no PEM CERTIFICATE block"),
        (
            "upstream[3].client_key",
            "name the PEM file of its private key",
        ),
        ("upstream[4].client_cert", "is not the one of the key"),
        ("upstream[5].server_name", "not a DNS name"),
        ("upstream[6].server_name", "not a DNS name"),
        ("upstream[7].ca_file", "only applies to an https:// url"),
        (
            "upstream[8].client_cert",
            "name the PEM file of its certificate",
        ),
    ];
    let (access, refresh) = (random_secret(), random_secret());
    let (ok, out) = check_config(&path, &access, &refresh);
    assert!(!ok, "check-config accepted it:\n{out}");
    let (refused, run_out) = run_refused(&path, &access, &refresh, &[]);
    assert!(refused, "run started anyway:\n{run_out}");
    for text in [&out, &run_out] {
        for (key, says) in expected {
            assert!(
                text.lines().any(|l| l.contains(key) && l.contains(says)),
                "no line names {key} ({says}):\n{text}"
            );
        }
        // No key file's contents in the output.
        assert!(!text.contains("PRIVATE KEY"), "{text}");
    }
}

#[tokio::test]
async fn an_https_upstream_without_a_ca_file_needs_a_system_store() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let empty = d.join("no-certs.pem");
    std::fs::write(&empty, "").unwrap();
    let no_dir = empty_dir(d);
    let cfg = GatewayConfig::new().upstream("secure", "https://app.internal");
    let path = write_gateway_toml(d, &cfg);
    let env = [
        ("SSL_CERT_FILE", empty.to_str().unwrap()),
        ("SSL_CERT_DIR", no_dir.as_str()),
    ];
    let (refused, out) = run_refused(&path, &random_secret(), &random_secret(), &env);
    assert!(
        refused,
        "run started without any CA to verify the app:\n{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("upstream[1].ca_file") && l.contains("system's store")),
        "{out}"
    );
    // A CA file makes the same upstream fine.
    let app_ca = TestCa::new(d, "app");
    let cfg = GatewayConfig::new().upstream_with(
        "secure",
        "https://app.internal",
        &ca_file(&app_ca.path),
    );
    let path = write_gateway_toml(d, &cfg);
    let (ok, out) = check_config(&path, &random_secret(), &random_secret());
    assert!(ok, "{out}");
}
