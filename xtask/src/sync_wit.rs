//! `cargo xtask sync-wit [--check]`: copies the WIT files of `wit/` (the
//! broker's, the reference) into the plugin SDK's two crates
//! (`plugin-sdk/wit/` and `plugin-sdk/macros/wit/`), which carry their own
//! copy so that they build outside this repository. `--check` only
//! compares, failing on a difference (the SDK macros' unit tests check the
//! same).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// The SDK's copies of `wit/`, relative to the project root.
const COPIES: [&str; 2] = ["plugin-sdk/wit", "plugin-sdk/macros/wit"];

pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let check = match args {
        [] => false,
        [flag] if flag == "--check" => true,
        _ => bail!("usage: cargo xtask sync-wit [--check]"),
    };
    let reference = wit_files(&root.join("wit"))?;
    for copy in COPIES {
        let dir = root.join(copy);
        let current = wit_files(&dir).unwrap_or_default();
        if current == reference {
            continue;
        }
        if check {
            bail!("{copy} differs from wit/: run `cargo xtask sync-wit`");
        }
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {copy}"))?;
        for name in current.keys().filter(|n| !reference.contains_key(*n)) {
            fs::remove_file(dir.join(name))
                .with_context(|| format!("cannot remove {copy}/{name}"))?;
        }
        for (name, text) in &reference {
            fs::write(dir.join(name), text)
                .with_context(|| format!("cannot write {copy}/{name}"))?;
        }
        println!("xtask: {copy} updated from wit/");
    }
    Ok(())
}

/// The `.wit` files of `dir` by name.
fn wit_files(dir: &Path) -> Result<BTreeMap<String, String>> {
    let mut files = BTreeMap::new();
    for entry in fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "wit") {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            files.insert(name, text);
        }
    }
    Ok(files)
}
