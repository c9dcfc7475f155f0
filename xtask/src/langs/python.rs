//! Example plugins in this language (see `langs`).

use std::path::Path;

use anyhow::Result;

/// Builds the example plugins written in this language into `out`.
pub fn build(_root: &Path, _out: &Path) -> Result<usize> {
    Ok(0)
}
