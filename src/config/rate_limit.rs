//! `[rate_limit]` and `[[route]] rate_limit`, validated: the rates a request is charged
//! against (`crate::ratelimit` enforces them). Rates are written `COUNT/DURATION`
//! (`"100/15m"`, `"10/1s"`; the duration in humantime).

use std::time::Duration;

/// `COUNT` requests per `DURATION`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    pub count: u64,
    pub per: Duration,
}

/// A rate and the bucket's capacity (`burst`; `COUNT` unless set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limit {
    pub rate: Rate,
    pub burst: u64,
}

/// The limits of one scope (the whole gateway, or one route that overrides them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Requests with a session, keyed by the session's handle.
    pub per_session: Option<Limit>,
    /// Requests without a session on public routes, keyed by client IP (IPv6 by its /64).
    pub anonymous_per_ip: Option<Limit>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        self.per_session.is_none() && self.anonymous_per_ip.is_none()
    }
}

/// Every rate limit of the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// `[rate_limit]`.
    pub global: Limits,
    /// Every `[[route]]`, in the order written: its `path_prefix` and, when it has a
    /// `rate_limit` table, its own limits (the keys it leaves out taken from `[rate_limit]`).
    pub routes: Vec<(String, Option<Limits>)>,
}

/// The largest `COUNT` and `burst` accepted.
pub const MAX_COUNT: u64 = 1_000_000_000;
/// The longest `DURATION`, and the longest a full bucket may take to refill
/// (`burst × DURATION / COUNT`).
pub const MAX_WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);

/// Parse `COUNT/DURATION`; the message says what is wrong.
pub fn parse_rate(s: &str) -> Result<Rate, String> {
    let shape = || format!("{s:?} is not a rate like \"100/15m\" (COUNT/DURATION)");
    let (count, per) = s.split_once('/').ok_or_else(shape)?;
    let count: u64 = count.trim().parse().map_err(|_| shape())?;
    let per = humantime::parse_duration(per.trim()).map_err(|_| shape())?;
    if count == 0 {
        return Err(format!("{s:?}: COUNT must be at least 1"));
    }
    if count > MAX_COUNT {
        return Err(format!("{s:?}: COUNT must be at most {MAX_COUNT}"));
    }
    if per.is_zero() {
        return Err(format!("{s:?}: DURATION must not be zero"));
    }
    if per > MAX_WINDOW {
        return Err(format!("{s:?}: DURATION must be at most 30 days"));
    }
    Ok(Rate { count, per })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_as_count_per_duration() {
        assert_eq!(
            parse_rate("100/15m"),
            Ok(Rate {
                count: 100,
                per: Duration::from_secs(900)
            })
        );
        assert_eq!(
            parse_rate("10/1s").map(|r| r.per),
            Ok(Duration::from_secs(1))
        );
        assert_eq!(
            parse_rate(" 5 / 1h 30m").map(|r| (r.count, r.per)),
            Ok((5, Duration::from_secs(5400)))
        );
        assert_eq!(
            parse_rate("5/500ms").map(|r| r.per),
            Ok(Duration::from_millis(500))
        );
    }

    #[test]
    fn malformed_and_zero_rates_are_refused() {
        for bad in [
            "", "100", "/15m", "100/", "x/1s", "-1/1s", "1.5/1s", "10/ten", "10/1s/2", "1e3/1s",
        ] {
            assert!(parse_rate(bad).is_err(), "{bad:?}");
        }
        assert!(parse_rate("0/1s").unwrap_err().contains("at least 1"));
        assert!(parse_rate("5/0s").unwrap_err().contains("zero"));
        assert!(parse_rate("1/31d").unwrap_err().contains("30 days"));
        assert!(parse_rate("1000000001/1s").is_err());
    }
}
