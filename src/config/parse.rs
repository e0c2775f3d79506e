//! `gateway.toml` text → [`RawConfig`], with every problem at once.
//!
//! A TOML syntax error stops there: the parser recovers what it can and every syntax error it
//! found is reported, named after the file and its line. A document that parses is then
//! deserialized into the schema again and again: each time a key does not fit (an unknown key,
//! a wrong type, a value that is not one of a key's words), the problem is recorded under the
//! key's path and the key is set aside, so that the next attempt finds the next problem and the
//! key's default stands in for it. An `[[upstream]]` or `[[route]]` entry that lacks a required
//! key cannot stand in for anything: it is dropped and the result is marked incomplete, so that
//! validation does not go on to report the entry's absence as more problems.

use std::ops::Range;

use serde_path_to_error::Segment;
use toml::de::{DeTable, DeValue};

use super::raw::RawConfig;
use super::{ConfigError, ConfigErrors};

/// At most this many problems are collected from one document.
const MAX_PROBLEMS: usize = 100;

/// A configuration as far as the schema could read it.
#[derive(Debug)]
pub struct Parsed {
    /// What was read; every key of [`Parsed::problems`] holds its default.
    pub raw: RawConfig,
    /// The keys that do not fit the schema, in the order found.
    pub problems: Vec<ConfigError>,
    /// `false` when an entry had to be dropped: `raw` is not the configuration that was meant,
    /// and only `problems` are worth reporting.
    pub complete: bool,
}

impl Parsed {
    /// The configuration, if the schema found no problem.
    pub fn into_result(self) -> Result<RawConfig, ConfigErrors> {
        if self.problems.is_empty() {
            Ok(self.raw)
        } else {
            Err(ConfigErrors(self.problems))
        }
    }
}

impl From<RawConfig> for Parsed {
    fn from(raw: RawConfig) -> Self {
        Self {
            raw,
            problems: Vec::new(),
            complete: true,
        }
    }
}

/// Parse `text`, the contents of the file `file` (which names the syntax errors).
pub fn parse(text: &str, file: &str) -> Result<Parsed, ConfigErrors> {
    let (root, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        let mut errs: Vec<_> = syntax.iter().take(MAX_PROBLEMS).collect();
        errs.sort_by_key(|e| e.span().map_or(usize::MAX, |r| r.start));
        let errs = errs
            .into_iter()
            .map(|e| ConfigError::new(file, with_line(e.message(), text, e.span())))
            .collect();
        return Err(ConfigErrors(errs));
    }
    let mut doc = Document {
        root,
        set_aside: Vec::new(),
        dropped: Vec::new(),
    };
    let mut problems = Vec::new();
    let mut complete = true;
    while problems.len() < MAX_PROBLEMS {
        let de = toml::de::Deserializer::from(doc.root.clone());
        let err = match serde_path_to_error::deserialize::<_, RawConfig>(de) {
            Ok(raw) => {
                return Ok(Parsed {
                    raw,
                    problems: in_file_order(problems),
                    complete,
                });
            }
            Err(e) => e,
        };
        let here: Vec<Segment> = err.path().iter().cloned().collect();
        let inner = err.into_inner();
        let original = doc.original_path(&here);
        let missing = inner.message().starts_with("missing field");
        // A required key that was set aside is now missing: already reported.
        let consequence = missing && doc.set_aside.iter().any(|p| is_under(p, &original));
        if !consequence {
            let key = display_path(&original);
            let at = inner.span().map_or(usize::MAX, |r| r.start);
            problems.push((
                at,
                ConfigError::new(
                    if key.is_empty() { file } else { &key },
                    with_line(&human(inner.message()), text, inner.span()),
                ),
            ));
        }
        if missing {
            complete = false;
        }
        if !doc.set_aside(&here, original) {
            // Nothing left to take out: the problems found are all there is to say.
            break;
        }
    }
    Ok(Parsed {
        raw: RawConfig::default(),
        problems: in_file_order(problems),
        complete: false,
    })
}

/// Problems by their place in the file (the schema finds them in its own order).
fn in_file_order(mut problems: Vec<(usize, ConfigError)>) -> Vec<ConfigError> {
    problems.sort_by_key(|(at, _)| *at);
    problems.into_iter().map(|(_, e)| e).collect()
}

/// The parsed document and what was taken out of it.
struct Document<'i> {
    root: toml::Spanned<DeTable<'i>>,
    /// Paths (as written) of the values taken out.
    set_aside: Vec<Vec<Segment>>,
    /// Array elements taken out: the array's path as written, and the element's index there.
    dropped: Vec<(String, usize)>,
}

