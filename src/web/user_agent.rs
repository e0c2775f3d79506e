//! The client's `User-Agent`, read one way for everything that binds, compares, stores or shows
//! it ([`UserAgent::from_headers`]), and the device it names ([`UserAgent::device`]): browser
//! family, operating system and device class — never a version number.
//!
//! Threat: a stolen session used from another browser (session hijacking, OWASP ASVS V3.3)
//! must be noticed without ending every session of a browser at its next routine update, and a
//! client must not be able to make the value bound at login differ from the one compared later
//! (a header over the length kept, bytes that are not UTF-8). So the header is normalised once,
//! here, and the session is bound to the device class derived from that value.
//!
//! The classifier is written by hand rather than taken from a UA-parser crate: it only has to
//! tell families, systems and classes apart (no versions, no device models); its rules are
//! short enough to state in the README, which is what "a change of user agent" means to an
//! operator; and one pass over the words is cheap — about 3,600 instructions for a desktop
//! Firefox user agent and 6,500 for Edge on Android (callgrind, `benches/hot_path.rs`), where
//! woothee's parser takes 12,600 and 14,300 and would still need this mapping on top. A request
//! pays it only when its thread meets that user agent for the first time (`sessions::anomaly`
//! memoises the fingerprint). A misread browser weakens detection for that browser; it never
//! ends a session, because nothing it reads depends on a version.

use std::borrow::Cow;

use http::{HeaderMap, header};

/// The longest `User-Agent` kept, in bytes; the rest is cut (at a character boundary) before
/// anything binds, compares or stores it.
pub const MAX_BYTES: usize = 512;

/// A normalised `User-Agent`: the first header's bytes without surrounding blanks, read as
/// UTF-8 (a byte that is not becomes U+FFFD), at most [`MAX_BYTES`] bytes. `""` when there is
/// none. The only way to get one is through this normalisation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserAgent<'a>(Cow<'a, str>);

impl<'a> UserAgent<'a> {
    /// The request's user agent. A request with several `User-Agent` headers is refused by the
    /// framing stage before anything reads it; here the first one counts.
    pub fn from_headers(h: &'a HeaderMap) -> Self {
        match h.get(header::USER_AGENT) {
            Some(v) => Self::from_bytes(v.as_bytes()),
            None => Self(Cow::Borrowed("")),
        }
    }

    /// The normalisation itself, over a header value's bytes. Borrows unless the value had to
    /// be repaired (not UTF-8).
    pub fn from_bytes(raw: &'a [u8]) -> Self {
        let raw = trim_blanks(raw);
        if raw.len() <= MAX_BYTES
            && let Ok(s) = std::str::from_utf8(raw)
        {
            return Self(Cow::Borrowed(s));
        }
        // Decoding a few bytes past the limit is enough: every decoded character takes at
        // least as many bytes as it came from, so nothing past this changes what is kept.
        let head = &raw[..raw.len().min(MAX_BYTES + 3)];
        let text = String::from_utf8_lossy(head);
        let cut = floor_char_boundary(&text, MAX_BYTES);
        Self(match text {
            Cow::Borrowed(s) => Cow::Borrowed(&s[..cut]),
            Cow::Owned(mut s) => {
                s.truncate(cut);
                Cow::Owned(s)
            }
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_owned(self) -> UserAgent<'static> {
        UserAgent(Cow::Owned(self.0.into_owned()))
    }

    /// The device this user agent names.
    pub fn device(&self) -> Device<'_> {
        Device::of(self.as_str())
    }
}

fn trim_blanks(mut b: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = b {
        b = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = b {
        b = rest;
    }
    b
}

fn floor_char_boundary(s: &str, max: usize) -> usize {
    if s.len() <= max {
        return s.len();
    }
    (0..=max)
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0)
}

/// Phone, tablet or anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Desktop,
    Mobile,
    Tablet,
}

impl Class {
    fn name(self) -> &'static str {
        match self {
            Class::Desktop => "desktop",
            Class::Mobile => "mobile",
            Class::Tablet => "tablet",
        }
    }
}

/// What a user agent says about the device: what a session is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Device<'a> {
    /// No `User-Agent`, or an empty one.
    Unnamed,
    /// A browser: its family (`"Chrome"`, `"Firefox"`, ...), its operating system (`""` when it
    /// names none) and the device class.
    Browser {
        family: &'static str,
        os: &'static str,
        class: Class,
    },
    /// Anything else (curl, a library, a bot, an app): its whole text counts, less the version
    /// numbers in it.
    Client(&'a str),
}

