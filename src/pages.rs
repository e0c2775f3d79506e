//! The gateway's HTML pages: small, accessible, self-contained (no external assets; one
//! inline script, for passkeys, allowed by its hash alone), served under a strict CSP by
//! `body::html`. Templated with askama (`templates/`,
//! compiled in): every value is HTML-escaped by construction unless a template says `|safe`,
//! which only the QR code's SVG (the gateway's own drawing) does. `escape` stays for the two
//! small pages outside templates (`dev`'s whoami, the OpenID callback's hop).

use askama::Template;

/// Escape text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    // Writing to a String cannot fail.
    let _ = write_escaped(&mut out, s);
    out
}

fn write_escaped(dest: &mut impl std::fmt::Write, s: &str) -> std::fmt::Result {
    let mut last = 0;
    for (i, c) in s.char_indices() {
        let entity = match c {
            '&' => "&amp;",
            '<' => "&lt;",
            '>' => "&gt;",
            '"' => "&quot;",
            '\'' => "&#39;",
            _ => continue,
        };
        dest.write_str(&s[last..i])?;
        dest.write_str(entity)?;
        last = i + 1;
    }
    dest.write_str(&s[last..])
}

/// The templates' escaper (`askama.toml`): the same entities as [`escape`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Html;

impl askama::filters::Escaper for Html {
    fn write_escaped_str<W: std::fmt::Write>(&self, mut dest: W, s: &str) -> std::fmt::Result {
        write_escaped(&mut dest, s)
    }
}

/// `ui.product_name`, set by every runtime that is built (`Runtime::build`, a reload).
static PRODUCT: std::sync::LazyLock<arc_swap::ArcSwap<String>> =
    std::sync::LazyLock::new(|| arc_swap::ArcSwap::from_pointee("sessiongate".to_string()));

/// The product name every page shows from now on.
pub fn set_product_name(name: &str) {
    PRODUCT.store(std::sync::Arc::new(name.to_string()));
}

fn product() -> String {
    PRODUCT.load().as_str().to_string()
}

/// The passkey script (`templates/webauthn.js`), inline in the pages that offer passkeys.
pub const SCRIPT: &str = include_str!("../templates/webauthn.js");

/// The CSP of every page of the gateway's: nothing from anywhere but the passkey script (by
/// its SHA-256) and requests to the gateway itself (its JSON endpoints).
pub fn csp() -> &'static http::HeaderValue {
    static CSP: std::sync::LazyLock<http::HeaderValue> = std::sync::LazyLock::new(|| {
        use base64::Engine;
        use sha2::Digest;
        let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(SCRIPT));
        let v = format!(
            "default-src 'none'; script-src 'sha256-{hash}'; connect-src 'self'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        );
        http::HeaderValue::from_str(&v)
            .unwrap_or(http::HeaderValue::from_static("default-src 'none'"))
    });
    &CSP
}

/// A page, rendered; a template that cannot render (it only writes strings) gives the short
/// message page's text rather than a panic.
fn render(t: &impl Template) -> String {
    t.render().unwrap_or_else(|e| {
        tracing::error!(error = %e, "a page did not render");
        "<!doctype html><title>Error</title><p>Something went wrong.</p>".to_string()
    })
}

/// A provider's button on the login page.
struct Button {
    href: String,
    display: String,
}

#[derive(Template)]
#[template(path = "login.html")]
struct Login<'a> {
    product: String,
    return_to: &'a str,
    error: Option<&'a str>,
    notice: Option<&'a str>,
    buttons: Vec<Button>,
    form: bool,
    script: &'static str,
}

#[derive(Template)]
#[template(path = "message.html")]
struct Message<'a> {
    product: String,
    title: &'a str,
    message: &'a str,
    again: Option<&'a str>,
}

/// One passkey on the sessions page; `id` is its credential id (base64url).
pub struct PasskeyRow {
    pub id: String,
    pub name: String,
    pub created: String,
    pub last_used: String,
}

/// One row of the sessions page; `handle` is `None` for the session asking.
pub struct SessionRow {
    pub device: String,
    pub user_agent: String,
    pub ip: String,
    pub created: String,
    pub auth_time: String,
    pub last_seen: String,
    pub handle: Option<String>,
}

#[derive(Template)]
#[template(path = "sessions.html")]
struct SessionsPage<'a> {
    product: String,
    rows: &'a [SessionRow],
    factor: Option<Option<usize>>,
    passkeys: Option<&'a [PasskeyRow]>,
    script: &'static str,
}

#[derive(Template)]
#[template(path = "second_factor.html")]
struct SecondFactor<'a> {
    product: String,
    token: &'a str,
    error: Option<&'a str>,
    totp: bool,
    passkey: bool,
    script: &'static str,
}

#[derive(Template)]
#[template(path = "enrol.html")]
struct Enrol<'a> {
    product: String,
    qr_svg: &'a str,
    secret: &'a str,
    error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "recovery_codes.html")]
struct RecoveryCodes<'a> {
    product: String,
    codes: &'a [String],
}

/// The login page; `return_to` must already be validated.
pub fn login_page(return_to: &str, error: Option<&str>) -> String {
    login_choices(return_to, error, None, &[], true)
}

