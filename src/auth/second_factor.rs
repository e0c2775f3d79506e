//! The second factor (TOTP) on the gateway's own login: enrolment from the sessions page
//! (`POST /.auth/totp/enroll`, `POST /.auth/totp/confirm`), the check after a right password
//! ([`at_login`]), and the browser's second step (`POST /.auth/totp/verify`). The codes'
//! logic is `login::totp`'s; what is kept per user is the store's.
//!
//! Threats: a stolen password alone signs nobody in once a factor is on; a code replayed
//! (each time step once per user, across instances: `SessionStore::use_factor_step`); codes
//! guessed (wrong codes are failed logins in the throttle, per user and per address; a
//! missing code neither counts nor clears, so leaving it out resets nothing); a password
//! carried through the browser's second step (never: a sealed, single-use sign-in of five
//! minutes, bound to the client's address, carries the user instead); a secret moved from one
//! user's record to another's (the seal's purpose names the user); a leaked store (secrets
//! sealed, recovery codes hashed). Enrolment needs a session and passes the CSRF checks of
//! every unsafe `/.auth/` request (`auth::route`). An account enrolled already is refused
//! (`409`): changing the factor goes through the operator's reset (`admin`), so a stolen
//! session cannot swap it for the thief's.

use std::net::IpAddr;
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use super::{Answer, is_form, is_json, read_body, require_session, valid_return_to};
use crate::audit::Event;
use crate::body::{self, Body};
use crate::login::throttle::Attempt;
use crate::login::totp;
use crate::pages;
use crate::pipeline::RequestCtx;
use crate::refusal::{self, Refusal};
use crate::runtime::Runtime;
use crate::store::{FactorRecord, StoreError};
use crate::util::{now_unix, random_token};
use crate::web::headers::wants_html;
use crate::web::user_agent::UserAgent;

/// How long an enrolment waits for its first code (seconds).
pub const PENDING_TTL: u64 = 600;
/// How long a sign-in waits for its code in the browser (seconds).
const LOGIN_TTL: u64 = 300;

fn secret_purpose(user: &str) -> String {
    format!("totp secret {user}")
}
fn pending_purpose(user: &str) -> String {
    format!("totp pending {user}")
}
const LOGIN_PURPOSE: &str = "second factor sign-in";

/// The codes a sign-in brought (empty strings count as none: a form sends its empty fields).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Codes<'a> {
    pub totp: Option<&'a str>,
    pub recovery: Option<&'a str>,
}

impl<'a> Codes<'a> {
    pub fn new(totp: Option<&'a str>, recovery: Option<&'a str>) -> Self {
        let some = |s: Option<&'a str>| s.map(str::trim).filter(|s| !s.is_empty());
        Self {
            totp: some(totp),
            recovery: some(recovery),
        }
    }
}

/// What a sign-in needs after a right password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// In; `enrol_by`: the user has no factor, must enrol one, and may sign in without it
    /// until then (Unix seconds).
    Open { enrol_by: Option<u64> },
    /// The user has a factor and no code came.
    Ask,
    /// A wrong, replayed or used-up code.
    Wrong,
    /// A factor is required and the user's grace to enrol one is over.
    Overdue,
}

