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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::RawConfig;

    fn check(toml_text: &str) -> (RateLimitConfig, Vec<String>) {
        let raw: RawConfig = toml::from_str(toml_text).unwrap();
        let mut errs = Errors::default();
        let cfg = validate(&raw.rate_limit, &raw.route, &mut errs);
        (cfg, errs.0.into_iter().map(|e| e.key).collect())
    }

    #[test]
    fn no_table_is_no_limit() {
        let (cfg, errs) = check("[[route]]\npath_prefix = \"/a/\"\n");
        assert!(errs.is_empty());
        assert!(cfg.global.is_empty());
        assert_eq!(cfg.routes, vec![("/a/".to_string(), None)]);
    }

    #[test]
    fn burst_defaults_to_count_and_a_route_inherits_what_it_leaves_out() {
        let (cfg, errs) = check(
            "[rate_limit]\nper_session = \"100/15m\"\nanonymous_per_ip = \"10/1s\"\n\
             [[route]]\npath_prefix = \"/a/\"\nrate_limit = { per_session = \"10/1m\", burst = 5 }\n\
             [[route]]\npath_prefix = \"/b/\"\nrate_limit = { burst = 2 }\n",
        );
        assert!(errs.is_empty(), "{errs:?}");
        let g = cfg.global.per_session.unwrap();
        assert_eq!(
            (g.rate.count, g.rate.per, g.burst),
            (100, Duration::from_secs(900), 100)
        );
        let a = cfg.routes[0].1.unwrap();
        let s = a.per_session.unwrap();
        assert_eq!((s.rate.count, s.burst), (10, 5));
        // The route's burst applies to the rate it inherits too.
        assert_eq!(a.anonymous_per_ip.unwrap().burst, 5);
        let b = cfg.routes[1].1.unwrap();
        assert_eq!(b.per_session.unwrap().rate.count, 100);
        assert_eq!(b.per_session.unwrap().burst, 2);
    }

    #[test]
    fn every_mistake_names_its_key_once() {
        let (_, errs) = check(
            "[rate_limit]\nper_session = \"0/1m\"\nburst = 0\nanonymous_per_ip = \"x\"\n\
             [[route]]\npath_prefix = \"/a/\"\n\
             [[route]]\npath_prefix = \"/b/\"\nrate_limit = { per_session = \"5/0s\", burst = 0 }\n\
             [[route]]\npath_prefix = \"/c/\"\nrate_limit = { anonymous_per_ip = \"1/30d\", burst = 2 }\n",
        );
        assert_eq!(
            errs,
            [
                "rate_limit.burst",
                "rate_limit.per_session",
                "rate_limit.anonymous_per_ip",
                "route[1].rate_limit.burst",
                "route[1].rate_limit.per_session",
                "route[2].rate_limit.anonymous_per_ip",
            ]
        );
    }
}
