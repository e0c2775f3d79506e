//! Passkeys and security keys (WebAuthn) under `/.auth/webauthn/`, for the users of the users
//! file: registration from the sessions page, sign-in without a password (discoverable
//! credentials), the second step after a right password, and the list a user manages
//! (name, added, last used; removable). JSON endpoints, driven by the pages' script
//! (`templates/webauthn.js`); the ceremonies are `webauthn-rs`' (`login::passkeys`).
//!
//! | endpoint | needs | answers |
//! |---|---|---|
//! | `POST register/start {"name"}` | a session | `{"ceremony", "publicKey"}` |
//! | `POST register/finish {"ceremony", "credential"}` | the same session | `201 {"id", "name"}` |
//! | `POST login/start` | — | `{"ceremony", "publicKey"}` |
//! | `POST login/finish {"ceremony", "credential", "return_to"}` | — | `{"redirect"}` + cookies |
//! | `POST verify/start {"token"}` | the second step's sign-in | `{"ceremony", "publicKey"}` |
//! | `POST verify/finish {"token", "ceremony", "credential"}` | the same | `{"redirect"}` + cookies |
//! | `GET credentials` | a session | `{"passkeys": [{"id", "name", "created", "last_used"}]}` |
//! | `DELETE credentials/{id}`, `POST credentials/{id}/revoke` | a session | `204`, `303` |
//!
//! Threats: a ceremony's state (its challenge) travels sealed in the client's next request
//! (`seal`: encrypted and authenticated, its purpose naming the step), expires after five
//! minutes, is bound to the session (registration) or the client's address (sign-ins), and is
//! used once across instances (`SessionStore::first_use`), so a captured answer cannot be
//! replayed; the origin, RP ID, challenge, signature, user verification and the counter are
//! checked by `webauthn-rs` (a counter that goes backwards refuses the passkey: a clone); a
//! failed sign-in counts in the login throttle like a wrong password; a passkey of another
//! user, or one removed meanwhile, is refused; registering needs a session and passes the CSRF
//! checks of every unsafe `/.auth/` request (`auth::route`); at most
//! [`passkeys::MAX_PER_USER`] per user.

use std::net::IpAddr;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use webauthn_rs::Webauthn;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential,
};

use super::second_factor::{Pending, own_user};
use super::{Answer, is_json, no_content, read_body, valid_return_to};
use crate::audit::Event;
use crate::body::{self, Body};
use crate::config::LoginMode;
use crate::login::passkeys::{self, PasskeyRecord};
use crate::login::users::User;
use crate::metrics::Metrics;
use crate::pages;
use crate::pipeline::RequestCtx;
use crate::refusal::{self, Refusal};
use crate::runtime::Runtime;
use crate::store::PasskeyWrite;
use crate::util::{now_unix, random_token};
use crate::web::user_agent::UserAgent;

/// How long a ceremony waits for the authenticator (seconds).
const CEREMONY_TTL: u64 = 300;

const REGISTER: &str = "passkey registration";
const SIGN_IN: &str = "passkey sign-in";
const SECOND_STEP: &str = "passkey second step";

/// `/.auth/webauthn/…`: the endpoint for `rest` (the path after that prefix).
pub(super) async fn route(
    rt: &Arc<Runtime>,
    req: Request<Incoming>,
    ctx: &RequestCtx,
    ua: &UserAgent<'_>,
    rest: &str,
) -> Answer {
    let method = req.method().clone();
    if let Some(id) = rest.strip_prefix("credentials/") {
        return match (&method, id.strip_suffix("/revoke")) {
            (&Method::POST, Some(id)) => remove(rt, ctx, ua, id, true).await,
            (&Method::DELETE, None) => remove(rt, ctx, ua, id, false).await,
            _ => Err(Refusal::MethodNotAllowed),
        };
    }
    match (rest, &method) {
        ("credentials", &Method::GET) => list(rt, ctx, ua).await,
        ("register/start", &Method::POST) => register_start(rt, req, ctx, ua).await,
        ("register/finish", &Method::POST) => register_finish(rt, req, ctx, ua).await,
        ("login/start", &Method::POST) => login_start(rt, req, ctx).await,
        ("login/finish", &Method::POST) => login_finish(rt, req, ctx, ua).await,
        ("verify/start", &Method::POST) => verify_start(rt, req, ctx).await,
        ("verify/finish", &Method::POST) => verify_finish(rt, req, ctx, ua).await,
        (
            "credentials" | "register/start" | "register/finish" | "login/start" | "login/finish"
            | "verify/start" | "verify/finish",
            _,
        ) => Err(Refusal::MethodNotAllowed),
        _ => Err(Refusal::NotFound(None)),
    }
}