/// The family a product token names, with its precedence: a browser built on another names
/// that one too (Edge and Opera say `Chrome/`, Chrome says `Safari/`), so the most specific
/// token present (the lowest number) wins.
fn family(token: &str) -> Option<(u8, &'static str)> {
    Some(match token {
        "Edg" | "Edge" | "EdgA" | "EdgiOS" => (0, "Edge"),
        "OPR" | "OPT" | "OPiOS" | "Opera" => (1, "Opera"),
        "SamsungBrowser" => (2, "Samsung Internet"),
        "YaBrowser" => (3, "Yandex Browser"),
        "Vivaldi" => (4, "Vivaldi"),
        "UCBrowser" => (5, "UC Browser"),
        "Firefox" | "FxiOS" => (6, "Firefox"),
        "CriOS" | "Chrome" | "Chromium" => (7, "Chrome"),
        "MSIE" | "Trident" => (8, "Internet Explorer"),
        "Safari" => (9, "Safari"),
        "AppleWebKit" => (10, "WebKit"),
        _ => return None,
    })
}

/// The operating system a word names, with its precedence (Android says `Linux`, iOS says
/// `Mac OS X`).
fn system(word: &str) -> Option<(u8, &'static str)> {
    Some(match word {
        "iPhone" | "iPad" | "iPod" => (0, "iOS"),
        "Android" => (1, "Android"),
        "CrOS" => (2, "ChromeOS"),
        "KAIOS" => (3, "KaiOS"),
        "Windows" => (4, "Windows"),
        "Macintosh" => (5, "macOS"),
        "FreeBSD" | "OpenBSD" | "NetBSD" => (6, "BSD"),
        "Linux" | "X11" => (7, "Linux"),
        _ => return None,
    })
}

/// The more specific of two matches.
fn first(
    a: Option<(u8, &'static str)>,
    b: Option<(u8, &'static str)>,
) -> Option<(u8, &'static str)> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
        (a, b) => a.or(b),
    }
}

impl<'a> Device<'a> {
    /// Classify a normalised user agent, in one pass over its words: product names (the part
    /// before `/`) and the words of its comments.
    pub fn of(ua: &'a str) -> Device<'a> {
        if ua.is_empty() {
            return Device::Unnamed;
        }
        let (mut browser, mut os) = (None, None);
        let (mut mobile, mut tablet, mut iphone, mut ipad) = (false, false, false, false);
        for word in ua.split([' ', ';', '(', ')', ',']) {
            let name = word.split_once('/').map_or(word, |(name, _)| name);
            if name.is_empty() {
                continue;
            }
            browser = first(browser, family(name));
            os = first(os, system(name));
            mobile |= name.starts_with("Mobi");
            tablet |= name == "Tablet";
            iphone |= name == "iPhone" || name == "iPod";
            ipad |= name == "iPad";
        }
        let Some((_, family)) = browser else {
            return Device::Client(ua);
        };
        let os = os.map_or("", |(_, os)| os);
        let class = if ipad || tablet {
            Class::Tablet
        } else if iphone || mobile {
            Class::Mobile
        } else if os == "Android" {
            // Android browsers say `Mobile` on phones only.
            Class::Tablet
        } else {
            Class::Desktop
        };
        Device::Browser { family, os, class }
    }

    /// The text a session's `uad` fingerprint is the keyed hash of: equal for two user agents
    /// exactly when neither the browser family, the operating system nor the device class
    /// differs (for other clients: their text with every version number replaced by `#`).
    pub fn fingerprint_input(&self) -> String {
        match self {
            Device::Unnamed => "none".to_string(),
            Device::Browser { family, os, class } => {
                format!("browser {family}|{os}|{}", class.name())
            }
            Device::Client(text) => format!("client {}", without_versions(text)),
        }
    }

    /// A short label for the sessions page: "Firefox on Linux", "curl", "Unknown client".
    pub fn label(&self) -> String {
        match self {
            Device::Unnamed => "Unknown client".to_string(),
            Device::Browser { family, os: "", .. } => family.to_string(),
            Device::Browser { family, os, .. } => format!("{family} on {os}"),
            Device::Client(text) => {
                let product = text.split(['/', ' ']).next().unwrap_or("");
                let plain = product.len() <= 40
                    && product
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
                if plain && !product.is_empty() {
                    product.to_string()
                } else {
                    "Other client".to_string()
                }
            }
        }
    }
}

/// `text` with each run of digits, `.` and `_` that holds a digit replaced by `#`:
/// `curl/8.5.0` and `curl/8.10.1` are both `curl/#`.
fn without_versions(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.bytes().any(|b| b.is_ascii_digit()) {
            out.push('#');
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() || c == '.' || c == '_' {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

#[cfg(test)]
mod tests;