impl Document<'_> {
    /// `path` (indices of the document as it is now) with the indices the file has.
    fn original_path(&self, path: &[Segment]) -> Vec<Segment> {
        let mut out: Vec<Segment> = Vec::with_capacity(path.len());
        for seg in path {
            let seg = match seg {
                Segment::Seq { index } => {
                    let array = display_path(&out);
                    let mut gone: Vec<usize> = self
                        .dropped
                        .iter()
                        .filter(|(a, _)| *a == array)
                        .map(|(_, i)| *i)
                        .collect();
                    gone.sort_unstable();
                    let mut index = *index;
                    for g in gone {
                        if g <= index {
                            index += 1;
                        }
                    }
                    Segment::Seq { index }
                }
                other => other.clone(),
            };
            out.push(seg);
        }
        out
    }

    /// Take the value at `path` out of the document; `false` when there is none.
    fn set_aside(&mut self, path: &[Segment], original: Vec<Segment>) -> bool {
        let Some((last, parent)) = path.split_last() else {
            return false;
        };
        let Some(parent_value) = navigate(self.root.get_mut(), parent) else {
            return false;
        };
        let taken = match (parent_value, last) {
            (Container::Table(t), Segment::Map { key }) => t.remove(key.as_str()).is_some(),
            (Container::Array(a), Segment::Seq { index }) if *index < a.len() => {
                let items = std::mem::replace(a, toml::de::DeArray::new());
                *a = items
                    .into_iter()
                    .enumerate()
                    .filter_map(|(i, v)| (i != *index).then_some(v))
                    .collect();
                if let Some((Segment::Seq { index }, array)) = original.split_last() {
                    self.dropped.push((display_path(array), *index));
                }
                true
            }
            _ => false,
        };
        if taken {
            self.set_aside.push(original);
        }
        taken
    }
}

enum Container<'a, 'i> {
    Table(&'a mut DeTable<'i>),
    Array(&'a mut toml::de::DeArray<'i>),
}

/// The table or array at `path` under `root`.
fn navigate<'a, 'i>(root: &'a mut DeTable<'i>, path: &[Segment]) -> Option<Container<'a, 'i>> {
    let mut here = Container::Table(root);
    for seg in path {
        let value = match (here, seg) {
            (Container::Table(t), Segment::Map { key }) => t
                .iter_mut()
                .find(|(k, _)| k.get_ref() == key)
                .map(|(_, v)| v.get_mut())?,
            (Container::Array(a), Segment::Seq { index }) => a.get_mut(*index)?.get_mut(),
            _ => return None,
        };
        here = match value {
            DeValue::Table(t) => Container::Table(t),
            DeValue::Array(a) => Container::Array(a),
            _ => return None,
        };
    }
    Some(here)
}

/// Whether `path` is `parent` or lies under it.
fn is_under(path: &[Segment], parent: &[Segment]) -> bool {
    path.len() >= parent.len() && path.iter().zip(parent).all(|(a, b)| same(a, b))
}

fn same(a: &Segment, b: &Segment) -> bool {
    match (a, b) {
        (Segment::Seq { index: x }, Segment::Seq { index: y }) => x == y,
        (Segment::Map { key: x }, Segment::Map { key: y }) => x == y,
        (Segment::Enum { variant: x }, Segment::Enum { variant: y }) => x == y,
        _ => false,
    }
}

/// `server.listen`, `route[2].upstream`.
fn display_path(path: &[Segment]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(key);
            }
            Segment::Seq { index } => s.push_str(&format!("[{index}]")),
            Segment::Unknown => s.push_str(".?"),
        }
    }
    s
}

/// serde's words for the schema's types, in the operator's words.
fn human(message: &str) -> String {
    message
        .replace(
            "expected a duration",
            "expected a duration like \"30s\", \"15m\" or \"7d\"",
        )
        .replace("invalid type: ", "")
        .replace("invalid value: ", "")
}

/// `message (line N)` when the span is known, its line breaks as `; `.
fn with_line(message: &str, text: &str, span: Option<Range<usize>>) -> String {
    let message = message.trim_end_matches('\n').replace('\n', "; ");
    match span {
        Some(r) => {
            let start = r.start.min(text.len());
            let line = text.as_bytes()[..start]
                .iter()
                .filter(|b| **b == b'\n')
                .count()
                + 1;
            format!("{message} (line {line})")
        }
        None => message,
    }
}
