//! Tables that client input grows are bounded and swept (issue 10, item 2).
//!
//! Threat: memory exhaustion by input — every failed login under a new user name, from a new
//! address, used to add a throttle entry that was never removed. The sweeper runs on the
//! background timer (every 15 s) and removes every entry whose failure window has passed;
//! `sessiongate_login_throttle_keys` and `sessiongate_login_throttle_swept_total` show it.

use std::time::{Duration, Instant};

use crate::harness::*;

#[tokio::test]
async fn failed_logins_under_new_names_leave_no_throttle_entry_behind() {
    let gw = Gateway::start(
        GatewayConfig::new()
            .set("login", "failure_window", "\"1s\"")
            .set("login", "max_failures_per_ip", "1000"),
    )
    .await;
    const NAMES: usize = 40;
    for i in 0..NAMES {
        let resp = gw.login_form(&format!("nobody-{i}"), "wrong", "/").await;
        assert_eq!(resp.status(), 401, "login {i}");
    }
    // One entry per name, per name and network, and the address: all of them swept once the
    // window has passed, on the sweeper's own timer (no request triggers it).
    let want = (2 * NAMES + 1) as f64;
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let text = metrics(&gw).await;
        let swept = metric(&text, "sessiongate_login_throttle_swept_total", &[]);
        let held = metric(&text, "sessiongate_login_throttle_keys", &[]);
        if swept >= want && held == 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "throttle entries not swept: {swept} swept (want {want}), {held} held"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
