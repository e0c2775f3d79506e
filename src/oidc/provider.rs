//! One identity provider: its discovery document and keys (fetched at first use, cached, the
//! keys fetched again when a token names one we do not have), the authorization request, the
//! code exchange with ID-token verification, userinfo, and the refresh grant.
//!
//! `openidconnect` does the protocol and the cryptography: discovery (the document's `issuer`
//! must equal the configured one), PKCE S256, the ID token's signature with the provider's
//! JWKS, only with an `alg` the provider advertises (never `none`, never a shared-secret alg),
//! `iss`, `aud`, `exp`, `nonce`; this module adds `azp` (which `openidconnect` does not check),
//! `iat` bounds, `at_hash`, RFC 9207's `iss` response parameter and the refetch rules.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreClaimName, CoreClaimType,
    CoreClientAuthMethod, CoreErrorResponseType, CoreGenderClaim, CoreGrantType, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm,
    CoreResponseMode, CoreResponseType, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreSubjectIdentifierType, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AccessToken, AccessTokenHash, AdditionalClaims, AdditionalProviderMetadata, AuthType,
    AuthorizationCode, ClaimsVerificationError, Client, ClientId, ClientSecret, CsrfToken,
    EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet, IdToken, IdTokenFields,
    IssuerUrl, JsonWebKeySet, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    ProviderMetadata, RedirectUrl, RefreshToken, RequestTokenError, Scope,
    SignatureVerificationError, StandardErrorResponse, StandardTokenResponse, SubjectIdentifier,
    UserInfoError,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::OidcError;
use super::http::{HttpError, IdpHttp};
use crate::config::OidcProviderConfig;

/// Every claim of a token or a userinfo answer, as JSON (mapping reads them by name).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Extra(pub Map<String, Value>);
impl AdditionalClaims for Extra {}

/// Discovery fields `openidconnect` does not model.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Meta {
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
    /// RFC 9207: the authorization response carries `iss`.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: Option<bool>,
}
impl AdditionalProviderMetadata for Meta {}

pub(super) type Metadata = ProviderMetadata<
    Meta,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;
type Fields = IdTokenFields<
    Extra,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type Tokens = StandardTokenResponse<Fields, CoreTokenType>;
type IdTok =
    IdToken<Extra, CoreGenderClaim, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm>;
type OidcClient = Client<
    Extra,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    Tokens,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// How long a discovery document is trusted before it is fetched again (at next use; a
/// failed fetch keeps the old one).
const METADATA_TTL: Duration = Duration::from_secs(6 * 3600);
/// The shortest time between two fetches of a provider's keys or document: tokens naming
/// unknown keys cannot make the gateway hammer the provider.
const REFETCH_COOLDOWN: Duration = Duration::from_secs(30);
/// A sign-in starts only after the provider answered within this long (see `begin`).
const START_FRESHNESS: Duration = Duration::from_secs(2);
/// After a failed discovery, logins fail fast for this long instead of each waiting.
const FAILURE_COOLDOWN: Duration = Duration::from_secs(5);
/// An ID token issued further in the future than this is refused (clock skew allowance).
const IAT_SKEW: u64 = 60;
/// An ID token issued longer ago than this is refused: the code was just exchanged.
const IAT_MAX_AGE: u64 = 600;

pub(super) struct Discovered {
    pub meta: Metadata,
    client: OidcClient,
    at: Instant,
}

#[derive(Default)]
struct Fetches {
    last_try: Option<Instant>,
    last_error: Option<String>,
    /// The last refetch of the keys for an unknown `kid` (not the discovery's own fetch: a
    /// rotation right after it must not lock sign-ins out for the cooldown).
    last_refetch: Option<Instant>,
}

pub struct Provider {
    pub cfg: OidcProviderConfig,
    http: IdpHttp,
    redirect: RedirectUrl,
    state: ArcSwapOption<Discovered>,
    fetches: tokio::sync::Mutex<Fetches>,
}

/// The start of an authorization-code flow: where to send the browser, and what the flow
/// cookie must remember.
pub struct Begun {
    pub url: String,
    pub state: String,
    pub nonce: String,
    pub verifier: String,
}

/// A verified sign-in.
pub struct SignedIn {
    /// The ID token's claims, completed from userinfo where the ID token lacks one.
    pub claims: Map<String, Value>,
    pub sub: String,
    pub sid: Option<String>,
    pub id_token: String,
    pub refresh_token: Option<String>,
}

