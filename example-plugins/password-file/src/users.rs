//! The plugin's logic, independent of the WIT bindings: the configuration
//! (users and their password hashes) and the decision for one CONNECT.

use std::collections::HashMap;

use serde::Deserialize;
use sluice_plugin_sdk::config::{AtLeast, Otherwise};
use sluice_plugin_sdk::{FromConfig, Settings};

use sluice_plugin_sdk::password::PasswordHash;

/// What to answer for a correct password.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnSuccess {
    /// Accept: the chain ends here (default).
    #[default]
    Ok,
    /// Pass the authenticated client on, so that a later plugin (such as
    /// `limits`) accepts it with its modifiers.
    Next,
}

/// Iterations a hash may have by default: above this, a verification
/// would not fit the default fuel per call (see README.md).
pub const DEFAULT_MAX_ITERATIONS: u32 = 3_500;

/// The parsed configuration.
#[derive(Debug)]
pub struct Users {
    users: HashMap<String, PasswordHash>,
    /// What to do with a username that is not in the list: leave the
    /// client to the next plugin (default), or refuse it (bad user name or
    /// password).
    pub unknown: Otherwise,
    pub on_success: OnSuccess,
}

/// The plugin's answer for one CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Right password.
    Accept,
    /// Not for this plugin to decide.
    Next,
    /// Refuse, with the reason to log.
    Refuse(Refusal),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    WrongPassword,
    NoPassword,
    UnknownUser,
}

impl Refusal {
    pub fn text(self) -> &'static str {
        match self {
            Refusal::WrongPassword => "wrong password",
            Refusal::NoPassword => "no password",
            Refusal::UnknownUser => "unknown user",
        }
    }
}

impl FromConfig for Users {
    /// The users' hashes and the answers' settings.
    fn from_config(s: &Settings) -> Result<Self, String> {
        let max_iterations = s.value::<AtLeast<1, u32>>("max_iterations")?;
        let max_iterations = max_iterations.map_or(DEFAULT_MAX_ITERATIONS, AtLeast::get);
        let mut users = Users {
            users: HashMap::new(),
            unknown: s.value("unknown")?.unwrap_or_default(),
            on_success: s.value("on_success")?.unwrap_or_default(),
        };
        let sources = [("users", s.get("users")), ("file", s.get("file"))];
        s.finish()?;
        for (source, text) in sources {
            for (n, entry) in entries(text.unwrap_or_default()).enumerate() {
                let at = || format!("{source}, entry {}", n + 1);
                let (name, hash) = entry
                    .split_once(':')
                    .ok_or_else(|| format!("{}: expected NAME:$pbkdf2-sha256$...", at()))?;
                let name = name.trim();
                if name.is_empty() {
                    return Err(format!("{}: empty user name", at()));
                }
                let hash = PasswordHash::parse(hash.trim())
                    .map_err(|e| format!("{}: user {name:?}: {e}", at()))?;
                if hash.iterations > max_iterations {
                    return Err(format!(
                        "{}: user {name:?}: {} iterations is more than max_iterations \
                         ({max_iterations}); a verification would exceed the plugin's fuel",
                        at(),
                        hash.iterations
                    ));
                }
                if users.users.insert(name.to_owned(), hash).is_some() {
                    return Err(format!("{}: user {name:?} is listed twice", at()));
                }
            }
        }
        Ok(users)
    }
}

impl Users {
    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The decision for a client with these credentials.
    pub fn check(&self, username: Option<&str>, password: Option<&[u8]>) -> Decision {
        let Some(username) = username else {
            return Decision::Next;
        };
        let Some(hash) = self.users.get(username) else {
            return match self.unknown {
                Otherwise::Next => Decision::Next,
                Otherwise::Deny => Decision::Refuse(Refusal::UnknownUser),
            };
        };
        let Some(password) = password else {
            return Decision::Refuse(Refusal::NoPassword);
        };
        if !hash.verify(password) {
            return Decision::Refuse(Refusal::WrongPassword);
        }
        match self.on_success {
            OnSuccess::Ok => Decision::Accept,
            OnSuccess::Next => Decision::Next,
        }
    }
}

