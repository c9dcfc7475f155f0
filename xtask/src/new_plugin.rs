//! `cargo xtask new-plugin NAME [--lang rust|python|js|c] [--dir DIR]`: a
//! ready-to-build plugin from the templates in `xtask/templates/LANG/`.
//!
//! - Without `--dir`, an example plugin in `example-plugins/NAME/`: a Rust
//!   plugin joins the `example-plugins` workspace, and every language's
//!   plugin is built by `cargo xtask build-plugins` into
//!   `target/plugins/NAME.wasm`.
//! - With `--dir DIR`, a standalone project anywhere, for a plugin kept in
//!   its own repository: the template plus `xtask/templates/standalone/LANG/`
//!   (a `build.sh` that needs only the language's public tools, a README),
//!   and what the build needs from this checkout: the broker's WIT package
//!   (`wit/deps/sluice-plugin/`, beside the plugin's `wit/world.wit`), the
//!   SDK's path for Rust, the WASI reactor adapter for C.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER;

const USAGE: &str = "usage: cargo xtask new-plugin NAME [--lang rust|python|js|c] [--dir DIR]";

/// The languages with a template.
const LANGS: &[&str] = &["rust", "python", "js", "c"];

/// The file name a C project's build script expects the adapter under.
const ADAPTER_FILE: &str = "wasi_snapshot_preview1.reactor.wasm";

/// `invoked_in`: where `cargo xtask` was run, which a relative `--dir` is
/// resolved from.
pub fn run(root: &Path, invoked_in: &Path, args: &[String]) -> Result<()> {
    let mut name = None;
    let mut lang = "rust".to_owned();
    let mut dir = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--lang" => lang = it.next().context(USAGE)?.clone(),
            "--dir" => dir = Some(invoked_in.join(it.next().context(USAGE)?)),
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
    match dir {
        Some(dir) => {
            standalone(root, &lang, &name, &dir)?;
            eprintln!(
                "xtask: created {} ({lang}); `./build.sh` there builds {name}.wasm",
                dir.display()
            );
        }
        None => {
            let dest = root.join("example-plugins").join(&name);
            if dest.exists() {
                bail!("{} already exists", dest.display());
            }
            copy_template(&template(root, &lang)?, &dest, &Fill::new(&name))?;
            if lang == "rust" {
                join_workspace(&root.join("example-plugins/Cargo.toml"), &name)?;
            }
            eprintln!(
                "xtask: created {} ({lang}); `cargo xtask build-plugins` builds it into target/plugins/{name}.wasm",
                dest.display()
            );
        }
    }
    Ok(())
}

/// `xtask/templates/LANG/`.
fn template(root: &Path, lang: &str) -> Result<PathBuf> {
    let template = root.join("xtask/templates").join(lang);
    if !template.is_dir() {
        bail!("the {lang} template is missing ({})", template.display());
    }
    Ok(template)
}

/// A standalone project in `dir` (which must not exist, or be empty).
pub fn standalone(root: &Path, lang: &str, name: &str, dir: &Path) -> Result<()> {
    let occupied = std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some());
    if occupied {
        bail!("{} already exists and is not empty", dir.display());
    }
    let sdk = root
        .join("plugin-sdk")
        .canonicalize()
        .context("cannot find plugin-sdk/ in this checkout")?;
    let fill = Fill {
        sdk: sdk.to_string_lossy().replace('\\', "/"),
        ..Fill::new(name)
    };
    copy_template(&template(root, lang)?, dir, &fill)?;
    copy_template(
        &root.join("xtask/templates/standalone").join(lang),
        dir,
        &fill,
    )?;
    if lang == "rust" {
        return Ok(());
    }
    // wit/: the plugin's world, and the broker's package as a dependency,
    // the layout every component tool reads as one WIT directory.
    let deps = dir.join("wit/deps/sluice-plugin");
    std::fs::create_dir_all(&deps).with_context(|| format!("cannot create {}", deps.display()))?;
    std::fs::rename(dir.join("world.wit"), dir.join("wit/world.wit"))
        .context("cannot move world.wit into wit/")?;
    let package = root.join("wit");
    for entry in
        std::fs::read_dir(&package).with_context(|| format!("cannot read {}", package.display()))?
    {
        let path = entry?.path();
        if let Some(file) = path.file_name().filter(|_| path.is_file()) {
            std::fs::copy(&path, deps.join(file))
                .with_context(|| format!("cannot copy {}", path.display()))?;
        }
    }
    if lang == "c" {
        let adapter = dir.join(ADAPTER_FILE);
        std::fs::write(&adapter, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER)
            .with_context(|| format!("cannot write {}", adapter.display()))?;
    }
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

