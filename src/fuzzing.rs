//! What the fuzz targets (`fuzz/`) call that the crate does not otherwise make public: only
//! with the `fuzzing` feature, which nothing but `fuzz/Cargo.toml` turns on. Re-exports, and
//! the framing guard's differential harness against hyper; no behaviour of its own.

/// The URL-token scanner (`web::query`).
pub mod query {
    pub use crate::web::query::{QueryScan, scan, with_query};
}

/// The framing guard, alone and beside hyper's HTTP/1 server.
pub mod framing {
    pub use crate::framing_guard::differential::{Framed, Served, scan, through_hyper};
}

/// Minting and verifying the gateway's tokens.
pub mod tokens {
    pub use crate::tokens::{
        AUDIENCE, AccessClaims, AccessLifetime, Fingerprint, KeyRing, RefreshClaims, TYP_ACCESS,
        TYP_REFRESH, TokenError,
    };
}

/// `return_to` validation.
pub mod return_to {
    pub use crate::auth::return_to::{validate, validate_with_origin};
}

/// Request header readers: `Accept`, `Content-Type`, navigations, spoofable names.
pub mod headers {
    pub use crate::web::headers::{
        HeaderClass, IDENTITY_HEADERS, SPOOFABLE_NAMES, SPOOFABLE_PREFIXES, SpoofableHeaders,
        content_type_is, fold, is_navigation, wants_html, wants_json,
    };
}

/// The OpenID Connect parsers: claim mapping, logout-token structure, the flow cookie.
pub mod oidc {
    pub use crate::oidc::claims::{Denied, Mapped, lookup, map};
    pub use crate::oidc::flow::{FLOW_TTL_SECS, Flow, Lost, MAX_FLOWS, begin, take};
    pub use crate::oidc::logout_token::{EVENT, Logout, MAX_AGE, claimed_issuer, claims};
    pub use crate::seal::Sealer;
}
