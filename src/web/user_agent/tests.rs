use super::*;

fn norm(raw: &[u8]) -> String {
    UserAgent::from_bytes(raw).as_str().to_string()
}

/// What the normalisation must equal: the whole value decoded, then cut.
fn naive(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(trim_blanks(raw)).into_owned();
    let cut = floor_char_boundary(&s, MAX_BYTES);
    s[..cut].to_string()
}

fn device(ua: &str) -> Device<'_> {
    Device::of(ua)
}

fn fp(ua: &str) -> String {
    let ua = UserAgent::from_bytes(ua.as_bytes());
    ua.device().fingerprint_input()
}

#[test]
fn short_utf8_values_are_borrowed_unchanged() {
    let h = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
    let ua = UserAgent::from_bytes(h.as_bytes());
    assert!(matches!(ua.0, Cow::Borrowed(_)));
    assert_eq!(ua.as_str(), h);
    let utf8 = "MyApp/1.0 (Zürich; 東京)";
    assert_eq!(norm(utf8.as_bytes()), utf8);
}

#[test]
fn length_is_cut_at_512_bytes_whatever_the_input() {
    let exact = "a".repeat(512);
    assert_eq!(norm(exact.as_bytes()), exact);
    let over = "a".repeat(513);
    assert_eq!(norm(over.as_bytes()), exact);
    let huge = "b".repeat(8 * 1024);
    assert_eq!(norm(huge.as_bytes()).len(), 512);
    // A two-byte character straddling the limit is dropped whole, never split.
    let straddle = format!("{}é tail", "a".repeat(511));
    assert_eq!(norm(straddle.as_bytes()), "a".repeat(511));
    // Every prefix of a long value normalises like the value it came from.
    let long = format!("{}{}", "x".repeat(600), "y");
    assert_eq!(norm(long.as_bytes()), norm(&long.as_bytes()[..512]));
}

#[test]
fn bytes_that_are_not_utf8_are_replaced_not_dropped() {
    // obs-text (RFC 9110 §5.5): Latin-1 bytes as an old client sends them.
    let raw = b"Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0 Caf\xe9";
    let n = norm(raw);
    assert_eq!(
        n,
        "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0 Caf\u{fffd}"
    );
    assert_ne!(n, "", "an obs-text user agent is not the same as none");
    assert_ne!(norm(b"Caf\xe9"), norm(b"Caf\xe8").replace('\u{fffd}', "x"));
}

#[test]
fn normalisation_equals_decoding_everything_then_cutting() {
    let mut cases: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"  \t curl/8.5.0 \t ".to_vec(),
        b"\xff\xfe\xfd".to_vec(),
    ];
    for pad in 505..=516 {
        for tail in [
            &b"\xe2\x82\xac"[..],
            b"\xe2\x82",
            b"\xf0\x9f\x98\x80",
            b"\xf0\x9f",
            b"\xe9\xe9\xe9",
            b"\xc3\xa9z",
        ] {
            let mut v = vec![b'a'; pad];
            v.extend_from_slice(tail);
            v.extend_from_slice(b"after");
            cases.push(v);
        }
    }
    cases.push([b"\xe9".repeat(700), b"x".to_vec()].concat());
    for c in cases {
        let got = norm(&c);
        assert_eq!(got, naive(&c), "{:?}", String::from_utf8_lossy(&c));
        assert!(got.len() <= MAX_BYTES);
    }
}

#[test]
fn blanks_around_the_value_do_not_count() {
    assert_eq!(norm(b" \tcurl/8.5.0\t "), "curl/8.5.0");
    assert_eq!(norm(b"   "), "");
}

#[test]
fn missing_and_empty_headers_are_the_same_nobody() {
    let none = HeaderMap::new();
    assert_eq!(UserAgent::from_headers(&none).as_str(), "");
    let mut empty = HeaderMap::new();
    empty.insert(header::USER_AGENT, http::HeaderValue::from_static(""));
    assert_eq!(UserAgent::from_headers(&empty).as_str(), "");
    assert_eq!(device(""), Device::Unnamed);
    assert_eq!(fp(""), "none");
}

