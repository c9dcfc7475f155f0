//! Plugins written in languages other than Rust: each language's module
//! installs its tools into project-local places when they are missing
//! (a virtualenv, `node_modules`, Debian packages) and builds the example
//! plugins written in it into `target/plugins/`. A language whose tools
//! cannot be installed is an error, never silently skipped. Builds are
//! incremental: a plugin whose sources did not change is not rebuilt.

use std::path::Path;

use anyhow::Result;

mod c;
mod js;
mod python;

/// Builds every non-Rust example plugin into `out`; returns how many.
pub fn build_all(root: &Path, out: &Path) -> Result<usize> {
    Ok(python::build(root, out)? + js::build(root, out)? + c::build(root, out)?)
}
