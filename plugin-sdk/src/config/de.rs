//! The settings as a serde [`Deserializer`]: what [`Settings::deserialize`]
//! and [`Settings::value`] read with.
//!
//! The flat keys form a tree at their dots. A [`Node`] is one place of it:
//! a value (`key = "text"`), read by [`Text`], or the group of keys under
//! a prefix (`user.` for `user.alice.rate`...), read as a struct (a child
//! per first level of the rest of the keys) or as a map (a child per NAME,
//! the rest of the key up to its last dot). A value counts as asked for
//! once something other than `IgnoredAny` reads it; errors say which key
//! they are about as they come out of each node.
//!
//! [`Settings::deserialize`]: super::Settings::deserialize
//! [`Settings::value`]: super::Settings::value

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::value::{BorrowedStrDeserializer, SeqDeserializer};
use serde::de::{self, DeserializeOwned, DeserializeSeed, Visitor};
use serde::{Deserializer, forward_to_deserialize_any};

use super::{Entry, invalid, one_of};

/// `T` from every setting.
pub(super) fn root<T: DeserializeOwned>(entries: &[Entry]) -> Result<T, String> {
    let node = Node::Group {
        entries: entries.iter().collect(),
        at: 0,
    };
    node.read(PhantomData::<T>).map_err(|e| e.to_string())
}

/// `T` from the value of `key` or the keys under `key.`, if any is set.
pub(super) fn at_key<T: DeserializeOwned>(
    entries: &[Entry],
    key: &str,
) -> Result<Option<T>, String> {
    child(entries.iter(), 0, key)
        .map(|node| node.read(PhantomData::<T>).map_err(|e| e.to_string()))
        .transpose()
}

/// A deserialization error. It names its key once it has come out of the
/// node it is about (`Located`).
#[derive(Debug)]
pub(super) enum Error {
    /// What is wrong with a value, not yet said of which key.
    Message(String),
    /// What is wrong with an item of a list value: `"ITEM": WHY`.
    Item(String),
    /// One value wanted where there is a group of keys.
    NotAValue,
    /// A struct field without a key.
    Missing(&'static str),
    /// A key a struct has no field for (`#[serde(deny_unknown_fields)]`).
    Unknown(String, &'static [&'static str]),
    /// The final text.
    Located(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Message(m) | Error::Item(m) | Error::Located(m) => f.write_str(m),
            Error::NotAValue => f.write_str("expected one value, not a group of keys"),
            Error::Missing(field) => write!(f, "{field} is missing"),
            Error::Unknown(key, expected) => {
                let expected = one_of(expected, |k| k.to_string());
                write!(f, "unknown configuration key {key:?} (expected {expected})")
            }
        }
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error::Message(msg.to_string())
    }

    fn invalid_type(unexpected: de::Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        match unexpected {
            de::Unexpected::Map => Error::NotAValue,
            _ => Error::Message(format!("expected {expected}")),
        }
    }

    fn invalid_value(_: de::Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        Error::Message(format!("expected {expected}"))
    }

    fn unknown_variant(_: &str, expected: &'static [&'static str]) -> Self {
        Error::Message(format!(
            "expected {}",
            one_of(expected, |w| format!("{w:?}"))
        ))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Error::Unknown(field.to_owned(), expected)
    }

    fn missing_field(field: &'static str) -> Self {
        Error::Missing(field)
    }
}

impl Error {
    /// Said of `value`, the value of `key`.
    fn at_value(self, key: &str, value: &str) -> Error {
        match self {
            Error::Located(_) => self,
            Error::Item(m) => Error::Located(format!("{key}: {m}")),
            other => Error::Located(invalid(key, value, other)),
        }
    }

