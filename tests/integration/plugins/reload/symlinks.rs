//! Symlinks in the plugin directory: followed to the files they lead to
//! (a build tree elsewhere, `ln -s`, a Kubernetes ConfigMap mount),
//! replaced (`ln -sf`, the ConfigMap's `..data` swap) and their targets
//! rewritten in place; and every `NAME.wasm` that is not tried (dangling
//! links, loops, directories, disabled plugins) listed as ignored with the
//! reason, in `status()`, the admin endpoint, `sluice plugins`, `/metrics`
//! and the log.
//!
//! Tests about events set `poll_interval_ms` to an hour, so that only an
//! event can have reloaded the directory (events mode also polls symlinked
//! plugin files).

use std::io::{Read as _, Write as _};
use std::os::unix::fs::symlink;

use super::*;
use crate::support::process::{SLUICE, Sluice};

// ---- helpers ----

/// Longer than any test: with it, events mode polls nothing in time.
const AN_HOUR_MS: u32 = 3_600_000;

/// Copies the built fixture `plugin` to `path` (creating its directory).
fn build(path: &Path, plugin: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create build directory");
    }
    std::fs::copy(plugin_wasm(plugin), path).expect("copy plugin");
}

/// Makes `dir/file.wasm` a symlink to `target` (as `ln -s TARGET`; a
/// relative `target` is relative to the plugin directory).
fn link(dir: &PluginDir, file: &str, target: impl AsRef<Path>) {
    symlink(target, dir.path.join(format!("{file}.wasm"))).expect("symlink");
}

/// Points the existing link `dir/file.wasm` at `target` the way older
/// `ln -sf` does: removes the link, then makes a new one.
fn relink(dir: &PluginDir, file: &str, target: impl AsRef<Path>) {
    std::fs::remove_file(dir.path.join(format!("{file}.wasm"))).expect("remove link");
    link(dir, file, target);
}

/// Points `dir/file.wasm` at `target` atomically: a hidden new link
/// renamed over the old one.
fn relink_atomically(dir: &PluginDir, file: &str, target: impl AsRef<Path>) {
    let tmp = dir.path.join(format!(".{file}.wasm.lnk"));
    symlink(target, &tmp).expect("symlink");
    std::fs::rename(&tmp, dir.path.join(format!("{file}.wasm"))).expect("rename link");
}

/// Why `name` is listed as ignored, if it is: (file, reason).
fn ignored(broker: &TestBroker, name: &str) -> Option<(PathBuf, String)> {
    broker
        .ctx
        .plugins
        .status()
        .ignored
        .into_iter()
        .find(|i| i.name == name)
        .map(|i| (i.file, i.reason))
}

/// Asserts nothing is listed as rejected or ignored.
fn nothing_left_out(broker: &TestBroker) {
    let status = broker.ctx.plugins.status();
    assert!(status.rejected.is_empty(), "{:?}", status.rejected);
    assert!(status.ignored.is_empty(), "{:?}", status.ignored);
}

