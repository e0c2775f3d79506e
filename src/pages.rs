//! The gateway's HTML pages: small, accessible, self-contained (no scripts, no external
//! assets), served under a strict CSP by `body::html`.

/// Escape text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d1f23}\
main{max-width:40rem;margin:10vh auto;background:#fff;padding:2rem;border-radius:8px;box-shadow:0 1px 4px #0002}\
h1{font-size:1.4rem;margin-top:0}label{display:block;margin-top:1rem;font-weight:600}\
input{width:100%;box-sizing:border-box;padding:.6rem;margin-top:.3rem;border:1px solid #888;border-radius:4px;font-size:1rem}\
input:focus{outline:3px solid #2563eb;outline-offset:1px}\
button{margin-top:1.5rem;width:100%;padding:.7rem;border:0;border-radius:4px;background:#1d4ed8;color:#fff;font-size:1rem;cursor:pointer}\
button:focus{outline:3px solid #1e3a8a;outline-offset:2px}\
.error{background:#fde8e8;color:#8a1c1c;padding:.6rem;border-radius:4px}\
table{border-collapse:collapse;width:100%;font-size:.9rem}th,td{text-align:left;padding:.4rem;border-bottom:1px solid #ddd}\
td button{margin:0;padding:.3rem .6rem;width:auto}\
.ua{display:block;color:#555;font-size:.8rem;overflow-wrap:anywhere}\
.product{font-weight:700;color:#1d4ed8;margin-bottom:1rem}\
.qr svg{width:14rem;height:14rem;display:block;margin:1rem auto}\
code{font-size:1.05rem;overflow-wrap:anywhere}ul.codes{columns:2;font-family:monospace;font-size:1.05rem}\
.visually-hidden{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}";

/// `ui.product_name`, set by every runtime that is built (`Runtime::build`, a reload).
static PRODUCT: std::sync::LazyLock<arc_swap::ArcSwap<String>> =
    std::sync::LazyLock::new(|| arc_swap::ArcSwap::from_pointee("sessiongate".to_string()));

/// The product name every page shows from now on.
pub fn set_product_name(name: &str) {
    PRODUCT.store(std::sync::Arc::new(name.to_string()));
}

fn page(title: &str, body: &str) -> String {
    let product = PRODUCT.load();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<meta name=\"referrer\" content=\"same-origin\"><title>{t} · {p}</title><style>{STYLE}</style></head>\
<body><main><header class=\"product\">{p}</header>{body}</main></body></html>",
        t = escape(title),
        p = escape(&product)
    )
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
    let err = error.map_or_else(String::new, |e| {
        format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e))
    });
    let note = notice.map_or_else(String::new, |n| format!("<p>{}</p>", escape(n)));
    let enc: String = url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect();
    // A step-up asks the provider to authenticate again, too.
    let again = if notice == Some(REAUTH_NOTICE) {
        "&amp;reauth=1"
    } else {
        ""
    };
    let buttons: String = providers
        .iter()
        .map(|(name, display)| {
            let n: String = url::form_urlencoded::byte_serialize(name.as_bytes()).collect();
            format!(
                "<p><a class=\"button\" href=\"/.auth/oidc/start?provider={}&amp;return_to={}{again}\">Sign in with {}</a></p>",
                escape(&n),
                escape(&enc),
                escape(display)
            )
        })
        .collect();
    let form = if form {
        format!(
            "<form method=\"post\" action=\"/.auth/login\">\
<input type=\"hidden\" name=\"return_to\" value=\"{rt}\">\
<label for=\"username\">Username</label>\
<input id=\"username\" name=\"username\" autocomplete=\"username\" autocapitalize=\"none\" spellcheck=\"false\" required autofocus>\
<label for=\"password\">Password</label>\
<input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
<button type=\"submit\">Sign in</button></form>",
            rt = escape(return_to)
        )
    } else {
        String::new()
    };
    page(
        "Sign in",
        &format!("<h1>Sign in</h1>{err}{note}{buttons}{form}"),
    )
}

/// A sign-in that failed: what happened, and a link to start again (never an automatic
/// redirect: a failing provider must not become a loop).
pub fn sign_in_failed(title: &str, message: &str, again: &str) -> String {
    page(
        title,
        &format!(
            "<h1>{}</h1><p>{}</p><p><a href=\"{}\">Start again</a></p>",
            escape(title),
            escape(message),
            escape(again)
        ),
    )
}

/// The second step of a sign-in: the code from the authenticator app, or a recovery code.
/// `token` is the sealed, single-use sign-in waiting for it.
pub fn second_factor_page(token: &str, error: Option<&str>) -> String {
    let err = error.map_or_else(String::new, |e| {
        format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e))
    });
    page(
        "Two-factor authentication",
        &format!(
            "<h1>Two-factor authentication</h1>{err}\
<form method=\"post\" action=\"/.auth/totp/verify\">\
<input type=\"hidden\" name=\"token\" value=\"{t}\">\
<label for=\"totp\">Code from your authenticator app</label>\
<input id=\"totp\" name=\"totp\" inputmode=\"numeric\" autocomplete=\"one-time-code\" pattern=\"[0-9 ]*\" autofocus>\
<label for=\"recovery_code\">Or a recovery code</label>\
<input id=\"recovery_code\" name=\"recovery_code\" autocomplete=\"off\" autocapitalize=\"characters\" spellcheck=\"false\">\
<button type=\"submit\">Continue</button></form>",
            t = escape(token)
        ),
    )
}

/// Enrolment: the QR code (inline SVG made by the gateway), the secret to type instead, and
/// the form that confirms with a first code.
pub fn enrol_page(qr_svg: &str, secret: &str, error: Option<&str>) -> String {
    let err = error.map_or_else(String::new, |e| {
        format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e))
    });
    page(
        "Set up two-factor authentication",
        &format!(
            "<h1>Set up two-factor authentication</h1>{err}\
<p>Scan this code with your authenticator app, or type the key below into it.</p>\
<div class=\"qr\" role=\"img\" aria-label=\"QR code of the key\">{qr_svg}</div>\
<p>Key: <code>{s}</code></p><p>This key is shown only now.</p>\
<form method=\"post\" action=\"/.auth/totp/confirm\">\
<label for=\"code\">Code from the app</label>\
<input id=\"code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" required autofocus>\
<button type=\"submit\">Turn on</button></form>",
            s = escape(secret)
        ),
    )
}

/// The recovery codes, shown once after an enrolment.
pub fn recovery_codes_page(codes: &[String]) -> String {
    let items: String = codes
        .iter()
        .map(|c| format!("<li>{}</li>", escape(c)))
        .collect();
    page(
        "Recovery codes",
        &format!(
            "<h1>Two-factor authentication is on</h1>\
<p>Keep these recovery codes somewhere safe. Each one signs you in once if you lose your \
authenticator app. They are shown only now.</p><ul class=\"codes\">{items}</ul>\
<p><a href=\"/.auth/sessions\">Back to your sessions</a></p>"
        ),
    )
}

/// The sessions page's two-factor section: `None` when the account has none to manage
/// (signed in through a provider), else whether it is on and how many recovery codes are left.
pub fn second_factor_section(state: Option<Option<usize>>) -> String {
    let body = match state {
        None => return String::new(),
        Some(Some(left)) => format!(
            "<p>On. {left} recovery code{s} left. If you lose your authenticator app and your \
codes, the operator can reset it.</p>",
            s = if left == 1 { "" } else { "s" }
        ),
        Some(None) => "<p>Off. Protect your account with a code from an authenticator app.</p>\
<form method=\"post\" action=\"/.auth/totp/enroll\"><button type=\"submit\">Set up two-factor authentication</button></form>"
            .to_string(),
    };
    format!("<h2 id=\"second-factor\">Two-factor authentication</h2>{body}")
}

/// The sessions list; `rows` are escaped table rows, `extra` a section made here.
pub fn sessions_page(rows: &str, extra: &str) -> String {
    page(
        "Your sessions",
        &format!(
            "<h1>Your sessions</h1><p>Devices signed in to your account. End any you do not recognise.</p>\
<table><caption class=\"visually-hidden\">Active sessions</caption><thead><tr><th scope=\"col\">Device</th><th scope=\"col\">IP</th>\
<th scope=\"col\">Signed in</th><th scope=\"col\">Last authenticated</th><th scope=\"col\">Last active</th><th scope=\"col\"><span class=\"visually-hidden\">Action</span></th></tr></thead>\
<tbody>{rows}</tbody></table>\
<form method=\"post\" action=\"/.auth/logout-all\"><button type=\"submit\">Sign out everywhere</button></form>{extra}"
        ),
    )
}

/// A page with a heading and one message.
pub fn message_page(title: &str, message: &str) -> String {
    page(
        title,
        &format!("<h1>{}</h1><p>{}</p>", escape(title), escape(message)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_page_escapes_return_to() {
        let p = login_page("/x\"><script>", None);
        assert!(!p.contains("<script>"));
        assert!(p.contains("&quot;&gt;&lt;script&gt;"));
        assert!(p.contains("action=\"/.auth/login\""));
    }
}
