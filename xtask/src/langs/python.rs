//! Example plugins in Python (see `langs`), built with componentize-py,
//! which is installed into the project's virtualenv (`target/tools/venv`).
//!
//! A plugin is a directory of `example-plugins/` holding its module
//! (`app.py`) and its world (`world.wit`: the broker's imports plus the
//! hooks it exports). componentize-py reads the WIT package in `wit/` and
//! the world file side by side (`-d wit -d world.wit`), so the world is
//! named in full (`package/world`).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::sh;
use crate::tools::{plugin_inputs, python_with_paho, report_built, up_to_date};

/// The componentize-py release the plugins are built with.
const COMPONENTIZE_PY: &str = "0.25.1";

/// Builds the example plugins written in this language into `out`.
pub fn build(root: &Path, out: &Path) -> Result<usize> {
    let mut tool = None;
    let plugins = super::sources(root, "app.py")?;
    for plugin in &plugins {
        let src = plugin.dir.clone();
        let dest = out.join(format!("{}.wasm", plugin.name));
        if up_to_date(&dest, &plugin_inputs(root, &src)?)? {
            continue;
        }
        let componentize_py = match &tool {
            Some(t) => t,
            None => tool.insert(componentize_py(root)?),
        };
        let started = Instant::now();
        // Built aside and moved in, so an interrupted build never leaves a
        // truncated component that looks newer than its sources.
        let partial = out.join(format!("{}.wasm.partial", plugin.name));
        sh(Command::new(componentize_py)
            .arg("-d")
            .arg(root.join("wit"))
            .arg("-d")
            .arg(src.join("world.wit"))
            .args(["-w", &plugin.full_world(), "componentize", "app"])
            .arg("-p")
            .arg(&src)
            .arg("-o")
            .arg(&partial)
            .current_dir(&src))
        .with_context(|| format!("cannot build the Python plugin {}", plugin.name))?;
        std::fs::rename(&partial, &dest)
            .with_context(|| format!("cannot move {} into place", partial.display()))?;
        report_built(&dest, started)?;
    }
    Ok(plugins.len())
}

/// componentize-py in the project's virtualenv, installed if missing.
fn componentize_py(root: &Path) -> Result<std::path::PathBuf> {
    let python = python_with_paho(root).context(
        "the Python example plugins need python3 with venv and pip \
         (Debian: apt-get install python3 python3-venv python3-pip)",
    )?;
    let bin = python.with_file_name("componentize-py");
    let wanted = format!("componentize-py {COMPONENTIZE_PY}");
    let installed = Command::new(&bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == wanted);
    if !installed {
        eprintln!("xtask: installing componentize-py {COMPONENTIZE_PY} from PyPI");
        sh(Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            &format!("componentize-py=={COMPONENTIZE_PY}"),
        ]))
        .context("cannot install componentize-py into target/tools/venv")?;
        if !bin.exists() {
            bail!(
                "pip installed componentize-py but {} is missing",
                bin.display()
            );
        }
    }
    Ok(bin)
}
