//! Credential query parameters in the spellings frameworks read (issue 10, item 15).
//!
//! Attacks covered: a token smuggled to the upstream (and its logs) under a name the scanner
//! did not recognise but the app's framework reads as the credential parameter:
//! - `;` as a separator (PHP with `arg_separator.input`, Rack, Python before 3.9.2, Go before
//!   1.17): `a=1;token=…`;
//! - array and nested forms (PHP, Rails/Rack): `access_token[]`, `access_token[x]`,
//!   `refresh_token[a][b]`, and their percent-encoded brackets;
//! - names PHP normalises: `.`, space, `+` and an unmatched `[` read as `_` (`access.token`,
//!   `access+token`, `access%20token`, `access[token`);
//! - percent-encoded characters in the name (`%61ccess_token`, `access%2Etoken`), encoded
//!   twice (`%2561ccess_token`), a NUL that ends the name (`access_token%00x`), a leading space;
//! - case, ASCII and Unicode (`ACCESS.TOKEN`, `ſid` that Java's `equalsIgnoreCase` reads as
//!   `sid`);
//! - the same through every place that scans: the url-tokens stage in `strip`, `redirect` and
//!   `reject` mode, the plain-HTTP redirect's `Location`, and `return_to` after a login.
//!
//! Neighbours that must stay: `tokenizer`, `my_token`, `token_type`, `x[token]`, and the
//! separators of what is kept.

use crate::harness::*;

/// `(spelling, secret marker)`: each a credential parameter to some framework.
const SPELLINGS: &[&str] = &[
    "token=URLSECRET01",
    "access_token[]=URLSECRET02",
    "access_token[x]=URLSECRET03",
    "refresh_token[a][b]=URLSECRET04",
    "id_token%5B%5D=URLSECRET05",
    "access.token=URLSECRET06",
    "access+token=URLSECRET07",
    "access%20token=URLSECRET08",
    "access%2Etoken=URLSECRET09",
    "ACCESS.TOKEN=URLSECRET10",
    "access[token=URLSECRET11",
    "%61ccess_token=URLSECRET12",
    "%2561ccess_token=URLSECRET13",
    "access_token%00x=URLSECRET14",
    "%20jwt=URLSECRET15",
    "%C5%BFid=URLSECRET16",
    "Session[]=URLSECRET17",
];

#[tokio::test]
async fn credential_params_in_other_spellings_are_stripped() {
    let gw = Gateway::start(GatewayConfig::new().url_tokens("strip")).await;
    for spelling in SPELLINGS {
        for (sep, target) in [
            ("&", format!("/public/x?keep=1&{spelling}&b=2")),
            (";", format!("/public/x?keep=1;{spelling};b=2")),
        ] {
            let echo = Echo::from_raw(&gw.raw_get(&target, &[]).await);
            assert_eq!(echo.path, "/public/x");
            assert_eq!(
                echo.query,
                format!("keep=1{sep}b=2"),
                "{target}: the upstream's query"
            );
        }
    }
    // A credential after `;` hides inside a value for `&`-only parsers: still removed.
    let echo = Echo::from_raw(
        &gw.raw_get("/public/y?a=1;token=URLSECRETsemi&b=2", &[])
            .await,
    );
    assert_eq!(echo.query, "a=1&b=2");
    // Neighbours that are no credential parameter reach the app untouched.
    let q = "tokenizer=1&my_token=2;token_type=bearer&x[token]=3&access-token=4&sessions=5";
    let echo = Echo::from_raw(&gw.raw_get(&format!("/public/z?{q}"), &[]).await);
    assert_eq!(echo.query, q);
    gw.assert_upstream_never_saw("URLSECRET").await;
}

#[tokio::test]
async fn other_spellings_are_redirected_to_the_clean_url_or_rejected() {
    let gw = Gateway::start_default().await;
    for spelling in SPELLINGS {
        for target in [
            format!("/public/x?a=1&{spelling}"),
            format!("/public/x?a=1;{spelling}"),
        ] {
            let resp = gw.raw_get(&target, &[]).await;
            assert_eq!(resp.status, 303, "{target}");
            assert_eq!(resp.header("location"), Some("/public/x?a=1"), "{target}");
        }
    }
    assert!(gw.journal().await.is_empty(), "{:?}", gw.journal().await);

    let gw = Gateway::start(GatewayConfig::new().url_tokens("reject")).await;
    for spelling in SPELLINGS {
        let target = format!("/public/x?{spelling}");
        assert_eq!(gw.raw_get(&target, &[]).await.status, 400, "{target}");
    }
    assert!(gw.journal().await.is_empty(), "{:?}", gw.journal().await);
}

#[tokio::test]
async fn plain_http_redirect_drops_other_spellings() {
    let gw = Gateway::start_default().await;
    for spelling in SPELLINGS {
        let path = format!("/private/page?a=1;{spelling}&b=2");
        let resp = gw
            .plain
            .get(format!("http://{}{}", gw.http, path))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 308, "{path}");
        let location = resp.headers().get("location").unwrap().to_str().unwrap();
        assert_eq!(location, gw.url("/private/page?a=1&b=2"), "{path}");
    }
}

#[tokio::test]
async fn return_to_drops_other_spellings() {
    let gw = Gateway::start_default().await;
    for spelling in SPELLINGS {
        let return_to = format!("/app/page?x=1;{spelling}&y=2");
        let resp = gw.login_form("alice", ALICE_PASSWORD, &return_to).await;
        assert_eq!(resp.status(), 303, "return_to={return_to}");
        let location = resp.headers().get("location").unwrap().to_str().unwrap();
        assert_eq!(location, "/app/page?x=1&y=2", "return_to={return_to}");
    }
}
