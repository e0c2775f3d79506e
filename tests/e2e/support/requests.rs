//! Requests that tests send over and over, as [`Gateway`] methods: plain GET/POST on the
//! public origin, the logins, logout and refresh. Each returns the response (or, for the
//! asserting logins, the session) so that the test asserts on it itself.

use super::gateway::Gateway;
use super::session::{ACCESS_COOKIE, Session};
use super::users::ALICE_PASSWORD;
use super::util::form_urlencode;

impl Gateway {
    /// `GET` on the public origin.
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path))
    }

    /// `POST` on the public origin as a same-origin page sends it (`Origin: <origin>`,
    /// `Sec-Fetch-Site: same-origin`).
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .post(self.url(path))
            .header("origin", self.origin())
            .header("sec-fetch-site", "same-origin")
    }

    /// Form login through `POST /.auth/login`; asserts the `303` and both cookies.
    pub async fn login(&self, user: &str, password: &str) -> Session {
        let resp = self.login_form(user, password, "/").await;
        assert_eq!(
            resp.status(),
            303,
            "form login of {user} should answer 303; body: {:?}",
            resp.text().await
        );
        Session::from_response_headers(resp.headers())
            .unwrap_or_else(|| panic!("login response lacks the session cookies"))
    }

    pub async fn login_alice(&self) -> Session {
        self.login("alice", ALICE_PASSWORD).await
    }

    pub async fn login_form(
        &self,
        user: &str,
        password: &str,
        return_to: &str,
    ) -> reqwest::Response {
        let body = form_urlencode(&[
            ("username", user),
            ("password", password),
            ("return_to", return_to),
        ]);
        self.post("/.auth/login")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "text/html")
            .body(body)
            .send()
            .await
            .expect("POST /.auth/login")
    }

    pub async fn login_json(&self, user: &str, password: &str) -> reqwest::Response {
        self.client
            .post(self.url("/.auth/login"))
            .json(&serde_json::json!({"username": user, "password": password}))
            .send()
            .await
            .expect("POST /.auth/login (json)")
    }

    /// A protected-route request carrying `session`'s cookies.
    /// Status of a protected API request carrying only this access token as its cookie.
    pub async fn access_status(&self, access: &str) -> u16 {
        self.get("/private/probe")
            .header("cookie", format!("{ACCESS_COOKIE}={access}"))
            .header("accept", "application/json")
            .send()
            .await
            .expect("GET /private/probe")
            .status()
            .as_u16()
    }

    /// Poll until this gateway refuses the access token (401), every 20 ms; panics on any
    /// other status, or when that takes longer than `within`. Returns how long it took.
    pub async fn refused_within(
        &self,
        access: &str,
        within: std::time::Duration,
        what: &str,
    ) -> std::time::Duration {
        let start = std::time::Instant::now();
        loop {
            let status = self.access_status(access).await;
            if status == 401 {
                return start.elapsed();
            }
            assert_eq!(status, 200, "{what}: unexpected status while polling");
            assert!(
                start.elapsed() < within,
                "{what}: the access token was still accepted {:?} later",
                start.elapsed()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub async fn get_with(&self, path: &str, cookie: &str) -> reqwest::Response {
        self.get(path)
            .header("cookie", cookie)
            .send()
            .await
            .expect("request")
    }
    /// Form login with extra request headers (`User-Agent`, `X-Forwarded-For`, ...); asserts
    /// the `303` and both cookies.
    pub async fn login_with(
        &self,
        user: &str,
        password: &str,
        headers: &[(&str, &str)],
    ) -> Session {
        let body = form_urlencode(&[("username", user), ("password", password)]);
        let mut req = self
            .post("/.auth/login")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("POST /.auth/login");
        let status = resp.status();
        let session = Session::from_response_headers(resp.headers());
        assert_eq!(
            status,
            303,
            "login of {user} with {headers:?}: {:?}",
            resp.text().await
        );
        session.unwrap_or_else(|| panic!("login of {user} set no session cookies"))
    }

    /// [`Gateway::post`] with this `Cookie` header and extra headers, sent.
    async fn post_with(
        &self,
        path: &str,
        cookie: &str,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = self.post(path).header("cookie", cookie);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// `POST /.auth/logout` with both of `s`'s cookies, as an API client (`Accept:
    /// application/json`, answered `204` on success).
    pub async fn logout(&self, s: &Session) -> reqwest::Response {
        self.logout_with(&s.cookie_header(), &[("accept", "application/json")])
            .await
    }

    /// `POST /.auth/logout` with this `Cookie` header and extra headers (an `Accept` of the
    /// test's choosing, or none).
    pub async fn logout_with(&self, cookie: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        self.post_with("/.auth/logout", cookie, headers).await
    }

    /// `POST /.auth/refresh` with only `s`'s refresh cookie.
    pub async fn refresh(&self, s: &Session) -> reqwest::Response {
        self.refresh_with(&s.refresh_only(), &[]).await
    }

    /// `POST /.auth/refresh` with this `Cookie` header (both cookies, a refresh cookie alone,
    /// a stale one) and extra headers (`User-Agent`, `X-Forwarded-For`, `Accept`, ...).
    pub async fn refresh_with(&self, cookie: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        self.post_with("/.auth/refresh", cookie, headers).await
    }

    /// `POST /.auth/refresh` as an API client: `{"refresh_token": ...}` in a JSON body, no
    /// cookie, no `Origin`.
    pub async fn refresh_json(&self, refresh_token: &str) -> reqwest::Response {
        self.client
            .post(self.url("/.auth/refresh"))
            .json(&serde_json::json!({ "refresh_token": refresh_token }))
            .send()
            .await
            .expect("POST /.auth/refresh (json)")
    }
}
