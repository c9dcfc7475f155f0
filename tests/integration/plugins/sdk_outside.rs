//! The Rust SDK outside this repository: a plugin project of its own
//! (`tests/sdk-outside/`), copied to a temporary directory with a path
//! dependency on `plugin-sdk/`, builds for wasm32-wasip2 (the SDK reads
//! its own copy of the WIT, not the repository's), and the broker loads
//! it and calls its one `_any` hook for MQTT 3.1.1 and 5 clients.

use std::path::Path;
use std::process::Command;

use sluice_broker::plugins::Hook;

use super::auth_examples::connect_v5_login;
use super::*;
use crate::support::TempDir;

/// Copies `from` (files and directories) into `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create directory");
    for entry in std::fs::read_dir(from).expect("read fixture") {
        let path = entry.expect("fixture entry").path();
        let target = to.join(path.file_name().expect("a name"));
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy fixture file");
        }
    }
}

/// Builds the project in `dir` and returns its component.
fn build_outside(dir: &Path) -> Vec<u8> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let sdk = repo.join("plugin-sdk").canonicalize().expect("plugin-sdk");
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml.in")).expect("manifest");
    let sdk = sdk.to_string_lossy().replace('\\', "/");
    std::fs::write(dir.join("Cargo.toml"), manifest.replace("@SDK@", &sdk)).expect("write");
    // The examples' lock file pins the same dependency versions, so the
    // build needs no registry (cargo drops what the project does not use).
    std::fs::copy(
        repo.join("example-plugins/Cargo.lock"),
        dir.join("Cargo.lock"),
    )
    .expect("lock");
    let target = repo.join("target/sdk-outside");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--offline",
            "--release",
            "--target",
            "wasm32-wasip2",
        ])
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .expect("run cargo");
    assert!(
        status.success(),
        "the project outside the repository does not build"
    );
    std::fs::read(target.join("wasm32-wasip2/release/outside.wasm")).expect("outside.wasm")
}

#[tokio::test]
async fn a_plugin_outside_the_repository_builds_against_the_sdk_and_loads() {
    let project = TempDir::new("sdk-outside");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/sdk-outside");
    copy_tree(&fixture, &project.path);
    let wasm = tokio::task::spawn_blocking(move || build_outside(&project.path))
        .await
        .expect("build");
    let dir = PluginDir::new();
    dir.write("outside", &wasm);
    let broker = broker_with(&dir, |c| {
        plugin_config(c, "outside", &[("user", "alice"), ("password", "pw")]);
    });
    let plugin = broker.ctx.plugins.get("outside").expect("loaded");
    assert_eq!(
        plugin.hooks().iter().collect::<Vec<_>>(),
        [Hook::AuthOnRegister, Hook::AuthOnRegisterM5]
    );
    let code = |c: &[u8]| {
        let c = c.to_vec();
        let broker = &broker;
        async move { connack(broker, &c).await.1.connack().1 }
    };
    assert_eq!(code(&connect_v4_login("o1", true, "alice", "pw")).await, 0);
    assert_eq!(code(&connect_v4_login("o2", true, "alice", "no")).await, 4);
    assert_eq!(
        code(&connect_v5_login("o3", true, "alice", "pw", |_| {})).await,
        0
    );
    assert_eq!(
        code(&connect_v5_login("o4", true, "bob", "pw", |_| {})).await,
        0x86
    );
    // The typed configuration refuses a missing key at load.
    let e = TestBroker::try_with(|c| {
        dir.configure(c);
        plugin_config(c, "outside", &[("user", "alice")]);
    })
    .err()
    .expect("refused");
    assert!(
        e.contains("invalid outside configuration: password is missing"),
        "{e}"
    );
}
