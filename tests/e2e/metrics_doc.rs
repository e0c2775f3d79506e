//! `docs/metrics.md` against a running gateway's `/metrics`, both ways: every series scraped
//! is documented (with its type), and every documented series is scraped.

use std::collections::BTreeMap;

use crate::harness::*;

/// `series -> type` from the doc's table rows (`| \`name\` | type | labels | meaning |`).
fn documented() -> BTreeMap<String, String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md");
    let text = std::fs::read_to_string(path).expect("docs/metrics.md");
    text.lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            Some((name.to_string(), (*cells.get(2)?).to_string()))
        })
        .collect()
}

/// `series -> type` from the exposition: a counter family `x` is scraped as `x_total`, a
/// histogram's samples (`_bucket`, `_sum`, `_count`) stand for the family. Only families with
/// at least one sample count.
fn scraped(text: &str) -> BTreeMap<String, String> {
    let mut types = BTreeMap::new();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            if let (Some(n), Some(t)) = (it.next(), it.next()) {
                types.insert(n.to_string(), t.to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    for l in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name = l.split(['{', ' ']).next().unwrap();
        let (family, series) = if let Some(f) = name.strip_suffix("_total") {
            (f, name)
        } else if let Some(f) = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|f| types.get(*f).map(String::as_str) == Some("histogram"))
        {
            (f, f)
        } else {
            (name, name)
        };
        let t = types
            .get(family)
            .unwrap_or_else(|| panic!("{name}: no # TYPE line"));
        out.insert(series.to_string(), t.clone());
    }
    out
}

#[tokio::test]
async fn every_scraped_series_is_documented_and_every_documented_one_is_scraped() {
    let gw = Gateway::start_default().await;
    let s = gw.login_alice().await;
    let _ = gw.get_with("/private/x", &s.cookie_header()).await;
    let text = metrics(&gw).await;
    let doc = documented();
    let got = scraped(&text);
    assert!(doc.len() > 20, "the doc's table was not read: {doc:?}");
    let undocumented: Vec<_> = got.keys().filter(|k| !doc.contains_key(*k)).collect();
    assert!(
        undocumented.is_empty(),
        "scraped but not in docs/metrics.md: {undocumented:?}"
    );
    let absent: Vec<_> = doc.keys().filter(|k| !got.contains_key(*k)).collect();
    assert!(
        absent.is_empty(),
        "in docs/metrics.md but not scraped: {absent:?}\n{text}"
    );
    for (name, t) in &got {
        assert_eq!(&doc[name], t, "{name}: docs/metrics.md says another type");
    }
}
