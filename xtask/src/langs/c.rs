//! Example plugins in C (see `langs`): every directory of `example-plugins/`
//! holding a `plugin.c` and a `world.wit`. For each one:
//!
//! 1. C bindings for its world (which includes `sluice:plugin` from `wit/`)
//!    are generated into `target/tools/c/PLUGIN/gen/` with the `wit-bindgen-c`
//!    library (what the `wit-bindgen c` command line runs);
//! 2. Debian's clang compiles them and the plugin's `.c` files into a core
//!    module for wasm32-wasi (WASI preview 1, reactor: no `main`) against
//!    Debian's wasi-libc;
//! 3. `wit-component` turns the core module into a component, translating
//!    its WASI preview 1 imports with the reactor adapter of the broker's
//!    wasmtime version (what `wasm-tools component new --adapt` does).
//!
//! The compiler and the C library come from Debian's packages, installed when
//! missing; the two WebAssembly tool steps are libraries linked into xtask, so
//! no `cargo install` is needed.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
};
use wit_bindgen_core::Files;
use wit_bindgen_core::wit_parser::Resolve;

use crate::tools::apt_install;

/// Debian's packages for C to wasm32-wasi: the compiler, the linker
/// (`wasm-ld`), the C library and the compiler's runtime library.
const APT_PACKAGES: &[&str] = &["clang", "lld", "wasi-libc", "libclang-rt-dev-wasm32"];

/// Compiler flags. `reactor`: a library the host calls into, no `main`.
/// `--strip-debug`: Debian's wasi-libc carries debug information, four
/// times the size of the code.
const CFLAGS: &[&str] = &[
    "--target=wasm32-wasi",
    "-O2",
    "-mexec-model=reactor",
    "-Wl,--strip-debug",
    "-Wall",
    "-Wextra",
];

/// A reactor that uses wasi-libc: if clang builds it, it can build plugins.
const PROBE: &str = r#"#include <stdlib.h>
#include <string.h>

__attribute__((export_name("probe"))) int probe(int n) {
    char *p = malloc(n + 1);
    memset(p, 'x', n);
    p[n] = '\0';
    int length = (int)strlen(p);
    free(p);
    return length;
}
"#;

/// Builds the example plugins written in C into `out`.
pub fn build(root: &Path, out: &Path) -> Result<usize> {
    super::build_outdated(
        root,
        out,
        "plugin.c",
        ensure_toolchain,
        |(), plugin, dest| build_plugin(root, &plugin.dir, &plugin.name, dest),
    )
}

/// The `.c` files of a plugin's directory, sorted.
fn c_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("cannot read {}", dir.display()))?
            .path();
        if path.is_file() && path.extension().is_some_and(|e| e == "c") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Makes sure clang can build a wasm32-wasi reactor against wasi-libc:
/// compiles and links a probe, installing Debian's packages if it fails.
fn ensure_toolchain(root: &Path) -> Result<()> {
    let probe_dir = root.join("target/tools/c");
    std::fs::create_dir_all(&probe_dir)
        .with_context(|| format!("cannot create {}", probe_dir.display()))?;
    let source = probe_dir.join("probe.c");
    std::fs::write(&source, PROBE).with_context(|| format!("cannot write {}", source.display()))?;
    let probe = || -> std::result::Result<(), String> {
        let out = Command::new("clang")
            .args(CFLAGS)
            .arg("-o")
            .arg(probe_dir.join("probe.wasm"))
            .arg(&source)
            .output()
            .map_err(|e| format!("cannot run clang: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    };
    if probe().is_ok() {
        return Ok(());
    }
    apt_install(APT_PACKAGES).with_context(|| {
        format!(
            "C plugins need Debian's {} (clang for wasm32-wasi and wasi-libc)",
            APT_PACKAGES.join(" ")
        )
    })?;
    if let Err(why) = probe() {
        bail!(
            "clang still cannot build for wasm32-wasi after installing {}:\n{why}",
            APT_PACKAGES.join(" ")
        );
    }
    Ok(())
}

/// Bindings, compile, componentize: `target/tools/c/NAME/` holds the
/// intermediate files, `dest` gets the component.
fn build_plugin(root: &Path, dir: &Path, name: &str, dest: &Path) -> Result<()> {
    let work = root.join("target/tools/c").join(name);
    let gen_dir = work.join("gen");
    let _ = std::fs::remove_dir_all(&gen_dir);
    std::fs::create_dir_all(&gen_dir)
        .with_context(|| format!("cannot create {}", gen_dir.display()))?;
    let generated = generate_bindings(&root.join("wit"), &dir.join("world.wit"), &gen_dir)?;

    let core = work.join("core.wasm");
    let mut clang = Command::new("clang");
    clang
        .args(CFLAGS)
        .arg("-I")
        .arg(&gen_dir)
        .arg("-o")
        .arg(&core)
        .args(c_files(dir)?)
        .args(&generated);
    crate::sh(&mut clang).context("clang failed")?;

    let module = std::fs::read(&core).with_context(|| format!("cannot read {}", core.display()))?;
    let component = wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .context("the core module has no usable component type (bindings not linked in?)")?
        .adapter(
            WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )
        .context("cannot load the WASI preview 1 reactor adapter")?
        .encode()
        .with_context(|| format!("cannot make a component of {}", core.display()))?;
    std::fs::write(dest, component).with_context(|| format!("cannot write {}", dest.display()))
}

/// Generates the C bindings of the one world in `world_wit` (which may use
/// the packages in `wit_dir`) into `gen_dir`; returns the files to compile
/// and link (the `.c` file and the component type object).
fn generate_bindings(wit_dir: &Path, world_wit: &Path, gen_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut resolve = Resolve::default();
    resolve
        .push_dir(wit_dir)
        .with_context(|| format!("cannot parse the WIT package in {}", wit_dir.display()))?;
    let package = resolve
        .push_file(world_wit)
        .with_context(|| format!("cannot parse {}", world_wit.display()))?;
    let world = resolve
        .select_world(&[package], None)
        .with_context(|| format!("{} must define exactly one world", world_wit.display()))?;
    let mut files = Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world, &mut files)
        .with_context(|| format!("cannot generate C bindings for {}", world_wit.display()))?;
    let mut to_build = Vec::new();
    for (file, contents) in files.iter() {
        let path = gen_dir.join(file);
        std::fs::write(&path, contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
        if file.ends_with(".c") || file.ends_with(".o") {
            to_build.push(path);
        }
    }
    Ok(to_build)
}
