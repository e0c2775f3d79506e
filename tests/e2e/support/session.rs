//! Cookies and session credentials: the gateway's cookie names, `Set-Cookie` parsing, the
//! [`Session`] a client holds (carried by hand, never in a cookie store, so tests can assert on
//! it), and the query parameters that must never carry a credential.

use reqwest::header::HeaderMap;

pub const ACCESS_COOKIE: &str = "__Host-sg-access";
pub const REFRESH_COOKIE: &str = "__Host-sg-refresh";

/// The credential query parameters the gateway must never accept nor forward.
pub const CREDENTIAL_PARAMS: [&str; 7] = [
    "access_token",
    "refresh_token",
    "token",
    "id_token",
    "jwt",
    "session",
    "sid",
];

#[derive(Debug, Clone)]
pub struct SetCookie {
    pub name: String,
    pub value: String,
    /// Attributes in order, names as sent.
    pub attrs: Vec<(String, Option<String>)>,
    pub raw: String,
}

impl SetCookie {
    pub fn parse(raw: &str) -> Option<SetCookie> {
        let mut parts = raw.split(';');
        let (name, value) = parts.next()?.split_once('=')?;
        let attrs = parts
            .map(|a| {
                let a = a.trim();
                match a.split_once('=') {
                    Some((k, v)) => (k.trim().to_string(), Some(v.trim().to_string())),
                    None => (a.to_string(), None),
                }
            })
            .filter(|(k, _)| !k.is_empty())
            .collect();
        Some(SetCookie {
            name: name.trim().to_string(),
            value: value.trim().to_string(),
            attrs,
            raw: raw.to_string(),
        })
    }
    /// `Some(value)` for `Name=value`, `Some("")` for a flag, `None` when absent.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref().unwrap_or(""))
    }
    pub fn has(&self, name: &str) -> bool {
        self.attr(name).is_some()
    }
    pub fn max_age(&self) -> Option<i64> {
        self.attr("max-age").and_then(|v| v.parse().ok())
    }
}

pub fn set_cookies(headers: &HeaderMap) -> Vec<SetCookie> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(SetCookie::parse)
        .collect()
}

pub fn set_cookie_named(headers: &HeaderMap, name: &str) -> Option<SetCookie> {
    set_cookies(headers).into_iter().find(|c| c.name == name)
}

/// The gateway's two session cookies, as a client holds them.
#[derive(Debug, Clone)]
pub struct Session {
    pub access: String,
    pub refresh: String,
}

impl Session {
    /// Both cookies from a response, if it sets both (with a non-empty value).
    pub fn from_response_headers(headers: &HeaderMap) -> Option<Session> {
        let a = set_cookie_named(headers, ACCESS_COOKIE)?;
        let r = set_cookie_named(headers, REFRESH_COOKIE)?;
        if a.value.is_empty() || r.value.is_empty() {
            return None;
        }
        Some(Session {
            access: a.value,
            refresh: r.value,
        })
    }
    /// Take new token values from a response's `Set-Cookie`s. A cookie being cleared (empty
    /// value or `Max-Age=0`) is ignored: the client keeps the old token, as an attacker who
    /// copied it would, so later requests prove the server refuses it.
    pub fn update(&mut self, headers: &HeaderMap) {
        let fresh = |c: &SetCookie| !c.value.is_empty() && c.max_age() != Some(0);
        if let Some(c) = set_cookie_named(headers, ACCESS_COOKIE).filter(fresh) {
            self.access = c.value;
        }
        if let Some(c) = set_cookie_named(headers, REFRESH_COOKIE).filter(fresh) {
            self.refresh = c.value;
        }
    }
    pub fn cookie_header(&self) -> String {
        format!(
            "{ACCESS_COOKIE}={}; {REFRESH_COOKIE}={}",
            self.access, self.refresh
        )
    }
    pub fn access_only(&self) -> String {
        format!("{ACCESS_COOKIE}={}", self.access)
    }
    pub fn refresh_only(&self) -> String {
        format!("{REFRESH_COOKIE}={}", self.refresh)
    }
}
