//! Support modules of the end-to-end harness; tests reach them through the
//! [`harness`](super) facade.

pub mod assertions;
pub mod config;
pub mod conn;
pub mod echo;
pub mod gateway;
pub mod jwt;
pub mod launch;
pub mod logs;
pub mod pki;
pub mod raw;
pub mod redis;
pub mod requests;
pub mod session;
pub mod store;
pub mod upstream;
pub mod users;
pub mod util;
pub mod ws;
