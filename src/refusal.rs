//! Every answer the gateway gives instead of forwarding: one enum, one exhaustive mapping to a
//! status, a response and a metric label (no wildcard arm: a new refusal forces a decision),
//! in the way linkerd's `rescue` maps errors. Clients get a short generic answer; the detail
//! (with its typed source) goes to the log, never a secret.

use std::time::Duration;

use http::{HeaderValue, Response, StatusCode, header};

use crate::body::{self, Body};
use crate::cookies::{CookieError, Outgoing};
use crate::pages;
use crate::proxy::ProxyError;
use crate::sessions::Sessions;
use crate::web::path::PathError;

/// Why a request is answered by the gateway itself.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Two parties could read the request differently (smuggling, Host confusion): `400`, and
    /// the connection is closed after it.
    #[error("ambiguous request: {0}")]
    Ambiguous(&'static str),
    #[error("bad path: {0}")]
    Path(#[from] PathError),
    #[error("bad cookies: {0}")]
    Cookies(#[from] CookieError),
    #[error("credentials are not accepted in the URL")]
    UrlCredentials,
    /// Credentials in the URL of a `GET`/`HEAD`: `303` to the clean URL.
    #[error("credentials in the URL; redirected to the clean URL")]
    CleanUrl(String),
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// No usable session: `302` to the login page for navigations, else `401`.
    #[error("no valid session")]
    Unauthenticated {
        navigation: bool,
        return_to: String,
        /// A credential was sent (`WWW-Authenticate` says it was invalid).
        presented: bool,
        /// The client's gateway cookies are dead and are removed.
        clear: bool,
    },
    #[error("the session store is unavailable")]
    StoreUnavailable { navigation: bool },
    /// The route's policy does not let this user (or method) in (`crate::policy`): `403`, a
    /// page for navigations, JSON otherwise; neither names the rule.
    #[error("refused by the route's policy: {}", reason.as_str())]
    Forbidden {
        navigation: bool,
        reason: crate::policy::Denial,
    },
    /// The login is older than the route's `max_auth_age`: a navigation goes back through
    /// login (the session is kept), an API call gets `401` with the step-up challenge of
    /// RFC 9470.
    #[error("the login is older than the route's max_auth_age")]
    StepUp {
        navigation: bool,
        return_to: String,
        max_age: u64,
    },
    #[error("cross-site request refused: {0}")]
    Csrf(#[from] CsrfError),
    #[error("not found")]
    NotFound(Option<&'static str>),
    #[error("no such session")]
    NoSuchSession,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("request body too large")]
    BodyTooLarge,
    #[error("request body not received in time")]
    BodyTimeout,
    #[error("invalid credentials")]
    InvalidCredentials { json: bool, return_to: String },
    /// The password was right and the user has a second factor, but no code came with it.
    #[error("a second factor is required")]
    SecondFactorRequired,
    /// A wrong, replayed or used-up TOTP or recovery code.
    #[error("invalid second factor")]
    InvalidSecondFactor,
    /// `login.require_second_factor` and the user's grace to enrol one is over.
    #[error("second factor enrolment required")]
    SecondFactorEnrolmentRequired { json: bool },
    /// The request conflicts with the second factor's state (already enrolled, nothing to
    /// confirm); the word says which.
    #[error("second factor: {0}")]
    SecondFactorConflict(&'static str),
    /// An enrolment confirmed with a wrong code.
    #[error("invalid code")]
    InvalidCode,
    /// A passkey ceremony the relying party refused (signature, origin, challenge, user
    /// verification, counter, or a passkey not the user's); the word says which step.
    #[error("passkey refused: {0}")]
    PasskeyRefused(&'static str),
    /// A passkey ceremony past its time, used already, or from another address or session.
    #[error("passkey ceremony expired")]
    CeremonyExpired,
    #[error("too many failed sign-ins")]
    Throttled { json: bool, retry: Duration },
    #[error("invalid refresh token")]
    InvalidRefreshToken { clear: bool },
    #[error("the admin API is off")]
    AdminOff,
    #[error("admin token missing or wrong")]
    AdminUnauthorized,
    #[error(transparent)]
    Upstream(#[from] ProxyError),
    /// A sign-in through an identity provider that did not happen: a page saying why and
    /// what to do, with a link to start again — never an automatic redirect, so a failing
    /// provider cannot become a loop. `clear` removes the flow's cookie.
    #[error("sign-in failed: {title}")]
    SignInFailed {
        status: StatusCode,
        title: &'static str,
        message: String,
        again: String,
        clear: Option<HeaderValue>,
    },
    /// Over a rate limit (`crate::ratelimit`): `429` with `Retry-After`, `RateLimit-Policy`
    /// and `RateLimit`.
    #[error("rate limit exceeded ({})", .limited.scope.name())]
    RateLimited {
        navigation: bool,
        limited: crate::ratelimit::Limited,
    },
    /// A refusal after this request rotated the refresh token: its answer carries the new
    /// cookies, or the client would keep a rotated-out token and later look like a thief.
    #[error("{refusal}")]
    Rotated {
        refusal: Box<Refusal>,
        set_cookies: Outgoing,
    },
}

/// Why an unsafe request was not accepted as same-origin (see `pipeline::csrf`); the message
/// is the reason shown to the client (it names no input).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CsrfError {
    #[error("cross-site request")]
    CrossSite,
    #[error("cross-origin request")]
    CrossOrigin,
    #[error("cross-origin referer")]
    CrossOriginReferer,
    #[error("no same-origin evidence (Origin, Referer or Sec-Fetch-Site)")]
    NoEvidence,
    #[error("missing CSRF token")]
    MissingToken,
    #[error("CSRF token does not match this session")]
    TokenMismatch,
}

/// How a refusal is counted in `sessiongate_requests_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    Refused,
    Unauthenticated,
    Unavailable,
    UpstreamError,
}

impl Refusal {
    /// This refusal, carrying `set_cookies` (a committed rotation) when there are any.
    pub fn keeping(self, set_cookies: &Outgoing) -> Refusal {
        if set_cookies.is_empty() {
            return self;
        }
        Refusal::Rotated {
            refusal: Box::new(self),
            set_cookies: set_cookies.clone(),
        }
    }

    pub fn status(&self) -> StatusCode {
        use Refusal::*;
        match self {
            Rotated { refusal, .. } => refusal.status(),
            Ambiguous(_) | Path(_) | Cookies(_) | UrlCredentials | BadRequest(_) => {
                StatusCode::BAD_REQUEST
            }
            CleanUrl(_) => StatusCode::SEE_OTHER,
            Unauthenticated {
                navigation: true, ..
            } => StatusCode::FOUND,
            Unauthenticated {
                navigation: false, ..
            }
            | InvalidCredentials { .. }
            | SecondFactorRequired
            | InvalidSecondFactor
            | InvalidRefreshToken { .. }
            | AdminUnauthorized => StatusCode::UNAUTHORIZED,
            SecondFactorEnrolmentRequired { .. } => StatusCode::FORBIDDEN,
            SecondFactorConflict(_) => StatusCode::CONFLICT,
            InvalidCode => StatusCode::BAD_REQUEST,
            PasskeyRefused(_) => StatusCode::UNAUTHORIZED,
            CeremonyExpired => StatusCode::BAD_REQUEST,
            StoreUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Csrf(_) | Forbidden { .. } => StatusCode::FORBIDDEN,
            StepUp {
                navigation: true, ..
            } => StatusCode::FOUND,
            StepUp {
                navigation: false, ..
            } => StatusCode::UNAUTHORIZED,
            NotFound(_) | NoSuchSession | AdminOff => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Throttled { .. } | RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Upstream(e) => e.status(),
            SignInFailed { status, .. } => *status,
        }
    }

    /// A short, stable word for the access log's `reason` (it names no input).
    pub fn code(&self) -> &'static str {
        use Refusal::*;
        match self {
            Rotated { refusal, .. } => refusal.code(),
            Ambiguous(_) => "ambiguous_request",
            Path(_) => "bad_path",
            Cookies(_) => "bad_cookies",
            UrlCredentials => "url_credentials",
            CleanUrl(_) => "url_credentials_redirect",
            BadRequest(_) => "bad_request",
            Unauthenticated { .. } => "unauthenticated",
            StoreUnavailable { .. } => "store_unavailable",
            Forbidden { .. } => "forbidden",
            StepUp { .. } => "step_up",
            Csrf(CsrfError::MissingToken | CsrfError::TokenMismatch) => "csrf_token",
            Csrf(
                CsrfError::CrossSite
                | CsrfError::CrossOrigin
                | CsrfError::CrossOriginReferer
                | CsrfError::NoEvidence,
            ) => "csrf_origin",
            NotFound(_) => "not_found",
            NoSuchSession => "no_such_session",
            MethodNotAllowed => "method_not_allowed",
            UnsupportedMediaType => "unsupported_media_type",
            BodyTooLarge => "body_too_large",
            BodyTimeout => "body_timeout",
            InvalidCredentials { .. } => "invalid_credentials",
            SecondFactorRequired => "second_factor_required",
            InvalidSecondFactor => "invalid_second_factor",
            SecondFactorEnrolmentRequired { .. } => "second_factor_enrolment_required",
            SecondFactorConflict(_) => "second_factor_conflict",
            InvalidCode => "invalid_code",
            PasskeyRefused(_) => "passkey_refused",
            CeremonyExpired => "ceremony_expired",
            Throttled { .. } => "throttled",
            InvalidRefreshToken { .. } => "invalid_refresh_token",
            AdminOff => "admin_off",
            AdminUnauthorized => "admin_unauthorized",
            Upstream(e) => e.code(),
            SignInFailed { .. } => "sign_in_failed",
            RateLimited { .. } => "rate_limited",
        }
    }

    pub fn label(&self) -> Label {
        use Refusal::*;
        match self {
            Rotated { refusal, .. } => refusal.label(),
            Unauthenticated { .. } | StepUp { .. } => Label::Unauthenticated,
            StoreUnavailable { .. } => Label::Unavailable,
            Upstream(_) => Label::UpstreamError,
            SignInFailed { status, .. } if status.is_server_error() => Label::Unavailable,
            SignInFailed { .. } => Label::Refused,
            Ambiguous(_)
            | Path(_)
            | Cookies(_)
            | UrlCredentials
            | CleanUrl(_)
            | BadRequest(_)
            | Csrf(_)
            | Forbidden { .. }
            | NotFound(_)
            | NoSuchSession
            | MethodNotAllowed
            | UnsupportedMediaType
            | BodyTooLarge
            | BodyTimeout
            | InvalidCredentials { .. }
            | SecondFactorRequired
            | InvalidSecondFactor
            | SecondFactorEnrolmentRequired { .. }
            | SecondFactorConflict(_)
            | InvalidCode
            | PasskeyRefused(_)
            | CeremonyExpired
            | Throttled { .. }
            | InvalidRefreshToken { .. }
            | AdminOff
            | AdminUnauthorized
            | RateLimited { .. } => Label::Refused,
        }
    }

    /// The answers of a sign-in and its second factor.
    fn sign_in_response(self, status: StatusCode) -> Response<Body> {
        use Refusal::*;
        match self {
            InvalidCredentials { json: true, .. } => error(status, "invalid_credentials", None),
            InvalidCredentials {
                json: false,
                return_to,
            } => body::html(
                status,
                pages::login_page(&return_to, Some("Invalid username or password.")),
            ),
            SecondFactorRequired => error(status, "second_factor_required", None),
            InvalidSecondFactor => error(status, "invalid_second_factor", None),
            SecondFactorEnrolmentRequired { json: true } => error(
                status,
                "second_factor_enrolment_required",
                Some(ENROLMENT_OVERDUE),
            ),
            SecondFactorEnrolmentRequired { json: false } => body::html(
                status,
                pages::message_page("Two-factor authentication required", ENROLMENT_OVERDUE),
            ),
            SecondFactorConflict(word) => error(status, word, None),
            InvalidCode => error(status, "invalid_code", None),
            PasskeyRefused(word) => error(status, "passkey_refused", Some(word)),
            CeremonyExpired => error(
                status,
                "ceremony_expired",
                Some("This took too long or was used already. Please try again."),
            ),
            other => error(status, other.code(), None),
        }
    }

    /// The response. `sessions` builds the cookie-clearing `Set-Cookie`s where one is due.
    pub fn into_response(self, sessions: &Sessions) -> Response<Body> {
        let status = self.status();
        use Refusal::*;
        match self {
            Ambiguous(why) => {
                let mut r = error(status, "bad_request", Some(why));
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                r
            }
            Path(e) => error(status, "bad_request", Some(e.reason())),
            Cookies(e) => error(status, "bad_request", Some(e.reason())),
            UrlCredentials => error(
                status,
                "bad_request",
                Some("credentials are not accepted in the URL"),
            ),
            BadRequest(why) => error(status, "bad_request", Some(why)),
            CleanUrl(to) => body::redirect(status, &to),
            Unauthenticated {
                navigation,
                return_to,
                presented,
                clear,
            } => {
                let mut r = unauthenticated(navigation, &return_to, presented);
                if clear {
                    append(&mut r, sessions.clear_cookies());
                }
                r
            }
            StoreUnavailable { navigation } => unavailable(navigation),
            Forbidden { navigation, .. } => forbidden(navigation),
            StepUp {
                navigation,
                return_to,
                max_age,
            } => step_up(navigation, &return_to, max_age),
            Csrf(e) => error(status, "forbidden", Some(&e.to_string())),
            NotFound(why) => error(status, "not_found", why),
            NoSuchSession => error(status, "no_such_session", None),
            MethodNotAllowed => error(status, "method_not_allowed", None),
            UnsupportedMediaType => body::json(
                status,
                &serde_json::json!({"error": "unsupported_media_type", "accepted": ["application/x-www-form-urlencoded", "application/json"]}),
            ),
            BodyTooLarge => error(status, "body_too_large", None),
            BodyTimeout => error(status, "body_timeout", None),
            r @ (InvalidCredentials { .. }
            | SecondFactorRequired
            | InvalidSecondFactor
            | SecondFactorEnrolmentRequired { .. }
            | SecondFactorConflict(_)
            | InvalidCode
            | PasskeyRefused(_)
            | CeremonyExpired) => r.sign_in_response(status),
            Throttled { json, retry } => throttled(json, retry),
            RateLimited {
                navigation,
                limited,
            } => rate_limited(navigation, &limited),
            InvalidRefreshToken { clear } => {
                let mut r = error(status, "invalid_refresh_token", None);
                if clear {
                    append(&mut r, sessions.clear_cookies());
                }
                r
            }
            AdminOff => error(
                status,
                "not_found",
                Some("the admin API is off (admin.token_env)"),
            ),
            AdminUnauthorized => {
                let mut r = error(status, "unauthorized", None);
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"sessiongate-admin\""),
                );
                r
            }
            Upstream(e) => e.response(),
            SignInFailed {
                title,
                message,
                again,
                clear,
                ..
            } => {
                let mut r = body::html(status, pages::sign_in_failed(title, &message, &again));
                if let Some(c) = clear {
                    r.headers_mut().append(header::SET_COOKIE, c);
                }
                r
            }
            Rotated {
                refusal,
                set_cookies,
            } => {
                let mut r = refusal.into_response(sessions);
                append(&mut r, set_cookies);
                r
            }
        }
    }
}

/// What a user whose grace to enrol a second factor is over is told.
const ENROLMENT_OVERDUE: &str = "This account must sign in with two-factor authentication, and the time to set it up is over. Please contact the operator of this service to have it set up.";

/// The one JSON error body: `{"error": code, "reason"?: why}`.
pub fn error(status: StatusCode, code: &'static str, why: Option<&str>) -> Response<Body> {
    let v = match why {
        Some(why) => serde_json::json!({"error": code, "reason": why}),
        None => serde_json::json!({"error": code}),
    };
    body::json(status, &v)
}

/// Append `Set-Cookie` values to a response; a rotation they deliver goes with it.
pub fn append(resp: &mut Response<Body>, cookies: impl Into<Outgoing>) {
    let Outgoing { values, delivery } = cookies.into();
    for c in values {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    if let Some(d) = delivery {
        crate::delivery::attach(resp, d);
    }
}

fn unauthenticated(navigation: bool, return_to: &str, presented: bool) -> Response<Body> {
    if navigation {
        let enc: String = url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect();
        return body::redirect(StatusCode::FOUND, &format!("/.auth/login?return_to={enc}"));
    }
    let mut r = error(StatusCode::UNAUTHORIZED, "unauthenticated", None);
    let challenge = if presented {
        "Bearer realm=\"sessiongate\", error=\"invalid_token\""
    } else {
        "Bearer realm=\"sessiongate\""
    };
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    r
}

/// `403` from a route's policy: the user is signed in, and signing in again would not help.
fn forbidden(navigation: bool) -> Response<Body> {
    if navigation {
        return body::html(
            StatusCode::FORBIDDEN,
            pages::message_page(
                "Access denied",
                "You are signed in, but your account may not open this page. If you need it, ask whoever manages your access.",
            ),
        );
    }
    error(StatusCode::FORBIDDEN, "forbidden", None)
}

/// A login too old for the route: back through login (`reauth=1` says why on the page), or
/// RFC 9470's challenge for an API client.
fn step_up(navigation: bool, return_to: &str, max_age: u64) -> Response<Body> {
    if navigation {
        let enc: String = url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect();
        return body::redirect(
            StatusCode::FOUND,
            &format!("/.auth/login?return_to={enc}&reauth=1"),
        );
    }
    let mut r = error(StatusCode::UNAUTHORIZED, "reauthentication_required", None);
    let challenge = format!(
        "Bearer realm=\"sessiongate\", error=\"insufficient_user_authentication\", max_age={max_age}"
    );
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

/// `503` while the store cannot be reached: the user keeps their cookies and retries.
fn unavailable(navigation: bool) -> Response<Body> {
    let mut r = if navigation {
        body::html(
            StatusCode::SERVICE_UNAVAILABLE,
            pages::message_page(
                "Temporarily unavailable",
                "Sign-in is briefly unavailable. You are still signed in; please try again in a few seconds.",
            ),
        )
    } else {
        body::json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({"error": "session_store_unavailable", "retry_after": 5}),
        )
    };
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

fn throttled(json: bool, retry: Duration) -> Response<Body> {
    let secs = retry.as_secs().max(1);
    let mut r = if json {
        body::json(
            StatusCode::TOO_MANY_REQUESTS,
            &serde_json::json!({"error": "too_many_attempts", "retry_after": secs}),
        )
    } else {
        body::html(
            StatusCode::TOO_MANY_REQUESTS,
            pages::message_page(
                "Too many attempts",
                &format!("Too many failed sign-ins. Try again in {secs} seconds."),
            ),
        )
    };
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    r
}

/// `429` for a rate limit: HTML for navigations, `{"error":"rate_limited"}` otherwise, with
/// `Retry-After` (seconds, rounded up) and draft-ietf-httpapi-ratelimit-headers' structured
/// fields: `RateLimit-Policy: "session";q=100;w=900` (the quota and its window in seconds)
/// and `RateLimit: "session";r=0;t=12` (nothing left; seconds until one request is admitted).
fn rate_limited(navigation: bool, l: &crate::ratelimit::Limited) -> Response<Body> {
    let up = |d: Duration| d.as_micros().div_ceil(1_000_000).max(1);
    let secs = up(l.retry_after);
    let mut r = if navigation {
        body::html(
            StatusCode::TOO_MANY_REQUESTS,
            pages::message_page(
                "Too many requests",
                &format!("Too many requests in a short time. Try again in {secs} seconds."),
            ),
        )
    } else {
        body::json(
            StatusCode::TOO_MANY_REQUESTS,
            &serde_json::json!({"error": "rate_limited", "retry_after": secs}),
        )
    };
    let name = l.scope.name();
    let policy = format!(
        "\"{name}\";q={};w={}",
        l.limit.rate.count,
        up(l.limit.rate.per)
    );
    let h = r.headers_mut();
    h.insert(header::RETRY_AFTER, HeaderValue::from(secs as u64));
    for (n, v) in [
        ("ratelimit-policy", policy),
        ("ratelimit", format!("\"{name}\";r=0;t={secs}")),
    ] {
        if let Ok(v) = HeaderValue::try_from(v) {
            h.insert(http::HeaderName::from_static(n), v);
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn navigations_are_redirected_and_api_calls_get_401() {
        let nav = Refusal::Unauthenticated {
            navigation: true,
            return_to: "/a?b=1".into(),
            presented: false,
            clear: false,
        };
        assert_eq!(nav.status(), StatusCode::FOUND);
        assert_eq!(nav.label(), Label::Unauthenticated);
        let api = Refusal::Unauthenticated {
            navigation: false,
            return_to: "/".into(),
            presented: true,
            clear: false,
        };
        assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            Refusal::StoreUnavailable { navigation: false }.label(),
            Label::Unavailable
        );
    }
}