/// The second factor's verdict for `user`, whose password was right. Audits what it decides
/// about codes (never a code or a secret).
pub(crate) async fn at_login(
    rt: &Runtime,
    user: &str,
    codes: Codes<'_>,
    ip: IpAddr,
) -> Result<Verdict, StoreError> {
    let store = rt.sessions.store();
    let Some(rec) = store.factor(user).await? else {
        // Passkeys only: a code cannot stand in for one (the browser's second step asks
        // for the passkey, `auth::webauthn`).
        if !store.passkeys(user).await?.is_empty() {
            let v = if codes.totp.is_some() || codes.recovery.is_some() {
                Verdict::Wrong
            } else {
                Verdict::Ask
            };
            if v == Verdict::Wrong {
                rt.audit.emit(
                    Event::new("second_factor_failed")
                        .user(user)
                        .ip(&ip.to_string()),
                );
            }
            return Ok(v);
        }
        if !rt.cfg.login.require_second_factor {
            return Ok(Verdict::Open { enrol_by: None });
        }
        // The grace counts from the user's first sign-in while the requirement is on.
        let now = now_unix();
        let start = store.factor_grace_start(user, now).await?;
        let end = start.saturating_add(rt.cfg.login.second_factor_grace.as_secs());
        return Ok(if now < end {
            Verdict::Open {
                enrol_by: Some(end),
            }
        } else {
            Verdict::Overdue
        });
    };
    let v = check_codes(rt, user, &rec, codes).await?;
    match v {
        Verdict::Wrong => rt.audit.emit(
            Event::new("second_factor_failed")
                .user(user)
                .ip(&ip.to_string()),
        ),
        Verdict::Open { .. } if codes.totp.is_none() => rt.audit.emit(
            Event::new("recovery_code_used")
                .user(user)
                .ip(&ip.to_string()),
        ),
        _ => {}
    }
    Ok(v)
}

async fn check_codes(
    rt: &Runtime,
    user: &str,
    rec: &FactorRecord,
    codes: Codes<'_>,
) -> Result<Verdict, StoreError> {
    let store = rt.sessions.store();
    if let Some(code) = codes.totp {
        let Some(secret) = rt.sealer.open(&secret_purpose(user), &rec.secret_sealed) else {
            // A record sealed under a key no longer in the ring: the operator must reset it.
            tracing::warn!("second factor: the user's secret does not open (reset it)");
            return Ok(Verdict::Wrong);
        };
        return Ok(match totp::check(&secret, code, now_unix()) {
            Some(step) if store.use_factor_step(user, step).await? => {
                Verdict::Open { enrol_by: None }
            }
            _ => Verdict::Wrong,
        });
    }
    if let Some(code) = codes.recovery {
        if !totp::looks_like_recovery_code(code) {
            return Ok(Verdict::Wrong);
        }
        let used = store
            .use_recovery_code(user, &totp::recovery_hash(code))
            .await?;
        return Ok(if used {
            Verdict::Open { enrol_by: None }
        } else {
            Verdict::Wrong
        });
    }
    Ok(Verdict::Ask)
}

/// Ends the throttle's attempt as the verdict says: a wrong code is a failed login.
pub(crate) fn finish(attempt: Attempt<'_>, v: Verdict) {
    match v {
        Verdict::Open { .. } => attempt.succeeded(),
        Verdict::Ask | Verdict::Overdue => attempt.undecided(),
        Verdict::Wrong => attempt.failed(),
    }
}

/// A sign-in waiting for its second factor in the browser, sealed into the page.
#[derive(Serialize, Deserialize)]
pub(crate) struct Pending {
    pub user: String,
    ip: String,
    pub exp: u64,
    /// Makes it single use (`first_use`).
    nonce: String,
    return_to: String,
}

impl Pending {
    /// The sign-in `token` carries, while it is within its time and from the address it was
    /// made for (not yet used up: [`Pending::use_up`]), with where it goes (validated again).
    pub(crate) fn open(rt: &Runtime, token: &str, ip: IpAddr) -> Result<(Self, String), Refusal> {
        let p: Pending = rt
            .sealer
            .open(LOGIN_PURPOSE, token)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| expired("/"))?;
        let target = valid_return_to(rt, Some(&p.return_to));
        if p.exp <= now_unix() || p.ip != ip.to_string() {
            return Err(expired(&target));
        }
        Ok((p, target))
    }

    /// Use the sign-in up (once, across instances): `false` when it was used already.
    pub(crate) async fn use_up(&self, rt: &Runtime) -> Result<bool, StoreError> {
        rt.sessions
            .store()
            .first_use(&format!("2fa-login:{}", self.nonce), self.exp)
            .await
    }
}

