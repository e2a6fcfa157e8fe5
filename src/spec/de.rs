//! Typed decoding of located YAML nodes through serde.
//!
//! Owns: turning a [`Node`] into a spec type, with the span of the innermost node that failed.
//! Unknown keys of a struct are all recorded (with a "did you mean") and skipped, so one run
//! reports every typo instead of the first. Scalars are decoded by the type asked for: a plain
//! `1.10` read as a string stays `"1.10"`.
//!
//! Must never: put a string's content in an error message (it may be a secret).

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use super::parse::{Node, NodeKind};
use super::source::Span;

/// A decoding failure, located once the innermost node that failed is known.
#[derive(Debug, Clone)]
pub struct DeError {
    pub message: String,
    pub help: Option<String>,
    pub span: Option<Span>,
    /// The value next to this error may be a secret: do not show it.
    pub sensitive: bool,
}

impl DeError {
    fn located(mut self, span: Span) -> Self {
        self.span.get_or_insert(span);
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

/// The closest candidate to `word`, when it is close enough to be a likely typo. Deterministic:
/// equally close candidates are decided by their name, never by the order they come in (which
/// may be a hash map's). Long words get no suggestion (they are not typos of a name).
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    if word.chars().count() > 64 {
        return None;
    }
    let word = word.to_lowercase();
    candidates
        .into_iter()
        .filter(|c| c.chars().count() <= 64)
        .map(|c| (strsim::jaro_winkler(&word, &c.to_lowercase()), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0).then_with(|| b.1.cmp(a.1)))
        .map(|(_, c)| c)
}

fn one_of(expected: &[&str]) -> String {
    expected
        .iter()
        .map(|e| format!("`{e}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            message: msg.to_string(),
            help: None,
            span: None,
            sensitive: false,
        }
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        let found = match unexp {
            de::Unexpected::Bool(b) => format!("`{b}`"),
            de::Unexpected::Unsigned(n) => format!("`{n}`"),
            de::Unexpected::Signed(n) => format!("`{n}`"),
            de::Unexpected::Float(n) => format!("`{n}`"),
            de::Unexpected::Str(_) => "a string".into(),
            de::Unexpected::Unit => "an empty value".into(),
            de::Unexpected::Seq => "a list".into(),
            de::Unexpected::Map => "a mapping".into(),
            other => other.to_string(),
        };
        let expected = expected_in_words(&exp.to_string());
        let help = match expected.as_str() {
            _ if matches!(unexp, de::Unexpected::Unit) => {
                format!("write {expected} after the colon, or remove the key")
            }
            "`true` or `false`" => "write `true` or `false`, without quotes".to_string(),
            "a whole number" | "a number" => format!("write {expected} here, without quotes"),
            "a mapping" => "write `key: value` lines indented under this key".to_string(),
            "a list" => "write items starting with `- `, or `[a, b]`".to_string(),
            _ => format!("write {expected} here"),
        };
        DeError {
            message: format!("expected {expected}, found {found}"),
            help: Some(help),
            span: None,
            sensitive: false,
        }
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        let n = match unexp {
            de::Unexpected::Unsigned(n) => n.to_string(),
            de::Unexpected::Signed(n) => n.to_string(),
            _ => return Self::invalid_type(unexp, exp),
        };
        let max = match exp.to_string().as_str() {
            "u8" => u8::MAX.to_string(),
            "u16" => u16::MAX.to_string(),
            "u32" => u32::MAX.to_string(),
            other => other.to_string(),
        };
        DeError {
            message: format!("`{n}` is out of range"),
            help: Some(format!("use a whole number from 0 to {max}")),
            span: None,
            sensitive: false,
        }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let help = match suggest(variant, expected.iter().copied()) {
            Some(s) => format!("did you mean `{s}`? expected one of {}", one_of(expected)),
            None => format!("expected one of {}", one_of(expected)),
        };
        DeError {
            message: format!("unknown value `{variant}`"),
            help: Some(help),
            span: None,
            sensitive: false,
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        unknown_field(field, expected)
    }

    fn missing_field(field: &'static str) -> Self {
        DeError {
            message: format!("missing field `{field}`"),
            help: Some(format!("add `{field}:` to this mapping")),
            span: None,
            sensitive: false,
        }
    }

    fn duplicate_field(field: &'static str) -> Self {
        Self::custom(format!("duplicate field `{field}`"))
    }
}

/// What serde expected, in the words of a YAML author (`u32` → "a whole number").
fn expected_in_words(exp: &str) -> String {
    match exp {
        "u8" | "u16" | "u32" | "u64" | "i8" | "i16" | "i32" | "i64" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "a sequence" => "a list".into(),
        "a map" => "a mapping".into(),
        e if e.starts_with("struct ") => "a mapping".into(),
        e if e.starts_with("enum ") => "a single value".into(),
        e => e.into(),
    }
}

/// Help for a key that looks like a credential where none is read.
pub const CREDENTIALS_HELP: &str = "credentials are never read from spec files: GitLab's token comes from GITLAB_TOKEN, secret values from AWS Secrets Manager (`from: {secret: ...}`)";

fn unknown_field(field: &str, expected: &[&str]) -> DeError {
    // A backtick in a (complex) key would end the quote early and leave the rest of it outside
    // the masking of quoted text.
    let field = &field.replace('`', "'");
    let lower = field.to_lowercase();
    if ["token", "password", "secret_value", "private_key"]
        .iter()
        .any(|w| lower.contains(w))
    {
        return DeError {
            message: format!("unknown field `{field}`"),
            help: Some(CREDENTIALS_HELP.into()),
            span: None,
            sensitive: true,
        };
    }
    let help = match suggest(field, expected.iter().copied()) {
        Some(s) => format!("did you mean `{s}`?"),
        None if expected.is_empty() => "this mapping takes no fields".into(),
        None => format!("expected one of {}", one_of(expected)),
    };
    DeError {
        message: format!("unknown field `{field}`"),
        help: Some(help),
        span: None,
        sensitive: false,
    }
}

/// Errors recorded while decoding without failing it (unknown fields).
#[derive(Default)]
pub struct Sink {
    errors: RefCell<Vec<DeError>>,
}

impl Sink {
    pub fn take(&self) -> Vec<DeError> {
        self.errors.take()
    }
}

/// Decodes `node` as `T`. Unknown fields go to `sink`; the first hard error is returned.
pub fn from_node<'de, T: serde::Deserialize<'de>>(
    node: &'de Node,
    sink: &'de Sink,
) -> Result<T, DeError> {
    T::deserialize(NodeDe { node, sink })
}

#[derive(Clone, Copy)]
struct NodeDe<'a> {
    node: &'a Node,
    sink: &'a Sink,
}

impl<'a> NodeDe<'a> {
    fn scalar(&self) -> Option<&'a super::parse::Scalar> {
        match &self.node.kind {
            NodeKind::Scalar(s) => Some(s),
            _ => None,
        }
    }

