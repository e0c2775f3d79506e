//! sessiongate: a TLS-terminating reverse proxy that owns the sessions of the web apps behind
//! it. The README has the request diagram and the source layout; each module documents its
//! stage. Modules are crate-private unless the binary, the benchmarks or the tests need them.

pub mod access_log;
pub(crate) mod admin;
pub(crate) mod allocator;
pub(crate) mod assertion;
pub(crate) mod audit;
pub(crate) mod auth;
pub(crate) mod body;
pub mod config;
pub mod cookies;
pub mod delivery;
pub mod dev;
pub(crate) mod framing_guard;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod healthcheck;
pub mod logging;
pub mod login;
pub(crate) mod metrics;
pub(crate) mod oidc;
#[cfg(feature = "otel")]
pub mod otel;
pub(crate) mod pages;
pub mod pipeline;
pub mod policy;
pub mod preflight;
pub(crate) mod proxy;
pub(crate) mod ratelimit;
pub(crate) mod refusal;
pub mod request_id;
pub(crate) mod routing;
pub mod runtime;
pub(crate) mod seal;
pub mod server;
pub(crate) mod service;
pub mod sessions;
pub mod store;
pub(crate) mod tokens;
pub mod trace_context;
pub mod util;
pub mod version;
pub mod web;
pub(crate) mod worker;
