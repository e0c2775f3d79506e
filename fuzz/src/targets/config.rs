//! `gateway.toml` loading (`config::parse` and `config::validate`): the input is the file.
//!
//! Oracle: no panic, and every problem names a key or a line:
//! - a syntax error is reported under the file's name with the line it is on;
//! - every other problem, of the schema or of validation (run and `--dev` alike, against an
//!   environment where every `*_env` variable holds a strong secret of its own and every
//!   `*_file` is missing), names a key — never the file alone, never nothing;
//! - every key and message is one line: no control characters, so that each problem is the
//!   one `config error: <key>: <message>` line the operator reads;
//! - a configuration that validates keeps the rules validation promises: an `https://`
//!   public origin, `access_ttl` below `refresh_ttl`.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;

use sessiongate::config::{ConfigError, LoadOptions, Source, parse::parse, validate};

use crate::support::{has_control, text};

const FILE: &str = "gateway.toml";

struct Env;

impl Source for Env {
    fn env(&self, name: &str) -> Option<String> {
        let mut h = DefaultHasher::new();
        name.hash(&mut h);
        let x = h.finish();
        Some(format!(
            "fz-{x:016x}-{:016x}-secret",
            x.rotate_left(17) ^ 0x5eed
        ))
    }
    fn read(&self, _: &Path) -> std::io::Result<Vec<u8>> {
        Err(std::io::ErrorKind::NotFound.into())
    }
}

fn one_line(e: &ConfigError, text: &str) {
    assert!(
        !e.key.is_empty() && !e.message.is_empty(),
        "{text:?}: an empty problem {e:?}"
    );
    assert!(
        !has_control(&e.key) && !has_control(&e.message),
        "{text:?}: a problem of more than one line: {e:?}"
    );
}

pub fn run(data: &[u8]) {
    let text = text(data);
    let parsed = match parse(&text, FILE) {
        Err(errs) => {
            for e in &errs.0 {
                one_line(e, &text);
                assert!(
                    e.key == FILE && e.message.contains("(line "),
                    "{text:?}: a syntax error without its line: {e:?}"
                );
            }
            return;
        }
        Ok(p) => p,
    };
    for e in &parsed.problems {
        one_line(e, &text);
        assert_ne!(
            e.key, FILE,
            "{text:?}: a schema problem names no key: {e:?}"
        );
    }
    if !parsed.problems.is_empty() {
        return;
    }
    for dev in [false, true] {
        let Ok(again) = parse(&text, FILE) else {
            panic!("{text:?}: parses once, not twice");
        };
        match validate(again.raw, LoadOptions { dev }, &Env) {
            Err(errs) => {
                assert!(!errs.0.is_empty(), "{text:?}: refused with no problem");
                for e in &errs.0 {
                    one_line(e, &text);
                    assert_ne!(e.key, FILE, "{text:?} (dev {dev}): names no key: {e:?}");
                }
            }
            Ok(cfg) => {
                assert!(cfg.server.public_origin.origin.starts_with("https://"));
                assert!(cfg.session.access_ttl < cfg.session.refresh_ttl, "{text:?}");
            }
        }
    }
}