/// A ceremony in flight, sealed into the client's hands between its two requests.
#[derive(Serialize, Deserialize)]
struct Ceremony<S> {
    /// Whom it is for: the signed-in user (registration), the user whose password was right
    /// (second step); none for a sign-in without a password (the passkey names the user).
    user: Option<String>,
    /// The session id (registration) or the client's address (sign-ins) it belongs to.
    bound: String,
    exp: u64,
    /// Makes it single use (`first_use`).
    nonce: String,
    /// Registration: the name the user gave the new passkey.
    #[serde(default)]
    name: Option<String>,
    state: S,
}

impl<S: Serialize + DeserializeOwned> Ceremony<S> {
    fn new(user: Option<&str>, bound: String, state: S) -> Self {
        Self {
            user: user.map(str::to_string),
            bound,
            exp: now_unix() + CEREMONY_TTL,
            nonce: random_token(18),
            name: None,
            state,
        }
    }

    fn seal(&self, rt: &Runtime, purpose: &str) -> Result<String, Refusal> {
        serde_json::to_vec(self)
            .ok()
            .and_then(|b| rt.sealer.seal(purpose, &b))
            .ok_or(Refusal::StoreUnavailable { navigation: false })
    }

    /// The ceremony `sealed` carries, if it is this step's, within its time, bound to `bound`,
    /// and not used before (it is used up now, on every instance).
    async fn open(rt: &Runtime, purpose: &str, sealed: &str, bound: &str) -> Result<Self, Refusal> {
        let c: Self = rt
            .sealer
            .open(purpose, sealed)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(Refusal::CeremonyExpired)?;
        if c.exp <= now_unix() || c.bound != bound {
            return Err(Refusal::CeremonyExpired);
        }
        let first = rt
            .sessions
            .store()
            .first_use(&format!("webauthn:{}", c.nonce), c.exp)
            .await
            .map_err(|_| Refusal::StoreUnavailable { navigation: false })?;
        if !first {
            return Err(Refusal::CeremonyExpired);
        }
        Ok(c)
    }
}

/// The relying party: the public origin's host, refused (`404`) when it cannot be one (an IP
/// address; `check-config` warns).
fn relying_party(rt: &Runtime) -> Result<Webauthn, Refusal> {
    passkeys::relying_party(&rt.cfg.server.public_origin.origin, &rt.cfg.ui.product_name).ok_or(
        Refusal::NotFound(Some(
            "passkeys need a public origin whose host is a domain name",
        )),
    )
}

async fn json_body<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, Refusal> {
    if !is_json(req.headers()) {
        return Err(Refusal::UnsupportedMediaType);
    }
    let raw = read_body(req).await?;
    serde_json::from_slice(&raw).map_err(|_| Refusal::BadRequest("unexpected JSON for this step"))
}

fn unavailable<E>(_: E) -> Refusal {
    Refusal::StoreUnavailable { navigation: false }
}

/// The user's passkeys, as the store keeps them (ones that do not parse are skipped).
async fn records(rt: &Runtime, user: &str) -> Result<Vec<(String, PasskeyRecord)>, Refusal> {
    let all = rt
        .sessions
        .store()
        .passkeys(user)
        .await
        .map_err(unavailable)?;
    Ok(all
        .into_iter()
        .filter_map(|(id, r)| PasskeyRecord::from_json(&r).map(|r| (id, r)))
        .collect())
}

