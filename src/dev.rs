//! `run --dev` and `dev-cert`: a localhost certificate, and the built-in "whoami" upstream that
//! shows what the app behind the gateway receives.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::pages::escape;

/// Write a self-signed certificate for `localhost`, `127.0.0.1` and `::1`.
pub fn write_dev_cert(cert: &Path, key: &Path) -> Result<(), String> {
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let ck = rcgen::generate_simple_self_signed(names).map_err(|e| e.to_string())?;
    for p in [cert, key] {
        if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
    }
    std::fs::write(cert, ck.cert.pem())
        .map_err(|e| format!("cannot write {}: {e}", cert.display()))?;
    write_private(key, ck.signing_key.serialize_pem().as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", key.display()))?;
    Ok(())
}

pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(data)
}

fn whoami_page(req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let wants_json = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let (ctype, body) = if wants_json {
        let map: serde_json::Map<String, serde_json::Value> = headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into()))
            .collect();
        ("application/json", serde_json::json!({"method": req.method().as_str(), "path": req.uri().path(), "headers": map}).to_string())
    } else {
        let user = req
            .headers()
            .get("x-auth-user")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("(anonymous)");
        let rows: String = headers
            .iter()
            .map(|(k, v)| {
                let cls = if k.starts_with("x-auth-") {
                    " class=\"id\""
                } else {
                    ""
                };
                format!("<tr{cls}><th>{}</th><td>{}</td></tr>", escape(k), escape(v))
            })
            .collect();
        (
            "text/html; charset=utf-8",
            format!(
                "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>whoami</title>\
<style>body{{font:15px/1.5 system-ui,sans-serif;margin:2rem}}table{{border-collapse:collapse}}\
th,td{{text-align:left;padding:.2rem .8rem;border-bottom:1px solid #ddd;font-family:monospace}}\
tr.id{{background:#e6f4ea}}</style></head><body><h1>Hello, {u}</h1>\
<p>This is sessiongate's built-in <em>whoami</em> app. It shows the request it received from the gateway; \
the highlighted <code>x-auth-*</code> headers are the verified identity. No token reached it.</p>\
<form method=\"post\" action=\"/.auth/logout\"><button>Sign out</button></form>\
<h2>{m} {p}</h2><table>{rows}</table></body></html>",
                u = escape(user),
                m = escape(req.method().as_str()),
                p = escape(req.uri().path())
            ),
        )
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(ctype),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}

/// Start the whoami app on a free loopback port; returns its address.
pub async fn spawn_whoami() -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = service_fn(|req: Request<Incoming>| async move {
                    Ok::<_, Infallible>(whoami_page(&req))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}