#[test]
fn the_first_of_several_headers_is_read() {
    let mut h = HeaderMap::new();
    h.append(
        header::USER_AGENT,
        http::HeaderValue::from_static("first/1"),
    );
    h.append(
        header::USER_AGENT,
        http::HeaderValue::from_static("second/2"),
    );
    assert_eq!(UserAgent::from_headers(&h).as_str(), "first/1");
}

#[test]
fn header_bytes_outside_ascii_reach_the_normalisation() {
    let mut h = HeaderMap::new();
    h.insert(
        header::USER_AGENT,
        http::HeaderValue::from_bytes(b"Firefox/128.0 \xe9").unwrap(),
    );
    assert_eq!(
        UserAgent::from_headers(&h).as_str(),
        "Firefox/128.0 \u{fffd}"
    );
}

/// A template per browser and system; `{v}` is the browser version, `{o}` the OS version.
const BROWSERS: &[(&str, &str, &str, Class, &str)] = &[
    (
        "Chrome",
        "Windows",
        "Chrome on Windows",
        Class::Desktop,
        "Mozilla/5.0 (Windows NT {o}.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36",
    ),
    (
        "Chrome",
        "macOS",
        "Chrome on macOS",
        Class::Desktop,
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_{o}_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36",
    ),
    (
        "Chrome",
        "Linux",
        "Chrome on Linux",
        Class::Desktop,
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.{o}.0 Safari/537.36",
    ),
    (
        "Chrome",
        "Android",
        "Chrome on Android",
        Class::Mobile,
        "Mozilla/5.0 (Linux; Android {o}; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Mobile Safari/537.36",
    ),
    (
        "Chrome",
        "Android",
        "Chrome on Android",
        Class::Tablet,
        "Mozilla/5.0 (Linux; Android {o}; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36",
    ),
    (
        "Chrome",
        "iOS",
        "Chrome on iOS",
        Class::Mobile,
        "Mozilla/5.0 (iPhone; CPU iPhone OS {o}_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/{v}.0.6478.54 Mobile/15E148 Safari/604.1",
    ),
    (
        "Firefox",
        "Windows",
        "Firefox on Windows",
        Class::Desktop,
        "Mozilla/5.0 (Windows NT {o}.0; Win64; x64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0",
    ),
    (
        "Firefox",
        "macOS",
        "Firefox on macOS",
        Class::Desktop,
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.{o}; rv:{v}.0) Gecko/20100101 Firefox/{v}.0",
    ),
    (
        "Firefox",
        "Linux",
        "Firefox on Linux",
        Class::Desktop,
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0",
    ),
    (
        "Firefox",
        "Android",
        "Firefox on Android",
        Class::Mobile,
        "Mozilla/5.0 (Android {o}; Mobile; rv:{v}.0) Gecko/{v}.0 Firefox/{v}.0",
    ),
    (
        "Firefox",
        "Android",
        "Firefox on Android",
        Class::Tablet,
        "Mozilla/5.0 (Android {o}; Tablet; rv:{v}.0) Gecko/{v}.0 Firefox/{v}.0",
    ),
    (
        "Firefox",
        "iOS",
        "Firefox on iOS",
        Class::Mobile,
        "Mozilla/5.0 (iPhone; CPU iPhone OS {o}_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) FxiOS/{v}.0 Mobile/15E148 Safari/605.1.15",
    ),
    (
        "Safari",
        "macOS",
        "Safari on macOS",
        Class::Desktop,
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_{o}_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{v}.4 Safari/605.1.15",
    ),
    (
        "Safari",
        "iOS",
        "Safari on iOS",
        Class::Mobile,
        "Mozilla/5.0 (iPhone; CPU iPhone OS {o}_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{v}.5 Mobile/15E148 Safari/604.1",
    ),
    (
        "Safari",
        "iOS",
        "Safari on iOS",
        Class::Tablet,
        "Mozilla/5.0 (iPad; CPU OS {o}_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{v}.5 Mobile/15E148 Safari/604.1",
    ),
    (
        "Edge",
        "Windows",
        "Edge on Windows",
        Class::Desktop,
        "Mozilla/5.0 (Windows NT {o}.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36 Edg/{v}.0.2592.56",
    ),
    (
        "Edge",
        "macOS",
        "Edge on macOS",
        Class::Desktop,
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_{o}_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36 Edg/{v}.0.0.0",
    ),
    (
        "Edge",
        "Linux",
        "Edge on Linux",
        Class::Desktop,
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36 Edg/{v}.0.{o}.0",
    ),
    (
        "Edge",
        "Android",
        "Edge on Android",
        Class::Mobile,
        "Mozilla/5.0 (Linux; Android {o}; HD1913) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Mobile Safari/537.36 EdgA/{v}.0.2592.80",
    ),
    (
        "Edge",
        "iOS",
        "Edge on iOS",
        Class::Mobile,
        "Mozilla/5.0 (iPhone; CPU iPhone OS {o}_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) EdgiOS/{v}.0.2592.56 Version/{o}.0 Mobile/15E148 Safari/604.1",
    ),
];

