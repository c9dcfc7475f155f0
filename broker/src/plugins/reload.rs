//! Loading the plugin directory, at start and again whenever it or the
//! configuration changes, and what the last attempt did to each plugin.
//!
//! A reload compares the directory with the current set, file by file:
//! an unchanged file with unchanged settings keeps its loaded plugin (no
//! read beyond the hash, no compile, no new instance); the same file with
//! new settings is canaried again from its compiled code; a new or changed
//! file is compiled (through the artifact cache) and canaried. Only if
//! something changed is a new set built and swapped in. A file that fails
//! leaves the previous version in the chain, and the failure is logged
//! with the file and kept for `sluice plugins`. Reloads are serialised.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use super::engine::{Runtime, Wasm};
use super::hooks::Hook;
use super::plugin::{LoadError, Plugin, Settings};
use super::set::PluginSet;
use super::{Plugins, PluginsError};
use crate::config::{Config, PluginConfig};

/// What the last load or reload did to one plugin file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "result", content = "error", rename_all = "snake_case")]
pub enum ReloadOutcome {
    /// Loaded for the first time.
    Loaded,
    /// A new version replaced the previous one.
    Replaced,
    /// New settings; same code, canaried again.
    Reconfigured,
    /// After a rejected version, the file is again the version loaded.
    Unchanged,
    /// The file was rejected (the error says why); a previous version, if
    /// any, keeps running.
    Failed(String),
}

/// The last reload result of a plugin file.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LastReload {
    #[serde(flatten)]
    pub outcome: ReloadOutcome,
    /// Seconds since the Unix epoch.
    pub at: u64,
}

/// One loaded plugin, for `sluice plugins` and metrics. Counters are those
/// of the version loaded now.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PluginStatus {
    pub name: String,
    pub file: PathBuf,
    pub sha256: String,
    pub hooks: Vec<&'static str>,
    pub calls: u64,
    pub errors: u64,
    pub failures: u64,
    pub traps: u64,
    pub fuel_used: u64,
    pub instances: usize,
    pub last_reload: Option<LastReload>,
}

/// A file in the plugin directory that is not loaded because it failed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Rejected {
    pub name: String,
    pub file: PathBuf,
    pub last_reload: LastReload,
}

/// The plugins as `sluice plugins` shows them.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Status {
    /// In chain order.
    pub plugins: Vec<PluginStatus>,
    pub rejected: Vec<Rejected>,
    /// Reloads that changed the chain.
    pub reloads: u64,
    /// Components compiled by Cranelift since start (artifact cache misses).
    pub compiles: u64,
    /// Cached artifacts refused since start (failed their checks or their
    /// authentication; recompiled instead).
    pub cache_refused: u64,
}

/// Reloads the plugin directory.
pub(super) struct Reloader {
    runtime: Arc<Runtime>,
    dir: PathBuf,
    /// The configuration plugins are loaded with; the lock serialises
    /// reloads.
    config: tokio::sync::Mutex<Config>,
    /// Last result per file name (without `.wasm`).
    results: std::sync::Mutex<BTreeMap<String, Record>>,
    /// Reloads that swapped in a new set.
    reloads: AtomicU64,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// The last result for one file.
struct Record {
    file: PathBuf,
    last: LastReload,
    /// For a failure: the file's hash and the settings it failed with, so
    /// the same failure is not compiled and logged again at every reload.
    failed: Option<(String, Settings)>,
}

/// What loading one file gave.
enum Loaded {
    /// The plugin already loaded, untouched.
    Kept(Arc<Plugin>),
    New(Arc<Plugin>, ReloadOutcome),
    /// The same bytes and settings as a version that already failed.
    StillFailing,
}

/// Why a file did not load, with the hash and settings it failed with.
struct Failure {
    error: LoadError,
    attempt: Option<(String, Settings)>,
}

impl Reloader {
    pub(super) fn new(runtime: Arc<Runtime>, dir: PathBuf, config: Config) -> Self {
        Reloader {
            runtime,
            dir,
            config: tokio::sync::Mutex::new(config),
            results: std::sync::Mutex::new(BTreeMap::new()),
            reloads: AtomicU64::new(0),
        }
    }