/// What a refresh grant told us.
pub enum Rechecked {
    /// The provider still knows the user: their current claims, and the refresh token to
    /// use next time (rotated or the same).
    Current {
        claims: Map<String, Value>,
        refresh_token: String,
        id_token: Option<String>,
    },
    /// `invalid_grant`: the user or their grant is gone.
    Gone(String),
}

impl Provider {
    pub fn new(cfg: OidcProviderConfig, redirect_uri: &str) -> Result<Self, String> {
        let http = IdpHttp::new(cfg.ca_file.as_deref())
            .map_err(|e| format!("oidc provider {}: ca_file: {e}", cfg.name))?;
        let redirect = RedirectUrl::new(redirect_uri.to_string()).map_err(|e| e.to_string())?;
        Ok(Self {
            cfg,
            http,
            redirect,
            state: ArcSwapOption::empty(),
            fetches: tokio::sync::Mutex::new(Fetches::default()),
        })
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// The discovery document and keys: cached, fetched at first use and after
    /// [`METADATA_TTL`]; a failure answers at once for [`FAILURE_COOLDOWN`], and a stale
    /// document serves while the provider is away (the code exchange, keys and re-checks).
    pub(super) async fn discovered(&self) -> Result<Arc<Discovered>, OidcError> {
        self.within(METADATA_TTL, true).await
    }

    /// The documents as [`Provider::discovered`], no older than `max_age`; with `stale_ok`
    /// false, a failed fetch is the answer even when an older document is cached. One fetch
    /// at a time per provider.
    async fn within(
        &self,
        max_age: Duration,
        stale_ok: bool,
    ) -> Result<Arc<Discovered>, OidcError> {
        let fresh = |d: &Arc<Discovered>| d.at.elapsed() < max_age;
        if let Some(d) = self.state.load_full().filter(fresh) {
            return Ok(d);
        }
        let mut f = self.fetches.lock().await;
        if let Some(d) = self.state.load_full().filter(fresh) {
            return Ok(d);
        }
        let stale = || self.state.load_full().filter(|_| stale_ok);
        if let (Some(t), Some(e)) = (f.last_try, &f.last_error)
            && t.elapsed() < FAILURE_COOLDOWN
        {
            return stale().ok_or_else(|| OidcError::Unreachable(e.clone()));
        }
        f.last_try = Some(Instant::now());
        match self.discover().await {
            Ok(d) => {
                f.last_error = None;
                let d = Arc::new(d);
                self.state.store(Some(d.clone()));
                Ok(d)
            }
            Err(e) => {
                tracing::warn!(provider = %self.cfg.name, error = %e, "oidc discovery failed");
                f.last_error = Some(e.to_string());
                stale().ok_or(e)
            }
        }
    }

    async fn discover(&self) -> Result<Discovered, OidcError> {
        let issuer = IssuerUrl::new(self.cfg.issuer.clone())
            .map_err(|e| OidcError::Discovery(e.to_string()))?;
        let meta = Metadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| discovery_error(&e))?;
        Ok(self.with_meta(meta))
    }

    fn with_meta(&self, meta: Metadata) -> Discovered {
        let mut client = OidcClient::from_provider_metadata(
            meta.clone(),
            ClientId::new(self.cfg.client_id.clone()),
            Some(ClientSecret::new(
                String::from_utf8_lossy(self.cfg.client_secret.expose()).into_owned(),
            )),
        )
        .set_redirect_uri(self.redirect.clone());
        // client_secret_basic unless the provider only takes the secret in the body.
        let methods = meta.token_endpoint_auth_methods_supported();
        if methods.is_some_and(|m| {
            !m.contains(&CoreClientAuthMethod::ClientSecretBasic)
                && m.contains(&CoreClientAuthMethod::ClientSecretPost)
        }) {
            client = client.set_auth_type(AuthType::RequestBody);
        }
        Discovered {
            meta,
            client,
            at: Instant::now(),
        }
    }