/// The entries of a `users` or `file` value: separated by newlines or
/// commas; blank ones and `#` comments are skipped.
fn entries(text: &str) -> impl Iterator<Item = &str> {
    text.split(['\n', ','])
        .map(str::trim)
        .filter(|e| !e.is_empty() && !e.starts_with('#'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Produced by `cargo xtask passwd --iterations 1000 FILE alice secret`:
    /// the xtask's output must stay verifiable here.
    const XTASK_LINE: &str = "alice:$pbkdf2-sha256$1000$VHMb3/XsuTvs5N41mdv/LA==$tKbsn9iCHoO3z+a6wrJcLC+590sy6S6LTxmdDR34W5k=";

    fn cfg(pairs: &[(&str, &str)]) -> Settings {
        Settings::new(pairs.iter().copied())
    }

    fn line(user: &str, password: &str, iterations: u32) -> String {
        format!(
            "{user}:{}",
            PasswordHash::new(password.as_bytes(), b"0123456789abcdef", iterations)
        )
    }

    #[test]
    fn xtask_line_verifies() {
        let users = Users::from_config(&cfg(&[("file", XTASK_LINE)])).expect("valid");
        assert_eq!(
            users.check(Some("alice"), Some(b"secret")),
            Decision::Accept
        );
        assert_eq!(
            users.check(Some("alice"), Some(b"Secret")),
            Decision::Refuse(Refusal::WrongPassword)
        );
    }

    #[test]
    fn users_from_both_keys_commas_and_newlines() {
        let file = format!(
            "# comment\n{}\n\n{}\n",
            line("a", "pa", 2),
            line("b", "pb", 2)
        );
        let users = Users::from_config(&cfg(&[
            ("file", &file),
            (
                "users",
                &format!("{}, {}", line("c", "pc", 2), line("d", "pd", 2)),
            ),
        ]))
        .expect("valid");
        assert_eq!(users.len(), 4);
        for (u, p) in [("a", "pa"), ("b", "pb"), ("c", "pc"), ("d", "pd")] {
            assert_eq!(
                users.check(Some(u), Some(p.as_bytes())),
                Decision::Accept,
                "{u}"
            );
        }
    }

    #[test]
    fn decisions() {
        let users = Users::from_config(&cfg(&[("users", &line("a", "pa", 2))])).expect("valid");
        assert_eq!(users.check(None, Some(b"pa")), Decision::Next);
        assert_eq!(users.check(Some("zz"), Some(b"pa")), Decision::Next);
        assert_eq!(
            users.check(Some("a"), None),
            Decision::Refuse(Refusal::NoPassword)
        );
        assert_eq!(
            users.check(Some("a"), Some(b"")),
            Decision::Refuse(Refusal::WrongPassword)
        );
        let deny = Users::from_config(&cfg(&[("users", &line("a", "pa", 2)), ("unknown", "deny")]))
            .expect("valid");
        assert_eq!(
            deny.check(Some("zz"), Some(b"pa")),
            Decision::Refuse(Refusal::UnknownUser)
        );
        assert_eq!(deny.check(None, None), Decision::Next);
        let pass_on = Users::from_config(&cfg(&[
            ("users", &line("a", "pa", 2)),
            ("on_success", "next"),
        ]))
        .expect("valid");
        assert_eq!(pass_on.check(Some("a"), Some(b"pa")), Decision::Next);
        assert_eq!(
            pass_on.check(Some("a"), Some(b"x")),
            Decision::Refuse(Refusal::WrongPassword)
        );
    }

    #[test]
    fn bad_configuration_is_an_error() {
        for (pairs, needle) in [
            (vec![("users", "a")], "NAME:"),
            (
                vec![(
                    "users",
                    ":$pbkdf2-sha256$1$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAA",
                )],
                "empty",
            ),
            (vec![("users", "a:$md5$1$x$y")], "unsupported"),
            (
                vec![(
                    "users",
                    "a:$pbkdf2-sha256$0$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAA",
                )],
                "iteration",
            ),
            (
                vec![("users", "a:$pbkdf2-sha256$1$!!$AAAAAAAAAAAAAAAAAAAAAA")],
                "base64",
            ),
            (vec![("unknown", "maybe")], "unknown"),
            (vec![("on_success", "yes")], "on_success"),
            (vec![("max_iterations", "-1")], "max_iterations"),
            (vec![("colour", "red")], "colour"),
        ] {
            let pairs: Vec<_> = pairs.into_iter().collect();
            let e = Users::from_config(&cfg(&pairs)).expect_err(needle);
            assert!(e.contains(needle), "{e} should mention {needle}");
        }
        let twice = format!("{},{}", line("a", "1", 1), line("a", "2", 1));
        let e = Users::from_config(&cfg(&[("users", &twice)])).expect_err("duplicate");
        assert!(e.contains("twice"), "{e}");
        let heavy = line("a", "1", 3);
        let e = Users::from_config(&cfg(&[("users", &heavy), ("max_iterations", "2")]))
            .expect_err("too many iterations");
        assert!(e.contains("max_iterations"), "{e}");
    }
}