    fn unexpected(&self) -> de::Unexpected<'a> {
        match &self.node.kind {
            NodeKind::Scalar(_) if self.node.is_null() => de::Unexpected::Unit,
            NodeKind::Scalar(s) => de::Unexpected::Str(&s.text),
            NodeKind::Seq(_) => de::Unexpected::Seq,
            NodeKind::Map(_) => de::Unexpected::Map,
        }
    }

    fn fail<T>(&self, exp: &dyn de::Expected) -> Result<T, DeError> {
        Err(<DeError as de::Error>::invalid_type(self.unexpected(), exp))
    }

    fn locate<T>(&self, r: Result<T, DeError>) -> Result<T, DeError> {
        r.map_err(|e| e.located(self.node.span))
    }

    fn plain(&self) -> Option<&'a str> {
        self.scalar().filter(|s| s.plain).map(|s| s.text.as_str())
    }
}

fn parse_int<T: std::str::FromStr>(text: &str) -> Option<T> {
    text.replace('_', "").parse().ok()
}

macro_rules! int_method {
    ($method:ident, $visit:ident, $ty:ty) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            let r = match self.plain().and_then(parse_int::<$ty>) {
                Some(n) => visitor.$visit(n),
                None => self.fail(&visitor),
            };
            self.locate(r)
        }
    };
}