fn fill(template: &str, v: u32, o: u32) -> String {
    template
        .replace("{v}", &v.to_string())
        .replace("{o}", &o.to_string())
}

#[test]
fn browsers_are_told_apart_by_family_system_and_class() {
    for (family, os, label, class, template) in BROWSERS {
        let ua = fill(template, 126, 10);
        let want = Device::Browser {
            family,
            os,
            class: *class,
        };
        assert_eq!(device(&ua), want, "{ua}");
        assert_eq!(device(&ua).label(), *label, "{ua}");
    }
}

#[test]
fn version_bumps_of_browser_and_system_keep_the_fingerprint() {
    for (_, _, _, _, template) in BROWSERS {
        let before = fp(&fill(template, 126, 10));
        for (v, o) in [
            (127, 10),
            (130, 10),
            (99, 10),
            (126, 11),
            (131, 15),
            (1000, 9),
        ] {
            let after = fill(template, v, o);
            assert_eq!(fp(&after), before, "{after}");
        }
    }
}

#[test]
fn any_two_distinct_rows_fingerprint_differently() {
    for (i, a) in BROWSERS.iter().enumerate() {
        for b in &BROWSERS[i + 1..] {
            let same_device = (a.0, a.1, a.3) == (b.0, b.1, b.3);
            let (fa, fb) = (fp(&fill(a.4, 126, 10)), fp(&fill(b.4, 126, 10)));
            assert_eq!(fa == fb, same_device, "{} vs {}", a.4, b.4);
        }
    }
}

#[test]
fn a_change_of_family_system_or_class_is_a_change() {
    let chrome_win = fill(BROWSERS[0].4, 126, 10);
    let changes = [
        // family, same system
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 OPR/111.0.0.0",
        "Mozilla/5.0 (Windows NT 10.0; WOW64; Trident/7.0; rv:11.0) like Gecko",
        // system, same family
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
        "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
        // class
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
        // not a browser
        "curl/8.5.0",
        "",
    ];
    for other in changes {
        assert_ne!(fp(&chrome_win), fp(other), "{other}");
    }
    // Mobile to desktop on one system: Chrome's "desktop site" on a phone says Linux.
    let phone = fill(BROWSERS[3].4, 126, 10);
    let desktop_site = fill(BROWSERS[2].4, 126, 0);
    assert_ne!(fp(&phone), fp(&desktop_site));
    // Phone and tablet of one system.
    assert_ne!(
        fp(&fill(BROWSERS[13].4, 17, 17)),
        fp(&fill(BROWSERS[14].4, 17, 17))
    );
    assert_ne!(
        fp(&fill(BROWSERS[3].4, 126, 14)),
        fp(&fill(BROWSERS[4].4, 126, 14))
    );
}

