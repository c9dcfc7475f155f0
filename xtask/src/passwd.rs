//! `cargo xtask passwd [--iterations N] FILE USER [PASSWORD]`: adds USER to
//! the password file FILE of the `password-file` example plugin, or
//! replaces its line. The password is read from standard input (its first
//! line) when not given. The hash format is the SDK's
//! (`sluice_plugin_sdk::password`), which the plugin verifies.

use std::io::BufRead as _;
use std::path::Path;

use anyhow::{Context, Result, bail};

use sluice_plugin_sdk::password::{DEFAULT_ITERATIONS, PasswordHash, SALT_LEN};

pub const USAGE: &str = "cargo xtask passwd [--iterations N] FILE USER [PASSWORD]";

/// Runs the command; a relative FILE is taken from `invoked_in`.
pub fn run(invoked_in: &Path, args: &[String]) -> Result<()> {
    let mut iterations = DEFAULT_ITERATIONS;
    let mut rest = Vec::new();
    let mut args = args.iter();
    while let Some(a) = args.next() {
        if a == "--iterations" {
            let n = args.next().context("--iterations needs a number")?;
            iterations = n
                .parse()
                .ok()
                .filter(|&n| n > 0)
                .with_context(|| format!("invalid iteration count {n:?}"))?;
        } else {
            rest.push(a.as_str());
        }
    }
    let (file, user, password) = match rest[..] {
        [file, user] => (file, user, read_password()?),
        [file, user, password] => (file, user, password.to_owned()),
        _ => bail!("usage: {USAGE}"),
    };
    check_user(user)?;
    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("no random salt: {e}"))?;
    let line = entry(user, &password, &salt, iterations);
    let path = invoked_in.join(file);
    let path = path.as_path();
    let old = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let (new, replaced) = upsert(&old, user, &line);
    std::fs::write(path, new).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!(
        "xtask: {} {user:?} in {} ({iterations} iterations)",
        if replaced { "updated" } else { "added" },
        path.display()
    );
    Ok(())
}

/// The first line of standard input, without its line ending.
fn read_password() -> Result<String> {
    eprintln!("xtask: password (one line on standard input):");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password")?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        bail!("empty password");
    }
    Ok(password)
}

/// User names end at `:` and entries at `,` or a line end in the plugin's
/// configuration.
fn check_user(user: &str) -> Result<()> {
    if user.is_empty() || user.trim() != user || user.starts_with('#') {
        bail!("invalid user name {user:?}");
    }
    if user.contains([':', ',', '\n', '\r']) {
        bail!("a user name cannot contain `:`, `,` or a line break: {user:?}");
    }
    Ok(())
}

/// The password file line for `user`.
fn entry(user: &str, password: &str, salt: &[u8], iterations: u32) -> String {
    format!(
        "{user}:{}",
        PasswordHash::new(password.as_bytes(), salt, iterations)
    )
}

/// `text` with `user`'s line replaced by `line` (or `line` appended), and
/// whether it replaced one.
fn upsert(text: &str, user: &str, line: &str) -> (String, bool) {
    let mut replaced = false;
    let mut out = String::new();
    for l in text.lines() {
        let is_user = l
            .split_once(':')
            .is_some_and(|(name, _)| name.trim() == user);
        if is_user && !replaced {
            out.push_str(line);
            replaced = true;
        } else if !is_user {
            out.push_str(l);
        } else {
            continue;
        }
        out.push('\n');
    }
    if !replaced {
        out.push_str(line);
        out.push('\n');
    }
    (out, replaced)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_is_in_the_plugin_format_and_verifies() {
        let line = entry("alice", "secret", b"0123456789abcdef", 1000);
        let (user, hash) = line.split_once(':').expect("user:hash");
        assert_eq!(user, "alice");
        assert!(hash.starts_with("$pbkdf2-sha256$1000$"), "{hash}");
        let parsed = PasswordHash::parse(hash).expect("parses");
        assert!(parsed.verify(b"secret"));
        assert!(!parsed.verify(b"secret "));
    }

    #[test]
    fn upsert_replaces_or_appends() {
        let (t, r) = upsert("", "a", "a:1");
        assert_eq!((t.as_str(), r), ("a:1\n", false));
        let (t, r) = upsert("# users\na:old\nb:x", "a", "a:new");
        assert_eq!((t.as_str(), r), ("# users\na:new\nb:x\n", true));
        let (t, r) = upsert("b:x\n", "a", "a:1");
        assert_eq!((t.as_str(), r), ("b:x\na:1\n", false));
    }

    #[test]
    fn user_names_are_checked() {
        for bad in ["", "a:b", "a,b", " a", "#a", "a\nb"] {
            assert!(check_user(bad).is_err(), "{bad:?}");
        }
        assert!(check_user("device-17@acme").is_ok());
    }
}
