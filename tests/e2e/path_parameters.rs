//! Path parameters (`;`) that move a path to another route for the app than for the router.
//!
//! Threat: Tomcat, Jetty and Spring remove `;…` from each segment before routing, so
//! `/public/private;x/y` is `/public/private/y` to the app while a router that reads
//! `private;x` as a name puts it under the public `/public/`: a protected page served without
//! a session. Every path with a raw `;` is routed in both readings; if they disagree it is
//! refused (`400`). Where they agree, the path reaches the app as it was sent.

use crate::harness::*;

async fn start() -> Gateway {
    Gateway::start(
        GatewayConfig::default()
            .routes(vec![
                Route::public("/public/"),
                Route::protected("/public/private/"),
            ])
            .route(Route::public("/open")),
    )
    .await
}

#[tokio::test]
async fn a_path_parameter_cannot_move_a_protected_path_to_a_public_route() {
    let gw = start().await;
    for target in [
        "/public/private;x/y",
        "/public/private;jsessionid=ABC/y",
        "/public/private;/y",
        "/public/private;x",
        "/public/private;x/",
        "/public/;x/private/y",
        "/public/pri%76ate;x/y",
        "/public/private;x;y/z",
        "/public/private;x?q=1",
        "/open;x/../public/private;y/z",
    ] {
        let resp = gw.raw_get(target, &[]).await;
        assert_eq!(resp.status, 400, "{target}");
    }
    gw.assert_upstream_never_saw("private").await;
}

#[tokio::test]
async fn a_path_parameter_cannot_move_a_public_path_to_a_protected_route() {
    // `/open;x` is `/open` (public) to the app and the default protected route to the router:
    // not a bypass, but the two readings disagree about the policy, so it is refused too.
    let gw = start().await;
    for target in ["/open;x", "/open;x/y", "/;x/open"] {
        let resp = gw.raw_get(target, &[]).await;
        assert_eq!(resp.status, 400, "{target}");
    }
    assert_eq!(gw.journal_len().await, 0);
}

#[tokio::test]
async fn a_path_parameter_that_keeps_the_route_reaches_the_app_unchanged() {
    let gw = start().await;
    for (target, want) in [
        ("/public/a;x/b", "/public/a;x/b"),
        ("/public/a;jsessionid=1", "/public/a;jsessionid=1"),
        ("/public/a%3Bb", "/public/a%3Bb"),
    ] {
        let resp = gw.get(target).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{target}");
        assert_eq!(Echo::from(resp).await.path, want, "{target}");
    }
    // Protected in both readings: the protected answer, never a 400 or the app.
    let resp = gw.raw_get("/public/private/a;x/b", &[]).await;
    assert!(resp.status == 401 || resp.status == 302, "{}", resp.status);
    gw.assert_upstream_never_saw("private").await;
}
