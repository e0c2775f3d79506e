//! `[rate_limit]` and each `[[route]] rate_limit`: rates that parse, no zero, a bucket that
//! refills within 30 days; a route's table inherits the keys it leaves out.

use super::Errors;
use crate::config::rate_limit::{
    Limit, Limits, MAX_COUNT, MAX_WINDOW, Rate, RateLimitConfig, parse_rate,
};
use crate::config::raw::{RawRateLimit, RawRoute};

pub(super) fn validate(
    global: &RawRateLimit,
    routes: &[RawRoute],
    errs: &mut Errors,
) -> RateLimitConfig {
    let own = limits(global, &RawRateLimit::default(), "rate_limit", errs);
    let routes = routes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let own = r
                .rate_limit
                .as_ref()
                .map(|own| limits(own, global, &format!("route[{i}].rate_limit"), errs));
            (r.path_prefix.clone(), own)
        })
        .collect();
    RateLimitConfig {
        global: own,
        routes,
    }
}

/// One table's limits; a key it leaves out is `inherit`'s (then checked under the table's
/// own name, which is where `[rate_limit]`'s own errors are reported already).
fn limits(raw: &RawRateLimit, inherit: &RawRateLimit, at: &str, errs: &mut Errors) -> Limits {
    let burst = raw.burst.or(inherit.burst);
    if raw.burst == Some(0) {
        errs.add(format!("{at}.burst"), "must be at least 1");
    } else if raw.burst.is_some_and(|b| b > MAX_COUNT) {
        errs.add(
            format!("{at}.burst"),
            format!("must be at most {MAX_COUNT}"),
        );
    }
    let mut one = |own: &Option<String>, inherited: &Option<String>, key: &str| {
        let (text, from) = match (own, inherited) {
            (Some(t), _) => (t, at),
            (None, Some(t)) => (t, "rate_limit"),
            (None, None) => return None,
        };
        let rate = match parse_rate(text) {
            Ok(r) => r,
            Err(why) => {
                // `[rate_limit]`'s own mistake is reported once, under its own key.
                if from == at {
                    errs.add(format!("{at}.{key}"), why);
                }
                return None;
            }
        };
        let burst = burst.filter(|b| *b > 0).unwrap_or(rate.count);
        if refill_time(rate, burst) > MAX_WINDOW {
            errs.add(
                format!("{at}.{key}"),
                format!("with burst {burst}, a bucket would take more than 30 days to refill (burst × DURATION / COUNT)"),
            );
            return None;
        }
        Some(Limit { rate, burst })
    };
    Limits {
        per_session: one(&raw.per_session, &inherit.per_session, "per_session"),
        anonymous_per_ip: one(
            &raw.anonymous_per_ip,
            &inherit.anonymous_per_ip,
            "anonymous_per_ip",
        ),
    }
}

fn refill_time(rate: Rate, burst: u64) -> std::time::Duration {
    let per_token = rate.per.as_nanos() / u128::from(rate.count);
    let total = per_token.saturating_mul(u128::from(burst));
    std::time::Duration::from_nanos(u64::try_from(total).unwrap_or(u64::MAX))
}
