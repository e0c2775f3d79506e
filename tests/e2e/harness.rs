//! End-to-end harness: the real `sessiongate` binary over real TLS in front of a real upstream
//! process (`tests/upstream.py`), all on loopback.
//!
//! Each test builds its own [`Gateway`] (certificates generated at test time with rcgen, fresh
//! secrets, fresh users file, fresh audit log); dropping it kills both child processes. Nothing
//! here keeps a cookie store: tests carry cookies by hand so they can assert on them.
//!
//! The pieces live in [`support`], one module per concern; this facade re-exports them all, so
//! a test file needs one `use crate::harness::*;`. (`benches/redis_load.rs` includes this file
//! by path, hence the `#[path]` below rather than a `mod support;` in `main.rs`.)

// The bench uses a few of these items only.
#![allow(dead_code, unused_imports)]

#[path = "support/mod.rs"]
pub mod support;

pub use support::assertions::*;
pub use support::cli::*;
pub use support::config::*;
pub use support::conn::*;
pub use support::echo::*;
pub use support::gateway::*;
pub use support::haproxy::*;
pub use support::jwt::*;
pub use support::logs::*;
pub use support::metrics::*;
pub use support::oidc::*;
pub use support::pki::*;
pub use support::raw::*;
pub use support::redis::*;
pub use support::session::*;
pub use support::site::*;
pub use support::store::*;
pub use support::upstream::*;
pub use support::users::*;
pub use support::util::*;
pub use support::ws::*;
