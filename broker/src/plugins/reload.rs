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
//!
//! The directory is read by `scan.rs`, through symlinks. A `NAME.wasm`
//! that is not tried is listed as ignored with the reason: disabled in the
//! configuration (`enabled = false`), or not a readable file (a dangling
//! symlink, a symlink loop, a directory). At start such a file stops the
//! broker, like any plugin that fails to load; at run time one whose
//! plugin is loaded is a rejected new version (the loaded one keeps
//! running). Rejections and ignored files are logged once per change, not
//! at every reload: rejections at error, ignored files at warn, disabled
//! ones at info.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use super::engine::{Runtime, Wasm};
use super::hooks::Hook;
use super::latency::Latency;
use super::plugin::{LoadError, Plugin, Settings};
use super::scan::{Entry, Unusable, scan};
use super::set::{Missing, PluginSet};
use super::stats::HookStatus;
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
    /// Calls cut at their deadline, out of fuel, or finding no free
    /// instance in time: limits clients' requests can drive (they slow
    /// the client down, not the plugin's breaker).
    pub deadlines: u64,
    pub out_of_fuel: u64,
    pub busy: u64,
    /// Answers refused as invalid.
    pub invalid: u64,
    pub fuel_used: u64,
    pub instances: usize,
    /// Messages the plugin published (host function `publish`) that were
    /// queued.
    pub published: u64,
    /// `publish` calls refused at once (rate, limits, queue full).
    pub publish_refused: u64,
    /// Queued publications the other plugins refused (or the broker
    /// dropped).
    pub publications_denied: u64,
    /// The median and the 99th percentile of all its calls' wall time,
    /// estimated from the hooks' histograms (microseconds; none before
    /// the first call).
    pub p50_micros: Option<f64>,
    pub p99_micros: Option<f64>,
    /// Each hook it exports: calls, outcomes, latency.
    pub per_hook: Vec<HookStatus>,
    pub last_reload: Option<LastReload>,
}

/// A file in the plugin directory that is not loaded because it failed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Rejected {
    pub name: String,
    pub file: PathBuf,
    pub last_reload: LastReload,
}

/// A `.wasm` entry of the plugin directory that is not loaded and was not
/// tried: disabled in the configuration, or not a readable file (a
/// dangling symlink, a symlink loop, a directory, ...).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Ignored {
    pub name: String,
    /// The entry in the plugin directory (the link, for a symlink).
    pub file: PathBuf,
    pub reason: String,
    /// Since when, in seconds since the Unix epoch.
    pub at: u64,
}

/// The plugins as `sluice plugins` shows them.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Status {
    /// In chain order.
    pub plugins: Vec<PluginStatus>,
    pub rejected: Vec<Rejected>,
    /// By name.
    pub ignored: Vec<Ignored>,
    /// Reloads that changed the chain.
    pub reloads: u64,
    /// Components compiled by Cranelift since start (artifact cache misses).
    pub compiles: u64,
    /// Cached artifacts refused since start (failed their checks or their
    /// authentication; recompiled instead).
    pub cache_refused: u64,
    /// Required plugins that are not loaded: the hooks they served refuse
    /// every client.
    pub required_missing: Vec<String>,
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
    last: Last,
}

enum Last {
    /// Loaded, or tried.
    Reload {
        last: LastReload,
        /// For a failure: the file's hash and the settings it failed with,
        /// so the same failure is not compiled and logged again at every
        /// reload.
        failed: Option<Box<(String, Settings)>>,
    },
    /// Not tried, for this reason, since `at`.
    Ignored { reason: String, at: u64 },
}