    /// The provider's keys fetched again because a token named a key we do not have — at
    /// most once per [`REFETCH_COOLDOWN`]; returns the (possibly) newer state.
    pub(super) async fn refetch_keys(&self, stale: &Arc<Discovered>) -> Arc<Discovered> {
        let mut f = self.fetches.lock().await;
        if let Some(cur) = self.state.load_full()
            && !Arc::ptr_eq(&cur, stale)
        {
            return cur;
        }
        if f.last_refetch
            .is_some_and(|t| t.elapsed() < REFETCH_COOLDOWN)
        {
            return stale.clone();
        }
        f.last_refetch = Some(Instant::now());
        match JsonWebKeySet::fetch_async(stale.meta.jwks_uri(), &self.http).await {
            Ok(keys) => {
                let meta = stale.meta.clone().set_jwks(keys);
                let d = Arc::new(self.with_meta(meta));
                self.state.store(Some(d.clone()));
                tracing::info!(provider = %self.cfg.name, "oidc: fetched the provider's keys again");
                d
            }
            Err(e) => {
                tracing::warn!(provider = %self.cfg.name, error = %discovery_error(&e), "oidc: could not fetch the provider's keys");
                stale.clone()
            }
        }
    }

    /// Where to send the browser: an authorization request with PKCE (S256), `state` and
    /// `nonce`, and the configured scopes; `reauth` (a step-up, `[[route]] max_auth_age`) asks
    /// the provider to authenticate the user again rather than answer from its own session
    /// (`prompt=login`).
    ///
    /// The provider is asked for its documents first (unless another request did so within
    /// [`START_FRESHNESS`]): a provider that went away gets the user a clear page here rather
    /// than a browser error at its address, and a flood of starts costs it at most one fetch
    /// per [`START_FRESHNESS`].
    pub async fn begin(&self, reauth: bool) -> Result<Begun, OidcError> {
        let d = self.within(START_FRESHNESS, false).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = d
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for s in self.cfg.scopes.iter().filter(|s| *s != "openid") {
            req = req.add_scope(Scope::new(s.clone()));
        }
        if reauth {
            req = req.add_prompt(openidconnect::core::CoreAuthPrompt::Login);
        }
        let (url, state, nonce) = req.url();
        Ok(Begun {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            verifier: verifier.secret().clone(),
        })
    }

    /// RFC 9207: the `iss` of the authorization response, when the provider sends it (or
    /// says it does), must be its issuer — a response from another provider (mix-up) is
    /// refused before any code is sent anywhere.
    pub async fn check_response_issuer(&self, iss: Option<&str>) -> Result<(), OidcError> {
        let d = self.discovered().await?;
        let promised = d
            .meta
            .additional_metadata()
            .authorization_response_iss_parameter_supported
            .unwrap_or(false);
        match iss {
            Some(i) if i == self.cfg.issuer => Ok(()),
            Some(_) => Err(OidcError::Callback("the response names another issuer")),
            None if promised => Err(OidcError::Callback("the response names no issuer")),
            None => Ok(()),
        }
    }

