//! Watching the plugin directory: file-system events (inotify, through the
//! notify crate) or, where they are unavailable or `plugins.watch =
//! "poll"`, polling snapshots of it; debounced, and waiting for files to
//! settle, before the directory is reloaded.
//!
//! Only events about plugin files (`NAME.wasm`, not hidden) count, so
//! writing `.NAME.wasm.tmp` and renaming it into place reloads once, at
//! the rename. A file still being written (its size or modification time
//! changed during the quiet period) is waited for.
//!
//! Symlinks: plugin files are seen through their links (`stat`, not
//! `lstat`: the size, modification time and inode of the target, and
//! where the link points). Replacing a link (`ln -sf`) is an event on
//! `NAME.wasm`. Events on any other symlink or directory in the plugin
//! directory count too, for the links that lead through it: a Kubernetes
//! ConfigMap update swaps `..data` (a symlink to a hidden timestamped
//! directory) atomically, which changes every `NAME.wasm ->
//! ..data/NAME.wasm` at once. A target rewritten in place elsewhere (or
//! behind a chain of links) makes no event in the plugin directory: rather
//! than also watching every target's directory (watches to add and drop as
//! links change, and directories such as a build tree busy with unrelated
//! writes), events mode also polls the symlinked plugin files, and only
//! those, every `plugins.poll_interval_ms`; polling mode sees them anyway.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use notify::event::EventKind;
use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

use super::Plugins;
use super::scan::plugin_name;
use crate::config::{PluginsConfig, WatchMode};

/// The running watcher; dropping it stops watching.
#[derive(Debug)]
pub(super) struct Watcher {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Where changes come from.
enum Source {
    /// File-system events (the watcher sends them while it lives), and
    /// polling of symlinked plugin files at this interval.
    Events(Box<dyn notify::Watcher + Send>, Duration),
    /// Comparing snapshots of the directory at this interval. Done here
    /// rather than with notify's `PollWatcher`, which compares whole-second
    /// modification times and only later ones, so it misses a replacement
    /// within the same second and a restored older file.
    Poll(Duration),
}

impl Watcher {
    /// Starts watching `dir` for `plugins`, or returns `None` when watching
    /// is off.
    pub(super) fn start(
        plugins: &Arc<Plugins>,
        dir: &Path,
        config: &PluginsConfig,
    ) -> Option<Self> {
        let (tx, rx) = mpsc::channel::<()>(1);
        let interval = Duration::from_millis(u64::from(config.poll_interval_ms));
        let source = match config.watch {
            WatchMode::Off => {
                tracing::info!("plugin directory not watched (plugins.watch = \"off\")");
                return None;
            }
            WatchMode::Poll => Source::Poll(interval),
            WatchMode::Auto => match events(dir, tx.clone()) {
                Ok(w) => Source::Events(Box::new(w), interval),
                Err(e) => {
                    tracing::warn!(
                        "cannot watch {} for file-system events ({e}); polling it every {interval:?} instead",
                        dir.display()
                    );
                    Source::Poll(interval)
                }
            },
        };
        tracing::info!(
            "watching {} for plugin changes ({})",
            dir.display(),
            match source {
                Source::Events(..) =>
                    format!("file-system events; symlinked plugin files polled every {interval:?}"),
                Source::Poll(every) => format!("polling every {every:?}"),
            }
        );
        // One look once watching: a change between the initial load and
        // the watch (or the poller's first snapshot) is not missed.
        let _ = tx.try_send(());
        let debounce = Duration::from_millis(u64::from(config.watch_debounce_ms));
        let task = tokio::spawn(run(
            Arc::downgrade(plugins),
            tx,
            rx,
            source,
            dir.to_owned(),
            debounce,
        ));
        Some(Watcher { task })
    }
}

/// A native watcher on `dir` that sends a wake-up on `tx` for every change
/// to a plugin file, or to a symlink or directory plugin files may lead
/// through.
fn events(dir: &Path, tx: mpsc::Sender<()>) -> notify::Result<notify::RecommendedWatcher> {
    let handler = move |event: notify::Result<notify::Event>| match event {
        Ok(event) => {
            if is_plugin_change(&event) || is_link_change(&event) {
                // A full channel already holds a wake-up.
                let _ = tx.try_send(());
            }
        }
        Err(e) => tracing::warn!("plugin directory watch: {e}"),
    };
    let mut watcher = notify::recommended_watcher(handler)?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

/// Whether `event` may have changed a plugin file (opening or reading one,
/// as a reload itself does, does not).
fn is_plugin_change(event: &notify::Event) -> bool {
    !matches!(event.kind, EventKind::Access(_))
        && event.paths.iter().any(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(plugin_name)
                .is_some()
        })
}

/// Whether `event` is about a symlink or a directory in the plugin
/// directory (as it is now: one that is gone no longer leads anywhere, and
/// the links through it are polled).
fn is_link_change(event: &notify::Event) -> bool {
    !matches!(event.kind, EventKind::Access(_))
        && event
            .paths
            .iter()
            .any(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_symlink() || m.is_dir()))
}