/// Why a file is ignored, as listed.
const DISABLED: &str = "disabled in the configuration (enabled = false)";

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

    /// The set at start: every plugin must load (a disabled one is
    /// ignored; a `NAME.wasm` that is not a readable file fails the start).
    pub(super) async fn initial(&self, config: &Config) -> Result<PluginSet, PluginsError> {
        let mut list = Vec::new();
        let entries = scan(&self.dir)?;
        for Entry { name, path, usable } in &entries {
            let Some(settings) = settings_of(config, name) else {
                self.ignore(name, path, DISABLED);
                continue;
            };
            if let Err(unusable) = usable {
                return Err(unreadable(path, unusable).into());
            }
            let plugin = Plugin::load(&self.runtime, name, path, settings).await?;
            self.record(name, path, ReloadOutcome::Loaded, None);
            list.push(Arc::new(plugin));
        }
        for (name, own) in &config.plugin {
            let loaded = list.iter().any(|p| *p.name == **name);
            if own.required == Some(true) && !loaded {
                return Err(PluginsError::RequiredMissing {
                    name: name.clone(),
                    dir: self.dir.clone(),
                });
            }
            if !entries.iter().any(|e| e.name == *name) {
                tracing::warn!(
                    "[plugin.{name}] is configured but there is no {name}.wasm in {}",
                    self.dir.display()
                );
            }
        }
        Ok(PluginSet::new(list, Vec::new()))
    }

    /// Brings `plugins` in line with the directory and `config` (or the
    /// configuration last given). Returns whether the chain changed.
    pub(super) async fn reload(&self, plugins: &Plugins, config: Option<Config>) -> bool {
        let mut current_config = self.config.lock().await;
        if let Some(config) = config {
            *current_config = config;
        }
        let config = &*current_config;
        let entries = match scan(&self.dir) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::error!("plugin reload skipped; the chain is unchanged: {e}");
                return false;
            }
        };
        let current = plugins.set();
        let mut list = Vec::new();
        let mut changed = false;
        for Entry { name, path, usable } in &entries {
            let old = current.get(name);
            let Some(settings) = settings_of(config, name) else {
                self.ignore(name, path, DISABLED);
                changed |= old.is_some();
                continue;
            };
            if let Err(unusable) = usable {
                match old {
                    Some(old) => {
                        self.unusable_version(name, path, unusable, old);
                        list.push(old.clone());
                    }
                    None => self.ignore(name, path, &unusable.to_string()),
                }
                continue;
            }
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
        self.forget_missing(&entries);
        let missing = Missing::after(&current, &list, config);
        for m in missing.iter().filter(|m| !current.missing.contains(m)) {
            tracing::error!(
                plugin = %m.name,
                "required plugin is gone: the hooks it served ({}) refuse every client until it is back \
                 (or [plugin.{}] required = false)",
                m.hooks.iter().map(Hook::name).collect::<Vec<_>>().join(", "),
                m.name
            );
        }
        changed |= missing != current.missing;
        if !changed {
            return false;
        }
        let set = PluginSet::new(list, missing);
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
        let record = Record {
            file: path.to_owned(),
            last: Last::Reload {
                last: LastReload { outcome, at: now() },
                failed: failed.map(Box::new),
            },
        };
        self.results().insert(name.to_owned(), record);
    }

    /// Lists `name` as ignored for `reason`, and logs it (a disabled
    /// plugin at info, anything else at warn), unless it already is.
    fn ignore(&self, name: &str, path: &Path, reason: &str) {
        let mut results = self.results();
        let same = results.get(name).is_some_and(|r| {
            r.file == path && matches!(&r.last, Last::Ignored { reason: was, .. } if was == reason)
        });
        if same {
            return;
        }
        if reason == DISABLED {
            tracing::info!(plugin = %name, file = %path.display(), "plugin disabled in the configuration; not loaded");
        } else {
            tracing::warn!(plugin = %name, file = %path.display(), "plugin file ignored: {reason}");
        }
        let last = Last::Ignored {
            reason: reason.to_owned(),
            at: now(),
        };
        results.insert(
            name.to_owned(),
            Record {
                file: path.to_owned(),
                last,
            },
        );
    }

    /// Records (and logs, once) that loaded plugin `name`'s file is now
    /// `unusable`: a rejected new version, `old` keeps running.
    fn unusable_version(&self, name: &str, path: &Path, unusable: &Unusable, old: &Plugin) {
        let error = unreadable(path, unusable);
        let outcome = ReloadOutcome::Failed(error.to_string());
        let same = self.results().get(name).is_some_and(
            |r| matches!(&r.last, Last::Reload { last, .. } if last.outcome == outcome),
        );
        if !same {
            tracing::error!(
                plugin = %name,
                "new version rejected; the loaded version (sha256 {}) keeps running: {error}",
                old.hash
            );
            self.record(name, path, outcome, None);
        }
    }

    /// Whether the last attempt to load `name` failed, or its file was
    /// ignored.
    fn last_failed(&self, name: &str) -> bool {
        self.results().get(name).is_some_and(|r| match &r.last {
            Last::Reload { last, .. } => matches!(last.outcome, ReloadOutcome::Failed(_)),
            Last::Ignored { .. } => true,
        })
    }

    /// Whether these bytes and settings of `name` already failed to load.
    fn failed_before(&self, name: &str, hash: &str, settings: &Settings) -> bool {
        self.results().get(name).is_some_and(|r| {
            matches!(&r.last, Last::Reload { failed: Some(f), .. } if f.0 == hash && f.1 == *settings)
        })
    }

    /// Drops the results of files no longer in the directory.
    fn forget_missing(&self, entries: &[Entry]) {
        self.results()
            .retain(|name, _| entries.iter().any(|e| e.name == *name));
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
                let per_hook = s.hooks();
                let latency = Latency::merged(per_hook.iter().map(|h| &h.latency));
                PluginStatus {
                    name: p.name.to_string(),
                    file: p.file.clone(),
                    sha256: p.hash.clone(),
                    hooks: p.hooks().iter().map(Hook::name).collect(),
                    calls: s.calls.load(Ordering::Relaxed),
                    errors: s.errors.load(Ordering::Relaxed),
                    failures: s.failures.load(Ordering::Relaxed),
                    traps: s.traps.load(Ordering::Relaxed),
                    deadlines: s.deadlines.load(Ordering::Relaxed),
                    out_of_fuel: s.out_of_fuel.load(Ordering::Relaxed),
                    busy: s.busy.load(Ordering::Relaxed),
                    invalid: s.invalid.load(Ordering::Relaxed),
                    fuel_used: s.fuel_used.load(Ordering::Relaxed),
                    instances: p.instances(),
                    published: p.shared.publisher.published.load(Ordering::Relaxed),
                    publish_refused: p.shared.publisher.refused.load(Ordering::Relaxed),
                    publications_denied: p.shared.publisher.denied.load(Ordering::Relaxed),
                    p50_micros: latency.quantile_micros(0.5),
                    p99_micros: latency.quantile_micros(0.99),
                    per_hook,
                    last_reload: results.get(&*p.name).and_then(|r| match &r.last {
                        Last::Reload { last, .. } => Some(last.clone()),
                        Last::Ignored { .. } => None,
                    }),
                }
            })
            .collect();
        let mut rejected = Vec::new();
        let mut ignored = Vec::new();
        for (name, r) in results.iter().filter(|(name, _)| set.get(name).is_none()) {
            match &r.last {
                Last::Reload { last, .. } if matches!(last.outcome, ReloadOutcome::Failed(_)) => {
                    rejected.push(Rejected {
                        name: name.clone(),
                        file: r.file.clone(),
                        last_reload: last.clone(),
                    });
                }
                Last::Reload { .. } => {}
                Last::Ignored { reason, at } => ignored.push(Ignored {
                    name: name.clone(),
                    file: r.file.clone(),
                    reason: reason.clone(),
                    at: *at,
                }),
            }
        }
        Status {
            plugins: loaded,
            rejected,
            ignored,
            reloads: self.reloads.load(Ordering::Relaxed),
            compiles: self.runtime.compiles(),
            cache_refused: self.runtime.cache_refused(),
            required_missing: plugins
                .set()
                .missing
                .iter()
                .map(|m| m.name.to_string())
                .collect(),
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

    /// Every loaded plugin with its counters, the files that failed and
    /// the files ignored.
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

/// The error of loading `path`, which is `unusable`.
fn unreadable(path: &Path, unusable: &Unusable) -> LoadError {
    LoadError::Read {
        path: path.to_owned(),
        source: std::io::Error::other(unusable.clone()),
    }
}

/// Seconds since the Unix epoch.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
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
        kv_cluster: own.kv_cluster.unwrap_or(false),
        publish_per_sec: own.publish_per_sec.unwrap_or(d.publish_per_sec),
        mountpoint: own.mountpoint.as_deref().unwrap_or_default().into(),
        http_allow: own.http_allow.clone(),
        http_timeout: Duration::from_millis(u64::from(own.http_timeout_ms.unwrap_or(1000))),
        http_max_response: own.http_max_response_bytes.unwrap_or(1 << 20),
        http_ca_file: own.http_ca_file.clone(),
        required: own.required,
        config: own
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect(),
    }
}
