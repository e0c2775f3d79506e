//! STAND-IN (replaced by the oidc-config branch at merge).
use std::path::PathBuf;
use std::time::Duration;

use super::Secret;

#[derive(Debug, Clone, Default)]
pub struct OidcConfig {
    pub recheck_interval: Option<Duration>,
    pub providers: Vec<OidcProviderConfig>,
}

#[derive(Debug, Clone)]
pub struct OidcProviderConfig {
    pub name: String,
    pub display_name: String,
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub scopes: Vec<String>,
    pub user_claim: String,
    pub roles_claim: Option<String>,
    pub allowed_domains: Vec<String>,
    pub allowed_groups: Vec<String>,
    pub ca_file: Option<PathBuf>,
}
