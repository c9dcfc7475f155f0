//! Why a configuration is refused ([`ConfigError`]), and where: the key at
//! fault as a path from the top of the file ([`Key`]), and its line, found
//! from a toml/serde error's position or from the key in the spanned
//! document.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeArray, DeTable, DeValue};

/// Why a configuration cannot be used.
///
/// Its `Display` is the message for the operator, on one line: the file,
/// the line (and column) when known, and the key, e.g.
/// ``invalid config file sluice.toml, line 12: `mqtt.receive_maximum` must be between 1 and 65535``.
#[derive(Debug)]
pub enum ConfigError {
    /// The file cannot be read.
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The text is not TOML, or does not fit the schema: a syntax error, an
    /// unknown key, a value of the wrong type or a missing required key.
    Parse {
        path: Option<PathBuf>,
        /// 1-based line of the problem, when known.
        line: Option<usize>,
        /// 1-based column (in characters) of the problem, when known.
        column: Option<usize>,
        /// The key at fault, as `section.key` or `listener[N].key`, when
        /// known.
        key: Option<String>,
        /// What toml and serde say is wrong.
        message: String,
    },
    /// A value is out of range, or values conflict.
    Invalid {
        path: Option<PathBuf>,
        /// 1-based line of the key (or of the nearest section of it that is
        /// in the file), when validating a file's text.
        line: Option<usize>,
        /// The key at fault, as `section.key`, `listener[N].key` or
        /// `plugin.NAME.key`.
        key: String,
        problem: String,
    },
}

