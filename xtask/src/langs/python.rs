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

use anyhow::{Context, Result, bail};

use crate::sh;
use crate::tools::python_with_paho;

/// The componentize-py release the plugins are built with.
const COMPONENTIZE_PY: &str = "0.25.1";

/// Builds the example plugins written in this language into `out`.
pub fn build(root: &Path, out: &Path) -> Result<usize> {
    super::build_outdated(
        root,
        out,
        "app.py",
        componentize_py,
        |tool, plugin, dest| {
            sh(Command::new(tool)
                .arg("-d")
                .arg(root.join("wit"))
                .arg("-d")
                .arg(plugin.dir.join("world.wit"))
                .args(["-w", &plugin.full_world(), "componentize", "app"])
                .arg("-p")
                .arg(&plugin.dir)
                .arg("-o")
                .arg(dest)
                .current_dir(&plugin.dir))
        },
    )
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
