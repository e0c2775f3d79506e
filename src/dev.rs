//! `run --dev`, `dev-cert` and `gen-key`: the files the gateway makes for an operator (a
//! localhost certificate, an assertion key), and the built-in "whoami" upstream that shows what
//! the app behind the gateway receives.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::config::{ConfigError, ConfigErrors};
use crate::pages::escape;

/// Why a development file could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("cannot generate a key: {0}")]
    Generate(#[source] rcgen::Error),
    #[error("cannot create {}: {source}", .path.display())]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} exists; a key is never overwritten (move it away first)", .path.display())]
    Exists { path: PathBuf },
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `run --dev`: create the development files the configuration names and that do not exist
/// yet — a self-signed localhost certificate (`tls.cert`, `tls.key`) and an Ed25519 assertion
/// key (`keys.assertion_key_file`) — before the configuration is validated and checked, so
/// they are checked like any other. Returns what it created, as notes for the operator.
pub fn create_missing_files(
    tls_cert: &Path,
    tls_key: &Path,
    assertion_key: Option<&Path>,
) -> Result<Vec<String>, ConfigErrors> {
    let mut notes = Vec::new();
    let mut errs = Vec::new();
    if !tls_cert.exists() || !tls_key.exists() {
        match write_dev_cert(tls_cert, tls_key) {
            Ok(()) => notes.push(format!(
                "tls.cert: created a self-signed localhost certificate at {}",
                tls_cert.display()
            )),
            Err(e) => errs.push(ConfigError::new(
                "tls.cert",
                format!("cannot create a development certificate: {e}"),
            )),
        }
    }
    if let Some(path) = assertion_key.filter(|p| !p.exists()) {
        match write_new_key(path) {
            Ok(()) => notes.push(format!(
                "keys.assertion_key_file: created a new Ed25519 key at {}",
                path.display()
            )),
            Err(e) => errs.push(ConfigError::new("keys.assertion_key_file", e.to_string())),
        }
    }
    if errs.is_empty() {
        Ok(notes)
    } else {
        Err(ConfigErrors(errs))
    }
}

/// Write a self-signed certificate for `localhost`, `127.0.0.1` and `::1`.
pub fn write_dev_cert(cert: &Path, key: &Path) -> Result<(), CreateError> {
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let ck = rcgen::generate_simple_self_signed(names).map_err(CreateError::Generate)?;
    create_parent(cert)?;
    std::fs::write(cert, ck.cert.pem()).map_err(|source| CreateError::Write {
        path: cert.into(),
        source,
    })?;
    write_private(key, ck.signing_key.serialize_pem().as_bytes())
}

/// Write a new Ed25519 key (PKCS#8 PEM, mode 0600) for `keys.assertion_key_file`.
pub fn write_new_key(path: &Path) -> Result<(), CreateError> {
    write_private(path, new_key_pem()?.as_bytes())
}

/// A new Ed25519 private key, PKCS#8 PEM: what `keys.assertion_key_file` holds.
pub fn new_key_pem() -> Result<String, CreateError> {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(CreateError::Generate)?;
    Ok(kp.serialize_pem())
}

/// `gen-key --out`: write a new key to `path`, which must not exist (not even as a dangling
/// link: the file is created exclusively, mode 0600 on Unix, so no other user can read it at
/// any moment). Its directory is created.
pub fn write_key_file(path: &Path) -> Result<(), CreateError> {
    use std::io::Write;
    let pem = new_key_pem()?;
    create_parent(path)?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = opts.open(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::AlreadyExists => CreateError::Exists { path: path.into() },
        _ => CreateError::Write {
            path: path.into(),
            source,
        },
    })?;
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| CreateError::Write {
            path: path.into(),
            source,
        })
}

fn create_parent(path: &Path) -> Result<(), CreateError> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => std::fs::create_dir_all(dir).map_err(|source| CreateError::Dir {
            path: dir.into(),
            source,
        }),
        None => Ok(()),
    }
}

/// Write a private file (mode 0600 on Unix), creating its directory.
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), CreateError> {
    use std::io::Write;
    create_parent(path)?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
        .and_then(|mut f| f.write_all(data))
        .map_err(|source| CreateError::Write {
            path: path.into(),
            source,
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_development_files_are_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("certs/localhost.pem");
        let key = dir.path().join("certs/localhost-key.pem");
        let assertion = dir.path().join("keys/assertion.pem");
        let notes = create_missing_files(&cert, &key, Some(&assertion)).unwrap();
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(cert.exists() && key.exists() && assertion.exists());
        #[cfg(unix)]
        for p in [&key, &assertion] {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", p.display());
        }
        let before = std::fs::read(&assertion).unwrap();
        assert!(
            create_missing_files(&cert, &key, Some(&assertion))
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            std::fs::read(&assertion).unwrap(),
            before,
            "an existing key is kept"
        );
    }

    #[test]
    fn a_file_that_cannot_be_written_names_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        let under = blocker.join("x.pem");
        let e = create_missing_files(&under, &under, Some(&under)).unwrap_err();
        let keys: Vec<&str> = e.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["tls.cert", "keys.assertion_key_file"]);
        assert!(e.0[1].message.starts_with("cannot create"), "{e}");
    }
}
