//! Plugin projects outside this repository, one per language: `cargo xtask
//! new-plugin NAME --lang LANG --dir DIR` creates a standalone project in a
//! temporary directory, its own `build.sh` builds it with the language's
//! public tools (cargo and the SDK; componentize-py; componentize-js;
//! clang, wit-bindgen and wasm-tools), and the broker loads the component
//! and authenticates MQTT 3.1.1 and 5 clients with it.
//!
//! The tools come from where `cargo xtask build-plugins` installed them
//! (`target/tools/`), found through `PATH` by the build scripts as a user's
//! would be; the C project's script installs wit-bindgen and wasm-tools
//! with cargo into `target/tools/cargo` on the first run.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::auth_examples::connect_v5_login;
use super::*;
use crate::support::TempDir;

/// The repository's root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("the repository")
}

/// The xtask binary: the one running `cargo xtask test` (`SLUICE_XTASK`),
/// else the one `cargo xtask` last built.
fn xtask() -> PathBuf {
    let path = std::env::var_os("SLUICE_XTASK")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/debug/xtask"));
    assert!(
        path.is_file(),
        "no xtask binary at {} (run the tests with `cargo xtask test`)",
        path.display()
    );
    path
}

/// `PATH` with `dirs` in front.
fn path_with(dirs: &[PathBuf]) -> std::ffi::OsString {
    let rest = std::env::var_os("PATH").unwrap_or_default();
    std::env::join_paths(dirs.iter().cloned().chain(std::env::split_paths(&rest))).expect("a PATH")
}

/// Creates the `lang` project `name` in `dir` with `cargo xtask
/// new-plugin`, builds it with its `build.sh` and returns the component.
fn create_and_build(lang: &str, name: &str, dir: &Path) -> Vec<u8> {
    let project = dir.join(name);
    let status = Command::new(xtask())
        .args(["new-plugin", name, "--lang", lang, "--dir"])
        .arg(&project)
        .status()
        .expect("run xtask");
    assert!(status.success(), "new-plugin {name} --lang {lang} failed");
    let repo = repo();
    let tools = repo.join("target/tools");
    let mut build = Command::new(project.join("build.sh"));
    match lang {
        "rust" => {
            // The examples' lock file pins the same dependency versions, so
            // the build needs no registry (cargo drops what it does not use).
            std::fs::copy(
                repo.join("example-plugins/Cargo.lock"),
                project.join("Cargo.lock"),
            )
            .expect("lock file");
            build
                .env("CARGO_TARGET_DIR", repo.join("target/new-plugin"))
                .env("CARGO_NET_OFFLINE", "true");
        }
        "python" => {
            build.env("PATH", path_with(&[tools.join("venv/bin")]));
        }
        "js" => {
            build.env("PATH", path_with(&[tools.join("node/node_modules/.bin")]));
        }
        "c" => {
            // wit-bindgen and wasm-tools handle a few kilobytes here:
            // installed unoptimised, they build in half the time.
            build
                .env("SLUICE_TOOLS", tools.join("cargo"))
                .env("CARGO_TARGET_DIR", tools.join("cargo/build"))
                .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "0");
        }
        other => panic!("no language {other}"),
    }
    let status = build.status().expect("run build.sh");
    assert!(status.success(), "{lang}: build.sh failed");
    std::fs::read(project.join(format!("{name}.wasm"))).expect("the component")
}

/// Builds the `lang` template outside the repository, loads it and checks
/// what it answers; `refuses_bad_config`: the template refuses a `users`
/// entry that is not `name:password` at load.
async fn template_builds_outside_and_loads(lang: &str, refuses_bad_config: bool) {
    let name = format!("my-{lang}");
    let work = TempDir::new(&format!("new-plugin-{lang}"));
    let wasm = {
        let (name, path) = (name.clone(), work.path.clone());
        let lang = lang.to_owned();
        tokio::task::spawn_blocking(move || create_and_build(&lang, &name, &path))
            .await
            .expect("build")
    };
    let dir = PluginDir::new();
    dir.write(&name, &wasm);
    let broker = broker_with(&dir, |c| {
        plugin_config(c, &name, &[("users", "alice:secret, bob:hunter2")]);
    });
    let code = |c: Vec<u8>| {
        let broker = &broker;
        async move { connack(broker, &c).await.1.connack().1 }
    };
    assert_eq!(
        code(connect_v4_login("a1", true, "alice", "secret")).await,
        0
    );
    assert_eq!(
        code(connect_v4_login("a2", true, "bob", "hunter2")).await,
        0
    );
    // A wrong password is refused by the plugin, an unknown user by the
    // exhausted chain (the plugin answered `next`).
    assert_eq!(code(connect_v4_login("a3", true, "alice", "no")).await, 4);
    assert_eq!(code(connect_v4_login("a4", true, "carol", "x")).await, 5);
    let v5 = |id: &str, user: &str, pass: &str| connect_v5_login(id, true, user, pass, |_| {});
    assert_eq!(code(v5("b1", "alice", "secret")).await, 0);
    assert_eq!(code(v5("b2", "alice", "no")).await, 0x86);
    assert_eq!(code(v5("b3", "carol", "x")).await, 0x87);
    if refuses_bad_config {
        let e = TestBroker::try_with(|c| {
            dir.configure(c);
            plugin_config(c, &name, &[("users", "alice")]);
        })
        .err()
        .expect("refused");
        assert!(e.contains("is not name:password"), "{lang}: {e}");
    }
}

#[tokio::test]
async fn a_rust_project_outside_the_repository_builds_against_the_sdk_and_loads() {
    template_builds_outside_and_loads("rust", true).await;
}

#[tokio::test]
async fn a_python_project_outside_the_repository_builds_and_loads() {
    template_builds_outside_and_loads("python", true).await;
}

#[tokio::test]
async fn a_javascript_project_outside_the_repository_builds_and_loads() {
    template_builds_outside_and_loads("js", true).await;
}

#[tokio::test]
async fn a_c_project_outside_the_repository_builds_and_loads() {
    template_builds_outside_and_loads("c", false).await;
}