fn seal_pending(rt: &Runtime, user: &str, ip: IpAddr, exp: u64, return_to: &str) -> String {
    let p = Pending {
        user: user.to_string(),
        ip: ip.to_string(),
        exp,
        nonce: random_token(18),
        return_to: return_to.to_string(),
    };
    serde_json::to_vec(&p)
        .ok()
        .and_then(|b| rt.sealer.seal(LOGIN_PURPOSE, &b))
        .unwrap_or_default()
}

/// Which second factors `user` has; a store that does not answer shows the code form (the
/// step that follows says what is wrong).
pub(crate) async fn factors_of(rt: &Runtime, user: &str) -> pages::Factors {
    let store = rt.sessions.store();
    let (totp, keys) = tokio::join!(store.factor(user), store.passkeys(user));
    pages::Factors {
        totp: totp.map_or(true, |t| t.is_some()),
        passkey: keys.is_ok_and(|k| !k.is_empty()),
    }
}

/// The page that asks a browser for the second factor of `user`, whose password was right.
pub(crate) async fn ask_page(
    rt: &Runtime,
    user: &str,
    ip: IpAddr,
    return_to: &str,
) -> Response<Body> {
    let token = seal_pending(rt, user, ip, now_unix() + LOGIN_TTL, return_to);
    let factors = factors_of(rt, user).await;
    let mut r = body::html(
        StatusCode::OK,
        pages::second_factor_page(&token, None, factors),
    );
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    r
}

#[derive(Deserialize)]
struct VerifyForm {
    token: String,
    #[serde(default)]
    totp: Option<String>,
    #[serde(default)]
    recovery_code: Option<String>,
}

fn expired(return_to: &str) -> Refusal {
    let enc: String = url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect();
    Refusal::SignInFailed {
        status: StatusCode::BAD_REQUEST,
        title: "Sign-in expired",
        message: "This sign-in took too long or was already used. Please sign in again.".into(),
        again: format!("/.auth/login?return_to={enc}"),
        clear: None,
    }
}

/// `POST /.auth/totp/verify`: the browser's second step, a form with the sealed sign-in and
/// a code.
pub(crate) async fn verify(
    rt: &Arc<Runtime>,
    req: Request<Incoming>,
    ctx: &RequestCtx,
    ua: &UserAgent<'_>,
) -> Answer {
    if !is_form(req.headers()) {
        return Err(Refusal::UnsupportedMediaType);
    }
    let raw = read_body(req).await?;
    let form: VerifyForm = serde_urlencoded::from_bytes(&raw)
        .map_err(|_| Refusal::BadRequest("expected token and a code"))?;
    let ip = ctx.client_ip;
    let (p, target) = Pending::open(rt, &form.token, ip)?;
    let unavailable = |_| Refusal::StoreUnavailable { navigation: true };
    if !p.use_up(rt).await.map_err(unavailable)? {
        return Err(expired(&target));
    }
    let user = rt.users.active(&p.user).ok_or_else(|| expired(&target))?;
    let attempt = rt.throttle.begin(&user.name, ip).map_err(|retry| {
        rt.audit.emit(
            Event::new("login_throttled")
                .user(&user.name)
                .ip(&ip.to_string()),
        );
        Refusal::Throttled { json: false, retry }
    })?;
    let codes = Codes::new(form.totp.as_deref(), form.recovery_code.as_deref());
    let v = at_login(rt, &user.name, codes, ip)
        .await
        .map_err(unavailable)?;
    finish(attempt, v);
    let factors = factors_of(rt, &user.name).await;
    let again = |error: Option<&str>, status| {
        let token = seal_pending(rt, &user.name, ip, p.exp, &target);
        body::html(status, pages::second_factor_page(&token, error, factors))
    };
    match v {
        Verdict::Open { .. } => {
            let issued = super::start_session(rt, ctx, ua, &user, false).await?;
            let mut r = body::redirect(StatusCode::SEE_OTHER, &target);
            refusal::append(&mut r, rt.sessions.set_cookies(&issued));
            Ok(r)
        }
        Verdict::Ask => Ok(again(Some("Enter a code."), StatusCode::OK)),
        Verdict::Wrong => Ok(again(
            Some("That code is not right, or was used already."),
            StatusCode::UNAUTHORIZED,
        )),
        // Not reached for a user with a factor; refused all the same.
        Verdict::Overdue => Err(Refusal::SecondFactorEnrolmentRequired { json: false }),
    }
}

