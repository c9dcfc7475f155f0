//! Hot reload of the plugin directory: replacing, adding and removing
//! `.wasm` files under a running broker (watched with inotify or by
//! polling), broken files, the compile cache, configuration reloads,
//! calls in flight while their plugin is replaced, and symlinks (and the
//! files left out, listed as ignored).
//!
//! Files are put in place the way deployment tools should do it (and the
//! watcher expects): written as a hidden `.NAME.wasm.tmp`, then renamed to
//! `NAME.wasm`, except where the test is about partial writes.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::{Buf, BytesMut};
use sluice_broker::config::WatchMode;
use sluice_broker::plugins::{Plugin, PluginStatus, ReloadOutcome};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;
use crate::support::raw::Frame;
use crate::support::{PATIENCE, plugin_wasm, within};

// ---- helpers ----

/// Puts `bytes` in place as `file.wasm`: written to a hidden temporary
/// file, then renamed (one atomic change for the watcher).
fn install_bytes(dir: &Path, file: &str, bytes: &[u8]) {
    let tmp = dir.join(format!(".{file}.wasm.tmp"));
    std::fs::write(&tmp, bytes).expect("write temporary plugin file");
    std::fs::rename(&tmp, dir.join(format!("{file}.wasm"))).expect("rename plugin into place");
}

/// Puts the built fixture `plugin` in place as `file.wasm`.
fn install(dir: &PluginDir, file: &str, plugin: &str) {
    install_bytes(&dir.path, file, &wasm(plugin));
}

/// The bytes of the built fixture `plugin`.
fn wasm(plugin: &str) -> Vec<u8> {
    std::fs::read(plugin_wasm(plugin)).expect("read built plugin")
}

fn remove(dir: &PluginDir, file: &str) {
    std::fs::remove_file(dir.path.join(format!("{file}.wasm"))).expect("remove plugin");
}

/// The loaded plugins' names, in chain order.
fn names(broker: &TestBroker) -> Vec<String> {
    broker
        .ctx
        .plugins
        .list()
        .iter()
        .map(|p| p.name.to_string())
        .collect()
}

