//! The anomaly stage: a verified access token used from another network or browser than the
//! session was bound to (session hijacking, OWASP ASVS V3.3). The fingerprints and policies
//! are `crate::sessions::anomaly`; this stage applies the verdict: `reauth` makes this request
//! anonymous (the session stays valid where it came from), `revoke` ends the session
//! everywhere. A refreshed session was judged before it rotated.

use super::RequestCtx;
use super::session::SessionState;
use crate::runtime::Runtime;
use crate::sessions::Verdict;
use crate::web::user_agent::UserAgent;

pub async fn check(
    rt: &Runtime,
    ctx: &RequestCtx,
    ua: &UserAgent<'_>,
    state: SessionState,
) -> SessionState {
    let SessionState::Verified(id) = state else {
        return state;
    };
    let s = &rt.sessions;
    match s.anomaly(&id.fp, ctx.client_ip, ua, &id.sub, &id.sid) {
        Verdict::Pass => {
            s.seen(&id.sub, &id.sid);
            SessionState::Verified(id)
        }
        Verdict::Reauth => SessionState::Anonymous {
            presented: true,
            clear: true,
        },
        Verdict::Revoke => {
            // Revoked here at once; a store failure is logged by `end`, and the request is
            // refused either way.
            let _ = s.end_for_anomaly(&id.sub, &id.sid, ctx.client_ip).await;
            SessionState::Anonymous {
                presented: true,
                clear: true,
            }
        }
    }
}
