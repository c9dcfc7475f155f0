//! The compiled-artifact cache: outside the plugin directory by default,
//! private, and authenticated. Whoever can write the plugin directory, or
//! put bytes in the cache, cannot get them run as native code: a tampered
//! or foreign entry is refused (logged, counted) and the plugin compiled
//! again; an unsafe cache directory is refused and plugins load without it.

use std::ffi::OsStr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::*;
use crate::support::process::Sluice;

/// A scratch directory for one test, removed when dropped.
type Scratch = crate::support::TempDir;

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .expect("stat")
        .permissions()
        .mode()
        & 0o7777
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The cached artifact of the plugin file `file` in `cache`.
fn artifact(cache: &Path, plugins: &PluginDir, file: &str) -> PathBuf {
    let wasm = std::fs::read(plugins.path.join(format!("{file}.wasm"))).expect("read plugin");
    let hash: String = Sha256::digest(&wasm)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let name = names(cache)
        .into_iter()
        .find(|n| n.starts_with(&hash) && n.ends_with(".cwasm"))
        .unwrap_or_else(|| panic!("no artifact of {file} in {:?}", names(cache)));
    cache.join(name)
}

/// A 3.1.1 CONNECT is refused by the `trivial` plugin configured to deny:
/// the plugin is loaded and answering.
async fn plugin_denies(addr: std::net::SocketAddr) {
    let mut raw = Raw::connect(addr).await;
    raw.send(&connect_v4("probe", true, 60)).await;
    assert_eq!(raw.recv().await.connack().1, 5, "refused by the plugin");
}

/// A broker (in process) with `trivial` as `auth` denying everyone, and
/// its cache in `cache`.
fn denying_broker(plugins: &PluginDir, cache: &Path) -> TestBroker {
    broker_with(plugins, |c| {
        c.plugins.cache_dir = Some(cache.to_owned());
        plugin_config(c, "auth", &[("verdict", "deny")]);
    })
}

/// The real binary with `plugins` (`auth` denying everyone), the cache
/// in `cache` if given, else in the default place under `xdg` (as
/// `XDG_CACHE_HOME`).
fn sluice(scratch: &Scratch, plugins: &PluginDir, cache: Option<&Path>, xdg: &Path) -> Sluice {
    let config = scratch.path.join("sluice.toml");
    let cache_line = cache
        .map(|c| format!("cache_dir = {:?}\n", c.to_str().expect("utf-8 path")))
        .unwrap_or_default();
    std::fs::write(
        &config,
        format!(
            "[server]\nbind = [\"127.0.0.1:0\"]\nallow_anonymous = true\n\
             [plugins]\ndir = {:?}\n{cache_line}\
             [plugin.auth.config]\nverdict = \"deny\"\n",
            plugins.path.to_str().expect("utf-8 path"),
        ),
    )
    .expect("write config");
    Sluice::start_with_env(
        &["--config", config.to_str().expect("utf-8 path")],
        &[
            ("XDG_CACHE_HOME", Some(xdg.as_os_str())),
            ("CACHE_DIRECTORY", None::<&OsStr>),
        ],
    )
}

#[tokio::test]
async fn compiled_plugins_come_from_the_cache_on_restart() {
    let dir = PluginDir::new();
    dir.add("auth", "policy");
    let first = broker_with(&dir, |_| {});
    drop(first);
    let second = broker_with(&dir, |_| {});
    assert!(second.ctx.plugins.get("auth").expect("loaded").cached);
    assert_eq!(second.ctx.plugins.status().cache_refused, 0);
}

#[tokio::test]
async fn a_tampered_artifact_is_compiled_again_not_loaded() {
    let scratch = Scratch::new("flipped");
    let cache = scratch.path.join("cache");
    let plugins = PluginDir::new();
    plugins.add("auth", "trivial");
    drop(denying_broker(&plugins, &cache));
    let file = artifact(&cache, &plugins, "auth");

    // A byte of machine code flipped, as a plugin-directory writer (or
    // anyone else) would patch it.
    let mut bytes = std::fs::read(&file).expect("read artifact");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&file, &bytes).expect("write artifact");
    let broker = denying_broker(&plugins, &cache);
    let plugin = broker.ctx.plugins.get("auth").expect("loaded");
    assert!(!plugin.cached, "the tampered artifact was loaded");
    let status = broker.ctx.plugins.status();
    assert_eq!((status.compiles, status.cache_refused), (1, 1));
    plugin_denies(broker.addr).await;
    drop(broker);

    // The entry was rewritten: the next start loads it.
    assert_ne!(std::fs::read(&file).expect("read artifact"), bytes);
    let broker = denying_broker(&plugins, &cache);
    assert!(broker.ctx.plugins.get("auth").expect("loaded").cached);
    assert_eq!(broker.ctx.plugins.status().cache_refused, 0);
    plugin_denies(broker.addr).await;
}

