//! The gateway's `/metrics` (Prometheus text on the admin listener), and reading a sample.

use super::gateway::Gateway;

/// The sum of the samples of `name` whose labels include all of `labels` (0 when none).
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = match series.split_once('{') {
                Some((n, rest)) => (n, rest),
                None => (series, ""),
            };
            (n == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// `GET /metrics` (it needs no token); asserts `200`.
pub async fn metrics(gw: &Gateway) -> String {
    let resp = gw
        .plain
        .get(gw.admin_url("/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(resp.status(), 200, "/metrics needs no token");
    resp.text().await.unwrap()
}
