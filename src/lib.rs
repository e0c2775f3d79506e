//! sessiongate: a TLS-terminating reverse proxy that owns the sessions of the web apps behind
//! it. See `DESIGN.md`-level overview in the README; each module documents its stage.

pub mod assertion;
pub mod audit;
pub mod auth;
pub mod body;
pub mod config;
pub mod cookies;
pub mod dev;
pub mod metrics;
pub mod pages;
pub mod pipeline;
pub mod preflight;
pub mod proxy;
pub mod routing;
pub mod runtime;
pub mod server;
pub mod store;
pub mod tokens;
pub mod util;
pub mod web;