    /// Said of the group of keys under `prefix` (`""` or ending in `.`),
    /// whose first key is `first`.
    fn at_group(self, prefix: &str, first: &str) -> Error {
        let text = match self {
            Error::Located(_) => return self,
            // `tls.x` where `tls` is one value: `tls.x` is nobody's.
            Error::NotAValue => format!("unknown configuration key {first:?}"),
            Error::Missing(field) => format!("{prefix}{field} is missing"),
            Error::Unknown(key, expected) => {
                Error::Unknown(format!("{prefix}{key}"), expected).to_string()
            }
            other if prefix.is_empty() => other.to_string(),
            other => format!("{}: {other}", prefix.trim_end_matches('.')),
        };
        Error::Located(text)
    }
}

/// One place of the key tree.
enum Node<'de> {
    /// `key = "text"`: the entries that set it (the last one counts, all
    /// count as asked for).
    Value(Vec<&'de Entry>),
    /// The keys under a prefix, which is each entry's key up to `at`.
    Group { entries: Vec<&'de Entry>, at: usize },
}

impl<'de> Node<'de> {
    /// `seed` read from the node, and its error said of the node (an
    /// error of the seed's own, after the node was read, included: a
    /// `try_from` type's, say).
    fn read<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, Error> {
        let place = match &self {
            Node::Value(entries) => entries.last().map(|e| (e.0.as_str(), e.1.as_str(), None)),
            Node::Group { entries, at } => entries.first().map(|e| (e.0.as_str(), "", Some(*at))),
        };
        seed.deserialize(self).map_err(|e| match place {
            Some((key, value, None)) => e.at_value(key, value),
            Some((first, _, Some(at))) => e.at_group(&first[..at], first),
            None => e.at_group("", ""),
        })
    }
}

/// The node `name` in the entries' keys from `at` on: the entries whose
/// rest is `name` (a value) or starts with `name.` (a group; then a value
/// set too is left unread, and so unknown).
fn child<'de>(
    entries: impl Iterator<Item = &'de Entry>,
    at: usize,
    name: &str,
) -> Option<Node<'de>> {
    let (mut values, mut members) = (Vec::new(), Vec::new());
    for entry in entries {
        match entry.0[at..].strip_prefix(name) {
            Some("") => values.push(entry),
            Some(rest) if rest.starts_with('.') => members.push(entry),
            _ => {}
        }
    }
    if !members.is_empty() {
        let at = at + name.len() + 1;
        Some(Node::Group {
            entries: members,
            at,
        })
    } else if !values.is_empty() {
        Some(Node::Value(values))
    } else {
        None
    }
}

/// The children of a group, in the order of their first key: per first
/// level of the rest of the keys (a struct's fields), or per NAME, the
/// rest up to its last dot (a map's keys). Empty names are left out, so
/// that their keys stay unread.
fn children<'de>(entries: &[&'de Entry], at: usize, map: bool) -> Vec<(&'de str, Node<'de>)> {
    let name_of = |entry: &'de Entry| -> &'de str {
        let rest = &entry.0[at..];
        let split = match map {
            true => rest.rsplit_once('.'),
            false => rest.split_once('.'),
        };
        split.map_or(rest, |(name, _)| name)
    };
    let mut names: Vec<&'de str> = Vec::new();
    for entry in entries {
        let name = name_of(entry);
        if !name.is_empty() && !names.contains(&name) {
            names.push(name);
        }
    }
    names
        .into_iter()
        .filter_map(|name| {
            // In a map, `a.b.c` is NAME `a.b`'de key `c`, not NAME `a`'de.
            let mine = entries.iter().copied().filter(|e| name_of(e) == name);
            Some((name, child(mine, at, name)?))
        })
        .collect()
}

/// Each `deserialize_*` method of a node: a value's text or a group's keys
/// read (the errors are said of the node by [`Node::read`]).
macro_rules! node_methods {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, Error> {
            match self {
                Node::Value(entries) => {
                    for entry in &entries {
                        entry.2.set(true);
                    }
                    match entries.last() {
                        Some((_, value, _)) => Text(value).$method($($arg,)* visitor),
                        None => Err(Error::NotAValue),
                    }
                }
                Node::Group { entries, at } => Group { entries: &entries, at }.$method($($arg,)* visitor),
            }
        }
    )*};
}

