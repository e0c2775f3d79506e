//! The targets: each a function of arbitrary bytes that panics when its oracle does not hold.

mod config;
mod cookies;
mod flow;
mod framing;
mod headers;
mod logout_token;
mod oidc_claims;
mod path;
mod query;
mod return_to;
mod tokens;

pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

/// Every target, in the order scripts/fuzz runs them.
pub const ALL: &[Target] = &[
    Target {
        name: "path",
        run: path::run,
    },
    Target {
        name: "query",
        run: query::run,
    },
    Target {
        name: "cookies",
        run: cookies::run,
    },
    Target {
        name: "framing",
        run: framing::run,
    },
    Target {
        name: "tokens",
        run: tokens::run,
    },
    Target {
        name: "return_to",
        run: return_to::run,
    },
    Target {
        name: "headers",
        run: headers::run,
    },
    Target {
        name: "config",
        run: config::run,
    },
    Target {
        name: "oidc_claims",
        run: oidc_claims::run,
    },
    Target {
        name: "logout_token",
        run: logout_token::run,
    },
    Target {
        name: "flow",
        run: flow::run,
    },
];

pub fn find(name: &str) -> Option<&'static Target> {
    ALL.iter().find(|t| t.name == name)
}
