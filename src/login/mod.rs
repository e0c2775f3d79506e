//! Who may sign in: the users file (argon2id hashes), the login throttle, and the signed grants
//! an app sends in upstream-login mode. The endpoints that use them live in `auth` and
//! `pipeline::upstream_login`.

pub(crate) mod grant;
pub mod passkeys;
pub(crate) mod throttle;
pub mod totp;
pub mod users;