/// The sessions page's passkey rows; `None` while the store does not answer (the page still
/// lists the sessions).
pub(super) async fn rows(rt: &Runtime, user: &str) -> Option<Vec<pages::PasskeyRow>> {
    let mut all = records(rt, user).await.ok()?;
    all.sort_by_key(|(_, r)| r.created);
    Some(
        all.into_iter()
            .map(|(id, r)| pages::PasskeyRow {
                id,
                name: r.name,
                created: super::sessions::when(r.created),
                last_used: r
                    .last_used
                    .map_or_else(|| "never".to_string(), super::sessions::when),
            })
            .collect(),
    )
}

fn no_store(mut r: Response<Body>) -> Response<Body> {
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    r
}

/// `{"ceremony", "publicKey"}`: what the script hands `navigator.credentials`.
fn challenge(sealed: String, public_key: serde_json::Value) -> Response<Body> {
    no_store(body::json(
        StatusCode::OK,
        &serde_json::json!({ "ceremony": sealed, "publicKey": public_key }),
    ))
}

#[derive(Deserialize)]
struct StartRegistration {
    #[serde(default)]
    name: Option<String>,
}

async fn register_start(
    rt: &Arc<Runtime>,
    req: Request<Incoming>,
    ctx: &RequestCtx,
    ua: &UserAgent<'_>,
) -> Answer {
    let body: StartRegistration = json_body(req).await?;
    let (id, set) = own_user(rt, ctx, ua).await?;
    let name =
        passkeys::valid_name(body.name.as_deref().unwrap_or("Passkey")).ok_or_else(|| {
            Refusal::BadRequest("a passkey's name is 1 to 64 characters").keeping(&set)
        })?;
    let have = records(rt, &id.sub).await.map_err(|r| r.keeping(&set))?;
    if have.len() >= passkeys::MAX_PER_USER {
        return Err(Refusal::SecondFactorConflict("passkey_limit").keeping(&set));
    }
    let wa = relying_party(rt).map_err(|r| r.keeping(&set))?;
    let exclude = have
        .iter()
        .map(|(_, r)| r.passkey.cred_id().clone())
        .collect();
    let (ccr, state) = wa
        .start_passkey_registration(
            passkeys::user_handle(&id.sub),
            &id.sub,
            &id.sub,
            Some(exclude),
        )
        .map_err(|e| {
            tracing::warn!(error = %e, "passkeys: cannot start a registration");
            Refusal::PasskeyRefused("registration").keeping(&set)
        })?;
    let mut c = Ceremony::<PasskeyRegistration>::new(Some(&id.sub), id.sid.clone(), state);
    c.name = Some(name);
    let sealed = c.seal(rt, REGISTER).map_err(|r| r.keeping(&set))?;
    let mut pk = serde_json::to_value(&ccr.public_key).unwrap_or_default();
    // A passkey that can sign in without a password is kept on the authenticator
    // (discoverable); a security key without room for one still serves as a second factor.
    // The finish does not depend on it (webauthn-rs checks no residency).
    pk["authenticatorSelection"]["residentKey"] = "preferred".into();
    let mut r = challenge(sealed, pk);
    refusal::append(&mut r, set);
    Ok(r)
}

#[derive(Deserialize)]
struct FinishRegistration {
    ceremony: String,
    credential: RegisterPublicKeyCredential,
}