/// The signed-in user who may manage a second factor here: one of the users file, signed in
/// with it (not through an identity provider, whose user might share a name).
pub(crate) async fn own_user(
    rt: &Runtime,
    ctx: &RequestCtx,
    ua: &UserAgent<'_>,
) -> Result<(Arc<crate::sessions::Identity>, crate::cookies::Outgoing), Refusal> {
    let (id, set) = require_session(rt, ctx, ua).await?;
    let unavailable = |_| Refusal::StoreUnavailable { navigation: false }.keeping(&set);
    let rec = rt
        .sessions
        .store()
        .get(&id.sub, &id.sid)
        .await
        .map_err(unavailable)?;
    let local = rec.is_some_and(|r| r.idp.is_none());
    if !local || rt.users.active(&id.sub).is_none() || rt.cfg.login.users_file.is_none() {
        return Err(Refusal::NotFound(Some(
            "two-factor authentication is for accounts of the gateway's users file",
        ))
        .keeping(&set));
    }
    Ok((id, set))
}

/// The QR code of `uri` as an SVG element (no XML declaration: it goes inside the page).
fn qr_svg(uri: &str) -> String {
    use qrcode::render::svg;
    let Ok(code) = qrcode::QrCode::new(uri.as_bytes()) else {
        return String::new();
    };
    let s = code
        .render::<svg::Color<'_>>()
        .min_dimensions(224, 224)
        .quiet_zone(true)
        .build();
    match s.find("<svg") {
        Some(i) => s[i..].to_string(),
        None => String::new(),
    }
}

/// `POST /.auth/totp/enroll` (a session): a new secret, pending until confirmed.
pub(crate) async fn enroll<B>(
    rt: &Arc<Runtime>,
    req: &Request<B>,
    ctx: &RequestCtx,
    ua: &UserAgent<'_>,
) -> Answer {
    let html = wants_html(req.headers());
    let (id, set) = own_user(rt, ctx, ua).await?;
    let user = id.sub.clone();
    let unavailable = |_| Refusal::StoreUnavailable { navigation: html }.keeping(&set);
    let store = rt.sessions.store();
    if store.factor(&user).await.map_err(unavailable)?.is_some() {
        return Err(Refusal::SecondFactorConflict("second_factor_already_enrolled").keeping(&set));
    }
    let secret = totp::new_secret().ok_or(Refusal::StoreUnavailable { navigation: html })?;
    let sealed = rt
        .sealer
        .seal(&pending_purpose(&user), &secret)
        .ok_or(Refusal::StoreUnavailable { navigation: html })?;
    store
        .put_pending_factor(&user, &sealed, now_unix() + PENDING_TTL)
        .await
        .map_err(unavailable)?;
    let mut r = enrol_answer(rt, &user, &secret, html, None, StatusCode::OK);
    refusal::append(&mut r, set);
    Ok(r)
}

