//! The admin API on the admin listener: `GET /admin/users/{user}/sessions`,
//! `POST /admin/users/{user}/revoke-all` (after a password change or a lost device) and
//! `POST /admin/users/{user}/reset-second-factor` (a user who lost both their authenticator
//! and their recovery codes: the factor, its codes and any pending enrolment are removed, and
//! the user enrols again after signing in with the password). Bearer token from `admin.token_env`, compared in constant time. The logic is the
//! session domain's (`Sessions::list`, `Sessions::revoke_all`), as for the user's own pages.

use http::{Method, Request, Response, StatusCode};

use crate::body::{self, Body};
use crate::refusal::Refusal;
use crate::runtime::Runtime;
use crate::web::headers;

pub async fn handle<B>(rt: &Runtime, req: &Request<B>, rest: &str) -> Response<Body> {
    match answer(rt, req, rest).await {
        Ok(r) => r,
        Err(r) => r.into_response(&rt.sessions),
    }
}

async fn answer<B>(rt: &Runtime, req: &Request<B>, rest: &str) -> Result<Response<Body>, Refusal> {
    let token = rt.cfg.admin_token.as_ref().ok_or(Refusal::AdminOff)?;
    let presented = headers::bearer_token(req.headers()).unwrap_or("");
    if !crate::util::ct_eq(presented.as_bytes(), token.expose()) {
        return Err(Refusal::AdminUnauthorized);
    }
    let Some((user, action)) = rest.split_once('/') else {
        return Ok(body::text(StatusCode::NOT_FOUND, "not found\n"));
    };
    let user = percent_encoding::percent_decode_str(user)
        .decode_utf8_lossy()
        .into_owned();
    let unavailable = |_| Refusal::StoreUnavailable { navigation: false };
    Ok(match (req.method(), action) {
        (&Method::GET, "sessions") => {
            let list = rt.sessions.list(&user).await.map_err(unavailable)?;
            let items: Vec<_> = list.iter().map(|r| rt.sessions.view(r, "")).collect();
            body::json(
                StatusCode::OK,
                &serde_json::json!({"user": user, "sessions": items}),
            )
        }
        (&Method::POST, "revoke-all") => {
            let n = rt
                .sessions
                .revoke_all(&user, "admin_revoke_all")
                .await
                .map_err(unavailable)?;
            body::json(
                StatusCode::OK,
                &serde_json::json!({"user": user, "revoked": n}),
            )
        }
        (&Method::POST, "reset-second-factor") => {
            // Every second factor: the TOTP secret with its recovery codes, and each passkey.
            let store = rt.sessions.store();
            let removed = store.remove_factor(&user).await.map_err(unavailable)?;
            let mut passkeys = 0;
            for (id, _) in store.passkeys(&user).await.map_err(unavailable)? {
                passkeys += usize::from(
                    store
                        .remove_passkey(&user, &id)
                        .await
                        .map_err(unavailable)?,
                );
            }
            rt.audit.emit(
                crate::audit::Event::new("second_factor_reset")
                    .user(&user)
                    .count(passkeys),
            );
            body::json(
                StatusCode::OK,
                &serde_json::json!({"user": user, "removed": removed, "passkeys_removed": passkeys}),
            )
        }
        (_, "sessions" | "revoke-all" | "reset-second-factor") => {
            body::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        }
        _ => body::text(StatusCode::NOT_FOUND, "not found\n"),
    })
}