/// What the login page says to a user sent back by a route's `max_auth_age` (a step-up).
pub const REAUTH_NOTICE: &str = "This page needs a recent sign-in. Please sign in again to continue; you stay signed in elsewhere.";

/// The login page; `reauth`: the user was sent back to sign in again (a step-up).
pub fn login_page_for(return_to: &str, error: Option<&str>, reauth: bool) -> String {
    login_choices(return_to, error, reauth.then_some(REAUTH_NOTICE), &[], true)
}

/// The login page with a button per identity provider (`(name, display name)`), and the
/// users-file form when `form`; `notice` is a non-error line (signed out).
pub fn login_choices(
    return_to: &str,
    error: Option<&str>,
    notice: Option<&str>,
    providers: &[(&str, &str)],
    form: bool,
) -> String {
    let enc: String = url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect();
    // A step-up asks the provider to authenticate again, too.
    let again = if notice == Some(REAUTH_NOTICE) {
        "&reauth=1"
    } else {
        ""
    };
    let buttons = providers
        .iter()
        .map(|(name, display)| {
            let n: String = url::form_urlencoded::byte_serialize(name.as_bytes()).collect();
            Button {
                href: format!("/.auth/oidc/start?provider={n}&return_to={enc}{again}"),
                display: (*display).to_string(),
            }
        })
        .collect();
    render(&Login {
        product: product(),
        return_to,
        error,
        notice,
        buttons,
        form,
        script: SCRIPT,
    })
}

/// A sign-in that failed: what happened, and a link to start again (never an automatic
/// redirect: a failing provider must not become a loop).
pub fn sign_in_failed(title: &str, message: &str, again: &str) -> String {
    render(&Message {
        product: product(),
        title,
        message,
        again: Some(again),
    })
}

/// The sessions list, the two-factor section (`None` when the account has none to manage
/// here: signed in through a provider; else whether it is on and how many recovery codes are
/// left), and the passkeys section (`None` likewise).
pub fn sessions_page(
    rows: &[SessionRow],
    factor: Option<Option<usize>>,
    passkeys: Option<&[PasskeyRow]>,
) -> String {
    render(&SessionsPage {
        product: product(),
        rows,
        factor,
        passkeys,
        script: SCRIPT,
    })
}

/// A page with a heading and one message.
pub fn message_page(title: &str, message: &str) -> String {
    render(&Message {
        product: product(),
        title,
        message,
        again: None,
    })
}

/// Which second factors a user has (what their second step offers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Factors {
    pub totp: bool,
    pub passkey: bool,
}

/// The second step of a sign-in: the code from the authenticator app or a recovery code,
/// and/or a passkey. `token` is the sealed, single-use sign-in waiting for it.
pub fn second_factor_page(token: &str, error: Option<&str>, factors: Factors) -> String {
    render(&SecondFactor {
        product: product(),
        token,
        error,
        totp: factors.totp,
        passkey: factors.passkey,
        script: SCRIPT,
    })
}

/// Enrolment: the QR code (inline SVG drawn by the gateway), the secret to type instead, and
/// the form that confirms with a first code.
pub fn enrol_page(qr_svg: &str, secret: &str, error: Option<&str>) -> String {
    render(&Enrol {
        product: product(),
        qr_svg,
        secret,
        error,
    })
}

/// The recovery codes, shown once after an enrolment.
pub fn recovery_codes_page(codes: &[String]) -> String {
    render(&RecoveryCodes {
        product: product(),
        codes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_page_escapes_return_to() {
        let p = login_page("/x\"><script>", None);
        assert!(!p.contains("/x\"><script>"));
        assert!(p.contains("&quot;&gt;&lt;script&gt;"), "{p}");
        assert!(p.contains("action=\"/.auth/login\""));
    }

    #[test]
    fn every_page_escapes_what_it_shows_and_names_the_product() {
        let x = "<b>\"x'&";
        let shown = "&lt;b&gt;&quot;x&#39;&amp;";
        let row = SessionRow {
            device: x.into(),
            user_agent: x.into(),
            ip: x.into(),
            created: x.into(),
            auth_time: x.into(),
            last_seen: x.into(),
            handle: Some(x.into()),
        };
        let key = PasskeyRow {
            id: x.into(),
            name: x.into(),
            created: x.into(),
            last_used: x.into(),
        };
        let both = Factors {
            totp: true,
            passkey: true,
        };
        for p in [
            login_choices(x, Some(x), Some(x), &[(x, x)], true),
            sign_in_failed(x, x, x),
            message_page(x, x),
            sessions_page(&[row], Some(Some(2)), Some(&[key])),
            second_factor_page(x, Some(x), both),
            enrol_page("<svg></svg>", x, Some(x)),
            recovery_codes_page(&[x.to_string()]),
        ] {
            assert!(!p.contains(x), "{p}");
            assert!(p.contains(shown), "{p}");
            assert!(p.contains("</header>") && p.contains("<title>"), "{p}");
            // The one script is the passkey one, whose hash the CSP names.
            assert_eq!(
                p.matches("<script").count(),
                p.matches(SCRIPT).count(),
                "{p}"
            );
        }
        assert!(csp().to_str().unwrap().contains("script-src 'sha256-"));
    }
}