    /// Exchange the code (with the PKCE verifier), verify the ID token, complete its claims
    /// from userinfo.
    pub async fn finish(
        &self,
        code: &str,
        verifier: &str,
        nonce: &str,
        now: u64,
    ) -> Result<SignedIn, OidcError> {
        let d = self.discovered().await?;
        let tokens = d
            .client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| OidcError::Discovery(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_string()))
            .request_async(&self.http)
            .await
            .map_err(token_error)?;
        let id_token = tokens.extra_fields().id_token().ok_or(OidcError::IdToken(
            "the token response has no ID token".into(),
        ))?;
        let nonce = Nonce::new(nonce.to_string());
        let (d, claims) = self
            .verified(d, id_token, now, |n: Option<&Nonce>| match n {
                Some(n) if crate::util::ct_eq(n.secret().as_bytes(), nonce.secret().as_bytes()) => {
                    Ok(())
                }
                Some(_) => Err("the nonce is not this sign-in's".to_string()),
                None => Err("the ID token has no nonce".to_string()),
            })
            .await?;
        check_at_hash(&d, id_token, tokens.access_token())?;
        let claims = self.completed(&d, claims, tokens.access_token()).await?;
        let sub = claim_str(&claims, "sub").unwrap_or_default();
        Ok(SignedIn {
            sid: claim_str(&claims, "sid"),
            sub,
            claims,
            id_token: id_token.to_string(),
            refresh_token: tokens.refresh_token().map(|t| t.secret().clone()),
        })
    }

    /// The ID token's claims once verified (with one refetch of the keys when it names a key
    /// we do not have), as JSON.
    async fn verified<N>(
        &self,
        d: Arc<Discovered>,
        id_token: &IdTok,
        now: u64,
        nonce: N,
    ) -> Result<(Arc<Discovered>, Map<String, Value>), OidcError>
    where
        N: openidconnect::NonceVerifier + Clone,
    {
        let check = |d: &Discovered| {
            let verifier = d
                .client
                .id_token_verifier()
                .set_issue_time_verifier_fn(move |iat| iat_ok(iat.timestamp(), now));
            id_token
                .claims(&verifier, nonce.clone())
                .map(|c| serde_json::to_value(c).ok())
        };
        let first = check(&d);
        let (d, out) = match first {
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) => {
                let newer = self.refetch_keys(&d).await;
                let out = check(&newer);
                (newer, out)
            }
            other => (d, other),
        };
        match out {
            // `openidconnect` leaves `azp` unchecked (Core §3.1.3.7 step 5): when present it
            // must name us, or the token was issued to another client.
            Ok(Some(Value::Object(m)))
                if m.get("azp")
                    .is_some_and(|a| a.as_str() != Some(&self.cfg.client_id)) =>
            {
                Err(OidcError::IdToken("azp names another client".into()))
            }
            Ok(Some(Value::Object(m))) => Ok((d, m)),
            Ok(_) => Err(OidcError::IdToken("unreadable claims".into())),
            Err(e) => Err(OidcError::IdToken(e.to_string())),
        }
    }

    /// `claims`, with what the mapping needs and the ID token lacks taken from userinfo (many
    /// providers put only `sub` in the ID token of a code flow). Userinfo's `sub` must be the
    /// ID token's.
    async fn completed(
        &self,
        d: &Discovered,
        mut claims: Map<String, Value>,
        access: &AccessToken,
    ) -> Result<Map<String, Value>, OidcError> {
        let mut needed = vec![self.cfg.user_claim.as_str()];
        needed.extend(self.cfg.roles_claim.as_deref());
        if !self.cfg.allowed_domains.is_empty() {
            needed.push("email");
        }
        if needed
            .iter()
            .all(|k| super::claims::lookup(&claims, k).is_some())
        {
            return Ok(claims);
        }
        let Some(sub) = claim_str(&claims, "sub") else {
            return Ok(claims);
        };
        let Ok(req) = d
            .client
            .user_info(access.clone(), Some(SubjectIdentifier::new(sub)))
        else {
            return Ok(claims); // no userinfo endpoint: the ID token is all there is
        };
        let info = req
            .request_async::<Extra, _, CoreGenderClaim>(&self.http)
            .await
            .map_err(|e| {
                let why = format!("userinfo: {}", crate::proxy::error_chain(&e));
                match e {
                    // Another `sub` than the ID token's, or claims that do not parse: the
                    // answer is not one to trust — not an outage.
                    UserInfoError::ClaimsVerification(_) | UserInfoError::Parse(_) => {
                        OidcError::IdToken(why)
                    }
                    UserInfoError::Request(_) => OidcError::Unreachable(why),
                    // `Response`, `Other`, and what a later `openidconnect` adds
                    // (`#[non_exhaustive]`): the provider answered, not usefully.
                    _ => OidcError::ProviderRefused(why),
                }
            })?;
        if let Ok(Value::Object(extra)) = serde_json::to_value(&info) {
            for (k, v) in extra {
                claims.entry(k).or_insert(v);
            }
        }
        Ok(claims)
    }

    /// The refresh grant: is the user still there, and what are their claims now. The
    /// refreshed ID token (when one comes) must name the same `sub`.
    pub async fn recheck(
        &self,
        refresh: &str,
        sub: &str,
        now: u64,
    ) -> Result<Rechecked, OidcError> {
        let d = self.discovered().await?;
        let res = d
            .client
            .exchange_refresh_token(&RefreshToken::new(refresh.to_string()))
            .map_err(|e| OidcError::Discovery(e.to_string()))?
            .request_async(&self.http)
            .await;
        let tokens = match res {
            Ok(t) => t,
            Err(RequestTokenError::ServerResponse(r))
                if *r.error() == CoreErrorResponseType::InvalidGrant =>
            {
                return Ok(Rechecked::Gone(r.to_string()));
            }
            Err(e) => return Err(token_error(e)),
        };
        let mut claims = Map::new();
        claims.insert("sub".into(), Value::String(sub.to_string()));
        let mut d = d;
        let id_token = tokens.extra_fields().id_token();
        if let Some(t) = id_token {
            let (newer, c) = self
                .verified(d, t, now, |_: Option<&Nonce>| Ok::<(), String>(()))
                .await?;
            if claim_str(&c, "sub").as_deref() != Some(sub) {
                return Err(OidcError::IdToken(
                    "a refreshed ID token names another sub".into(),
                ));
            }
            d = newer;
            claims = c;
        }
        let claims = self.completed(&d, claims, tokens.access_token()).await?;
        Ok(Rechecked::Current {
            claims,
            refresh_token: tokens
                .refresh_token()
                .map_or_else(|| refresh.to_string(), |t| t.secret().clone()),
            id_token: id_token.map(ToString::to_string),
        })
    }

    /// The RP-initiated logout URL for a session (OpenID Connect RP-Initiated Logout 1.0),
    /// when the provider has an `end_session_endpoint`.
    pub async fn end_session_url(
        &self,
        id_token: Option<&str>,
        post_logout: &str,
    ) -> Option<String> {
        let d = self.discovered().await.ok()?;
        let end = d
            .meta
            .additional_metadata()
            .end_session_endpoint
            .as_deref()?;
        let mut url = url::Url::parse(end).ok()?;
        if url.scheme() != "https" {
            return None;
        }
        {
            let mut q = url.query_pairs_mut();
            if let Some(t) = id_token {
                q.append_pair("id_token_hint", t);
            }
            q.append_pair("client_id", &self.cfg.client_id);
            q.append_pair("post_logout_redirect_uri", post_logout);
        }
        Some(url.to_string())
    }
}