/// Reloads after each burst of changes, once the directory is quiet and
/// its plugin files have settled, until the plugins are gone.
async fn run(
    plugins: Weak<Plugins>,
    tx: mpsc::Sender<()>,
    changes: mpsc::Receiver<()>,
    source: Source,
    dir: PathBuf,
    debounce: Duration,
) {
    let (_watcher, every, scope) = match source {
        Source::Events(watcher, every) => (Some(watcher), every, Scope::Links),
        Source::Poll(every) => (None, every, Scope::All),
    };
    tokio::select! {
        () = poll(&dir, every, tx, scope) => {}
        () = reload_on_changes(plugins, changes, &dir, debounce) => {}
    }
}

/// Which plugin files the poller compares.
#[derive(Clone, Copy)]
enum Scope {
    All,
    /// Symlinks only (events report the rest).
    Links,
}

/// Sends a wake-up on `tx` whenever a snapshot of `dir` (its plugin files
/// in `scope`) differs from the previous one.
async fn poll(dir: &Path, every: Duration, tx: mpsc::Sender<()>, scope: Scope) {
    let in_scope = |mut files: Vec<FileState>| {
        if let Scope::Links = scope {
            files.retain(|f| f.link.is_some());
        }
        files
    };
    let mut last = in_scope(snapshot(dir).await);
    // Whatever changed before this first snapshot is covered by the
    // reload `Watcher::start` asked for.
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let now = in_scope(snapshot(dir).await);
        if now != last {
            last = now;
            let _ = tx.try_send(());
        }
    }
}

async fn reload_on_changes(
    plugins: Weak<Plugins>,
    mut changes: mpsc::Receiver<()>,
    dir: &Path,
    debounce: Duration,
) {
    while changes.recv().await.is_some() {
        loop {
            let before = snapshot(dir).await;
            match tokio::time::timeout(debounce, changes.recv()).await {
                Ok(Some(())) => continue,
                Ok(None) => return,
                Err(_quiet) => {}
            }
            if snapshot(dir).await == before {
                break;
            }
        }
        let Some(plugins) = plugins.upgrade() else {
            return;
        };
        plugins.reload().await;
    }
}

/// One plugin file as the poller and the settle check see it, through its
/// symlink if it is one.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct FileState {
    name: String,
    /// Where the symlink points, if it is one.
    link: Option<PathBuf>,
    /// Size, modification time (full precision), device and inode of what
    /// it leads to; `None` if it leads nowhere (a dangling link, a loop).
    target: Option<(u64, Option<SystemTime>, u64, u64)>,
}

/// The state of every plugin file in `dir`.
async fn snapshot(dir: &Path) -> Vec<FileState> {
    use std::os::unix::fs::MetadataExt as _;
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut files: Vec<FileState> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = plugin_name(e.file_name().to_str()?)?.to_owned();
                let path = e.path();
                let link = std::fs::read_link(&path).ok();
                let target = std::fs::metadata(&path)
                    .ok()
                    .map(|m| (m.len(), m.modified().ok(), m.dev(), m.ino()));
                Some(FileState { name, link, target })
            })
            .collect();
        files.sort();
        files
    })
    .await
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use notify::event::{AccessKind, CreateKind, EventKind, ModifyKind, RenameMode};

    use super::{is_link_change, is_plugin_change};

    fn event(kind: EventKind, paths: &[&str]) -> notify::Event {
        let mut e = notify::Event::new(kind);
        e.paths = paths.iter().map(PathBuf::from).collect();
        e
    }

    #[test]
    fn only_changes_to_plugin_files_count() {
        let create = EventKind::Create(CreateKind::File);
        assert!(is_plugin_change(&event(create, &["/p/acl.wasm"])));
        assert!(!is_plugin_change(&event(create, &["/p/.acl.wasm.tmp"])));
        assert!(!is_plugin_change(&event(create, &["/p/notes.txt"])));
        // A rename into place names both files.
        let rename = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        assert!(is_plugin_change(&event(
            rename,
            &["/p/.acl.wasm.tmp", "/p/acl.wasm"]
        )));
        // A reload opening the file is no change.
        let open = EventKind::Access(AccessKind::Any);
        assert!(!is_plugin_change(&event(open, &["/p/acl.wasm"])));
    }

    #[test]
    fn changes_to_symlinks_and_directories_count() {
        let dir = std::env::temp_dir().join(format!("sluice-watch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("..2026_01")).expect("mkdir");
        std::os::unix::fs::symlink("..2026_01", dir.join("..data")).expect("symlink");
        std::fs::write(dir.join(".acl.wasm.tmp"), b"wasm").expect("write");
        let path = |name: &str| dir.join(name).to_str().expect("utf-8").to_owned();
        let rename = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        let swap = event(rename, &[&path("..data_tmp"), &path("..data")]);
        let made = event(EventKind::Create(CreateKind::Any), &[&path("..2026_01")]);
        let tmp = event(
            EventKind::Create(CreateKind::File),
            &[&path(".acl.wasm.tmp")],
        );
        let gone = event(EventKind::Create(CreateKind::Any), &[&path("..gone")]);
        let read = event(EventKind::Access(AccessKind::Any), &[&path("..data")]);
        let counted = [&swap, &made, &tmp, &gone, &read].map(is_link_change);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(counted, [true, true, false, false, false]);
    }
}