/// The hash of the built fixture `plugin`, as `status()` shows it.
fn sha256_of(plugin: &str) -> String {
    use sha2::{Digest as _, Sha256};
    Sha256::digest(wasm(plugin))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `GET path` from the admin endpoint at `addr`: the body of a 200 answer.
fn admin_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect_timeout(&addr, PATIENCE).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").expect("send request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

// ---- symlinks followed ----

/// A symlink to a plugin built elsewhere is loaded at start, and one made
/// at run time (relative, into a hidden directory of the plugin directory)
/// by a hot reload; both are listed under their link's path, and the
/// hidden directory is not listed.
#[tokio::test]
async fn symlinked_plugins_load_at_start_and_on_hot_reload() {
    let builds = PluginDir::new();
    let dir = PluginDir::new();
    build(&builds.path.join("allow.wasm"), ALLOW);
    link(&dir, "auth", builds.path.join("allow.wasm"));
    let broker = broker_with(&dir, |c| {
        c.plugins.poll_interval_ms = AN_HOUR_MS;
        plugin_config(c, "auth", ALLOW_DENY_CONFIG);
        // gate goes first, and refuses before auth accepts.
        plugin_config(c, "gate", ALLOW_DENY_CONFIG);
        c.plugin.entry("gate".into()).or_default().priority = Some(1);
    });
    assert_eq!(names(&broker), ["auth"]);
    let auth = loaded(&broker, "auth");
    assert_eq!(auth.file, dir.path.join("auth.wasm"));
    assert_eq!(auth.sha256, sha256_of(ALLOW));
    assert_eq!(code(&broker, "start").await, 0);

    build(&dir.path.join(".build/deny.wasm"), DENY);
    link(&dir, "gate", ".build/deny.wasm");
    eventually("gate joined", || names(&broker).len() == 2).await;
    assert_eq!(names(&broker), ["gate", "auth"]);
    assert_eq!(last_outcome(&broker, "gate"), Some(ReloadOutcome::Loaded));
    assert_eq!(loaded(&broker, "gate").file, dir.path.join("gate.wasm"));
    assert_eq!(loaded(&broker, "gate").sha256, sha256_of(DENY));
    assert_eq!(code(&broker, "reloaded").await, V4_BAD_CREDENTIALS);
    nothing_left_out(&broker);
}

/// `ln -sf` to another version replaces the plugin (the link removed and
/// made again, and a new link renamed over it), on the event.
#[tokio::test]
async fn ln_sf_to_another_version_replaces_the_plugin() {
    let builds = PluginDir::new();
    let dir = PluginDir::new();
    let (v1, v2) = (builds.path.join("v1.wasm"), builds.path.join("v2.wasm"));
    build(&v1, ALLOW);
    build(&v2, DENY);
    link(&dir, "auth", &v1);
    let broker = broker_with(&dir, |c| {
        c.plugins.poll_interval_ms = AN_HOUR_MS;
        plugin_config(c, "auth", ALLOW_DENY_CONFIG);
    });
    let first = current(&broker, "auth");
    assert_eq!(code(&broker, "v1").await, 0);

    relink(&dir, "auth", &v2);
    eventually("v2 in place", || {
        current(&broker, "auth").hash != first.hash
    })
    .await;
    assert_eq!(current(&broker, "auth").hash, sha256_of(DENY));
    assert_eq!(last_outcome(&broker, "auth"), Some(ReloadOutcome::Replaced));
    assert_eq!(code(&broker, "v2").await, V4_BAD_CREDENTIALS);

    relink_atomically(&dir, "auth", &v1);
    eventually("v1 back", || current(&broker, "auth").hash == first.hash).await;
    assert_eq!(last_outcome(&broker, "auth"), Some(ReloadOutcome::Replaced));
    assert_eq!(code(&broker, "v1-again").await, 0);
    assert_eq!(names(&broker), ["auth"]);
    nothing_left_out(&broker);
}

/// A Kubernetes ConfigMap mount: `auth.wasm -> ..data/auth.wasm` and
/// `..data -> ..TIMESTAMP`, updated by writing a new timestamped
/// directory, pointing `..data_tmp` at it, renaming that over `..data`
/// and removing the old directory. The plugin is replaced on the event;
/// the hidden entries are never listed.
#[tokio::test]
async fn a_configmap_data_swap_replaces_the_plugin() {
    let dir = PluginDir::new();
    let old = "..2026_12_04_10_00_00.000000001";
    let new = "..2026_12_04_11_00_00.000000002";
    build(&dir.path.join(old).join("auth.wasm"), ALLOW);
    symlink(old, dir.path.join("..data")).expect("symlink ..data");
    link(&dir, "auth", "..data/auth.wasm");
    let broker = broker_with(&dir, |c| {
        c.plugins.poll_interval_ms = AN_HOUR_MS;
        plugin_config(c, "auth", ALLOW_DENY_CONFIG);
    });
    let first = current(&broker, "auth");
    assert_eq!(first.hash, sha256_of(ALLOW));
    assert_eq!(code(&broker, "before").await, 0);

    build(&dir.path.join(new).join("auth.wasm"), DENY);
    symlink(new, dir.path.join("..data_tmp")).expect("symlink ..data_tmp");
    std::fs::rename(dir.path.join("..data_tmp"), dir.path.join("..data")).expect("swap ..data");
    std::fs::remove_dir_all(dir.path.join(old)).expect("remove the old data");
    eventually("the new data in place", || {
        current(&broker, "auth").hash != first.hash
    })
    .await;
    assert_eq!(current(&broker, "auth").hash, sha256_of(DENY));
    assert_eq!(last_outcome(&broker, "auth"), Some(ReloadOutcome::Replaced));
    assert_eq!(loaded(&broker, "auth").file, dir.path.join("auth.wasm"));
    assert_eq!(code(&broker, "after").await, V4_BAD_CREDENTIALS);
    assert_eq!(names(&broker), ["auth"]);
    nothing_left_out(&broker);
}

/// A symlink's target outside the plugin directory rewritten in place
/// (same inode; no event in the plugin directory) is picked up by polling,
/// in polling mode and in events mode (which polls symlinked files).
#[tokio::test]
async fn a_target_rewritten_in_place_is_picked_up_by_polling() {
    for mode in [WatchMode::Poll, WatchMode::Auto] {
        let builds = PluginDir::new();
        let dir = PluginDir::new();
        let target = builds.path.join("auth.wasm");
        build(&target, ALLOW);
        link(&dir, "auth", &target);
        let broker = broker_with(&dir, |c| {
            c.plugins.watch = mode;
            c.plugins.poll_interval_ms = 50;
            plugin_config(c, "auth", ALLOW_DENY_CONFIG);
        });
        let first = current(&broker, "auth");
        assert_eq!(code(&broker, "before").await, 0, "{mode:?}");

        std::fs::write(&target, wasm(DENY)).expect("rewrite the target in place");
        eventually(&format!("rewrite seen ({mode:?})"), || {
            current(&broker, "auth").hash != first.hash
        })
        .await;
        assert_eq!(current(&broker, "auth").hash, sha256_of(DENY), "{mode:?}");
        assert_eq!(
            last_outcome(&broker, "auth"),
            Some(ReloadOutcome::Replaced),
            "{mode:?}"
        );
        assert_eq!(code(&broker, "after").await, V4_BAD_CREDENTIALS, "{mode:?}");
        nothing_left_out(&broker);
    }
}

// ---- what is not loaded, and why ----

/// A dangling symlink, a symlink to a directory and a symlink loop are
/// listed as ignored with the reason, next to the plugin that keeps
/// serving; a dangling link whose target appears (outside the directory:
/// seen by the symlink poll) is loaded and leaves the list.
#[tokio::test]
async fn unusable_symlinks_are_listed_as_ignored_with_the_reason() {
    let builds = PluginDir::new();
    let dir = PluginDir::new();
    dir.add("auth", ALLOW);
    let broker = broker_with(&dir, |c| c.plugins.poll_interval_ms = 50);
    let ghost_target = builds.path.join("ghost.wasm");
    link(&dir, "ghost", &ghost_target);
    std::fs::create_dir(dir.path.join(".folder")).expect("mkdir");
    link(&dir, "folder", ".folder");
    link(&dir, "loop-a", "loop-b.wasm");
    link(&dir, "loop-b", "loop-a.wasm");
    eventually("four ignored", || {
        broker.ctx.plugins.status().ignored.len() == 4
    })
    .await;

    let (file, reason) = ignored(&broker, "ghost").expect("ghost ignored");
    assert_eq!(file, dir.path.join("ghost.wasm"));
    assert_eq!(
        reason,
        format!(
            "a dangling symlink: its target {} does not exist",
            ghost_target.display()
        )
    );
    let (_, reason) = ignored(&broker, "folder").expect("folder ignored");
    assert_eq!(reason, "a symlink to a directory (.folder), not to a file");
    let (_, reason) = ignored(&broker, "loop-a").expect("loop-a ignored");
    assert_eq!(reason, "a symlink loop (through loop-b.wasm)");
    let (_, reason) = ignored(&broker, "loop-b").expect("loop-b ignored");
    assert_eq!(reason, "a symlink loop (through loop-a.wasm)");
    let status = broker.ctx.plugins.status();
    assert!(status.rejected.is_empty(), "{:?}", status.rejected);
    assert_eq!(names(&broker), ["auth"]);
    assert_eq!(code(&broker, "served").await, 0);

    build(&ghost_target, ALLOW);
    eventually("ghost loaded", || names(&broker) == ["auth", "ghost"]).await;
    assert_eq!(last_outcome(&broker, "ghost"), Some(ReloadOutcome::Loaded));
    assert!(ignored(&broker, "ghost").is_none());
    assert_eq!(broker.ctx.plugins.status().ignored.len(), 3);
}

/// A loaded plugin whose link starts leading nowhere keeps running (a
/// rejected new version, with the reason); pointing it back at the same
/// file clears that without a reload.
#[tokio::test]
async fn a_loaded_plugin_whose_link_breaks_keeps_running() {
    let builds = PluginDir::new();
    let dir = PluginDir::new();
    let target = builds.path.join("auth.wasm");
    build(&target, "trivial");
    link(&dir, "auth", &target);
    let broker = broker_with(&dir, |c| {
        c.plugins.poll_interval_ms = AN_HOUR_MS;
        plugin_config(c, "auth", &[("verdict", "deny")]);
    });
    let good = current(&broker, "auth");

    relink_atomically(&dir, "auth", builds.path.join("missing.wasm"));
    eventually("the broken link rejected", || {
        matches!(
            last_outcome(&broker, "auth"),
            Some(ReloadOutcome::Failed(_))
        )
    })
    .await;
    match last_outcome(&broker, "auth") {
        Some(ReloadOutcome::Failed(e)) => assert!(
            e.contains("auth.wasm") && e.contains("a dangling symlink"),
            "{e}"
        ),
        other => panic!("auth: {other:?}"),
    }
    assert!(Arc::ptr_eq(&current(&broker, "auth"), &good));
    assert_eq!(code(&broker, "still-served").await, V4_NOT_AUTHORIZED);
    let status = broker.ctx.plugins.status();
    assert!(status.rejected.is_empty() && status.ignored.is_empty());

    relink_atomically(&dir, "auth", &target);
    eventually("the failure cleared", || {
        last_outcome(&broker, "auth") == Some(ReloadOutcome::Unchanged)
    })
    .await;
    assert!(
        Arc::ptr_eq(&current(&broker, "auth"), &good),
        "not reloaded"
    );
}

/// A plugin disabled in the configuration is listed as ignored, at start
/// and after a configuration reload disables another; enabling it loads
/// it and takes it off the list.
#[tokio::test]
async fn disabled_plugins_are_listed_as_ignored() {
    let dir = PluginDir::new();
    dir.add("auth", "trivial").add("off", "trivial");
    let broker = broker_with(&dir, |c| {
        c.plugin.entry("off".into()).or_default().enabled = Some(false);
    });
    assert_eq!(names(&broker), ["auth"]);
    let (file, reason) = ignored(&broker, "off").expect("off ignored");
    assert_eq!(file, dir.path.join("off.wasm"));
    assert_eq!(reason, "disabled in the configuration (enabled = false)");
    assert!(broker.ctx.plugins.status().rejected.is_empty());

    let mut config = broker.ctx.config.clone();
    config.plugin.entry("auth".into()).or_default().enabled = Some(false);
    config.plugin.entry("off".into()).or_default().enabled = None;
    assert!(broker.ctx.reload(&config).await, "the chain changed");
    assert_eq!(names(&broker), ["off"]);
    assert!(ignored(&broker, "off").is_none());
    let (_, reason) = ignored(&broker, "auth").expect("auth ignored");
    assert_eq!(reason, "disabled in the configuration (enabled = false)");
}

/// At start, a `NAME.wasm` that cannot be loaded stops the broker like
/// any plugin that fails, with the file and the reason.
#[tokio::test]
async fn a_dangling_symlink_at_start_stops_the_broker() {
    let dir = PluginDir::new();
    dir.add("auth", "trivial");
    link(&dir, "ghost", "nowhere.wasm");
    let error = match TestBroker::try_with(|c| dir.configure(c)) {
        Ok(_) => panic!("the broker started with a dangling plugin symlink"),
        Err(e) => e,
    };
    assert!(
        error.contains("ghost.wasm")
            && error.contains("a dangling symlink: its target nowhere.wasm does not exist"),
        "{error}"
    );
}

/// The real broker logs an ignored file once (a disabled plugin at info,
/// a dangling symlink at warn), not again at later reloads, and lists
/// both in `/plugins`, `sluice plugins` and `/metrics`.
#[tokio::test]
async fn the_log_the_admin_endpoint_and_sluice_plugins_list_ignored_files() {
    let dir = PluginDir::new();
    dir.add("auth", ALLOW).add("off", ALLOW);
    let etc = PluginDir::new();
    let config_file = etc.path.join("sluice.toml");
    let cache = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-plugin-cache");
    let toml = format!(
        "[server]\nbind = [\"127.0.0.1:0\"]\nsys_interval_secs = 0\n\
         [admin]\nbind = \"127.0.0.1:0\"\n\
         [log]\nlevel = \"info\"\n\
         [plugins]\ndir = {:?}\ncache_dir = {:?}\n\
         [plugin.off]\nenabled = false\n",
        dir.path.to_str().expect("utf-8 path"),
        cache.to_str().expect("utf-8 path"),
    );
    std::fs::write(&config_file, toml).expect("write config");
    let mut sluice = Sluice::start(&["--config", config_file.to_str().expect("utf-8 path")]);
    let admin = sluice.admin_addr();
    let lines = sluice.wait_until_logged(&["plugin disabled in the configuration", "off.wasm"]);
    let disabled = lines
        .iter()
        .find(|l| l.contains("plugin disabled in the configuration"))
        .expect("logged");
    assert!(disabled.contains("INFO"), "{disabled}");

    link(&dir, "ghost", "nowhere.wasm");
    let line = sluice.wait_for_all(&["plugin file ignored", "ghost.wasm"]);
    assert!(line.contains("WARN"), "{line}");
    assert!(
        line.contains("a dangling symlink: its target nowhere.wasm does not exist"),
        "{line}"
    );

    // A later reload (a plugin added) logs neither again.
    dir.add("second", ALLOW);
    sluice.wait_for_all(&["plugin loaded", "second.wasm"]);
    assert_eq!(sluice.count("plugin file ignored"), 1);
    assert_eq!(sluice.count("plugin disabled in the configuration"), 1);

    let status: serde_json::Value =
        serde_json::from_str(&admin_get(admin, "/plugins")).expect("JSON");
    let ignored: Vec<(&str, &str, &str)> = status["ignored"]
        .as_array()
        .expect("ignored array")
        .iter()
        .map(|i| {
            let field = |k: &str| i[k].as_str().expect("string field");
            (field("name"), field("file"), field("reason"))
        })
        .collect();
    let ghost = dir.path.join("ghost.wasm");
    let off = dir.path.join("off.wasm");
    assert_eq!(
        ignored,
        [
            (
                "ghost",
                ghost.to_str().expect("utf-8"),
                "a dangling symlink: its target nowhere.wasm does not exist"
            ),
            (
                "off",
                off.to_str().expect("utf-8"),
                "disabled in the configuration (enabled = false)"
            ),
        ]
    );
    assert_eq!(status["rejected"].as_array().map(Vec::len), Some(0));

    let metrics = admin_get(admin, "/metrics");
    assert!(
        metrics.lines().any(|l| l == "sluice_plugins_ignored 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("# TYPE sluice_plugins_ignored gauge"),
        "{metrics}"
    );

    let out = std::process::Command::new(SLUICE)
        .args(["plugins", "--admin", &admin.to_string()])
        .output()
        .expect("run sluice plugins");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    let listed = table
        .split_once("ignored files (not tried):\n")
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("no ignored files in:\n{table}"));
    let rows: Vec<Vec<&str>> = listed
        .lines()
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().take(2).collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["NAME", "FILE"],
            vec!["ghost", ghost.to_str().expect("utf-8")],
            vec!["off", off.to_str().expect("utf-8")],
        ],
        "{table}"
    );
    assert!(table.contains("nowhere.wasm does not exist"), "{table}");
}