async fn register_finish(
    rt: &Arc<Runtime>,
    req: Request<Incoming>,
    ctx: &RequestCtx,
    ua: &UserAgent<'_>,
) -> Answer {
    let body: FinishRegistration = json_body(req).await?;
    let (id, set) = own_user(rt, ctx, ua).await?;
    let c = Ceremony::<PasskeyRegistration>::open(rt, REGISTER, &body.ceremony, &id.sid)
        .await
        .map_err(|r| r.keeping(&set))?;
    if c.user.as_deref() != Some(id.sub.as_str()) {
        return Err(Refusal::CeremonyExpired.keeping(&set));
    }
    let wa = relying_party(rt).map_err(|r| r.keeping(&set))?;
    let passkey = wa
        .finish_passkey_registration(&body.credential, &c.state)
        .map_err(|e| {
            tracing::info!(error = %e, "passkeys: a registration was refused");
            Refusal::PasskeyRefused("registration").keeping(&set)
        })?;
    let key_id = passkeys::credential_id(&passkey);
    let rec = PasskeyRecord {
        name: c.name.unwrap_or_else(|| "Passkey".into()),
        created: now_unix(),
        last_used: None,
        passkey,
    };
    let write = PasskeyWrite::Add {
        max: passkeys::MAX_PER_USER,
    };
    let added = rt
        .sessions
        .store()
        .put_passkey(&id.sub, &key_id, &rec.to_json(), write)
        .await
        .map_err(|e| unavailable(e).keeping(&set))?;
    if !added {
        return Err(Refusal::SecondFactorConflict("passkey_limit").keeping(&set));
    }
    rt.audit.emit(
        Event::new("passkey_registered")
            .user(&id.sub)
            .session(&id.handle)
            .ip(&ctx.client_ip.to_string())
            .reason(&rec.name),
    );
    let mut r = no_store(body::json(
        StatusCode::CREATED,
        &serde_json::json!({ "id": key_id, "name": rec.name }),
    ));
    refusal::append(&mut r, set);
    Ok(r)
}

/// Sign-in is the gateway's (a users file): not in front of an app's own login, nor with an
/// identity provider alone.
fn own_login(rt: &Runtime) -> Result<(), Refusal> {
    if rt.cfg.login.mode == LoginMode::Upstream || rt.cfg.login.users_file.is_none() {
        return Err(Refusal::NotFound(Some(
            "passkeys are for accounts of the gateway's users file",
        )));
    }
    Ok(())
}

async fn login_start(rt: &Arc<Runtime>, req: Request<Incoming>, ctx: &RequestCtx) -> Answer {
    own_login(rt)?;
    // The body is not read: nothing in it is needed (the script sends `{"return_to"}`).
    drop(req);
    let wa = relying_party(rt)?;
    let (rcr, state) = wa.start_discoverable_authentication().map_err(|e| {
        tracing::warn!(error = %e, "passkeys: cannot start a sign-in");
        Refusal::PasskeyRefused("sign-in")
    })?;
    let c = Ceremony::<DiscoverableAuthentication>::new(None, ctx.client_ip.to_string(), state);
    // Without `mediation`: the script asks when the user presses the button (conditional
    // mediation would wait for the autofill).
    let pk = serde_json::to_value(&rcr.public_key).unwrap_or_default();
    Ok(challenge(c.seal(rt, SIGN_IN)?, pk))
}

#[derive(Deserialize)]
struct FinishSignIn {
    ceremony: String,
    credential: PublicKeyCredential,
    #[serde(default)]
    return_to: Option<String>,
}