fn enrol_answer(
    rt: &Runtime,
    user: &str,
    secret: &[u8],
    html: bool,
    error: Option<&str>,
    status: StatusCode,
) -> Response<Body> {
    let uri = totp::otpauth_uri(secret, &rt.cfg.ui.product_name, user).unwrap_or_default();
    let key = totp::base32(secret);
    let mut r = if html {
        body::html(status, pages::enrol_page(&qr_svg(&uri), &key, error))
    } else {
        body::json(
            status,
            &serde_json::json!({"secret": key, "otpauth_uri": uri}),
        )
    };
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    r
}

#[derive(Deserialize)]
struct ConfirmBody {
    code: String,
}

/// `POST /.auth/totp/confirm {"code"}` (a session): the pending secret becomes the user's
/// factor, with new recovery codes shown once.
pub(crate) async fn confirm(
    rt: &Arc<Runtime>,
    req: Request<Incoming>,
    ctx: &RequestCtx,
    ua: &UserAgent<'_>,
) -> Answer {
    let json = is_json(req.headers());
    if !json && !is_form(req.headers()) {
        return Err(Refusal::UnsupportedMediaType);
    }
    let html = !json && wants_html(req.headers());
    let raw = read_body(req).await?;
    let body: Option<ConfirmBody> = if json {
        serde_json::from_slice(&raw).ok()
    } else {
        serde_urlencoded::from_bytes(&raw).ok()
    };
    let code = body
        .ok_or(Refusal::BadRequest("expected {\"code\": ...}"))?
        .code;
    let (id, set) = own_user(rt, ctx, ua).await?;
    let user = id.sub.clone();
    let unavailable = |_| Refusal::StoreUnavailable { navigation: html }.keeping(&set);
    let store = rt.sessions.store();
    let secret = store
        .pending_factor(&user)
        .await
        .map_err(unavailable)?
        .and_then(|s| rt.sealer.open(&pending_purpose(&user), &s))
        .ok_or_else(|| Refusal::SecondFactorConflict("no_pending_enrolment").keeping(&set))?;
    let Some(step) = totp::check(&secret, &code, now_unix()) else {
        if html {
            let mut r = enrol_answer(
                rt,
                &user,
                &secret,
                true,
                Some("That code is not right. Check the time on your device and try again."),
                StatusCode::BAD_REQUEST,
            );
            refusal::append(&mut r, set);
            return Ok(r);
        }
        return Err(Refusal::InvalidCode.keeping(&set));
    };
    let codes = totp::recovery_codes().ok_or(Refusal::StoreUnavailable { navigation: html })?;
    let hashes: Vec<String> = codes.iter().map(|c| totp::recovery_hash(c)).collect();
    let rec = FactorRecord {
        secret_sealed: rt
            .sealer
            .seal(&secret_purpose(&user), &secret)
            .ok_or(Refusal::StoreUnavailable { navigation: html })?,
        enrolled_at: now_unix(),
    };
    store
        .set_factor(&user, &rec, step, &hashes)
        .await
        .map_err(unavailable)?;
    rt.audit.emit(
        Event::new("second_factor_enrolled")
            .user(&user)
            .ip(&ctx.client_ip.to_string()),
    );
    let mut r = if html {
        body::html(StatusCode::OK, pages::recovery_codes_page(&codes))
    } else {
        body::json(
            StatusCode::OK,
            &serde_json::json!({ "recovery_codes": codes }),
        )
    };
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    refusal::append(&mut r, set);
    Ok(r)
}

/// The sessions page's view of the user's factor: `None` when there is none to manage here,
/// `Some(None)` when off, `Some(Some(recovery codes left))` when on.
pub(crate) async fn state(rt: &Runtime, user: &str) -> Option<Option<usize>> {
    if rt.cfg.login.users_file.is_none() || rt.users.active(user).is_none() {
        return None;
    }
    let store = rt.sessions.store();
    match store.factor(user).await {
        Ok(Some(_)) => Some(Some(store.recovery_codes_left(user).await.unwrap_or(0))),
        Ok(None) => Some(None),
        // The page still lists the sessions; the section waits for the store.
        Err(_) => None,
    }
}
