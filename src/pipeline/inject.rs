//! Inject the verified identity for the app.
//!
//! Runs after `strip`, so every identity header the app sees was set here. Values are
//! *inserted*, never appended: one value per header, whatever came in.

use http::{HeaderMap, HeaderValue};

use crate::runtime::Runtime;
use crate::sessions::Identity;

pub fn apply(rt: &Runtime, h: &mut HeaderMap, id: &Identity) {
    let names = &rt.identity_names;
    let handle = &id.handle;
    // Users and roles are validated at load (token characters only), so these never fail.
    if let Ok(v) = HeaderValue::from_str(&id.sub) {
        h.insert(names[0].clone(), v);
    }
    if let Ok(v) = HeaderValue::from_str(&id.roles.join(",")) {
        h.insert(names[1].clone(), v);
    }
    if let Some(signer) = rt.sessions.signer()
        && let Some(v) = signer
            .assertion(&id.sub, &id.roles, &id.sid, handle)
            .and_then(|a| HeaderValue::from_str(&a).ok())
    {
        h.insert(names[3].clone(), v);
    }
    if let Ok(v) = HeaderValue::from_str(handle) {
        h.insert(names[2].clone(), v);
    }
}