impl<'de> Deserializer<'de> for Node<'de> {
    type Error = Error;

    node_methods! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
    }

    /// Not read: a key that no field wants stays unknown.
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
}

/// A group of keys, read as a struct or a map. Asked for one value, it
/// answers with a map, which the value's visitor refuses (`NotAValue`).
struct Group<'a, 'de> {
    entries: &'a [&'de Entry],
    at: usize,
}

impl<'de> Deserializer<'de> for Group<'_, 'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_map(Children(
            children(self.entries, self.at, true).into_iter(),
            None,
        ))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let fields = children(self.entries, self.at, false);
        visitor.visit_map(Children(fields.into_iter(), None))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    /// `()`: the settings are ignored (they all count as read).
    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        for entry in self.entries {
            entry.2.set(true);
        }
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf seq tuple tuple_struct map enum identifier
    }
}

/// A group's children as a map: names, then nodes.
struct Children<'de>(std::vec::IntoIter<(&'de str, Node<'de>)>, Option<Node<'de>>);

impl<'de> de::MapAccess<'de> for Children<'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some((name, node)) = self.0.next() else {
            return Ok(None);
        };
        self.1 = Some(node);
        seed.deserialize(BorrowedStrDeserializer::new(name))
            .map(Some)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, Error> {
        match self.1.take() {
            Some(node) => node.read(seed),
            None => Err(Error::Message("a value without a key".into())),
        }
    }
}

/// The text of a value (or of an item of a list value), read as the
/// visitor wants it. Errors say what is wrong, not where.
struct Text<'de>(&'de str);

/// The `deserialize_*` methods for integers: decimal or `0x` hex, trimmed,
/// within the type's range.
macro_rules! integers {
    ($($method:ident $visit:ident $t:ty;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            match integer(self.0).and_then(|n| <$t>::try_from(n).ok()) {
                Some(n) => visitor.$visit(n),
                None => Err(Error::Message(format!(
                    "expected a whole number from {} to {}",
                    <$t>::MIN,
                    <$t>::MAX
                ))),
            }
        }
    )*};
}

/// An integer in decimal or `0x` hex, with an optional `-`.
fn integer(text: &str) -> Option<i128> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(digits) => (true, digits),
        None => (false, text),
    };
    let n = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) if !hex.starts_with(['+', '-']) => i128::from_str_radix(hex, 16).ok()?,
        Some(_) => return None,
        None if !digits.starts_with(['+', '-']) => digits.parse().ok()?,
        None => return None,
    };
    Some(if negative { -n } else { n })
}

/// A duration: a number, then `ms`, `s`, `m`, `h` or `d`.
fn duration(text: &str) -> Result<Duration, Error> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let millis: u64 = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => 0,
    };
    let whole = number.parse::<u64>().ok().map(|n| n.checked_mul(millis));
    let d = match whole {
        Some(ms) => ms.map(Duration::from_millis),
        None => number
            .parse::<f64>()
            .ok()
            .and_then(|n| Duration::try_from_secs_f64(n * millis as f64 / 1000.0).ok()),
    };
    match d {
        Some(d) if millis > 0 => Ok(d),
        _ => Err(Error::Message(
            "expected a duration: a number and ms, s, m, h or d (500ms, 1.5s, 2h)".into(),
        )),
    }
}