/// Another plugin's compiled code under this plugin's name — authentic for
/// the other plugin, or re-checksummed as the version 1 format trusted —
/// is refused with a warning naming the file, and the plugin is compiled
/// from its own `.wasm`.
#[tokio::test]
async fn another_plugins_artifact_is_refused_with_a_warning() {
    let scratch = Scratch::new("foreign");
    let xdg = scratch.path.join("xdg");
    let cache = xdg.join("sluice/plugins");
    let plugins = PluginDir::new();
    plugins.add("auth", "trivial").add("other", "policy");
    drop(sluice(&scratch, &plugins, None, &xdg));
    let mine = artifact(&cache, &plugins, "auth");
    let theirs = std::fs::read(artifact(&cache, &plugins, "other")).expect("read artifact");
    let name = mine
        .file_name()
        .and_then(|n| n.to_str())
        .expect("file name")
        .to_owned();

    // Header (8 bytes) and tag (32) of the current format, then the body.
    let body = &theirs[40..];
    let mut v1 = b"SLUICE1\n".to_vec();
    v1.extend_from_slice(&Sha256::digest(body));
    v1.extend_from_slice(body);
    let mut checksummed = theirs[..8].to_vec();
    checksummed.extend_from_slice(&Sha256::digest(body));
    checksummed.extend_from_slice(body);
    for (forgery, why) in [
        (theirs.clone(), "authentication tag does not match"),
        (v1, "no Sluice artifact header"),
        (checksummed, "authentication tag does not match"),
    ] {
        std::fs::write(&mine, &forgery).expect("plant artifact");
        let mut broker = sluice(&scratch, &plugins, None, &xdg);
        let line = broker.wait_until_logged(&["ignoring cached plugin artifact"]);
        let line = line
            .iter()
            .find(|l| l.contains("ignoring cached plugin artifact"))
            .expect("warning");
        assert!(
            line.contains("WARN") && line.contains(&name) && line.contains(why),
            "{line}"
        );
        plugin_denies(broker.addr).await;
        drop(broker);
        assert_ne!(
            std::fs::read(&mine).expect("read artifact"),
            forgery,
            "overwritten"
        );
    }
    // Rewritten with its own code: loaded without a warning.
    let mut broker = sluice(&scratch, &plugins, None, &xdg);
    plugin_denies(broker.addr).await;
    assert_eq!(broker.count("ignoring cached plugin artifact"), 0);
}

#[tokio::test]
async fn unsafe_cache_directories_are_refused_and_plugins_still_load() {
    let scratch = Scratch::new("unsafe");
    let xdg = scratch.path.join("xdg");
    let plugins = PluginDir::new();
    plugins.add("auth", "trivial");

    let real = scratch.path.join("real");
    std::fs::create_dir(&real).expect("mkdir");
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let link = scratch.path.join("link");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    let shared = scratch.path.join("shared");
    std::fs::create_dir(&shared).expect("mkdir");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o770)).expect("chmod");
    let open = scratch.path.join("open");
    std::fs::create_dir(&open).expect("mkdir");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    let mut cases = vec![
        (link.clone(), "is a symbolic link".to_owned(), real.clone()),
        (
            shared.clone(),
            "is writable by group or others (mode 0770)".to_owned(),
            shared.clone(),
        ),
        (
            open.clone(),
            "is writable by group or others (mode 1777)".to_owned(),
            open.clone(),
        ),
    ];
    // Another user's directory, when this test may make one.
    let me = std::fs::metadata(&scratch.path).expect("stat").uid();
    if me == 0 {
        let theirs = scratch.path.join("theirs");
        std::fs::create_dir(&theirs).expect("mkdir");
        std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).expect("chown");
        cases.push((
            theirs.clone(),
            "is owned by uid 65534, not by the broker's uid 0".to_owned(),
            theirs,
        ));
    }
    for (cache, why, untouched) in cases {
        let mut broker = sluice(&scratch, &plugins, Some(&cache), &xdg);
        let lines = broker.wait_until_logged(&["not caching compiled plugins"]);
        let line = lines
            .iter()
            .find(|l| l.contains("not caching compiled plugins"))
            .expect("warning");
        assert!(
            line.contains("WARN") && line.contains(&why),
            "{why}: {line}"
        );
        plugin_denies(broker.addr).await;
        drop(broker);
        assert!(names(&untouched).is_empty(), "{:?}", names(&untouched));
    }
    assert!(!xdg.exists(), "no fallback to another directory");
}

/// `sluice --plugins DIR` with no `cache_dir`: the cache is in the user's
/// cache directory, private, and the plugin directory holds only plugins.
#[tokio::test]
async fn the_default_cache_is_private_and_outside_the_plugin_directory() {
    let scratch = Scratch::new("default");
    let xdg = scratch.path.join("xdg");
    let cache = xdg.join("sluice/plugins");
    let plugins = PluginDir::new();
    plugins.add("auth", "trivial");
    let mut broker = sluice(&scratch, &plugins, None, &xdg);
    broker.wait_until_logged(&[&format!(
        "compiled plugins are cached in {}",
        cache.display()
    )]);
    plugin_denies(broker.addr).await;
    drop(broker);

    assert_eq!(names(&plugins.path), ["auth.wasm"]);
    for dir in [&xdg, &xdg.join("sluice"), &cache] {
        assert_eq!(mode(dir), 0o700, "{}", dir.display());
    }
    assert_eq!(mode(&cache.join("key")), 0o600);
    assert_eq!(std::fs::read(cache.join("key")).expect("key").len(), 32);
    let artifact = artifact(&cache, &plugins, "auth");
    assert_eq!(mode(&artifact), 0o600);

    // Without XDG_CACHE_HOME, under $HOME/.cache; a restart there reuses
    // the key.
    let home = scratch.path.join("home");
    let from_home = home.join(".cache/sluice/plugins");
    for _ in 0..2 {
        let mut broker = Sluice::start_with_env(
            &[
                "--bind",
                "127.0.0.1:0",
                "--plugins",
                plugins.path.to_str().expect("utf-8 path"),
            ],
            &[
                ("XDG_CACHE_HOME", None),
                ("CACHE_DIRECTORY", None),
                ("HOME", Some(home.as_os_str())),
            ],
        );
        broker.wait_until_logged(&[&format!(
            "compiled plugins are cached in {}",
            from_home.display()
        )]);
        assert_eq!(broker.count("ignoring cached plugin artifact"), 0);
    }
    assert_eq!(mode(&from_home.join("key")), 0o600);
    assert_eq!(names(&plugins.path), ["auth.wasm"]);
}
