//! sessiongate end-to-end tests: the real binary over real TLS, in front of a real upstream
//! process (`tests/upstream.py`), every test with its own gateway, upstream, secrets and ports.
//!
//! One integration-test binary (this file and its modules) to keep link time down.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is a finding

mod harness;
mod harness_selftest;
mod oidc_provider_selftest;

mod admin;
mod ambiguous_requests;
mod anomaly;
mod assertion;
mod bounded_tables;
mod browser;
mod check_config;
mod cli;
mod config_mistakes;
mod cookie_bytes;
mod csrf;
mod healthcheck;
mod identity;
mod identity_families;
mod idle_connections;
mod key_rotation;
mod load_balancer;
mod login;
mod logs;
mod metrics_doc;
mod observability;
mod oidc_config;
mod oidc_login;
mod oidc_logout;
#[cfg(feature = "otel")]
mod otel;
mod packaging;
mod parked_connections;
mod passkeys;
mod path_encoding;
mod path_parameters;
mod paths;
mod policy;
mod rate_limit;
mod redis_store;
mod redis_tls;
mod refresh;
mod reload;
mod request_framing;
mod revocation_sync;
mod rotation_safety;
mod second_factor;
mod self_service;
mod session_lifetime;
mod store_idp;
mod token_forgery;
mod transport;
mod upstream_connections;
mod upstream_failure;
mod upstream_login;
mod upstream_tls;
mod url_token_spellings;
mod url_tokens;
mod user_agent;
mod websocket;
mod websocket_lifetime;