impl<'de> Deserializer<'de> for Text<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_borrowed_str(self.0)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0.trim() {
            "true" => visitor.visit_bool(true),
            "false" => visitor.visit_bool(false),
            _ => Err(Error::Message("expected true or false".into())),
        }
    }

    integers! {
        deserialize_i8 visit_i8 i8;
        deserialize_i16 visit_i16 i16;
        deserialize_i32 visit_i32 i32;
        deserialize_i64 visit_i64 i64;
        deserialize_i128 visit_i128 i128;
        deserialize_u8 visit_u8 u8;
        deserialize_u16 visit_u16 u16;
        deserialize_u32 visit_u32 u32;
        deserialize_u64 visit_u64 u64;
        deserialize_u128 visit_u128 u128;
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0.trim().parse() {
            Ok(n) => visitor.visit_f64(n),
            Err(_) => Err(Error::Message("expected a number".into())),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let mut chars = self.0.trim().chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => visitor.visit_char(c),
            _ => Err(Error::Message("expected one character".into())),
        }
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_borrowed_bytes(self.0.as_bytes())
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    /// The items: split at commas and newlines, trimmed, empty ones left
    /// out.
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let items = self
            .0
            .split([',', '\n'])
            .map(str::trim)
            .filter(|item| !item.is_empty());
        visitor.visit_seq(Items(items))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    /// `std::time::Duration` (which serde reads as seconds and
    /// nanoseconds) from `1.5s` and the like; no other struct is one
    /// value.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        if name != "Duration" || fields != ["secs", "nanos"] {
            return Err(Error::Message("expected keys under this one".into()));
        }
        let d = duration(self.0)?;
        let parts = [d.as_secs(), u64::from(d.subsec_nanos())];
        visitor.visit_seq(SeqDeserializer::new(parts.into_iter()))
    }

    fn deserialize_map<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
        Err(Error::Message("expected keys under this one".into()))
    }

    /// A unit variant, by its name (trimmed).
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_enum(BorrowedStrDeserializer::new(self.0.trim()))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    forward_to_deserialize_any! {
        str string identifier
    }
}

/// The items of a list value.
struct Items<I>(I);

