//! Watching the plugin directory: file-system events (inotify) or, where
//! they are unavailable or `plugins.watch = "poll"`, polling; debounced,
//! and waiting for files to settle, before the directory is reloaded.
//!
//! Only events about plugin files (`NAME.wasm`, not hidden) count, so
//! writing `.NAME.wasm.tmp` and renaming it into place reloads once, at
//! the rename. A file still being written (its size or modification time
//! changed during the quiet period) is waited for.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use notify::event::EventKind;
use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

use super::Plugins;
use super::reload::plugin_name;
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

impl Watcher {
    /// Starts watching `dir` for `plugins`, or returns `None` when watching
    /// is off or impossible (logged).
    pub(super) fn start(
        plugins: &Arc<Plugins>,
        dir: &Path,
        config: &PluginsConfig,
    ) -> Option<Self> {
        let (tx, rx) = mpsc::channel::<()>(1);
        let handler = move |event: notify::Result<notify::Event>| match event {
            Ok(event) => {
                if is_plugin_change(&event) {
                    // A full channel already holds a wake-up.
                    let _ = tx.try_send(());
                }
            }
            Err(e) => tracing::warn!("plugin directory watch: {e}"),
        };
        let poll = notify::Config::default()
            .with_poll_interval(Duration::from_millis(u64::from(config.poll_interval_ms)));
        let watcher: Box<dyn notify::Watcher + Send> = match config.watch {
            WatchMode::Off => {
                tracing::info!("plugin directory not watched (plugins.watch = \"off\")");
                return None;
            }
            WatchMode::Poll => Box::new(polling(handler, poll, dir)?),
            WatchMode::Auto => {
                let native = notify::recommended_watcher(handler.clone()).and_then(|mut w| {
                    w.watch(dir, RecursiveMode::NonRecursive)?;
                    Ok(w)
                });
                match native {
                    Ok(w) => Box::new(w),
                    Err(e) => {
                        tracing::warn!(
                            "cannot watch {} for file-system events ({e}); polling it every {:?} instead",
                            dir.display(),
                            poll.poll_interval().unwrap_or_default()
                        );
                        Box::new(polling(handler, poll, dir)?)
                    }
                }
            }
        };
        tracing::info!("watching {} for plugin changes", dir.display());
        let debounce = Duration::from_millis(u64::from(config.watch_debounce_ms));
        let task = tokio::spawn(run(
            Arc::downgrade(plugins),
            rx,
            watcher,
            dir.to_owned(),
            debounce,
        ));
        Some(Watcher { task })
    }
}

fn polling(
    handler: impl notify::EventHandler,
    config: notify::Config,
    dir: &Path,
) -> Option<notify::PollWatcher> {
    let watched = notify::PollWatcher::new(handler, config).and_then(|mut w| {
        w.watch(dir, RecursiveMode::NonRecursive)?;
        Ok(w)
    });
    match watched {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::error!(
                "cannot watch {} ({e}); plugins will not be hot-reloaded",
                dir.display()
            );
            None
        }
    }
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

/// Reloads after each burst of changes, once the directory is quiet and
/// its plugin files have settled, until the plugins are gone.
async fn run(
    plugins: Weak<Plugins>,
    mut changes: mpsc::Receiver<()>,
    _watcher: Box<dyn notify::Watcher + Send>,
    dir: PathBuf,
    debounce: Duration,
) {
    while changes.recv().await.is_some() {
        loop {
            let before = snapshot(&dir).await;
            match tokio::time::timeout(debounce, changes.recv()).await {
                Ok(Some(())) => continue,
                Ok(None) => return,
                Err(_quiet) => {}
            }
            if snapshot(&dir).await == before {
                break;
            }
        }
        let Some(plugins) = plugins.upgrade() else {
            return;
        };
        plugins.reload().await;
    }
}

/// Name, size and modification time of every plugin file in `dir`.
async fn snapshot(dir: &Path) -> Vec<(String, u64, Option<SystemTime>)> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut files: Vec<_> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = plugin_name(e.file_name().to_str()?)?.to_owned();
                let meta = e.metadata().ok()?;
                Some((name, meta.len(), meta.modified().ok()))
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

    use super::is_plugin_change;

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
}
