//! `docs/configuration.md` against the schema: every key [`RawConfig`] reads has a row there,
//! every row names a key the schema reads, and a key whose value is one of a set of words
//! lists every word.
//!
//! The schema's keys are found by deserializing [`RawConfig`] from a deserializer that walks
//! it: serde hands `deserialize_struct` the names of every field (defaulted ones too) and
//! `deserialize_enum` the names of every variant, so the walk visits each field once, each
//! list with one element, each option as present, and records where it went. (serde-reflection
//! does the same, but stops at `OneOrList`'s `deserialize_any` and cannot give humantime a
//! duration to parse without a `Serialize` sample.)

use std::cell::RefCell;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::value::{Error, StrDeserializer};
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};

use super::RawConfig;

/// What the walk found at one key: the words of an enumeration (empty for any other value).
type Keys = BTreeMap<String, Vec<&'static str>>;

struct Walk<'a> {
    path: String,
    keys: &'a RefCell<Keys>,
}

impl<'a> Walk<'a> {
    fn at(&self, path: String) -> Walk<'a> {
        Walk {
            path,
            keys: self.keys,
        }
    }

    /// A value that is no table: a key of the schema. A list's element stands for the list.
    fn leaf(&self, words: &[&'static str]) {
        let key = self.path.trim_end_matches("[]").to_string();
        self.keys.borrow_mut().insert(key, words.to_vec());
    }
}

/// A string every string-typed key takes: a duration for humantime, a name, a path, an URL.
const SAMPLE: &str = "1s";

impl<'de> de::Deserializer<'de> for Walk<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        // `OneOrList`: one value or a list of them.
        self.leaf(&[]);
        v.visit_str(SAMPLE)
    }
    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.leaf(&[]);
        v.visit_bool(false)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.leaf(&[]);
        v.visit_u64(1)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_u8(v)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_u8(v)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_u8(v)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_u8(v)
    }
    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.leaf(&[]);
        v.visit_str(SAMPLE)
    }
    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }
    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_some(self)
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, Error> {
        v.visit_newtype_struct(self)
    }
    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        let element = self.at(format!("{}[]", self.path));
        v.visit_seq(One(Some(element)))
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        v.visit_map(Fields {
            walk: self,
            fields,
            next: 0,
        })
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        self.leaf(variants);
        let first: StrDeserializer<'_, Error> = variants[0].into_deserializer();
        v.visit_enum(first)
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i128 u128 f32 f64 char bytes byte_buf unit unit_struct tuple tuple_struct
        map identifier ignored_any
    }
}

/// A list of one element.
struct One<'a>(Option<Walk<'a>>);

impl<'de> SeqAccess<'de> for One<'_> {
    type Error = Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.0.take().map(|w| seed.deserialize(w)).transpose()
    }
}

/// A table with every field of the struct.
struct Fields<'a> {
    walk: Walk<'a>,
    fields: &'static [&'static str],
    next: usize,
}

impl<'de> MapAccess<'de> for Fields<'_> {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some(field) = self.fields.get(self.next) else {
            return Ok(None);
        };
        let name: StrDeserializer<'_, Error> = field.into_deserializer();
        seed.deserialize(name).map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let field = self.fields[self.next];
        self.next += 1;
        let path = if self.walk.path.is_empty() {
            field.to_string()
        } else {
            format!("{}.{field}", self.walk.path)
        };
        seed.deserialize(self.walk.at(path))
    }
}

/// Every key of the schema, with the words of those that take one of a set.
fn schema_keys() -> Keys {
    let keys = RefCell::new(Keys::new());
    let walk = Walk {
        path: String::new(),
        keys: &keys,
    };
    if let Err(e) = RawConfig::deserialize(walk) {
        panic!("walking the schema: {e}");
    }
    keys.into_inner()
}

/// The rows of the reference: `key -> the row's text`, from lines `| `key` | ...`.
fn documented_keys(doc: &str) -> BTreeMap<String, String> {
    let mut rows = BTreeMap::new();
    for line in doc.lines() {
        let Some(rest) = line.strip_prefix("| `") else {
            continue;
        };
        let Some((key, _)) = rest.split_once("` |") else {
            continue;
        };
        let previous = rows.insert(key.to_string(), line.to_string());
        assert!(
            previous.is_none(),
            "docs/configuration.md: {key} has two rows"
        );
    }
    rows
}

fn reference() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_walk_finds_keys_of_every_kind() {
    let keys = schema_keys();
    for key in [
        "server.listen",
        "server.hsts_preload",
        "upstream[].url",
        "route[].public",
        "keys.access_secret_env",
        "oidc.recheck_interval",
        "oidc.provider[].scopes",
        "url_tokens.params",
        "log.format",
    ] {
        assert!(keys.contains_key(key), "{key} not found in {keys:?}");
    }
    assert_eq!(keys["login.mode"], ["users_file", "upstream", "oidc"]);
    assert!(!keys.contains_key("server"), "a table is no key");
}

#[test]
fn every_schema_key_is_documented_and_every_documented_key_exists() {
    let schema = schema_keys();
    let doc = reference();
    let rows = documented_keys(&doc);
    let undocumented: Vec<_> = schema.keys().filter(|k| !rows.contains_key(*k)).collect();
    let unknown: Vec<_> = rows.keys().filter(|k| !schema.contains_key(*k)).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "docs/configuration.md is out of step with the schema (src/config/raw.rs):\n\
         keys without a row: {undocumented:?}\nrows naming no key of the schema: {unknown:?}"
    );
}

#[test]
fn every_word_of_an_enumerated_key_is_documented() {
    let doc = reference();
    let rows = documented_keys(&doc);
    for (key, words) in schema_keys() {
        let Some(row) = rows.get(&key) else { continue };
        for word in words {
            assert!(
                row.contains(&format!("`\"{word}\"`")) || row.contains(&format!("\"{word}\"")),
                "docs/configuration.md: the row of {key} does not list \"{word}\": {row}"
            );
        }
    }
}
