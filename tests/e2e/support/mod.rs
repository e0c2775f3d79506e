//! Support modules of the end-to-end harness; tests reach them through the
//! [`harness`](super) facade.

pub mod assertions;
pub mod cli;
pub mod config;
pub mod conn;
pub mod echo;
pub mod gateway;
pub mod haproxy;
pub mod jwt;
pub mod launch;
pub mod logs;
pub mod metrics;
pub mod oidc;
pub mod pki;
pub mod raw;
pub mod redis;
pub mod reload;
pub mod requests;
pub mod session;
pub mod site;
pub mod store;
pub mod upstream;
pub mod users;
pub mod util;
pub mod ws;
