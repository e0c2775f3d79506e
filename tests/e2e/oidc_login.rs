//! Sign-in through a real OpenID provider (`oidc-provider`, `support/oidc.rs`).

use serde_json::Value;

use crate::harness::*;

const CLIENT: &str = "gateway";
const SECRET: &str = "gateway-client-secret-0123456789abcdefghijkl";

fn alice() -> IdpUser {
    IdpUser::new("sub-alice", "alice", "alice-pw").groups(&["staff", "admins"])
}

/// A provider with the gateway registered, and a gateway using it.
async fn setup(cfg: GatewayConfig) -> (OidcProvider, Gateway) {
    let idp = OidcProvider::launch().await;
    let cfg = cfg.oidc_provider_with(&idp, "corp", CLIENT, SECRET, "roles_claim = \"groups\"\n");
    let gw = Gateway::start(cfg).await;
    let mut c = IdpClient::for_gateway(&gw, CLIENT, SECRET);
    c.post_logout_redirect_uris = vec!["https://localhost/.auth/login?signed_out=1".into()];
    let mut s = IdpSetup::new(vec![c], vec![alice()]);
    s.trust_ca = Some(gw.ca_file());
    idp.configure(&s).await;
    (idp, gw)
}

#[tokio::test]
async fn smoke_login_through_the_provider_reaches_the_app_with_the_identity() {
    let (idp, gw) = setup(GatewayConfig::new()).await;
    let b = browser(&gw, &idp);
    let hops = follow(
        &b,
        &gw.url("/.auth/oidc/start?provider=corp&return_to=/app/x"),
        Some(("alice", "alice-pw")),
        None,
    )
    .await;
    for h in &hops.hops {
        eprintln!("{} {} {} {:?}", h.method, h.url, h.status, h.location);
    }
    eprintln!("last {} {} {}", hops.status, hops.url, hops.body);
    eprintln!(
        "gw stderr: {}",
        std::fs::read_to_string(&gw.stderr_log).unwrap_or_default()
    );
    assert_eq!(hops.status, 200, "{}", hops.body);
    let v: Value = serde_json::from_str(&hops.body).unwrap();
    eprintln!("{v:#}");
}
