//! Configured text with placeholders, mosquitto-style: `%` and a letter
//! stand for a value known at call time (`%c` the client id, `%u` the
//! username...), `%%` for a `%`. The plugin chooses its letters and what
//! they stand for; an unknown letter or a lone `%` at the end is an error
//! when the text is parsed, typically at load.
//!
//! ```
//! use sluice_plugin_sdk::template::Template;
//!
//! let t = Template::parse("users/%u/%c (100%%)", &['u', 'c'])?;
//! let value = |letter| match letter {
//!     'u' => Some("alice"),
//!     _ => Some("phone"),
//! };
//! assert_eq!(t.render(value).as_deref(), Some("users/alice/phone (100%)"));
//! // A value the closure does not have: nothing to render.
//! assert_eq!(t.render(|_| None), None);
//! assert!(Template::parse("%x", &['u', 'c']).is_err());
//! # Ok::<(), String>(())
//! ```

use std::borrow::Cow;

/// Parsed text with placeholders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    /// `%` and this letter.
    Placeholder(char),
}

impl Template {
    /// Parses `source`, in which `%` followed by one of `letters` is a
    /// placeholder and `%%` a `%`. The error names the wrong placeholder
    /// and the allowed ones.
    ///
    /// ```
    /// use sluice_plugin_sdk::template::Template;
    ///
    /// let e = Template::parse("a%q", &['c', 'u']).err();
    /// assert_eq!(e.as_deref(), Some("unknown placeholder %q (use %c, %u or %%)"));
    /// let e = Template::parse("50%", &['c']).err();
    /// assert_eq!(e.as_deref(), Some("'%' at the end (use %% for a '%')"));
    /// ```
    pub fn parse(source: &str, letters: &[char]) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut chars = source.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                text.push(c);
                continue;
            }
            let letter = match chars.next() {
                Some('%') => {
                    text.push('%');
                    continue;
                }
                Some(letter) if letters.contains(&letter) => letter,
                Some(other) => {
                    let mut allowed: Vec<String> =
                        letters.iter().map(|l| format!("%{l}")).collect();
                    allowed.push("%%".into());
                    let allowed = crate::config::one_of(&allowed, |a| a.to_owned());
                    return Err(format!("unknown placeholder %{other} (use {allowed})"));
                }
                None => return Err("'%' at the end (use %% for a '%')".into()),
            };
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(Piece::Placeholder(letter));
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Template { pieces })
    }

    /// Whether the text has placeholders (without, every rendering is the
    /// same text).
    ///
    /// ```
    /// use sluice_plugin_sdk::template::Template;
    ///
    /// assert!(Template::parse("dev/%c", &['c'])?.has_placeholders());
    /// assert!(!Template::parse("100%%", &['c'])?.has_placeholders());
    /// # Ok::<(), String>(())
    /// ```
    pub fn has_placeholders(&self) -> bool {
        self.pieces
            .iter()
            .any(|p| matches!(p, Piece::Placeholder(_)))
    }

    /// The text with each placeholder replaced by `value(letter)`, or
    /// `None` as soon as `value` has none for one of them. Without
    /// placeholders the text is borrowed, not copied.
    ///
    /// ```
    /// use sluice_plugin_sdk::template::Template;
    ///
    /// let t = Template::parse("[%u]", &['u'])?;
    /// let username: Option<&str> = None;
    /// // An absent value as empty text...
    /// assert_eq!(t.render(|_| Some(username.unwrap_or_default())).as_deref(), Some("[]"));
    /// // ...or as no text at all.
    /// assert_eq!(t.render(|_| username), None);
    /// # Ok::<(), String>(())
    /// ```
    pub fn render<'v>(
        &self,
        mut value: impl FnMut(char) -> Option<&'v str>,
    ) -> Option<Cow<'_, str>> {
        match self.pieces.as_slice() {
            [] => return Some(Cow::Borrowed("")),
            [Piece::Text(t)] => return Some(Cow::Borrowed(t)),
            _ => {}
        }
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Placeholder(letter) => out.push_str(value(*letter)?),
            }
        }
        Some(Cow::Owned(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LETTERS: [char; 4] = ['c', 'u', 'm', 't'];

    fn render(source: &str) -> Option<String> {
        let t = Template::parse(source, &LETTERS).expect("valid");
        t.render(|l| match l {
            'c' => Some("sub-1"),
            'u' => Some("alice"),
            'm' => Some(""),
            _ => None,
        })
        .map(Cow::into_owned)
    }

    #[test]
    fn placeholders_are_substituted() {
        assert_eq!(
            render("%c (%u) 100%%").as_deref(),
            Some("sub-1 (alice) 100%")
        );
        assert_eq!(render("[%m]").as_deref(), Some("[]"));
        assert_eq!(render("%u%c").as_deref(), Some("alicesub-1"));
        assert_eq!(render("plain").as_deref(), Some("plain"));
        assert_eq!(render("").as_deref(), Some(""));
        assert_eq!(render("x/%t"), None, "no value for %t");
    }

    #[test]
    fn text_without_placeholders_is_borrowed() {
        let t = Template::parse("a/%%/b", &LETTERS).expect("valid");
        assert!(!t.has_placeholders());
        assert!(matches!(t.render(|_| None), Some(Cow::Borrowed("a/%/b"))));
    }

    #[test]
    fn invalid_placeholders_are_explained() {
        for (bad, why) in [
            ("%q", "unknown placeholder %q (use %c, %u, %m, %t or %%)"),
            ("a%", "'%' at the end"),
            ("%%%", "'%' at the end"),
        ] {
            match Template::parse(bad, &LETTERS) {
                Ok(_) => panic!("{bad:?} accepted"),
                Err(e) => assert!(e.contains(why), "{bad:?}: {e}"),
            }
        }
        let e = Template::parse("%u", &['c']).err();
        assert_eq!(e.as_deref(), Some("unknown placeholder %u (use %c or %%)"));
    }
}
