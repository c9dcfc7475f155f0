//! Plugins written in languages other than Rust: each language's module
//! installs its tools into project-local places when they are missing
//! (a virtualenv, `node_modules`, Debian packages) and builds the example
//! plugins written in it into `target/plugins/`. A language whose tools
//! cannot be installed is an error, never silently skipped. Builds are
//! incremental: a plugin whose sources did not change is not rebuilt.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::tools::{plugin_inputs, report_built, up_to_date};

mod c;
mod js;
mod python;

/// Builds every non-Rust example plugin into `out`; returns how many.
pub fn build_all(root: &Path, out: &Path) -> Result<usize> {
    Ok(python::build(root, out)? + js::build(root, out)? + c::build(root, out)?)
}

/// Builds every plugin of `example-plugins/` that has `source` and is out
/// of date (its sources, or `wit/`, changed since its component was
/// written). `setup` installs the language's tools, once and only if some
/// plugin needs building; `build` writes one plugin's component to the
/// path it is given, which is then moved into place, so that an interrupted
/// build never leaves a truncated component that looks newer than its
/// sources. Returns how many plugins there are.
fn build_outdated<T>(
    root: &Path,
    out: &Path,
    source: &str,
    setup: impl FnOnce(&Path) -> Result<T>,
    build: impl Fn(&T, &Source, &Path) -> Result<()>,
) -> Result<usize> {
    let plugins = sources(root, source)?;
    let mut setup = Some(setup);
    let mut tool = None;
    for plugin in &plugins {
        let dest = out.join(format!("{}.wasm", plugin.name));
        if up_to_date(&dest, &plugin_inputs(root, &plugin.dir)?)? {
            continue;
        }
        let tool = match (&mut tool, setup.take()) {
            (Some(t), _) => &*t,
            (None, Some(setup)) => &*tool.insert(setup(root)?),
            (None, None) => bail!("the tools for {source} plugins could not be set up"),
        };
        let started = Instant::now();
        let partial = out.join(format!("{}.wasm.partial", plugin.name));
        let _ = std::fs::remove_file(&partial);
        build(tool, plugin, &partial)
            .with_context(|| format!("cannot build the plugin {}", plugin.dir.display()))?;
        // Some tools report failures on stderr only.
        if !partial.is_file() {
            bail!("building {} wrote no {}", plugin.name, partial.display());
        }
        std::fs::rename(&partial, &dest)
            .with_context(|| format!("cannot move {} into place", partial.display()))?;
        report_built(&dest, started)?;
    }
    Ok(plugins.len())
}

/// A plugin of `example-plugins/` in a language other than Rust: a
/// directory with its source and a `world.wit` naming the hooks it exports.
pub struct Source {
    /// The directory's name, and the output's (`NAME.wasm`).
    pub name: String,
    pub dir: PathBuf,
    /// The world's package (`ns:name`, without version) and name.
    pub package: String,
    pub world: String,
}

impl Source {
    /// `ns:name/world`, as componentize-py names a world.
    pub fn full_world(&self) -> String {
        format!("{}/{}", self.package, self.world)
    }
}

/// Every directory of `example-plugins/` that holds `source` (e.g.
/// `app.py`) and a `world.wit`, by name; new plugins (`cargo xtask
/// new-plugin`) are found without being listed anywhere.
pub fn sources(root: &Path, source: &str) -> Result<Vec<Source>> {
    let examples = root.join("example-plugins");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&examples)
        .with_context(|| format!("cannot read {}", examples.display()))?
    {
        let dir = entry?.path();
        let world_file = dir.join("world.wit");
        if !dir.join(source).is_file() || !world_file.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&world_file)
            .with_context(|| format!("cannot read {}", world_file.display()))?;
        let (package, world) = world_of(&text).with_context(|| {
            format!(
                "{} needs a `package ns:name;` and a `world NAME {{` line",
                world_file.display()
            )
        })?;
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .context("plugin directory names must be UTF-8")?
            .to_owned();
        found.push(Source {
            name,
            dir,
            package,
            world,
        });
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// The package (without version) and the first world of a WIT file.
fn world_of(text: &str) -> Option<(String, String)> {
    let mut package = None;
    let mut world = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with("//") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("package ") {
            let name = rest.trim_end_matches(';').trim();
            package.get_or_insert_with(|| name.split('@').next().unwrap_or(name).to_owned());
        } else if let Some(rest) = line.strip_prefix("world ") {
            let name = rest.trim_end_matches('{').trim();
            world.get_or_insert_with(|| name.to_owned());
        }
    }
    Some((package?, world?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worlds_are_found() {
        let text =
            "// comment: package nope;\npackage my:acl@1.0.0;\n\nworld acl {\n  include x;\n}\n";
        assert_eq!(world_of(text), Some(("my:acl".into(), "acl".into())));
        assert_eq!(world_of("world w {}"), None);
    }
}
