//! `cargo xtask new-plugin NAME [--lang rust|python|js|c]`: a ready-to-build
//! plugin in `example-plugins/NAME/`, from the templates in
//! `xtask/templates/LANG/`. A Rust plugin joins the `example-plugins`
//! workspace; every language's plugin is then built by
//! `cargo xtask build-plugins` into `target/plugins/NAME.wasm`.

use std::path::Path;

use anyhow::{Context, Result, bail};

const USAGE: &str = "usage: cargo xtask new-plugin NAME [--lang rust|python|js|c]";

/// The languages with a template.
const LANGS: &[&str] = &["rust", "python", "js", "c"];

pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let mut name = None;
    let mut lang = "rust".to_owned();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--lang" => lang = it.next().context(USAGE)?.clone(),
            other if other.starts_with('-') => bail!("unknown option {other}\n{USAGE}"),
            other if name.is_none() => name = Some(other.to_owned()),
            _ => bail!("{USAGE}"),
        }
    }
    let name = name.context(USAGE)?;
    check_name(&name)?;
    if !LANGS.contains(&lang.as_str()) {
        bail!(
            "no template for language {lang:?}: choose one of {}",
            LANGS.join(", ")
        );
    }
    let template = root.join("xtask/templates").join(&lang);
    if !template.is_dir() {
        bail!("the {lang} template is missing ({})", template.display());
    }
    let dest = root.join("example-plugins").join(&name);
    if dest.exists() {
        bail!("{} already exists", dest.display());
    }
    copy_template(&template, &dest, &name)?;
    if lang == "rust" {
        join_workspace(&root.join("example-plugins/Cargo.toml"), &name)?;
    }
    eprintln!(
        "xtask: created {} ({lang}); `cargo xtask build-plugins` builds it into target/plugins/{name}.wasm",
        dest.display()
    );
    Ok(())
}

/// Plugin names become file, crate and WIT package names: words of
/// lowercase ASCII letters and digits, each starting with a letter, joined
/// by single dashes (WIT's kebab case).
fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.split('-').all(|word| {
            word.starts_with(|c: char| c.is_ascii_lowercase())
                && word
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        });
    if !ok {
        bail!(
            "invalid plugin name {name:?}: use dash-separated words of lowercase letters and digits, each starting with a letter"
        );
    }
    Ok(())
}

/// `my-acl` → `MyAcl`.
fn camel(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

/// `my-acl` → `my_acl`.
fn snake(name: &str) -> String {
    name.replace('-', "_")
}

fn fill(text: &str, name: &str) -> String {
    text.replace("{{name}}", name)
        .replace("{{Name}}", &camel(name))
        .replace("{{name_snake}}", &snake(name))
}

fn copy_template(from: &Path, to: &Path, name: &str) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
    {
        let entry = entry?;
        let path = entry.path();
        let target = to.join(fill(&entry.file_name().to_string_lossy(), name));
        if entry.file_type()?.is_dir() {
            copy_template(&path, &target, name)?;
        } else {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            std::fs::write(&target, fill(&text, name))
                .with_context(|| format!("cannot write {}", target.display()))?;
        }
    }
    Ok(())
}

/// Adds `name` to the `members` of the example-plugins workspace.
fn join_workspace(manifest: &Path, name: &str) -> Result<()> {
    let text = std::fs::read_to_string(manifest)
        .with_context(|| format!("cannot read {}", manifest.display()))?;
    let start = text
        .find("members = [")
        .with_context(|| format!("no `members = [` in {}", manifest.display()))?;
    let close = start
        + text[start..]
            .find(']')
            .with_context(|| format!("unterminated members list in {}", manifest.display()))?;
    let list = text[start + "members = [".len()..close].trim_end();
    let separator = if list.trim().is_empty() || list.ends_with(',') {
        " "
    } else {
        ", "
    };
    let new = format!(
        "{}{separator}\"{name}\"]{}",
        &text[..start + "members = [".len() + list.len()],
        &text[close + 1..]
    );
    std::fs::write(manifest, new).with_context(|| format!("cannot write {}", manifest.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("my-acl2").is_ok());
        for bad in ["", "My", "1x", "a_b", "a-", "a--b", "a b", "a-2b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(camel("my-acl"), "MyAcl");
        assert_eq!(
            fill("{{Name}} {{name}} {{name_snake}}", "x-y"),
            "XY x-y x_y"
        );
    }

    #[test]
    fn workspace_members_grow() {
        let dir = std::env::temp_dir().join(format!("xtask-new-plugin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let manifest = dir.join("Cargo.toml");
        std::fs::write(&manifest, "[workspace]\nmembers = [\"a\", \"b\"]\n[x]\n").unwrap();
        join_workspace(&manifest, "c").unwrap();
        assert_eq!(
            std::fs::read_to_string(&manifest).unwrap(),
            "[workspace]\nmembers = [\"a\", \"b\", \"c\"]\n[x]\n"
        );
        std::fs::write(&manifest, "members = [\n  \"a\",\n]\n").unwrap();
        join_workspace(&manifest, "c").unwrap();
        assert_eq!(
            std::fs::read_to_string(&manifest).unwrap(),
            "members = [\n  \"a\", \"c\"]\n"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[cfg(test)]
mod template_tests {
    use super::*;

    /// Every template fills in completely, and the non-Rust ones name a
    /// world the build can find.
    #[test]
    fn templates_fill_in() {
        let root = crate::project_root();
        for lang in LANGS {
            let template = root.join("xtask/templates").join(lang);
            let dest =
                std::env::temp_dir().join(format!("xtask-template-{lang}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dest);
            copy_template(&template, &dest, "my-plugin").unwrap();
            let mut stack = vec![dest.clone()];
            while let Some(dir) = stack.pop() {
                for entry in std::fs::read_dir(&dir).unwrap() {
                    let path = entry.unwrap().path();
                    if path.is_dir() {
                        stack.push(path);
                    } else {
                        let text = std::fs::read_to_string(&path).unwrap();
                        assert!(!text.contains("{{"), "{}", path.display());
                    }
                }
            }
            if *lang != "rust" {
                let world = std::fs::read_to_string(dest.join("world.wit")).unwrap();
                assert!(world.contains("package sluice-user:my-plugin;"), "{lang}");
            }
            let _ = std::fs::remove_dir_all(&dest);
        }
    }
}