impl<'de> de::Deserializer<'de> for NodeDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.node.kind {
            NodeKind::Scalar(_) if self.node.is_null() => visitor.visit_unit(),
            NodeKind::Scalar(s) if s.plain => match s.text.as_str() {
                "true" => visitor.visit_bool(true),
                "false" => visitor.visit_bool(false),
                t => match (parse_int::<i64>(t), t.parse::<f64>()) {
                    (Some(n), _) => visitor.visit_i64(n),
                    (None, Ok(f)) if t.chars().any(|c| c.is_ascii_digit()) => visitor.visit_f64(f),
                    _ => visitor.visit_str(t),
                },
            },
            NodeKind::Scalar(s) => visitor.visit_str(&s.text),
            NodeKind::Seq(_) => return self.deserialize_seq(visitor),
            NodeKind::Map(_) => return self.deserialize_map(visitor),
        };
        self.locate(r)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match self.plain() {
            Some("true") => visitor.visit_bool(true),
            Some("false") => visitor.visit_bool(false),
            _ => self.fail(&"`true` or `false`"),
        };
        self.locate(r)
    }

    int_method!(deserialize_i8, visit_i64, i64);
    int_method!(deserialize_i16, visit_i64, i64);
    int_method!(deserialize_i32, visit_i64, i64);
    int_method!(deserialize_i64, visit_i64, i64);
    int_method!(deserialize_u8, visit_u64, u64);
    int_method!(deserialize_u16, visit_u64, u64);
    int_method!(deserialize_u32, visit_u64, u64);
    int_method!(deserialize_u64, visit_u64, u64);

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match self.plain().and_then(|t| t.parse::<f64>().ok()) {
            Some(f) => visitor.visit_f64(f),
            None => self.fail(&visitor),
        };
        self.locate(r)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match self.scalar() {
            Some(s) if !self.node.is_null() => visitor.visit_str(&s.text),
            _ => self.fail(&visitor),
        };
        self.locate(r)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.node.is_null() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = if self.node.is_null() {
            visitor.visit_unit()
        } else {
            self.fail(&visitor)
        };
        self.locate(r)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.node.kind {
            NodeKind::Seq(items) => visitor.visit_seq(SeqAccess {
                items: items.iter(),
                sink: self.sink,
            }),
            _ => self.fail(&visitor),
        };
        self.locate(r)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.node.kind {
            NodeKind::Map(entries) => visitor.visit_map(MapAccess {
                entries: entries.iter().collect::<Vec<_>>().into_iter(),
                value: None,
                sink: self.sink,
            }),
            _ => self.fail(&visitor),
        };
        self.locate(r)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let r = match &self.node.kind {
            NodeKind::Map(entries) => {
                let mut known = Vec::with_capacity(entries.len());
                for entry in entries {
                    match entry.0.as_str() {
                        Some(key) if fields.contains(&key) => known.push(entry),
                        Some(key) => self
                            .sink
                            .errors
                            .borrow_mut()
                            .push(unknown_field(key, fields).located(entry.0.span)),
                        None => self.sink.errors.borrow_mut().push(DeError {
                            message: "a key must be a plain name".into(),
                            help: Some("write a name before the colon, not a list or a mapping (check for a stray `?`, `[` or `{`)".into()),
                            span: Some(entry.0.span),
                            sensitive: false,
                        }),
                    }
                }
                visitor.visit_map(MapAccess {
                    entries: known.into_iter(),
                    value: None,
                    sink: self.sink,
                })
            }
            NodeKind::Seq(_) if name == "Collection" => Err(DeError {
                message: "expected a mapping with `items:`, found a list".into(),
                help: Some(
                    "put the list under `items:` (and optionally `prune: true`), one level deeper"
                        .into(),
                ),
                span: None,
                sensitive: false,
            }),
            _ => self.fail(&visitor),
        };
        self.locate(r)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let r = match self.scalar() {
            Some(s) if !self.node.is_null() => {
                visitor.visit_enum(s.text.as_str().into_deserializer())
            }
            _ => self.fail(&visitor),
        };
        self.locate(r)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

struct SeqAccess<'a> {
    items: std::slice::Iter<'a, Node>,
    sink: &'a Sink,
}

impl<'de> de::SeqAccess<'de> for SeqAccess<'de> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            Some(node) => seed
                .deserialize(NodeDe {
                    node,
                    sink: self.sink,
                })
                .map(Some),
            None => Ok(None),
        }
    }
}

struct MapAccess<'a> {
    entries: std::vec::IntoIter<&'a (Node, Node)>,
    value: Option<&'a Node>,
    sink: &'a Sink,
}