impl ConfigError {
    /// The key at fault, when known.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Parse { key, .. } => key.as_deref(),
            ConfigError::Invalid { key, .. } => Some(key),
        }
    }

    /// The 1-based line in the file, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Parse { line, .. } | ConfigError::Invalid { line, .. } => *line,
        }
    }

    /// Names the file the error is in.
    pub(super) fn in_file(self, file: &Path) -> ConfigError {
        match self {
            ConfigError::Parse {
                line,
                column,
                key,
                message,
                ..
            } => ConfigError::Parse {
                path: Some(file.to_owned()),
                line,
                column,
                key,
                message,
            },
            ConfigError::Invalid {
                line, key, problem, ..
            } => ConfigError::Invalid {
                path: Some(file.to_owned()),
                line,
                key,
                problem,
            },
            read @ ConfigError::Read { .. } => read,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// `invalid config[ file PATH][, line L[, column C]]: `
        fn location(
            f: &mut fmt::Formatter<'_>,
            path: Option<&Path>,
            line: Option<usize>,
            column: Option<usize>,
        ) -> fmt::Result {
            f.write_str("invalid config")?;
            if let Some(path) = path {
                write!(f, " file {}", path.display())?;
            }
            if let Some(line) = line {
                write!(f, ", line {line}")?;
                if let Some(column) = column {
                    write!(f, ", column {column}")?;
                }
            }
            f.write_str(": ")
        }
        match self {
            ConfigError::Read { path, error } => {
                write!(f, "cannot read config file {}: {error}", path.display())
            }
            ConfigError::Parse {
                path,
                line,
                column,
                key,
                message,
            } => {
                location(f, path.as_deref(), *line, *column)?;
                if let Some(key) = key {
                    write!(f, "`{key}`: ")?;
                }
                f.write_str(message)
            }
            ConfigError::Invalid {
                path,
                line,
                key,
                problem,
            } => {
                location(f, path.as_deref(), *line, None)?;
                write!(f, "`{key}` {problem}")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// A configuration key as a path from the top of the file, shown as
/// `mqtt.receive_maximum`, `listener[1].tls.client_ca` or
/// `plugin."my.plugin".fuel`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Key(Vec<Segment>);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    /// A key of a table.
    Name(String),
    /// An element of an array (of tables, for `[[listener]]`).
    Index(usize),
}

impl Key {
    pub(super) fn of<'a>(names: impl IntoIterator<Item = &'a str>) -> Key {
        Key::default().then(names)
    }

    pub(super) fn then<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Key {
        let mut key = self.clone();
        key.0
            .extend(names.into_iter().map(|n| Segment::Name(n.to_owned())));
        key
    }

    pub(super) fn index(mut self, i: usize) -> Key {
        self.0.push(Segment::Index(i));
        self
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Index(n) => write!(f, "[{n}]")?,
                Segment::Name(name) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !name.is_empty()
                        && name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if bare {
                        f.write_str(name)?;
                    } else {
                        write!(f, "{name:?}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// 1-based line and column (in characters) of byte `offset` of `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

/// A toml/serde error as a [`ConfigError::Parse`] with its line, column
/// and key.
pub(super) fn parse_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let span = e.span();
    let (line, column) = match &span {
        Some(span) => {
            let (line, column) = line_and_column(text, span.start);
            (Some(line), Some(column))
        }
        None => (None, None),
    };
    ConfigError::Parse {
        path: None,
        line,
        column,
        key: span
            .and_then(|span| key_at(text, &span))
            .map(|k| k.to_string()),
        message: e.message().trim_end().to_owned(),
    }
}

/// The key whose name or value covers `span` in `text`, most nested first.
fn key_at(text: &str, span: &Range<usize>) -> Option<Key> {
    fn covers(outer: &Range<usize>, inner: &Range<usize>) -> bool {
        outer.start <= inner.start && inner.end <= outer.end
    }
    fn in_value(value: &DeValue<'_>, span: &Range<usize>) -> Option<Vec<Segment>> {
        match value {
            DeValue::Table(table) => in_table(table, span),
            DeValue::Array(array) => array.iter().enumerate().find_map(|(i, item)| {
                let mut path = match in_value(item.get_ref(), span) {
                    Some(path) => path,
                    None if covers(&item.span(), span) => Vec::new(),
                    None => return None,
                };
                path.insert(0, Segment::Index(i));
                Some(path)
            }),
            _ => None,
        }
    }
    fn in_table(table: &DeTable<'_>, span: &Range<usize>) -> Option<Vec<Segment>> {
        table.iter().find_map(|(name, value)| {
            let mut path = match in_value(value.get_ref(), span) {
                Some(path) => path,
                None if covers(&name.span(), span) || covers(&value.span(), span) => Vec::new(),
                None => return None,
            };
            path.insert(0, Segment::Name(name.get_ref().to_string()));
            Some(path)
        })
    }
    let document = DeTable::parse(text).ok()?;
    in_table(document.get_ref(), span).map(Key)
}

/// The line of `key` in `text`; for a key that is not in the text, the line
/// of the nearest enclosing section that is (e.g. the `[[listener]]` header
/// of a listener that lacks a required section). None when not even the
/// top-level section is in the text.
pub(super) fn spanned_line(text: &str, key: &Key) -> Option<usize> {
    let document = DeTable::parse(text).ok()?;
    let mut table = Some(document.get_ref());
    let mut array = None;
    let mut found = None;
    for segment in &key.0 {
        let next = match segment {
            Segment::Name(name) => table
                .and_then(|t| t.get_key_value(name.as_str()))
                .map(|(name, value)| (name.span(), value)),
            Segment::Index(i) => array
                .and_then(|a: &DeArray<'_>| a.get(*i))
                .map(|value| (value.span(), value)),
        };
        let Some((span, value)) = next else { break };
        found = Some(span);
        table = value.get_ref().as_table();
        array = value.get_ref().as_array();
    }
    found.map(|span| line_and_column(text, span.start).0)
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn error_of(text: &str) -> String {
        Config::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = error_of("[mqtt]\nmax_packet_sise = 10\n");
        assert!(e.contains("max_packet_sise"), "{e}");
        assert!(e.contains("line 2"), "{e}");
        let e = error_of("[nope]\n");
        assert!(e.contains("nope"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let e = error_of("[mqtt]\nreceive_maximum = \"many\"\n");
        assert!(e.contains("receive_maximum"), "{e}");
        let e = error_of("[mqtt]\nreceive_maximum = 0\n");
        assert!(e.contains("mqtt.receive_maximum"), "{e}");
        let e = error_of("[server]\nbind = [\"localhost\"]\n");
        assert!(e.contains("bind"), "{e}");
        let e = error_of("[session]\noverflow = \"drop_all\"\n");
        assert!(e.contains("overflow"), "{e}");
        let e = error_of("[mqtt]\nmax_packet_size = 10\n");
        assert!(e.contains("mqtt.max_packet_size"), "{e}");
        let e = error_of("[plugins]\non_failure = \"maybe\"\n");
        assert!(e.contains("on_failure"), "{e}");
        let e = error_of("[plugin.x]\nfule = 3\n");
        assert!(e.contains("fule"), "{e}");
        let e = error_of("[admin]\nbind = \"localhost\"\n");
        assert!(e.contains("bind"), "{e}");
        let e = error_of("[admin]\nport = 8888\n");
        assert!(e.contains("port"), "{e}");
    }

    #[test]
    fn errors_name_the_key_and_the_line() {
        let e = Config::parse("[server]\nallow_anonymous = true\n\n[mqtt]\nreceive_maximum = 0\n")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid config, line 5: `mqtt.receive_maximum` must be between 1 and 65535"
        );
        let e = Config::parse("[mqtt]\n\nmax_packet_sise = 10\n").unwrap_err();
        assert_eq!((e.key(), e.line()), (Some("mqtt.max_packet_sise"), Some(3)));
        let e = Config::parse("[[listener]]\nbind = \"127.0.0.1:1\"\n[[listener]]\nkind = \"tls\"\nbind = \"127.0.0.1:2\"\n")
            .unwrap_err();
        assert_eq!((e.key(), e.line()), (Some("listener[1].tls"), Some(3)));
        let e = Config::parse("[plugin.\"a.b\"]\nfuel = 0\n").unwrap_err();
        assert_eq!((e.key(), e.line()), (Some("plugin.\"a.b\".fuel"), Some(2)));
        let mut config = Config::default();
        config.mqtt.max_inflight = 0;
        let e = config.validate().unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid config: `mqtt.max_inflight` must be between 1 and 65535"
        );
    }
}
