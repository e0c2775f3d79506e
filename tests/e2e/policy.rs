//! Who may go where (`[[route]] allow_roles`, `allow_users`, `deny_roles`, `methods`,
//! `max_auth_age`), through the real binary in front of the real upstream.
//!
//! Users (the harness's users file): alice holds `admin` and `dev`, bob holds `dev`.
//!
//! Attacks and mistakes covered:
//! - a signed-in user without the role reaching an admin path (the legacy app checks nothing);
//!   a path under a nested route that opens it to more users must not open its siblings;
//! - a denied role that must win over an allow list; a method the route does not take;
//! - a path parameter that would move a request onto another route's policy (`;` readings);
//! - a 403 that names the rule, the route or the roles (what an attacker would map);
//! - a stolen but old session reaching a step-up route: back through login; once the user has
//!   signed in again the session goes on under a new id (the copy's id is ended), one row on
//!   the sessions page; a different user signing in with it gets a session of their own;
//! - every denial audited and counted.

use serde_json::Value;

use crate::harness::*;

fn policies() -> GatewayConfig {
    GatewayConfig::new().routes(vec![
        Route::public("/public/"),
        Route::public("/status").with(r#"methods = ["GET"]"#),
        Route::protected("/admin/").with(r#"allow_roles = ["admin"]"#),
        // Nested: open to the dev role too, but not to a suspended dev.
        Route::protected("/admin/reports/")
            .with(r#"allow_roles = ["admin", "dev"]"#)
            .with(r#"deny_roles = ["admin"]"#),
        Route::protected("/bob-only/").with(r#"allow_users = ["bob"]"#),
        Route::protected("/api/").with(r#"methods = ["GET", "POST"]"#),
    ])
}

async fn get_as(gw: &Gateway, s: &Session, path: &str, accept: &str) -> reqwest::Response {
    gw.get(path)
        .header("cookie", s.cookie_header())
        .header("accept", accept)
        .send()
        .await
        .expect("request")
}

/// A browser navigation to `path` with `s`'s cookies.
async fn navigate_as(gw: &Gateway, s: &Session, path: &str) -> reqwest::Response {
    gw.get(path)
        .header("cookie", s.cookie_header())
        .header("accept", "text/html")
        .header("sec-fetch-mode", "navigate")
        .header("sec-fetch-dest", "document")
        .send()
        .await
        .expect("navigation")
}

/// `403` from the gateway itself (never the app's echo), naming no route, role or user.
async fn assert_forbidden(resp: reqwest::Response, html: bool, what: &str) {
    assert_eq!(resp.status(), 403, "{what}");
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = resp.text().await.unwrap();
    // What a reader sees: the page's <main> (its style sheet holds words like "device").
    let shown = match (text.find("<main>"), text.find("</main>")) {
        (Some(a), Some(b)) => text[a..b].to_string(),
        _ => text.clone(),
    };
    if html {
        assert!(ctype.starts_with("text/html"), "{what}: {ctype}");
        assert!(text.contains("Access denied"), "{what}: {text}");
    } else {
        assert!(ctype.starts_with("application/json"), "{what}: {ctype}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["error"], "forbidden", "{what}: {text}");
    }
    for leak in [
        "admin", "dev", "bob", "alice", "allow_", "deny_", "/reports", "route",
    ] {
        assert!(
            !shown.to_lowercase().contains(leak),
            "{what}: the 403 names {leak:?}: {text}"
        );
    }
}

#[tokio::test]
async fn roles_users_and_methods_decide_on_nested_routes_and_403_names_nothing() {
    let gw = Gateway::start(policies()).await;
    let alice = gw.login_alice().await;
    let bob = gw.login("bob", BOB_PASSWORD).await;
    let json = "application/json";

    // Roles: /admin/ is for admins.
    let ok = Echo::from(get_as(&gw, &alice, "/admin/users", json).await).await;
    assert_eq!(ok.header("x-auth-user"), Some("alice"));
    assert_forbidden(
        get_as(&gw, &bob, "/admin/users", json).await,
        false,
        "bob on /admin/",
    )
    .await;
    let nav = navigate_as(&gw, &bob, "/admin/users").await;
    assert_forbidden(nav, true, "bob navigating to /admin/").await;

    // The nested route lets the dev role in, and its deny_roles keeps admins out of it even
    // though allow_roles names them; its siblings under /admin/ stay closed to bob.
    let r = Echo::from(get_as(&gw, &bob, "/admin/reports/q3", json).await).await;
    assert_eq!(r.header("x-auth-user"), Some("bob"));
    assert_forbidden(
        get_as(&gw, &alice, "/admin/reports/q3", json).await,
        false,
        "deny_roles beats allow_roles",
    )
    .await;
    assert_forbidden(
        get_as(&gw, &bob, "/admin/reportsx", json).await,
        false,
        "a sibling of the nested route",
    )
    .await;
    // A path parameter: `/admin/reports;x/q3` is under /admin/ (which lets alice in) as
    // written, and under /admin/reports/ (which keeps her out) as a Java app reads it. Two
    // readings, two policies: refused.
    let moved = get_as(&gw, &alice, "/admin/reports;jsessionid=1/q3", json).await;
    assert_eq!(
        moved.status(),
        400,
        "a ';' reading onto another route's policy"
    );

    // Users: /bob-only/ names bob, and alice's admin role does not open it.
    let b = Echo::from(get_as(&gw, &bob, "/bob-only/x", json).await).await;
    assert_eq!(b.header("x-auth-user"), Some("bob"));
    assert_forbidden(
        get_as(&gw, &alice, "/bob-only/x", json).await,
        false,
        "alice on /bob-only/",
    )
    .await;

    // Methods: /api/ takes GET (and so HEAD) and POST; DELETE is refused for everyone.
    let head = gw
        .client
        .head(gw.url("/api/items"))
        .header("cookie", alice.cookie_header())
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200, "HEAD where GET is allowed");
    let del = gw
        .client
        .delete(gw.url("/api/items/1"))
        .header("cookie", alice.cookie_header())
        .header("origin", gw.origin())
        .header("sec-fetch-site", "same-origin")
        .header("accept", json)
        .send()
        .await
        .unwrap();
    assert_forbidden(del, false, "DELETE on /api/").await;
    // On a public route, methods apply without a session.
    let anon = gw.get("/status").send().await.unwrap();
    assert_eq!(anon.status(), 200, "GET /status without a session");
    let anon_post = gw
        .post("/status")
        .header("accept", json)
        .send()
        .await
        .unwrap();
    assert_forbidden(anon_post, false, "POST /status").await;
    // A path no route names: any signed-in user.
    let any = Echo::from(get_as(&gw, &bob, "/elsewhere", json).await).await;
    assert_eq!(any.header("x-auth-user"), Some("bob"));

    // Every denial is audited (who, which session, which route — for the operator only) and
    // counted by reason.
    let denied: Vec<Value> = gw
        .audit_events()
        .into_iter()
        .filter(|e| e["event"] == "access_denied")
        .collect();
    assert_eq!(denied.len(), 7, "{denied:#?}");
    let bob_admin = denied
        .iter()
        .find(|e| e["user"] == "bob" && e["reason"].as_str().unwrap().contains("/admin/"))
        .expect("bob's denial on /admin/ audited");
    assert!(
        bob_admin["reason"]
            .as_str()
            .unwrap()
            .starts_with("not_allowed"),
        "{bob_admin}"
    );
    assert!(bob_admin["session"].as_str().is_some_and(|s| !s.is_empty()));
    let m = metrics(&gw).await;
    let by = |reason: &str| {
        metric(
            &m,
            "sessiongate_policy_denials_total",
            &[("reason", reason)],
        )
    };
    assert_eq!(by("not_allowed"), 4.0, "{m}");
    assert_eq!(by("deny_roles"), 1.0);
    assert_eq!(by("method"), 2.0);
    assert_eq!(
        by("step_up"),
        0.0,
        "the series exists at zero, so an alert on it means something"
    );
    let refused = metric(
        &m,
        "sessiongate_requests_total",
        &[("outcome", "refused"), ("status_class", "4xx")],
    );
    assert!(refused >= 7.0, "the 403s are refusals: {refused}");
}

async fn me(gw: &Gateway, cookie: &str) -> Value {
    let resp = gw
        .get("/.auth/me")
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

async fn sessions_json(gw: &Gateway, cookie: &str) -> Vec<Value> {
    let resp = gw
        .get("/.auth/sessions")
        .header("cookie", cookie)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    v["sessions"].as_array().unwrap().clone()
}

#[tokio::test]
async fn an_old_login_is_sent_back_through_login_and_keeps_its_session() {
    let gw = Gateway::start(GatewayConfig::new().routes(vec![
        Route::public("/public/"),
        Route::protected("/billing/").with(r#"max_auth_age = "2s""#),
    ]))
    .await;
    let alice = gw.login_alice().await;
    let handle = me(&gw, &alice.cookie_header()).await["session"]
        .as_str()
        .unwrap()
        .to_string();
    let fresh = Echo::from(get_as(&gw, &alice, "/billing/card", "application/json").await).await;
    assert_eq!(fresh.header("x-auth-user"), Some("alice"));
    let first_auth = sessions_json(&gw, &alice.cookie_header()).await[0]["last_authenticated"]
        .as_u64()
        .expect("the sessions page shows when the session last authenticated");

    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    // Other routes do not care how old the login is.
    assert_eq!(
        get_as(&gw, &alice, "/elsewhere", "application/json")
            .await
            .status(),
        200
    );
    // A navigation goes to the login page, saying why, and comes back to where it was.
    let nav = navigate_as(&gw, &alice, "/billing/card?x=1").await;
    assert_eq!(nav.status(), 302);
    let to = nav.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(
        to,
        "/.auth/login?return_to=%2Fbilling%2Fcard%3Fx%3D1&reauth=1"
    );
    let page = gw
        .get(&to)
        .header("cookie", alice.cookie_header())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("needs a recent sign-in"), "{page}");
    // An API call gets RFC 9470's challenge.
    let api = get_as(&gw, &alice, "/billing/card", "application/json").await;
    assert_eq!(api.status(), 401);
    let challenge = api.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.contains("error=\"insufficient_user_authentication\"")
            && challenge.contains("max_age=2"),
        "{challenge}"
    );
    let body: Value = api.json().await.unwrap();
    assert_eq!(body["error"], "reauthentication_required");

    // Signing in again with the session's cookies: the same session goes on, authenticated
    // now, under a new id (the old one ends: a copy of the old cookies gains nothing).
    let before = sessions_json(&gw, &alice.cookie_header()).await;
    let again = gw
        .login_with(
            "alice",
            ALICE_PASSWORD,
            &[("cookie", &alice.cookie_header())],
        )
        .await;
    let renewed = me(&gw, &again.cookie_header()).await["session"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(renewed, handle, "a new session id at re-authentication");
    let ok = Echo::from(get_as(&gw, &again, "/billing/card", "application/json").await).await;
    assert_eq!(ok.header("x-auth-user"), Some("alice"));
    let listed = sessions_json(&gw, &again.cookie_header()).await;
    assert_eq!(
        listed.len(),
        1,
        "one session, not a second one: {listed:#?}"
    );
    assert_eq!(
        listed[0]["created"], before[0]["created"],
        "it goes on from its start"
    );
    assert_eq!(
        listed[0]["expires"], before[0]["expires"],
        "and ends when it would have"
    );
    assert!(listed[0]["last_authenticated"].as_u64().unwrap() > first_auth);
    for (what, cookie) in [
        ("access", alice.access_only()),
        ("refresh", alice.refresh_only()),
    ] {
        let r = gw
            .get("/elsewhere")
            .header("cookie", cookie)
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            401,
            "the old {what} cookie names an ended session"
        );
    }

    // Someone else signing in with alice's cookies gets a session of their own.
    let bob = gw
        .login_with("bob", BOB_PASSWORD, &[("cookie", &again.cookie_header())])
        .await;
    let bob_me = me(&gw, &bob.cookie_header()).await;
    assert_eq!(bob_me["sub"], "bob");
    assert_ne!(bob_me["session"], renewed.as_str());
    let still = me(&gw, &again.cookie_header()).await;
    assert_eq!(
        still["session"],
        renewed.as_str(),
        "alice's session goes on"
    );

    let events = gw.audit_events();
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "step_up" && e["user"] == "alice")
    );
    let step = format!("step-up: renews session {handle}");
    assert!(
        events.iter().any(|e| e["event"] == "login_ok"
            && e["session"] == renewed.as_str()
            && e["reason"] == step.as_str()),
        "{events:#?}"
    );
    let m = metrics(&gw).await;
    assert_eq!(
        metric(
            &m,
            "sessiongate_policy_denials_total",
            &[("reason", "step_up")]
        ),
        2.0,
        "{m}"
    );
}

#[tokio::test]
async fn check_config_refuses_policies_nothing_can_pass_and_warns_about_unknown_names() {
    let cases: [(Route, &str); 4] = [
        (
            Route::protected("/a/").with("allow_roles = []"),
            "route[1].allow_roles",
        ),
        (
            Route::protected("/a/")
                .with(r#"allow_roles = ["admin"]"#)
                .with(r#"deny_roles = ["admin"]"#),
            "route[1].allow_roles",
        ),
        (
            Route::protected("/a/").with("methods = []"),
            "route[1].methods",
        ),
        (
            Route::public("/a/").with(r#"allow_roles = ["admin"]"#),
            "route[1].allow_roles",
        ),
    ];
    for (route, key) in cases {
        let cfg = GatewayConfig::new().route(route.clone());
        let w = write_config(&cfg, |t| t);
        let (ok, out) = check_config(&w.path, &random_secret(), &random_secret());
        assert!(!ok, "{route:?} accepted: {out}");
        assert!(out.contains(key), "{route:?}: the error names {key}: {out}");
    }
    let cfg = GatewayConfig::new()
        .route(Route::protected("/ops/").with(r#"allow_roles = ["admni"]"#))
        .route(Route::protected("/ops/api/").with(r#"methods = ["GET"]"#))
        .route(Route::protected("/bob/").with(r#"allow_users = ["bbo"]"#));
    let w = write_config(&cfg, |t| t);
    let (ok, out) = check_config(&w.path, &random_secret(), &random_secret());
    assert!(ok, "unknown names are warnings: {out}");
    assert!(
        out.contains("route[1].allow_roles[0]") && out.contains("known roles: admin, dev"),
        "{out}"
    );
    assert!(
        out.contains("route[3].allow_users[0]") && out.contains("\"bbo\""),
        "{out}"
    );
    // The nested route drops its parent's role check: said, since it opens /ops/api/ to all.
    assert!(
        out.contains("config warning: route[2]") && out.contains("most specific"),
        "{out}"
    );
}
