//! The upstream's echo of a request ([`Echo`]): what reached the application, headers and all.

use std::collections::BTreeMap;

use super::raw::RawResponse;

#[derive(Debug, Clone, serde::Deserialize)]
pub struct Echo {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: BTreeMap<String, Vec<String>>,
    pub body: String,
    /// What a TLS upstream saw of the connection (absent from a plain one).
    #[serde(default)]
    pub tls: Option<EchoTls>,
    /// The gateway's source port at the upstream: which upstream connection carried it.
    #[serde(default)]
    pub peer_port: Option<u16>,
}

/// A TLS upstream's view of the handshake: the SNI it received and the subject CN of the
/// client certificate presented, if any.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct EchoTls {
    pub sni: Option<String>,
    pub client_cert: Option<String>,
}

impl Echo {
    pub async fn from(resp: reqwest::Response) -> Echo {
        let status = resp.status();
        let text = resp.text().await.expect("response body");
        assert_eq!(
            status, 200,
            "expected the upstream's echo, got {status}: {text}"
        );
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("not the upstream's echo ({e}): {text}"))
    }
    pub fn from_raw(resp: &RawResponse) -> Echo {
        assert_eq!(
            resp.status,
            200,
            "expected the upstream's echo, got {}: {}",
            resp.status,
            resp.body_text()
        );
        serde_json::from_slice(&resp.body)
            .unwrap_or_else(|e| panic!("not the upstream's echo ({e}): {}", resp.body_text()))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .and_then(|v| v.first())
            .map(String::as_str)
    }
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default()
    }
}
