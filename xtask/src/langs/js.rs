//! Example plugins in JavaScript (see `langs`), built with componentize-js
//! (SpiderMonkey), which is installed with npm into `target/tools/node`.
//!
//! A plugin is a directory of `example-plugins/` holding its module
//! (`app.js`) and its world (`world.wit`: the broker's imports plus the
//! hooks it exports). componentize-js takes one WIT path, so the world is
//! staged in `target/tools/wit/NAME/` with the WIT package in `wit/` as its
//! dependency (`deps/sluice-plugin/`).
//!
//! componentize-js is run through its own CLI: `jco componentize` (1.35)
//! fails on SpiderMonkey builds. `-d http fetch-event` leaves out the
//! `wasi:http` imports the broker does not provide.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{sh, succeeds};

/// The componentize-js release the plugins are built with.
const COMPONENTIZE_JS: &str = "0.23.0";

/// Builds the example plugins written in this language into `out`.
pub fn build(root: &Path, out: &Path) -> Result<usize> {
    super::build_outdated(
        root,
        out,
        "app.js",
        componentize_js,
        |tool, plugin, dest| {
            let wit = stage_wit(root, &plugin.name, &plugin.dir.join("world.wit"))?;
            sh(Command::new(tool)
                .arg("--wit")
                .arg(&wit)
                .args(["--world-name", &plugin.world])
                .args(["-d", "http", "fetch-event", "-o"])
                .arg(dest)
                .arg("app.js")
                .current_dir(&plugin.dir))
        },
    )
}

/// `target/tools/wit/NAME/`: the plugin's world, with the WIT package in
/// `wit/` as `deps/sluice-plugin/`.
fn stage_wit(root: &Path, name: &str, world: &Path) -> Result<PathBuf> {
    let dir = root.join("target/tools/wit").join(name);
    let deps = dir.join("deps/sluice-plugin");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    std::fs::create_dir_all(&deps).with_context(|| format!("cannot create {}", deps.display()))?;
    std::fs::copy(world, dir.join("world.wit"))
        .with_context(|| format!("cannot copy {}", world.display()))?;
    let package = root.join("wit");
    for entry in
        std::fs::read_dir(&package).with_context(|| format!("cannot read {}", package.display()))?
    {
        let path = entry
            .with_context(|| format!("cannot read {}", package.display()))?
            .path();
        if let Some(file) = path.file_name().filter(|_| path.is_file()) {
            std::fs::copy(&path, deps.join(file))
                .with_context(|| format!("cannot copy {}", path.display()))?;
        }
    }
    Ok(dir)
}

/// The componentize-js CLI in `target/tools/node`, installed if missing.
fn componentize_js(root: &Path) -> Result<PathBuf> {
    let prefix = root.join("target/tools/node");
    let package = prefix.join("node_modules/@bytecodealliance/componentize-js/package.json");
    let bin = prefix.join("node_modules/.bin/componentize-js");
    let wanted = format!("\"version\": \"{COMPONENTIZE_JS}\"");
    let installed = |package: &Path| {
        std::fs::read_to_string(package).is_ok_and(|p| p.contains(&wanted)) && bin.exists()
    };
    if !installed(&package) {
        if !succeeds(Command::new("npm").arg("--version"))
            || !succeeds(Command::new("node").arg("--version"))
        {
            bail!(
                "the JavaScript example plugins need Node.js (18 or later) and npm \
                 (Debian: apt-get install nodejs npm)"
            );
        }
        eprintln!("xtask: installing componentize-js {COMPONENTIZE_JS} from npm");
        std::fs::create_dir_all(&prefix)
            .with_context(|| format!("cannot create {}", prefix.display()))?;
        sh(Command::new("npm")
            .args(["install", "--prefix"])
            .arg(&prefix)
            .args(["--no-save", "--no-audit", "--no-fund"])
            .arg(format!(
                "@bytecodealliance/componentize-js@{COMPONENTIZE_JS}"
            )))
        .context("cannot install componentize-js into target/tools/node")?;
        if !installed(&package) {
            bail!(
                "npm installed componentize-js but {} is missing or not version {COMPONENTIZE_JS}",
                bin.display()
            );
        }
    }
    Ok(bin)
}