#[test]
fn browsers_built_on_chrome_are_their_own_family() {
    for (ua, family) in [
        (
            "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile Safari/537.36",
            "Samsung Internet",
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 YaBrowser/24.6.0.0 Safari/537.36",
            "Yandex Browser",
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Vivaldi/6.8.3381.44",
            "Vivaldi",
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 OPR/111.0.0.0",
            "Opera",
        ),
        (
            "Opera/9.80 (Windows NT 6.1; U; en) Presto/2.12.388 Version/12.16",
            "Opera",
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/70.0.3538.102 Safari/537.36 Edge/18.19045",
            "Edge",
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
            "WebKit",
        ),
    ] {
        assert!(
            matches!(device(ua), Device::Browser { family: f, .. } if f == family),
            "{ua}: {:?}",
            device(ua)
        );
    }
    // Legacy Edge and Chromium Edge are one family: the switch was an update.
    assert_eq!(
        fp(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/70.0.3538.102 Safari/537.36 Edge/18.19045"
        ),
        fp(&fill(BROWSERS[15].4, 130, 10))
    );
}

#[test]
fn other_clients_are_their_text_without_version_numbers() {
    for (a, b) in [
        ("curl/8.5.0", "curl/8.10.1"),
        ("curl/7", "curl/8.6.0"),
        ("python-requests/2.31.0", "python-requests/2.32.3"),
        ("Go-http-client/1.1", "Go-http-client/2.0"),
        ("okhttp/4.12.0", "okhttp/5.0.1"),
        (
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 (compatible; Googlebot/2.2; +http://www.google.com/bot.html)",
        ),
        (
            "MyApp/3.2.1 (iPhone; iOS 17.5; Scale/3.00)",
            "MyApp/3.3 (iPhone; iOS 18.0; Scale/3.00)",
        ),
        ("x", "x"),
        ("\u{fffd}\u{fffd}", "\u{fffd}\u{fffd}"),
    ] {
        assert_eq!(fp(a), fp(b), "{a} vs {b}");
        assert!(matches!(device(a), Device::Client(_)), "{a}");
    }
    for (a, b) in [
        ("curl/8.5.0", "Wget/1.21.4"),
        ("curl/8.5.0", "curl/8.5.0 (custom)"),
        ("python-requests/2.31.0", "python-httpx/0.27.0"),
        ("x", "y"),
        ("x", ""),
        (
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        ),
    ] {
        assert_ne!(fp(a), fp(b), "{a} vs {b}");
    }
    assert_eq!(without_versions("curl/8.5.0"), "curl/#");
    assert_eq!(without_versions("a.b_c 1 x2y"), "a.b_c # x#y");
}

#[test]
fn labels_of_other_clients_name_their_product_or_nothing() {
    assert_eq!(device("curl/8.5.0").label(), "curl");
    assert_eq!(device("python-requests/2.31.0").label(), "python-requests");
    assert_eq!(device("x").label(), "x");
    assert_eq!(device("<script>/1").label(), "Other client");
    assert_eq!(device(&"a".repeat(60)).label(), "Other client");
    assert_eq!(device("\u{fffd}").label(), "Other client");
    assert_eq!(device("").label(), "Unknown client");
    assert_eq!(
        device("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; Googlebot/2.1; +http://www.google.com/bot.html) Chrome/126.0.6478.126 Safari/537.36").label(),
        "Chrome",
        "a bot that names a browser and no system is that browser"
    );
}

#[test]
fn classification_never_panics_on_odd_text() {
    for ua in [
        "/",
        "//",
        "(",
        ")",
        ";;;",
        "Mozilla/",
        "/Chrome",
        "Chrome",
        "iPad",
        "Mobile",
        "Android",
        "( ; ) , /",
        "\u{fffd}/\u{fffd}",
        "Firefox/\u{0}",
    ] {
        let d = device(ua);
        let _ = (d.label(), d.fingerprint_input());
    }
}