    /// The set at start: every plugin must load.
    pub(super) async fn initial(&self, config: &Config) -> Result<PluginSet, PluginsError> {
        let mut list = Vec::new();
        for (name, path) in plugin_files(&self.dir)? {
            let Some(settings) = settings_of(config, &name) else {
                tracing::info!(plugin = %name, "plugin disabled in the configuration");
                continue;
            };
            let plugin = Plugin::load(&self.runtime, &name, &path, settings).await?;
            self.record(&name, &path, ReloadOutcome::Loaded, None);
            list.push(Arc::new(plugin));
        }
        for name in config.plugin.keys() {
            if !list.iter().any(|p| &*p.name == name.as_str()) {
                tracing::warn!(
                    "[plugin.{name}] is configured but there is no {name}.wasm in {}",
                    self.dir.display()
                );
            }
        }
        Ok(PluginSet::new(list))
    }

    /// Brings `plugins` in line with the directory and `config` (or the
    /// configuration last given). Returns whether the chain changed.
    pub(super) async fn reload(&self, plugins: &Plugins, config: Option<Config>) -> bool {
        let mut current_config = self.config.lock().await;
        if let Some(config) = config {
            *current_config = config;
        }
        let config = &*current_config;
        let files = match plugin_files(&self.dir) {
            Ok(files) => files,
            Err(e) => {
                tracing::error!("plugin reload skipped; the chain is unchanged: {e}");
                return false;
            }
        };
        let current = plugins.set();
        let mut list = Vec::new();
        let mut changed = false;
        for (name, path) in &files {
            let old = current.get(name);
            let Some(settings) = settings_of(config, name) else {
                self.forget(name);
                if old.is_some() {
                    tracing::info!(plugin = %name, "plugin disabled in the configuration");
                    changed = true;
                }
                continue;
            };
            match self.load(name, path, settings, old).await {
                Ok(Loaded::Kept(p)) => {
                    if self.last_failed(name) {
                        self.record(name, path, ReloadOutcome::Unchanged, None);
                    }
                    list.push(p);
                }
                Ok(Loaded::New(p, outcome)) => {
                    tracing::info!(plugin = %name, file = %path.display(), "plugin {}", verb(&outcome));
                    self.record(name, path, outcome, None);
                    list.push(p);
                    changed = true;
                }
                Ok(Loaded::StillFailing) => list.extend(old.cloned()),
                Err(Failure { error, attempt }) => {
                    match old {
                        Some(old) => {
                            tracing::error!(
                                plugin = %name,
                                "new version rejected; the loaded version (sha256 {}) keeps running: {error}",
                                old.hash
                            );
                            list.push(old.clone());
                        }
                        None => tracing::error!(plugin = %name, "plugin not loaded: {error}"),
                    }
                    let outcome = ReloadOutcome::Failed(error.to_string());
                    self.record(name, path, outcome, attempt);
                }
            }
        }
        for p in &current.list {
            if !list.iter().any(|n| n.name == p.name) {
                tracing::info!(plugin = %p.name, file = %p.file.display(), "plugin removed");
                changed = true;
            }
        }
        self.forget_missing(&files);
        if !changed {
            return false;
        }
        let set = PluginSet::new(list);
        tracing::info!("plugin chain: {}", set.order());
        plugins.swap(set);
        self.reloads.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Loads `path` unless `old` is the same file with the same settings,
    /// or the same file already failed with the same settings.
    async fn load(
        &self,
        name: &str,
        path: &Path,
        settings: Settings,
        old: Option<&Arc<Plugin>>,
    ) -> Result<Loaded, Failure> {
        let failed = |error| Failure {
            error,
            attempt: None,
        };
        let wasm = tokio::fs::read(path).await.map_err(|source| {
            failed(LoadError::Read {
                path: path.to_owned(),
                source,
            })
        })?;
        let wasm = Wasm::hash(wasm).await.map_err(|message| {
            failed(LoadError::Compile {
                path: path.to_owned(),
                message,
            })
        })?;
        let hash = wasm.hash.clone();
        if self.failed_before(name, &hash, &settings) {
            return Ok(Loaded::StillFailing);
        }
        let attempt = Some((hash.clone(), settings.clone()));
        let result = match old {
            Some(old) if hash == old.hash && settings == old.settings => {
                return Ok(Loaded::Kept(old.clone()));
            }
            Some(old) if hash == old.hash => old
                .reconfigure(settings)
                .await
                .map(|p| (p, ReloadOutcome::Reconfigured)),
            Some(old) => {
                let kv = Some(old.shared.kv.clone());
                Plugin::from_wasm(&self.runtime, name, path, wasm, settings, kv)
                    .await
                    .map(|p| (p, ReloadOutcome::Replaced))
            }
            None => Plugin::from_wasm(&self.runtime, name, path, wasm, settings, None)
                .await
                .map(|p| (p, ReloadOutcome::Loaded)),
        };
        match result {
            Ok((p, outcome)) => Ok(Loaded::New(Arc::new(p), outcome)),
            Err(error) => Err(Failure { error, attempt }),
        }
    }

    fn results(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Record>> {
        self.results.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(
        &self,
        name: &str,
        path: &Path,
        outcome: ReloadOutcome,
        failed: Option<(String, Settings)>,
    ) {
        let at = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        let record = Record {
            file: path.to_owned(),
            last: LastReload { outcome, at },
            failed,
        };
        self.results().insert(name.to_owned(), record);
    }

    fn forget(&self, name: &str) {
        self.results().remove(name);
    }

    /// Whether the last attempt to load `name` failed.
    fn last_failed(&self, name: &str) -> bool {
        self.results()
            .get(name)
            .is_some_and(|r| matches!(r.last.outcome, ReloadOutcome::Failed(_)))
    }

    /// Whether these bytes and settings of `name` already failed to load.
    fn failed_before(&self, name: &str, hash: &str, settings: &Settings) -> bool {
        self.results()
            .get(name)
            .and_then(|r| r.failed.as_ref())
            .is_some_and(|(h, s)| h == hash && s == settings)
    }

    /// Drops the results of files no longer in the directory.
    fn forget_missing(&self, files: &[(String, PathBuf)]) {
        self.results()
            .retain(|name, _| files.iter().any(|(n, _)| n == name));
    }

    /// The status of `plugins`.
    pub(super) fn status(&self, plugins: &Plugins) -> Status {
        let set = plugins.set();
        let results = self.results();
        let loaded = set
            .list
            .iter()
            .map(|p| {
                let s = &p.stats;
                PluginStatus {
                    name: p.name.to_string(),
                    file: p.file.clone(),
                    sha256: p.hash.clone(),
                    hooks: p.hooks().iter().map(Hook::name).collect(),
                    calls: s.calls.load(Ordering::Relaxed),
                    errors: s.errors.load(Ordering::Relaxed),
                    failures: s.failures.load(Ordering::Relaxed),
                    traps: s.traps.load(Ordering::Relaxed),
                    fuel_used: s.fuel_used.load(Ordering::Relaxed),
                    instances: p.instances(),
                    last_reload: results.get(&*p.name).map(|r| r.last.clone()),
                }
            })
            .collect();
        let rejected = results
            .iter()
            .filter(|(name, r)| {
                set.get(name).is_none() && matches!(r.last.outcome, ReloadOutcome::Failed(_))
            })
            .map(|(name, r)| Rejected {
                name: name.clone(),
                file: r.file.clone(),
                last_reload: r.last.clone(),
            })
            .collect();
        Status {
            plugins: loaded,
            rejected,
            reloads: self.reloads.load(Ordering::Relaxed),
            compiles: self.runtime.compiles(),
            cache_refused: self.runtime.cache_refused(),
        }
    }
}

impl Plugins {
    /// Reloads the plugin directory now (what the watcher does after a
    /// change). Returns whether the chain changed.
    pub async fn reload(&self) -> bool {
        match &self.reloader {
            Some(r) => r.reload(self, None).await,
            None => false,
        }
    }

    /// Applies a new configuration's `[plugins]` limits and `[plugin.NAME]`
    /// sections (SIGHUP): plugins whose settings changed are canaried
    /// again, `enabled = false` removes one. `plugins.dir`,
    /// `plugins.cache_dir` and the watch settings keep their start-up
    /// values. Returns whether the chain changed.
    pub async fn reconfigure(&self, config: &Config) -> bool {
        let Some(r) = &self.reloader else {
            if config.plugins.dir.is_some() {
                tracing::warn!(
                    "plugins.dir was set after start; restart the broker to load plugins"
                );
            }
            return false;
        };
        if config.plugins.dir.as_ref() != Some(&r.dir) {
            tracing::warn!(
                "plugins.dir changed; the broker keeps watching {} until it is restarted",
                r.dir.display()
            );
        }
        r.reload(self, Some(config.clone())).await
    }

    /// Every loaded plugin with its counters, and the files that failed.
    pub fn status(&self) -> Status {
        match &self.reloader {
            Some(r) => r.status(self),
            None => Status::default(),
        }
    }
}

fn verb(outcome: &ReloadOutcome) -> &'static str {
    match outcome {
        ReloadOutcome::Loaded => "loaded",
        ReloadOutcome::Replaced => "replaced by its new version",
        ReloadOutcome::Reconfigured => "reconfigured",
        ReloadOutcome::Unchanged => "unchanged",
        ReloadOutcome::Failed(_) => "rejected",
    }
}

/// Whether `file_name` names a plugin: `NAME.wasm`, not hidden (editors'
/// and copy tools' temporary files are hidden or have another suffix).
pub(super) fn plugin_name(file_name: &str) -> Option<&str> {
    let stem = file_name.strip_suffix(".wasm")?;
    (!file_name.starts_with('.') && !stem.is_empty()).then_some(stem)
}

/// The `.wasm` files of `dir`, by file name, skipping hidden and
/// temporary files: (name without `.wasm`, path).
pub(super) fn plugin_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, PluginsError> {
    let entries = std::fs::read_dir(dir).map_err(|source| PluginsError::Dir {
        path: dir.to_owned(),
        source,
    })?;
    let mut files: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| {
            let path = e.path();
            let name = plugin_name(path.file_name()?.to_str()?)?.to_owned();
            Some((name, path))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The settings of plugin `name`, or `None` when it is disabled.
fn settings_of(config: &Config, name: &str) -> Option<Settings> {
    let own = config.plugin.get(name);
    if own.and_then(|p| p.enabled) == Some(false) {
        return None;
    }
    Some(settings(config, own))
}

/// A plugin's settings: its own section over `[plugins]`.
fn settings(config: &Config, own: Option<&PluginConfig>) -> Settings {
    let d = &config.plugins;
    let own = own.cloned().unwrap_or_default();
    let instances = own.instances.unwrap_or(d.instances) as usize;
    let instances = if instances == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        instances
    };
    Settings {
        priority: own.priority,
        fuel: own.fuel.unwrap_or(d.fuel),
        memory_bytes: own.memory_mb.unwrap_or(d.memory_mb) as usize * 1024 * 1024,
        deadline: Duration::from_millis(u64::from(own.deadline_ms.unwrap_or(d.deadline_ms))),
        instances,
        on_failure: own.on_failure.unwrap_or(d.on_failure),
        breaker_failures: own.breaker_failures.unwrap_or(d.breaker_failures),
        breaker_backoff: Duration::from_secs(u64::from(
            own.breaker_backoff_secs.unwrap_or(d.breaker_backoff_secs),
        )),
        kv_max_bytes: own.kv_max_bytes.unwrap_or(d.kv_max_bytes),
        config: own
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::plugin_name;

    #[test]
    fn only_visible_wasm_files_are_plugins() {
        assert_eq!(plugin_name("acl.wasm"), Some("acl"));
        assert_eq!(plugin_name("10-acl.wasm"), Some("10-acl"));
        for ignored in [
            ".acl.wasm",
            "acl.wasm.tmp",
            "acl.wasm~",
            ".wasm",
            "acl.wasm.part",
            ".#acl.wasm",
            "acl.txt",
        ] {
            assert_eq!(plugin_name(ignored), None, "{ignored}");
        }
    }
}