/// The placeholders of the templates.
struct Fill {
    /// `{{name}}`, and its `{{Name}}` and `{{name_snake}}` forms.
    name: String,
    /// `{{sdk}}`: the SDK's directory (standalone Rust projects).
    sdk: String,
}

impl Fill {
    fn new(name: &str) -> Fill {
        Fill {
            name: name.to_owned(),
            sdk: String::new(),
        }
    }

    fn apply(&self, text: &str) -> String {
        text.replace("{{name}}", &self.name)
            .replace("{{Name}}", &camel(&self.name))
            .replace("{{name_snake}}", &snake(&self.name))
            .replace("{{sdk}}", &self.sdk)
    }
}

/// Copies `from` into `to`, filling in names and contents; files keep
/// their permissions (the build scripts are executable).
fn copy_template(from: &Path, to: &Path, fill: &Fill) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
    {
        let entry = entry?;
        let path = entry.path();
        let target = to.join(fill.apply(&entry.file_name().to_string_lossy()));
        if entry.file_type()?.is_dir() {
            copy_template(&path, &target, fill)?;
        } else {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            std::fs::write(&target, fill.apply(&text))
                .with_context(|| format!("cannot write {}", target.display()))?;
            std::fs::set_permissions(&target, entry.metadata()?.permissions())
                .with_context(|| format!("cannot set the permissions of {}", target.display()))?;
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
            Fill::new("x-y").apply("{{Name}} {{name}} {{name_snake}}"),
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
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    /// The text files under `dir`, with their contents.
    fn texts(dir: &Path) -> Vec<(PathBuf, String)> {
        let mut found = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_none_or(|e| e != "wasm") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    found.push((path, text));
                }
            }
        }
        found
    }

    /// Every template fills in completely, as an example plugin and as a
    /// standalone project; the non-Rust ones name a world the build can
    /// find, and the standalone ones have an executable build script.
    #[test]
    fn templates_fill_in() {
        let root = crate::project_root();
        for lang in LANGS {
            let base =
                std::env::temp_dir().join(format!("xtask-template-{lang}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&base);
            let example = base.join("example");
            copy_template(
                &template(&root, lang).unwrap(),
                &example,
                &Fill::new("my-plugin"),
            )
            .unwrap();
            let project = base.join("standalone");
            standalone(&root, lang, "my-plugin", &project).unwrap();
            for (path, text) in texts(&example).into_iter().chain(texts(&project)) {
                assert!(!text.contains("{{"), "{}", path.display());
            }
            let script = std::fs::metadata(project.join("build.sh")).unwrap();
            assert_ne!(script.permissions().mode() & 0o111, 0, "{lang}");
            if *lang == "rust" {
                let manifest = std::fs::read_to_string(project.join("Cargo.toml")).unwrap();
                assert!(manifest.contains("plugin-sdk\" }"), "{manifest}");
            } else {
                for world in [example.join("world.wit"), project.join("wit/world.wit")] {
                    let world = std::fs::read_to_string(world).unwrap();
                    assert!(world.contains("package sluice-user:my-plugin;"), "{lang}");
                }
                assert!(project.join("wit/deps/sluice-plugin/types.wit").is_file());
            }
            assert!(standalone(&root, lang, "my-plugin", &project).is_err());
            let _ = std::fs::remove_dir_all(&base);
        }
    }
}
