//! HTTP helpers shared by the pipeline, the gateway's endpoints, the proxy and the listeners:
//! one reading of a path, of a query, of the headers that matter. Pure functions over
//! `http` types; nothing here knows about sessions.

pub(crate) mod headers;
pub mod path;
pub(crate) mod query;
pub mod user_agent;