impl<'de, I: Iterator<Item = &'de str>> de::SeqAccess<'de> for Items<I> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        let Some(item) = self.0.next() else {
            return Ok(None);
        };
        let located = |e: Error| match e {
            Error::Located(_) | Error::Item(_) => e,
            other => Error::Item(format!("{item:?}: {other}")),
        };
        seed.deserialize(Text(item)).map(Some).map_err(located)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};
    use std::time::Duration;

    use serde::Deserialize;

    use crate::config::{AtLeast, FromConfig, Secret, Settings};

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings::new(pairs.iter().copied())
    }

    fn read<T: FromConfig>(pairs: &[(&str, &str)]) -> Result<T, String> {
        T::from_config(&settings(pairs))
    }

    fn value<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
        match settings(&[("k", text)]).value("k") {
            Ok(v) => v.ok_or_else(|| "unset".to_owned()),
            Err(e) => Err(e),
        }
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        Next,
        Deny,
    }

    #[test]
    fn scalars_are_read_from_their_text() {
        assert_eq!(value::<bool>(" true "), Ok(true));
        assert_eq!(value::<bool>("false"), Ok(false));
        assert_eq!(
            value::<bool>("yes"),
            Err(r#"k = "yes": expected true or false"#.into())
        );
        assert_eq!(value::<u8>(" 200 "), Ok(200));
        assert_eq!(value::<u8>("0x87"), Ok(0x87));
        assert_eq!(value::<u16>("0XfFfF"), Ok(0xffff));
        assert_eq!(value::<i32>("-12"), Ok(-12));
        assert_eq!(value::<i64>("-0x10"), Ok(-16));
        assert_eq!(value::<u64>("18446744073709551615"), Ok(u64::MAX));
        for bad in ["256", "-1", "1.5", "", "0x", "+1", "--1", "0x-1", "ten"] {
            assert_eq!(
                value::<u8>(bad),
                Err(format!(
                    "k = {bad:?}: expected a whole number from 0 to 255"
                )),
                "{bad:?}"
            );
        }
        assert_eq!(value::<f64>("2.5"), Ok(2.5));
        assert_eq!(value::<f32>("-1"), Ok(-1.0));
        assert!(value::<f64>("x").is_err());
        assert_eq!(value::<char>(" x "), Ok('x'));
        assert!(value::<char>("xy").is_err());
        // Text as it is, untrimmed.
        assert_eq!(value::<String>(" a b "), Ok(" a b ".into()));
        assert_eq!(value::<Option<u8>>("7"), Ok(Some(7)));
        assert_eq!(value::<Mode>(" deny "), Ok(Mode::Deny));
        assert_eq!(
            value::<Mode>("allow"),
            Err(r#"k = "allow": expected "next" or "deny""#.into())
        );
    }

    #[test]
    fn lists_are_split_at_commas_and_newlines() {
        assert_eq!(
            value::<Vec<String>>("a/#, b\nc,, "),
            Ok(vec!["a/#".into(), "b".into(), "c".into()])
        );
        assert_eq!(value::<Vec<u16>>("1, 0x2"), Ok(vec![1, 2]));
        assert_eq!(value::<Vec<u16>>(""), Ok(vec![]));
        assert_eq!(value::<(u8, bool)>("1, true"), Ok((1, true)));
        assert_eq!(
            value::<Vec<u16>>("1, x"),
            Err(r#"k: "x": expected a whole number from 0 to 65535"#.into())
        );
    }

    #[test]
    fn durations_have_a_unit() {
        for (text, d) in [
            ("500ms", Duration::from_millis(500)),
            ("1.5s", Duration::from_millis(1500)),
            (" 30 s ", Duration::from_secs(30)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("1d", Duration::from_secs(86400)),
            ("0s", Duration::ZERO),
            ("0.25ms", Duration::from_micros(250)),
        ] {
            assert_eq!(value::<Duration>(text), Ok(d), "{text}");
        }
        for bad in ["5", "s", "-1s", "1 week", "1.2.3s", "99999999999999999999d"] {
            let e = value::<Duration>(bad).expect_err(bad);
            assert!(e.contains("expected a duration"), "{bad}: {e}");
        }
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Limits {
        rate: u32,
        burst: Option<u32>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Tls {
        cert: String,
        key: Option<String>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Config {
        name: Option<String>,
        tls: Option<Tls>,
        #[serde(default)]
        user: HashMap<String, Limits>,
        #[serde(default)]
        alias: BTreeMap<String, String>,
    }

    #[test]
    fn groups_of_keys_are_structs_and_maps() {
        let c: Config = read(&[
            ("alias.a", "x"),
            ("alias.b", "y"),
            ("name", "n"),
            ("tls.cert", "c.pem"),
            ("user.bulk.loader.rate", "1000"),
            ("user.slow.burst", "2"),
            ("user.slow.rate", "1"),
        ])
        .expect("valid");
        assert_eq!(c.name.as_deref(), Some("n"));
        assert_eq!(
            c.tls,
            Some(Tls {
                cert: "c.pem".into(),
                key: None
            })
        );
        assert_eq!(
            c.user["bulk.loader"],
            Limits {
                rate: 1000,
                burst: None
            }
        );
        assert_eq!(c.user["slow"].burst, Some(2));
        assert_eq!(c.alias.len(), 2);
        let empty: Config = read(&[]).expect("valid");
        assert!(empty.user.is_empty() && empty.tls.is_none());
    }

    #[test]
    fn errors_name_the_whole_key() {
        for (pairs, error) in [
            (&[("user.a.burst", "1")][..], "user.a.rate is missing"),
            (
                &[("user.a.rate", "x")],
                r#"user.a.rate = "x": expected a whole number from 0 to 4294967295"#,
            ),
            (
                &[("user.a.colour", "red"), ("user.a.rate", "1")],
                r#"unknown configuration key "user.a.colour""#,
            ),
            (
                &[("user..rate", "1")],
                r#"unknown configuration key "user..rate""#,
            ),
            (&[("tls.key", "k")], "tls.cert is missing"),
            (
                &[("name.first", "n")],
                r#"unknown configuration key "name.first""#,
            ),
            (
                &[("tls", "x")],
                r#"tls = "x": expected keys under this one"#,
            ),
            (&[("nmae", "n")], r#"unknown configuration key "nmae""#),
            (
                &[("user.a", "1")],
                r#"user.a = "1": expected keys under this one"#,
            ),
        ] {
            assert_eq!(
                read::<Config>(pairs).err().as_deref(),
                Some(error),
                "{pairs:?}"
            );
        }
    }

    /// A type of its own, from the text.
    #[derive(Debug, Deserialize)]
    #[serde(try_from = "String")]
    struct Even(u32);

    impl TryFrom<String> for Even {
        type Error = String;

        fn try_from(text: String) -> Result<Self, String> {
            match text.parse::<u32>() {
                Ok(n) if n % 2 == 0 => Ok(Even(n)),
                _ => Err("not an even number".into()),
            }
        }
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Strict {
        #[serde(default)]
        even: Vec<Even>,
        one: Option<Even>,
    }

    #[test]
    fn own_types_and_strict_structs() {
        let s: Strict = read(&[("even", "2, 4"), ("one", "6")]).expect("valid");
        assert_eq!((s.even.len(), s.one.map(|e| e.0)), (2, Some(6)));
        let e = read::<Strict>(&[("one", "3")]).err();
        assert_eq!(e.as_deref(), Some(r#"one = "3": not an even number"#));
        let e = read::<Strict>(&[("even", "2, 3")]).err();
        assert_eq!(e.as_deref(), Some(r#"even: "3": not an even number"#));
        let e = read::<Strict>(&[("odd", "3")]).err();
        assert_eq!(
            e.as_deref(),
            Some(r#"unknown configuration key "odd" (expected even or one)"#)
        );
    }

    #[test]
    fn several_reads_share_one_finish() {
        let s = settings(&[
            ("rate", "5"),
            ("user.a.rate", "1"),
            ("user.a.burst", "x"),
            ("user.b.colour", "red"),
            ("user.b.rate", "2"),
        ]);
        let e = s.value::<HashMap<String, Limits>>("user").err();
        assert_eq!(
            e.as_deref(),
            Some(r#"user.a.burst = "x": expected a whole number from 0 to 4294967295"#)
        );
        let s = settings(&[
            ("rate", "5"),
            ("user.a.rate", "1"),
            ("user.b.colour", "red"),
            ("user.b.rate", "2"),
        ]);
        let users: HashMap<String, Limits> = s.value("user").expect("valid").expect("set");
        assert_eq!(users.len(), 2);
        let defaults: Limits = s.deserialize().expect("valid");
        assert_eq!(defaults.rate, 5);
        assert_eq!(
            s.finish(),
            Err(r#"unknown configuration key "user.b.colour""#.into())
        );
        assert_eq!(s.value::<u8>("other"), Ok(None));
    }

    #[test]
    fn the_last_of_a_key_set_twice_counts() {
        let s = settings(&[("rate", "1"), ("rate", "2")]);
        assert_eq!(s.deserialize::<Limits>().map(|l| l.rate), Ok(2));
        assert_eq!(s.finish(), Ok(()));
    }

    #[test]
    fn unit_ignores_the_settings() {
        assert_eq!(read::<()>(&[("anything", "x"), ("a.b", "y")]), Ok(()));
    }

    #[test]
    fn secrets_and_lower_bounds() {
        #[derive(Debug, Deserialize)]
        struct C {
            key: Secret,
            size: Option<AtLeast<64, u32>>,
        }
        let c: C = read(&[("key", "k"), ("size", "64")]).expect("valid");
        assert_eq!(
            (c.key.expose(), c.size.map(AtLeast::get)),
            (&b"k"[..], Some(64))
        );
        assert_eq!(format!("{:?}", c.key), "Secret(..)");
        assert_eq!(
            read::<C>(&[("key", "k"), ("size", "63")]).err().as_deref(),
            Some(r#"size = "63": expected a whole number, at least 64"#)
        );
        assert_eq!(
            read::<C>(&[("key", "")]).err().as_deref(),
            Some(r#"key = "": an empty secret"#)
        );
        assert_eq!(read::<C>(&[]).err().as_deref(), Some("key is missing"));
    }
}