async fn login_finish(
    rt: &Arc<Runtime>,
    req: Request<Incoming>,
    ctx: &RequestCtx,
    ua: &UserAgent<'_>,
) -> Answer {
    own_login(rt)?;
    let body: FinishSignIn = json_body(req).await?;
    let ip = ctx.client_ip;
    let c =
        Ceremony::<DiscoverableAuthentication>::open(rt, SIGN_IN, &body.ceremony, &ip.to_string())
            .await?;
    let wa = relying_party(rt)?;
    let (handle, _) = wa
        .identify_discoverable_authentication(&body.credential)
        .map_err(|_| Refusal::PasskeyRefused("sign-in"))?;
    let Some(user) = rt.users.by_passkey_handle(handle.as_bytes()) else {
        // Counted like an unknown user name: against the address's budget.
        match rt.throttle.begin(&format!("passkey:{handle}"), ip) {
            Ok(a) => a.failed(),
            Err(retry) => return Err(Refusal::Throttled { json: true, retry }),
        }
        Metrics::outcome(&rt.metrics.logins, "failed");
        rt.audit.emit(
            Event::new("login_failed")
                .ip(&ip.to_string())
                .reason("passkey of no user"),
        );
        return Err(Refusal::PasskeyRefused("sign-in"));
    };
    let target = valid_return_to(rt, body.return_to.as_deref());
    let checked = checked_passkey(rt, &user, ip, &body.credential, |p| {
        wa.finish_discoverable_authentication_v2(&body.credential, c.state, p)
    })
    .await?;
    signed_in(rt, ctx, ua, &user, &target, checked).await
}

#[derive(Deserialize)]
struct StartSecondStep {
    token: String,
}

async fn verify_start(rt: &Arc<Runtime>, req: Request<Incoming>, ctx: &RequestCtx) -> Answer {
    let body: StartSecondStep = json_body(req).await?;
    let (p, _) = Pending::open(rt, &body.token, ctx.client_ip)?;
    let keys: Vec<_> = records(rt, &p.user)
        .await?
        .into_iter()
        .map(|(_, r)| r.passkey)
        .collect();
    if keys.is_empty() {
        return Err(Refusal::PasskeyRefused("no passkey"));
    }
    let wa = relying_party(rt)?;
    let (rcr, state) = wa.start_passkey_authentication(&keys).map_err(|e| {
        tracing::warn!(error = %e, "passkeys: cannot start a second step");
        Refusal::PasskeyRefused("second step")
    })?;
    let c = Ceremony::<PasskeyAuthentication>::new(Some(&p.user), ctx.client_ip.to_string(), state);
    let pk = serde_json::to_value(&rcr.public_key).unwrap_or_default();
    Ok(challenge(c.seal(rt, SECOND_STEP)?, pk))
}

#[derive(Deserialize)]
struct FinishSecondStep {
    token: String,
    ceremony: String,
    credential: PublicKeyCredential,
}

async fn verify_finish(
    rt: &Arc<Runtime>,
    req: Request<Incoming>,
    ctx: &RequestCtx,
    ua: &UserAgent<'_>,
) -> Answer {
    let body: FinishSecondStep = json_body(req).await?;
    let ip = ctx.client_ip;
    let (p, target) = Pending::open(rt, &body.token, ip)?;
    let c =
        Ceremony::<PasskeyAuthentication>::open(rt, SECOND_STEP, &body.ceremony, &ip.to_string())
            .await?;
    if c.user.as_deref() != Some(p.user.as_str()) || !p.use_up(rt).await.map_err(unavailable)? {
        return Err(Refusal::CeremonyExpired);
    }
    let user = rt.users.active(&p.user).ok_or(Refusal::CeremonyExpired)?;
    let wa = relying_party(rt)?;
    let checked = checked_passkey(rt, &user, ip, &body.credential, |_| {
        wa.finish_passkey_authentication(&body.credential, &c.state)
    })
    .await?;
    signed_in(rt, ctx, ua, &user, &target, checked).await
}