/// The status of loaded plugin `name`.
fn loaded(broker: &TestBroker, name: &str) -> PluginStatus {
    let status = broker.ctx.plugins.status();
    status
        .plugins
        .iter()
        .find(|p| p.name == name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} is not loaded: {status:#?}"))
}

/// The last reload result of loaded plugin `name`.
fn last_outcome(broker: &TestBroker, name: &str) -> Option<ReloadOutcome> {
    loaded(broker, name).last_reload.map(|r| r.outcome)
}

/// Why file `name` was rejected, if it is listed as rejected.
fn rejection(broker: &TestBroker, name: &str) -> Option<(PathBuf, ReloadOutcome)> {
    broker
        .ctx
        .plugins
        .status()
        .rejected
        .into_iter()
        .find(|r| r.name == name)
        .map(|r| (r.file, r.last_reload.outcome))
}

/// The authentication calls `policy` plugin `plugin` recorded for
/// `client` (notifications may follow them).
fn auth_calls(broker: &TestBroker, plugin: &str, client: &str) -> Vec<String> {
    let mut all = calls(broker, plugin, client);
    all.retain(|c| c.starts_with("auth-on-register"));
    all
}

fn current(broker: &TestBroker, name: &str) -> Arc<Plugin> {
    broker
        .ctx
        .plugins
        .get(name)
        .unwrap_or_else(|| panic!("{name} is not loaded"))
}

/// The CONNACK code an anonymous MQTT 3.1.1 client gets.
async fn code(broker: &TestBroker, client: &str) -> u8 {
    connack(broker, &connect_v4(client, true, 60))
        .await
        .1
        .connack()
        .1
}

/// CONNACK codes of MQTT 3.1.1: bad user name or password (what `policy`
/// answers for a wrong password), not authorized (what `trivial` answers
/// with `verdict = "deny"`).
const V4_BAD_CREDENTIALS: u8 = 4;
const V4_NOT_AUTHORIZED: u8 = 5;
/// MQTT 5: bad user name or password.
const V5_BAD_CREDENTIALS: u8 = 0x86;

/// An allow-all and a deny-all authentication plugin that can take turns
/// as the same file under the same configuration ([`ALLOW_DENY_CONFIG`]):
/// `trivial` accepts everyone (it reads only `verdict`, unset), `policy`
/// refuses everyone who does not give the password "secret" with "bad user
/// name or password" (and records nothing, so its key-value store does not
/// grow).
const ALLOW: &str = "trivial";
const DENY: &str = "policy";
const ALLOW_DENY_CONFIG: &[(&str, &str)] = &[("password", "secret"), ("record", "off")];

// ---- 1. replacements under load: see `load` ----

mod load;

// ---- 2. adding and removing plugins ----

/// A plugin dropped into the directory joins the chain at its place (file
/// name order, or first with a priority); removing its file takes it out,
/// and clients are served by the rest (for plugins the configuration says
/// are not required: see `fail_closed` for the others).
#[tokio::test]
async fn added_plugins_join_the_chain_in_order_and_removed_ones_leave() {
    let dir = PluginDir::new();
    dir.add("b", "policy").add("d", "policy");
    let broker = broker_with(&dir, |c| {
        plugin_config(c, "b", &[("verdict", "next")]);
        plugin_config(c, "c", &[("verdict", "deny")]);
        plugin_config(c, "d", &[("verdict", "ok")]);
        c.plugin.entry("z".into()).or_default().priority = Some(1);
        for name in ["c", "z"] {
            c.plugin.entry(name.into()).or_default().required = Some(false);
        }
    });
    assert_eq!(names(&broker), ["b", "d"]);
    assert_eq!(code(&broker, "one").await, 0);

    // c (deny) lands between b and d by name, and refuses.
    install(&dir, "c", "policy");
    eventually("c joined", || names(&broker).len() == 3).await;
    assert_eq!(names(&broker), ["b", "c", "d"]);
    assert_eq!(last_outcome(&broker, "c"), Some(ReloadOutcome::Loaded));
    assert_eq!(code(&broker, "two").await, V4_BAD_CREDENTIALS);
    assert_eq!(auth_calls(&broker, "b", "two"), ["auth-on-register"]);
    assert_eq!(auth_calls(&broker, "c", "two"), ["auth-on-register"]);
    assert!(
        auth_calls(&broker, "d", "two").is_empty(),
        "the chain stopped at c"
    );

    // z has a priority: it goes first, and accepts before c is asked.
    install(&dir, "z", "trivial");
    eventually("z joined", || names(&broker).len() == 4).await;
    assert_eq!(names(&broker), ["z", "b", "c", "d"]);
    assert_eq!(code(&broker, "three").await, 0);
    assert!(auth_calls(&broker, "b", "three").is_empty());

    remove(&dir, "z");
    eventually("z left", || names(&broker).len() == 3).await;
    assert_eq!(names(&broker), ["b", "c", "d"]);
    assert_eq!(code(&broker, "four").await, V4_BAD_CREDENTIALS);

    remove(&dir, "c");
    eventually("c left", || names(&broker).len() == 2).await;
    assert_eq!(names(&broker), ["b", "d"]);
    assert_eq!(code(&broker, "five").await, 0);
    assert_eq!(auth_calls(&broker, "d", "five"), ["auth-on-register"]);
    let status = broker.ctx.plugins.status();
    assert!(status.rejected.is_empty(), "{:?}", status.rejected);
    assert_eq!(status.reloads, 4);
}

// ---- 3. broken files ----

/// A corrupt file and a component with an unknown import are rejected
/// with the file and the reason, and the chain keeps serving; a corrupt
/// new version of a loaded plugin leaves the loaded version running; fixed
/// files load.
#[tokio::test]
async fn broken_files_are_rejected_and_the_chain_keeps_serving() {
    let dir = PluginDir::new();
    dir.add("auth", "trivial");
    let broker = broker_with(&dir, |c| plugin_config(c, "auth", &[("verdict", "deny")]));
    // "not authorized" comes from auth: proof that it is in the chain.
    assert_eq!(code(&broker, "c1").await, V4_NOT_AUTHORIZED);
    let good = current(&broker, "auth");

    install_bytes(&dir.path, "junk", b"this is not WebAssembly");
    eventually("junk rejected", || rejection(&broker, "junk").is_some()).await;
    let (file, outcome) = rejection(&broker, "junk").expect("rejected");
    assert_eq!(file, dir.path.join("junk.wasm"));
    match outcome {
        ReloadOutcome::Failed(e) => assert!(
            e.contains("junk.wasm") && e.contains("not a valid WebAssembly component"),
            "{e}"
        ),
        other => panic!("junk: {other:?}"),
    }
    assert_eq!(names(&broker), ["auth"]);
    assert_eq!(code(&broker, "c2").await, V4_NOT_AUTHORIZED);

    install(&dir, "bogus", "bad-import");
    eventually("bogus rejected", || rejection(&broker, "bogus").is_some()).await;
    let (file, outcome) = rejection(&broker, "bogus").expect("rejected");
    assert_eq!(file, dir.path.join("bogus.wasm"));
    match outcome {
        ReloadOutcome::Failed(e) => assert!(
            e.contains("bogus.wasm")
                && e.contains("needs imports the broker does not provide")
                && e.contains("fixtures:bogus/teleport"),
            "{e}"
        ),
        other => panic!("bogus: {other:?}"),
    }
    assert_eq!(names(&broker), ["auth"]);
    assert_eq!(code(&broker, "c3").await, V4_NOT_AUTHORIZED);

    // A truncated new version of auth: the loaded one keeps running.
    let bytes = wasm("trivial");
    install_bytes(&dir.path, "auth", &bytes[..bytes.len() / 2]);
    eventually("auth's new version rejected", || {
        matches!(
            last_outcome(&broker, "auth"),
            Some(ReloadOutcome::Failed(_))
        )
    })
    .await;
    let auth = loaded(&broker, "auth");
    assert_eq!(auth.sha256, good.hash, "the loaded version is kept");
    assert!(Arc::ptr_eq(&current(&broker, "auth"), &good));
    match last_outcome(&broker, "auth") {
        Some(ReloadOutcome::Failed(e)) => assert!(e.contains("auth.wasm"), "{e}"),
        other => panic!("auth: {other:?}"),
    }
    assert_eq!(code(&broker, "c4").await, V4_NOT_AUTHORIZED);

    // Fixed: junk becomes a real plugin (trivial, accepting, after auth),
    // bogus goes, and auth gets a good new version (policy, refusing with
    // "bad user name or password").
    install(&dir, "junk", "trivial");
    eventually("junk loaded", || names(&broker) == ["auth", "junk"]).await;
    assert_eq!(last_outcome(&broker, "junk"), Some(ReloadOutcome::Loaded));
    remove(&dir, "bogus");
    eventually("bogus forgotten", || rejection(&broker, "bogus").is_none()).await;
    install(&dir, "auth", "policy");
    eventually("auth replaced", || {
        current(&broker, "auth").hash != good.hash
    })
    .await;
    assert_eq!(last_outcome(&broker, "auth"), Some(ReloadOutcome::Replaced));
    assert_eq!(code(&broker, "c5").await, V4_BAD_CREDENTIALS);
    let status = broker.ctx.plugins.status();
    assert!(status.rejected.is_empty(), "{:?}", status.rejected);
    for p in &status.plugins {
        assert_eq!((p.failures, p.traps), (0, 0), "{}", p.name);
    }
}

/// A component built against another version of the plugin interface,
/// and a version whose `init` fails, are refused on reload with the reason;
/// the loaded version keeps serving.
#[tokio::test]
async fn other_wit_versions_and_failing_init_are_refused_on_reload() {
    let dir = PluginDir::new();
    dir.add("auth", "trivial");
    let mut config = crate::support::test_config();
    let broker = broker_with(&dir, |c| {
        plugin_config(c, "auth", &[("verdict", "deny")]);
        config = c.clone();
    });
    let good = current(&broker, "auth");

    install(&dir, "future", "other-version");
    eventually("future rejected", || rejection(&broker, "future").is_some()).await;
    match rejection(&broker, "future").expect("rejected").1 {
        ReloadOutcome::Failed(e) => assert!(
            e.contains("future.wasm")
                && e.contains("exports no hook of sluice:plugin@0.1.0")
                && e.contains("sluice:plugin/auth-on-register@0.9.0"),
            "{e}"
        ),
        other => panic!("future: {other:?}"),
    }

    // New settings that make `init` fail: the loaded version stays.
    plugin_config(&mut config, "auth", &[("verdict", "maybe")]);
    assert!(!broker.ctx.reload(&config).await, "the chain is unchanged");
    assert!(Arc::ptr_eq(&current(&broker, "auth"), &good));
    match last_outcome(&broker, "auth") {
        Some(ReloadOutcome::Failed(e)) => assert!(
            e.contains("auth.wasm")
                && e.contains("init failed")
                && e.contains("unknown verdict \"maybe\""),
            "{e}"
        ),
        other => panic!("auth: {other:?}"),
    }
    assert_eq!(names(&broker), ["auth"]);
    assert_eq!(code(&broker, "still-denied").await, V4_NOT_AUTHORIZED);
}

/// Putting back the loaded version after a broken one was rejected clears
/// the failure: the file on disk is the one running again.
#[tokio::test]
async fn restoring_the_loaded_version_clears_its_failure() {
    let dir = PluginDir::new();
    dir.add("auth", "trivial");
    let broker = broker_with(&dir, |_| {});
    let good = current(&broker, "auth");
    install_bytes(&dir.path, "auth", b"\0asm broken");
    eventually("broken version rejected", || {
        matches!(
            last_outcome(&broker, "auth"),
            Some(ReloadOutcome::Failed(_))
        )
    })
    .await;
    install(&dir, "auth", "trivial");
    eventually("failure cleared", || {
        !matches!(
            last_outcome(&broker, "auth"),
            Some(ReloadOutcome::Failed(_))
        )
    })
    .await;
    assert!(
        Arc::ptr_eq(&current(&broker, "auth"), &good),
        "nothing reloaded"
    );
}

/// A rejected file is not compiled (or logged) again at every reload while
/// it and its settings stay the same; changing its settings tries again.
#[tokio::test]
async fn a_rejected_file_is_not_retried_until_it_or_its_settings_change() {
    let dir = PluginDir::new();
    let cache = PluginDir::new();
    dir.add("auth", "trivial");
    let mut config = crate::support::test_config();
    let broker = broker_with(&dir, |c| {
        c.plugins.cache_dir = Some(cache.path.clone());
        c.plugins.watch = WatchMode::Off;
        config = c.clone();
    });
    install_bytes(&dir.path, "bogus", b"not wasm at all");
    assert!(!broker.ctx.plugins.reload().await, "the chain is unchanged");
    let compiles = broker.ctx.plugins.status().compiles;
    assert!(rejection(&broker, "bogus").is_some());
    for _ in 0..3 {
        assert!(!broker.ctx.plugins.reload().await);
    }
    assert_eq!(
        broker.ctx.plugins.status().compiles,
        compiles,
        "the same broken bytes are not compiled again"
    );
    // New settings for it: one more attempt.
    config.plugin.entry("bogus".into()).or_default().fuel = Some(1_000_000);
    assert!(!broker.ctx.reload(&config).await);
    assert_eq!(broker.ctx.plugins.status().compiles, compiles + 1);
    assert!(rejection(&broker, "bogus").is_some());
    assert_eq!(names(&broker), ["auth"]);
}

// ---- 4. the compile cache ----

/// An unchanged file rewritten costs nothing on reload (no compile, same
/// plugin, no new instance), and a version seen before comes back from the
/// artifact cache.
#[tokio::test]
async fn reloads_compile_only_new_code() {
    let dir = PluginDir::new();
    let cache = PluginDir::new();
    dir.add("auth", "policy");
    let broker = broker_with(&dir, |c| {
        // A cache of its own: every first sight of a file is a compile.
        c.plugins.cache_dir = Some(cache.path.clone());
        // Reloads only when the test asks.
        c.plugins.watch = WatchMode::Off;
    });
    let status = broker.ctx.plugins.status();
    assert_eq!(status.compiles, 1);
    let first = current(&broker, "auth");
    let instances = first.stats.instances_created.load(Relaxed);

    // Same bytes, new file (new inode and modification time).
    install(&dir, "auth", "policy");
    assert!(!broker.ctx.plugins.reload().await, "nothing changed");
    let status = broker.ctx.plugins.status();
    assert_eq!((status.compiles, status.reloads), (1, 0));
    let same = current(&broker, "auth");
    assert!(Arc::ptr_eq(&same, &first), "the loaded plugin is kept");
    assert_eq!(same.hash, first.hash);
    assert_eq!(same.stats.instances_created.load(Relaxed), instances);

    // A new version is compiled once...
    install(&dir, "auth", "trivial");
    assert!(broker.ctx.plugins.reload().await);
    let status = broker.ctx.plugins.status();
    assert_eq!((status.compiles, status.reloads), (2, 1));
    assert_ne!(current(&broker, "auth").hash, first.hash);
    assert_eq!(last_outcome(&broker, "auth"), Some(ReloadOutcome::Replaced));

    // ...and the previous one comes back from the artifact cache.
    install(&dir, "auth", "policy");
    assert!(broker.ctx.plugins.reload().await);
    let status = broker.ctx.plugins.status();
    assert_eq!((status.compiles, status.reloads), (2, 2));
    let back = current(&broker, "auth");
    assert_eq!(back.hash, first.hash);
    assert!(back.cached);
    assert_eq!(last_outcome(&broker, "auth"), Some(ReloadOutcome::Replaced));
    assert_eq!(code(&broker, "after").await, 0);
}

// ---- 5. configuration reloads ----

/// New `[plugin.NAME]` settings re-canary the loaded code (no compile) and
/// change its behaviour; `enabled = false` takes the plugin out.
#[tokio::test]
async fn config_reload_reconfigures_and_disables_plugins() {
    let dir = PluginDir::new();
    dir.add("auth", "trivial");
    let broker = broker_with(&dir, |_| {});
    assert_eq!(code(&broker, "before").await, 0);
    let first = current(&broker, "auth");
    let compiles = broker.ctx.plugins.status().compiles;

    let mut config = broker.ctx.config.clone();
    plugin_config(&mut config, "auth", &[("verdict", "deny")]);
    assert!(broker.ctx.reload(&config).await, "the chain changed");
    let now = current(&broker, "auth");
    assert!(!Arc::ptr_eq(&now, &first));
    assert_eq!(now.hash, first.hash);
    assert_eq!(
        now.settings.config,
        [("verdict".to_owned(), "deny".to_owned())]
    );
    assert_eq!(now.stats.instances_created.load(Relaxed), 1, "canaried");
    let status = broker.ctx.plugins.status();
    assert_eq!(status.compiles, compiles, "no compile");
    assert_eq!(
        last_outcome(&broker, "auth"),
        Some(ReloadOutcome::Reconfigured)
    );
    assert_eq!(code(&broker, "denied").await, V4_NOT_AUTHORIZED);
    // The same configuration again changes nothing.
    assert!(!broker.ctx.reload(&config).await);
    assert!(Arc::ptr_eq(&current(&broker, "auth"), &now));

    // Disabled: out of the chain. It was required (it authenticates), so
    // clients are refused rather than let in anonymously...
    config.plugin.get_mut("auth").expect("section").enabled = Some(false);
    assert!(broker.ctx.reload(&config).await);
    assert!(names(&broker).is_empty());
    assert_eq!(code(&broker, "fail-closed").await, V4_NOT_AUTHORIZED);
    assert!(broker.ctx.plugins.status().plugins.is_empty());
    assert_eq!(broker.ctx.plugins.status().required_missing, ["auth"]);
    // ...until the configuration says it is not required.
    config.plugin.get_mut("auth").expect("section").required = Some(false);
    assert!(broker.ctx.reload(&config).await);
    assert_eq!(code(&broker, "anonymous").await, 0);
    assert!(broker.ctx.plugins.status().required_missing.is_empty());
    config.plugin.get_mut("auth").expect("section").required = None;

    // Enabled again: back, with no compile.
    config.plugin.get_mut("auth").expect("section").enabled = None;
    assert!(broker.ctx.reload(&config).await);
    assert_eq!(names(&broker), ["auth"]);
    assert_eq!(code(&broker, "denied-again").await, V4_NOT_AUTHORIZED);
    assert_eq!(broker.ctx.plugins.status().compiles, compiles);
}

/// A plugin disabled by the configuration is not a file that failed: it
/// is not listed among the rejected ones (whose `last_reload` says why
/// they failed).
#[tokio::test]
async fn a_disabled_plugin_is_not_reported_as_rejected() {
    let dir = PluginDir::new();
    dir.add("auth", "trivial");
    let broker = broker_with(&dir, |_| {});
    let mut config = broker.ctx.config.clone();
    config.plugin.entry("auth".into()).or_default().enabled = Some(false);
    assert!(broker.ctx.reload(&config).await);
    let status = broker.ctx.plugins.status();
    assert!(status.plugins.is_empty());
    assert!(
        status
            .rejected
            .iter()
            .all(|r| matches!(r.last_reload.outcome, ReloadOutcome::Failed(_))),
        "only files that failed are rejected: {:?}",
        status.rejected
    );
}

// ---- 6. slow writers ----

/// A file written in place in several chunks, with pauses shorter than the
/// debounce, is loaded once, complete: no attempt is made on a partial
/// file.
#[tokio::test]
async fn a_file_written_slowly_is_loaded_once_complete() {
    let dir = PluginDir::new();
    // `first` puts policy's compiled code in the artifact cache, so that
    // loading the complete file compiles nothing, while any attempt on a
    // partial file would (and fail).
    dir.add("first", "policy");
    let broker = broker_with(&dir, |c| c.plugins.watch_debounce_ms = 500);
    let status = broker.ctx.plugins.status();
    let (compiles, reloads) = (status.compiles, status.reloads);

    let bytes = wasm("policy");
    let path = dir.path.join("second.wasm");
    let mut file = std::fs::File::create(&path).expect("create");
    let mut seen = Vec::new();
    for chunk in bytes.chunks(bytes.len().div_ceil(6)) {
        file.write_all(chunk).expect("write chunk");
        file.flush().expect("flush");
        // 50 ms: well inside the 500 ms debounce.
        tokio::time::sleep(Duration::from_millis(50)).await;
        seen.push(rejection(&broker, "second"));
    }
    drop(file);
    eventually("second loaded", || {
        broker.ctx.plugins.get("second").is_some()
    })
    .await;
    assert!(seen.iter().all(Option::is_none), "{seen:?}");
    assert_eq!(last_outcome(&broker, "second"), Some(ReloadOutcome::Loaded));
    assert_eq!(
        current(&broker, "second").hash,
        current(&broker, "first").hash
    );
    let status = broker.ctx.plugins.status();
    assert_eq!(status.compiles, compiles, "no partial file was compiled");
    assert_eq!(status.reloads, reloads + 1, "one reload");
    assert_eq!(names(&broker), ["first", "second"]);
}

// ---- 7. polling ----

/// With `plugins.watch = "poll"` a replacement is picked up by polling.
#[tokio::test]
async fn polling_picks_up_a_replacement() {
    let dir = PluginDir::new();
    dir.add("auth", ALLOW);
    let broker = broker_with(&dir, |c| {
        c.plugins.watch = WatchMode::Poll;
        c.plugins.poll_interval_ms = 50;
        plugin_config(c, "auth", ALLOW_DENY_CONFIG);
    });
    assert_eq!(code(&broker, "before").await, 0);
    let first = current(&broker, "auth");
    let renamed = Instant::now();
    install(&dir, "auth", DENY);
    eventually("replacement polled", || {
        current(&broker, "auth").hash != first.hash
    })
    .await;
    println!("poll: replaced {:?} after the rename", renamed.elapsed());
    assert_eq!(last_outcome(&broker, "auth"), Some(ReloadOutcome::Replaced));
    assert_eq!(code(&broker, "after").await, V4_BAD_CREDENTIALS);
}

/// Polling notices a replacement whose modification time is older than
/// the file it replaces, as when a previous version is put back with its
/// timestamps preserved (`cp -p`, `rsync -a`, unpacking an archive).
#[tokio::test]
async fn polling_picks_up_a_rollback_with_an_older_modification_time() {
    let dir = PluginDir::new();
    dir.add("auth", ALLOW);
    let broker = broker_with(&dir, |c| {
        c.plugins.watch = WatchMode::Poll;
        c.plugins.poll_interval_ms = 50;
        plugin_config(c, "auth", ALLOW_DENY_CONFIG);
    });
    let first = current(&broker, "auth");
    let tmp = dir.path.join(".auth.wasm.tmp");
    std::fs::write(&tmp, wasm(DENY)).expect("write");
    let an_hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .append(true)
        .open(&tmp)
        .and_then(|f| f.set_modified(an_hour_ago))
        .expect("set the modification time");
    std::fs::rename(&tmp, dir.path.join("auth.wasm")).expect("rename");
    eventually("rollback polled", || {
        current(&broker, "auth").hash != first.hash
    })
    .await;
    assert_eq!(code(&broker, "after").await, V4_BAD_CREDENTIALS);
}

// ---- 8. calls in flight ----

/// PBKDF2 rounds that make one `password-file` verification take a second
/// or two (about 12,400 fuel and 0.5 µs per round).
const SLOW_ITERATIONS: u32 = 3_000_000;

/// A call in flight when its plugin is replaced finishes on the version it
/// started on, while new calls go to the new version: `password-file`
/// spends a second or two refusing a wrong password (old version), and in
/// the meantime `trivial` (new version) accepts the same credentials at
/// once.
#[tokio::test]
async fn a_call_in_flight_finishes_on_the_old_version() {
    let dir = PluginDir::new();
    dir.add("auth", "password-file");
    let line = format!(
        "slow:$pbkdf2-sha256${SLOW_ITERATIONS}${}${}",
        STANDARD.encode(b"sluice-test-salt"),
        STANDARD.encode([0u8; 32])
    );
    let broker = broker_with(&dir, |c| {
        let max = SLOW_ITERATIONS.to_string();
        plugin_config(c, "auth", &[("users", &line), ("max_iterations", &max)]);
        let auth = c.plugin.entry("auth".into()).or_default();
        auth.fuel = Some(u64::from(SLOW_ITERATIONS) * 20_000);
        auth.deadline_ms = Some(60_000);
    });
    let old = current(&broker, "auth");
    let addr = broker.addr;
    let slow = tokio::spawn(async move {
        let started = Instant::now();
        let mut raw = Raw::connect(addr).await;
        raw.send(&connect_v4_login("slow", true, "slow", "wrong"))
            .await;
        let code = raw.recv().await.connack().1;
        (code, started.elapsed())
    });
    eventually("the slow call started", || {
        old.stats.calls.load(Relaxed) == 1
    })
    .await;

    install(&dir, "auth", "trivial");
    eventually("the new version swapped in", || {
        current(&broker, "auth").hash != old.hash
    })
    .await;
    assert!(
        !slow.is_finished(),
        "the slow call ended before the swap: raise SLOW_ITERATIONS"
    );
    let new = current(&broker, "auth");
    let (_, ack) = connack(&broker, &connect_v4_login("quick", true, "slow", "wrong")).await;
    assert_eq!(ack.connack().1, 0, "a new call uses the new version");
    assert!(
        !slow.is_finished(),
        "the slow call ended before the new version answered: raise SLOW_ITERATIONS"
    );

    let (code, took) = within("the slow call", slow).await.expect("slow client");
    println!("slow call: {took:?}");
    assert_eq!(code, V4_BAD_CREDENTIALS, "answered by the old version");
    assert_eq!(old.stats.calls.load(Relaxed), 1);
    assert_eq!(old.stats.errors.load(Relaxed), 1, "its refusal");
    assert_eq!(old.stats.failures.load(Relaxed), 0);
    assert_eq!(new.stats.calls.load(Relaxed), 1);
    assert_eq!(new.stats.failures.load(Relaxed), 0);
}

// ---- 9. symlinks, and the files left out: see `symlinks` ----

mod fail_closed;
mod symlinks;