impl<'de> de::MapAccess<'de> for MapAccess<'de> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(NodeDe {
                    node: k,
                    sink: self.sink,
                })
                .map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let node = self
            .value
            .take()
            .expect("next_value_seed called before next_key_seed");
        seed.deserialize(NodeDe {
            node,
            sink: self.sink,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::parse::parse;
    use crate::spec::source::SourceFile;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // decoded only for the errors it produces
    struct Inner {
        push: String,
        #[serde(default)]
        count: Option<u32>,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        tag: String,
        enabled: bool,
        inner: Inner,
    }

    fn decode(text: &str) -> (Result<Outer, DeError>, Vec<DeError>, String) {
        let file = SourceFile::new("t.yaml".into(), text.into());
        let (docs, _) = parse(&file);
        let sink = Sink::default();
        let r = from_node::<Outer>(&docs[0], &sink);
        (r, sink.take(), text.to_owned())
    }

    #[test]
    fn suggestions_do_not_depend_on_the_order_of_candidates() {
        let a = ["dev2", "dev1", "ops"];
        let b = ["dev1", "ops", "dev2"];
        assert_eq!(suggest("dev", a), Some("dev1"));
        assert_eq!(suggest("dev", b), Some("dev1"));
        assert_eq!(suggest("DEV3", a), Some("dev1"));
        assert_eq!(suggest("opz", a), Some("ops"));
        assert_eq!(suggest("zzz", a), None);
        assert_eq!(suggest(&"d".repeat(1000), a), None);
    }

    #[test]
    fn plain_numbers_read_as_strings_keep_their_text() {
        let (r, unknown, _) = decode("tag: 1.10\nenabled: true\ninner: {push: x}\n");
        assert!(unknown.is_empty());
        assert_eq!(r.unwrap().tag, "1.10");
    }

    #[test]
    fn all_unknown_fields_are_recorded_with_suggestions() {
        let (r, unknown, text) =
            decode("tag: a\nenabled: true\ninner: {pushh: x, push: y, cnt: 1}\nextra: 1\n");
        assert!(r.is_ok());
        let found: Vec<_> = unknown
            .iter()
            .map(|e| {
                (
                    &text[e.span.unwrap().start..e.span.unwrap().end],
                    e.help.clone(),
                )
            })
            .collect();
        assert_eq!(found.len(), 3);
        assert!(found.contains(&("pushh", Some("did you mean `push`?".to_string()))));
        assert!(found.iter().any(|(f, _)| *f == "cnt"));
        assert!(found.iter().any(|(f, _)| *f == "extra"));
    }

    #[test]
    fn type_errors_point_at_the_innermost_node_and_hide_strings() {
        let (r, _, text) = decode("tag: a\nenabled: hunter2\ninner: {push: y}\n");
        let e = r.unwrap_err();
        assert_eq!(&text[e.span.unwrap().start..e.span.unwrap().end], "hunter2");
        assert!(!e.message.contains("hunter2"), "{}", e.message);
    }

    #[test]
    fn type_errors_use_yaml_words_and_give_help() {
        let (r, _, _) = decode("tag: a\nenabled: true\ninner: {push: y, count: two}\n");
        let e = r.unwrap_err();
        assert_eq!(e.message, "expected a whole number, found a string");
        assert!(e.help.unwrap().contains("without quotes"));
        let (r, _, _) = decode("tag: a\nenabled: true\ninner: [push]\n");
        let e = r.unwrap_err();
        assert_eq!(e.message, "expected a mapping, found a list");
        assert!(e.help.is_some());
    }

    #[test]
    fn numbers_out_of_range_say_so() {
        let (r, _, _) = decode("tag: a\nenabled: true\ninner: {push: y, count: 5000000000}\n");
        let e = r.unwrap_err();
        assert_eq!(e.message, "`5000000000` is out of range");
        assert_eq!(
            e.help.as_deref(),
            Some("use a whole number from 0 to 4294967295")
        );
    }

    #[test]
    fn missing_fields_point_at_their_mapping() {
        let (r, _, text) = decode("tag: a\nenabled: true\ninner:\n  count: 3\n");
        let e = r.unwrap_err();
        assert_eq!(e.message, "missing field `push`");
        assert_eq!(&text[e.span.unwrap().start..e.span.unwrap().end], "count");
    }
}