/// The passkey `credential` names among `user`'s, checked by `verify` (the ceremony's finish),
/// throttled like a password; its counter and last use are kept. Returns the passkey's name.
async fn checked_passkey(
    rt: &Runtime,
    user: &User,
    ip: IpAddr,
    credential: &PublicKeyCredential,
    verify: impl FnOnce(
        &webauthn_rs::prelude::Passkey,
    ) -> webauthn_rs::prelude::WebauthnResult<
        webauthn_rs::prelude::AuthenticationResult,
    >,
) -> Result<String, Refusal> {
    let attempt = rt.throttle.begin(&user.name, ip).map_err(|retry| {
        rt.audit.emit(
            Event::new("login_throttled")
                .user(&user.name)
                .ip(&ip.to_string()),
        );
        Refusal::Throttled { json: true, retry }
    })?;
    let refused = |why: &str| {
        Metrics::outcome(&rt.metrics.logins, "failed");
        rt.audit.emit(
            Event::new("login_failed")
                .user(&user.name)
                .ip(&ip.to_string())
                .reason(why),
        );
        Refusal::PasskeyRefused("sign-in")
    };
    let id = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(credential.get_credential_id())
    };
    let Some((key_id, mut rec)) = records(rt, &user.name)
        .await?
        .into_iter()
        .find(|(k, _)| *k == id)
    else {
        attempt.failed();
        return Err(refused("passkey not the user's"));
    };
    let result = match verify(&rec.passkey) {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(error = %e, "passkeys: a sign-in was refused");
            attempt.failed();
            return Err(refused("passkey refused"));
        }
    };
    rec.passkey.update_credential(&result);
    rec.last_used = Some(now_unix());
    let kept = rt
        .sessions
        .store()
        .put_passkey(&user.name, &key_id, &rec.to_json(), PasskeyWrite::Update)
        .await
        .map_err(unavailable)?;
    if !kept {
        // Removed while the user was signing in with it.
        attempt.failed();
        return Err(refused("passkey removed"));
    }
    attempt.succeeded();
    Ok(rec.name)
}

/// A new session for `user`, signed in with their passkey `name`: `{"redirect"}` and cookies.
async fn signed_in(
    rt: &Runtime,
    ctx: &RequestCtx,
    ua: &UserAgent<'_>,
    user: &User,
    target: &str,
    name: String,
) -> Answer {
    let issued = super::start_session(rt, ctx, ua, user, false).await?;
    Metrics::outcome(&rt.metrics.logins, "ok");
    rt.audit.emit(
        Event::new("passkey_used")
            .user(&user.name)
            .ip(&ctx.client_ip.to_string())
            .reason(&name),
    );
    let mut r = no_store(body::json(
        StatusCode::OK,
        &serde_json::json!({ "redirect": target }),
    ));
    refusal::append(&mut r, rt.sessions.set_cookies(&issued));
    Ok(r)
}

async fn list(rt: &Arc<Runtime>, ctx: &RequestCtx, ua: &UserAgent<'_>) -> Answer {
    let (id, set) = own_user(rt, &ctx.as_api_call(), ua).await?;
    let all = records(rt, &id.sub).await.map_err(|r| r.keeping(&set))?;
    let items: Vec<_> = all
        .iter()
        .map(|(k, r)| {
            serde_json::json!({
                "id": k, "name": r.name, "created": r.created, "last_used": r.last_used,
            })
        })
        .collect();
    let mut r = no_store(body::json(
        StatusCode::OK,
        &serde_json::json!({ "passkeys": items }),
    ));
    refusal::append(&mut r, set);
    Ok(r)
}

async fn remove(
    rt: &Arc<Runtime>,
    ctx: &RequestCtx,
    ua: &UserAgent<'_>,
    key_id: &str,
    form: bool,
) -> Answer {
    let (id, set) = own_user(rt, ctx, ua).await?;
    let gone = rt
        .sessions
        .store()
        .remove_passkey(&id.sub, key_id)
        .await
        .map_err(|_| Refusal::StoreUnavailable { navigation: form }.keeping(&set))?;
    if !gone {
        return Err(Refusal::NotFound(Some("no such passkey")).keeping(&set));
    }
    rt.audit.emit(
        Event::new("passkey_removed")
            .user(&id.sub)
            .session(&id.handle)
            .ip(&ctx.client_ip.to_string()),
    );
    let mut r = if form {
        body::redirect(StatusCode::SEE_OTHER, "/.auth/sessions#passkeys")
    } else {
        no_content()
    };
    refusal::append(&mut r, set);
    Ok(r)
}