/// `iat` neither in the future (past a minute of skew) nor older than [`IAT_MAX_AGE`].
fn iat_ok(iat: i64, now: u64) -> Result<(), String> {
    let iat = u64::try_from(iat).map_err(|_| "iat before 1970".to_string())?;
    if iat > now + IAT_SKEW {
        return Err("issued in the future".into());
    }
    if iat + IAT_MAX_AGE < now {
        return Err("issued too long ago".into());
    }
    Ok(())
}

/// OpenID Connect Core 3.1.3.8: when the ID token carries `at_hash`, it must be the access
/// token's.
fn check_at_hash(d: &Discovered, id_token: &IdTok, access: &AccessToken) -> Result<(), OidcError> {
    let verifier = d.client.id_token_verifier();
    let Ok(claims) = id_token.claims(&verifier, |_: Option<&Nonce>| Ok::<(), String>(())) else {
        return Ok(()); // already verified above; a key refetched since then is not this one's concern
    };
    let Some(expected) = claims.access_token_hash() else {
        return Ok(());
    };
    let alg = id_token
        .signing_alg()
        .map_err(|e| OidcError::IdToken(e.to_string()))?;
    let key = id_token
        .signing_key(&verifier)
        .map_err(|e| OidcError::IdToken(e.to_string()))?;
    let actual = AccessTokenHash::from_token(access, alg, key)
        .map_err(|e| OidcError::IdToken(e.to_string()))?;
    if actual != *expected {
        return Err(OidcError::IdToken(
            "at_hash does not match the access token".into(),
        ));
    }
    Ok(())
}

pub(super) fn claim_str(claims: &Map<String, Value>, k: &str) -> Option<String> {
    claims.get(k).and_then(Value::as_str).map(str::to_string)
}

fn discovery_error<E: std::error::Error + 'static>(
    e: &openidconnect::DiscoveryError<E>,
) -> OidcError {
    match e {
        openidconnect::DiscoveryError::Request(inner) => {
            OidcError::Unreachable(crate::proxy::error_chain(inner))
        }
        other => OidcError::Discovery(crate::proxy::error_chain(other)),
    }
}

fn token_error(
    e: RequestTokenError<HttpError, StandardErrorResponse<CoreErrorResponseType>>,
) -> OidcError {
    match e {
        // The code is not valid: changed, used before, expired, or exchanged with another
        // flow's PKCE verifier — the callback's fault (a 400), not the provider's.
        RequestTokenError::ServerResponse(r)
            if *r.error() == CoreErrorResponseType::InvalidGrant =>
        {
            OidcError::Callback("the provider refused the code (invalid_grant)")
        }
        RequestTokenError::ServerResponse(r) => OidcError::ProviderRefused(r.error().to_string()),
        RequestTokenError::Request(e) => OidcError::Unreachable(e.to_string()),
        other => OidcError::Unreachable(crate::proxy::error_chain(&other)),
    }
}
