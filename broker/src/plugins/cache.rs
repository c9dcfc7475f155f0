//! The compiled-artifact cache: Cranelift output of each plugin, on disk,
//! keyed by the SHA-256 of the `.wasm` and the engine's compatibility hash,
//! so that a restart (or a reload of an unchanged file) costs no compile.
//!
//! Deserializing an artifact runs native code produced by whoever wrote it,
//! so only artifacts this broker's user wrote are ever loaded:
//!
//! - The directory is outside the plugin directory by default
//!   ([`default_dir`]), created mode 0700, and refused (the broker then runs
//!   without a cache) when it is a symbolic link, is not owned by the
//!   broker's effective uid, or is writable by group or others. It is opened
//!   once and every file is reached through that handle (`openat`), so
//!   renaming or replacing the path later changes nothing.
//! - Files are opened without following symbolic links and must be regular
//!   files owned by the broker's uid and not writable by group or others.
//! - `key` in the directory holds 32 random bytes (mode 0600, created
//!   atomically by the first broker that uses the directory). Every
//!   artifact carries an HMAC-SHA256 under that key over the engine's
//!   compatibility hash, the `.wasm`'s SHA-256 and the artifact bytes, and
//!   is deserialized only after the tag verified (in constant time). An
//!   entry that fails any check is a cache miss: it is logged at warn level
//!   with its file name, counted, recompiled and overwritten — never loaded.

use std::ffi::OsString;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use rustix::fs::{AtFlags, Mode, OFlags};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

type HmacSha256 = Hmac<Sha256>;

/// First bytes of an artifact file (version 2: HMAC-authenticated).
const MAGIC: &[u8; 8] = b"SLUICE2\n";
/// Length of an artifact's HMAC-SHA256 tag, after [`MAGIC`].
const TAG_LEN: usize = 32;
/// The secret key's file name and length.
const KEY_FILE: &str = "key";
const KEY_LEN: usize = 32;
/// Prefix of files being written (renamed or linked into place when
/// complete).
const TMP_PREFIX: &str = ".tmp-";
/// Temporary files older than this are left-overs of a crash: pruned.
const STALE_TMP: Duration = Duration::from_secs(3600);
/// Domain separation for the artifact tag.
const TAG_CONTEXT: &[u8] = b"sluice plugin artifact v2\0";

/// Artifacts kept; beyond this the least recently used are deleted (hot
/// reloads of a plugin under development would otherwise fill the disk).
const MAX_ARTIFACTS: usize = 64;

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Feeds a `Hash` value into SHA-256, for a stable key of the engine's
/// compatibility hash.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        0
    }
}

/// Where compiled plugins are cached when `plugins.cache_dir` is not set:
/// `$CACHE_DIRECTORY/plugins` (systemd's `CacheDirectory=`), else
/// `$XDG_CACHE_HOME/sluice/plugins`, else `$HOME/.cache/sluice/plugins`,
/// else `sluice-UID/plugins` in the system's temporary directory. Never
/// inside the plugin directory.
pub fn default_dir() -> PathBuf {
    default_dir_from(
        |name| std::env::var_os(name),
        rustix::process::geteuid().as_raw(),
        &std::env::temp_dir(),
    )
}

/// [`default_dir`] with its inputs given (relative or empty variables are
/// ignored, as the XDG specification says).
fn default_dir_from(env: impl Fn(&str) -> Option<OsString>, uid: u32, temp: &Path) -> PathBuf {
    let absolute = |p: PathBuf| (p.is_absolute() && p != Path::new("/")).then_some(p);
    let var = |name: &str| env(name).map(PathBuf::from).and_then(absolute);
    // systemd may list several directories, separated by colons.
    let systemd = env("CACHE_DIRECTORY").and_then(|v| {
        let first = v.to_str()?.split(':').next()?.to_owned();
        absolute(PathBuf::from(first))
    });
    if let Some(dir) = systemd {
        dir.join("plugins")
    } else if let Some(dir) = var("XDG_CACHE_HOME") {
        dir.join("sluice/plugins")
    } else if let Some(home) = var("HOME") {
        home.join(".cache/sluice/plugins")
    } else {
        temp.join(format!("sluice-{uid}")).join("plugins")
    }
}

/// The cache directory to use: `configured`, or [`default_dir`]. A
/// configured directory inside `plugin_dir` is allowed (its entries are
/// authenticated) but noted, since whoever writes the plugin directory can
/// then delete or replace it (costing recompiles).
pub fn resolve_dir(configured: Option<PathBuf>, plugin_dir: &Path) -> PathBuf {
    let Some(dir) = configured else {
        return default_dir();
    };
    let full = |p: &Path| {
        p.canonicalize()
            .or_else(|_| std::path::absolute(p))
            .unwrap_or_else(|_| p.to_owned())
    };
    if full(&dir).starts_with(full(plugin_dir)) {
        tracing::info!(
            "plugins.cache_dir {} is inside plugins.dir: its entries are authenticated, \
             but whoever can write the plugin directory can remove or replace the cache, \
             forcing recompiles",
            dir.display()
        );
    }
    dir
}

/// What makes a directory or file unfit to hold artifacts the broker may
/// run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unfit {
    #[error("is a symbolic link")]
    Symlink,
    #[error("is not a {0}")]
    WrongType(&'static str),
    #[error("is owned by uid {owner}, not by the broker's uid {uid}")]
    Owner { owner: u32, uid: u32 },
    #[error("is writable by group or others (mode {mode:04o})")]
    Writable { mode: u32 },
    #[error("is readable by group or others (mode {mode:04o}); delete it to make a new key")]
    Readable { mode: u32 },
    #[error("holds {0} bytes, not {KEY_LEN}; delete it to make a new key")]
    KeyLength(usize),
}

/// Why an artifact file's contents are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unauthentic {
    #[error("no Sluice artifact header (written by another version?)")]
    Header,
    #[error("truncated")]
    Truncated,
    #[error("its authentication tag does not match (not written with this cache's key)")]
    Tag,
}

/// Why the cache directory, or one of its entries, is not used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} {unfit}", path.display())]
    Unfit { path: PathBuf, unfit: Unfit },
    #[error("{} is refused: {why}", path.display())]
    Unauthentic { path: PathBuf, why: Unauthentic },
    #[error("cannot read random bytes for the cache key from /dev/urandom: {0}")]
    Random(#[source] std::io::Error),
}

/// What is wanted of a directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// The cache directory.
    Dir,
    /// An artifact.
    File,
    /// The key: a file no one else may read either.
    Secret,
}

/// The facts [`check`] looks at, from a `stat`.
#[derive(Debug, Clone, Copy)]
struct Facts {
    is_dir: bool,
    is_file: bool,
    is_symlink: bool,
    owner: u32,
    mode: u32,
}

impl From<&fs::Metadata> for Facts {
    fn from(m: &fs::Metadata) -> Self {
        let t = m.file_type();
        Facts {
            is_dir: t.is_dir(),
            is_file: t.is_file(),
            is_symlink: t.is_symlink(),
            owner: m.uid(),
            mode: m.mode() & 0o7777,
        }
    }
}

/// Whether `facts` describe what `want` asks for, owned by `uid`.
fn check(facts: Facts, want: Want, uid: u32) -> Result<(), Unfit> {
    if facts.is_symlink {
        return Err(Unfit::Symlink);
    }
    match want {
        Want::Dir if !facts.is_dir => return Err(Unfit::WrongType("directory")),
        Want::File | Want::Secret if !facts.is_file => {
            return Err(Unfit::WrongType("regular file"));
        }
        _ => {}
    }
    if facts.owner != uid {
        return Err(Unfit::Owner {
            owner: facts.owner,
            uid,
        });
    }
    if facts.mode & 0o022 != 0 {
        return Err(Unfit::Writable { mode: facts.mode });
    }
    if want == Want::Secret && facts.mode & 0o077 != 0 {
        return Err(Unfit::Readable { mode: facts.mode });
    }
    Ok(())
}

/// The secret the artifacts are authenticated with.
struct Key([u8; KEY_LEN]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

/// What an artifact's tag covers: the engine it was compiled for, the
/// `.wasm` it was compiled from, and its bytes.
fn mac(key: &Key, engine_hash: &[u8; 32], wasm_hash: &str, body: &[u8]) -> HmacSha256 {
    // HMAC pads a key shorter than the hash's block to the block with
    // zeros: padding it here is the same HMAC, with no fallible call.
    let mut block = hmac::digest::Key::<HmacSha256>::default();
    block[..KEY_LEN].copy_from_slice(&key.0);
    let mut mac = <HmacSha256 as hmac::digest::KeyInit>::new(&block);
    mac.update(TAG_CONTEXT);
    mac.update(engine_hash);
    mac.update(&(wasm_hash.len() as u64).to_be_bytes());
    mac.update(wasm_hash.as_bytes());
    mac.update(body);
    mac
}

/// An artifact file's contents: header, tag, body.
fn encode(key: &Key, engine_hash: &[u8; 32], wasm_hash: &str, body: &[u8]) -> Vec<u8> {
    let tag = mac(key, engine_hash, wasm_hash, body)
        .finalize()
        .into_bytes();
    let mut file = Vec::with_capacity(MAGIC.len() + TAG_LEN + body.len());
    file.extend_from_slice(MAGIC);
    file.extend_from_slice(&tag);
    file.extend_from_slice(body);
    file
}

/// The body of an artifact file, once its tag is verified.
fn authenticate<'a>(
    key: &Key,
    engine_hash: &[u8; 32],
    wasm_hash: &str,
    file: &'a [u8],
) -> Result<&'a [u8], Unauthentic> {
    let rest = file
        .strip_prefix(MAGIC.as_slice())
        .ok_or(Unauthentic::Header)?;
    if rest.len() < TAG_LEN {
        return Err(Unauthentic::Truncated);
    }
    let (tag, body) = rest.split_at(TAG_LEN);
    mac(key, engine_hash, wasm_hash, body)
        .verify_slice(tag)
        .map_err(|_| Unauthentic::Tag)?;
    Ok(body)
}

/// The cache directory, open, with its key.
#[derive(Debug)]
struct Store {
    path: PathBuf,
    /// The directory, opened once: every entry is reached through it.
    dir: fs::File,
    key: Key,
    uid: u32,
}

/// Flags for opening an existing entry: no symbolic links, no blocking
/// on a FIFO before it can be refused.
fn read_flags() -> OFlags {
    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC
}

/// Flags for creating a new entry under a fresh name.
fn create_flags() -> OFlags {
    OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

fn tmp_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{TMP_PREFIX}{}-{n}", std::process::id())
}

impl Store {
    /// Creates (0700, parents too) and opens the directory at `path`, and
    /// reads or creates its key.
    fn open(path: &Path) -> Result<Store, CacheError> {
        let uid = rustix::process::geteuid().as_raw();
        let io = |source: std::io::Error| CacheError::Io {
            path: path.to_owned(),
            source,
        };
        let unfit = |unfit| CacheError::Unfit {
            path: path.to_owned(),
            unfit,
        };
        // A symbolic link is refused before anything is created through it.
        match fs::symlink_metadata(path) {
            Ok(m) => check(Facts::from(&m), Want::Dir, uid).map_err(unfit)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .map_err(io)?,
            Err(e) => return Err(io(e)),
        }
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let dir = match rustix::fs::open(path, flags, Mode::empty()) {
            Ok(fd) => fs::File::from(fd),
            // Replaced by a link since it was checked.
            Err(rustix::io::Errno::LOOP) => return Err(unfit(Unfit::Symlink)),
            Err(rustix::io::Errno::NOTDIR) => return Err(unfit(Unfit::WrongType("directory"))),
            Err(e) => return Err(io(e.into())),
        };
        // What counts is what was opened.
        let meta = dir.metadata().map_err(io)?;
        check(Facts::from(&meta), Want::Dir, uid).map_err(unfit)?;
        let key = Self::key(&dir, path, uid)?;
        Ok(Store {
            path: path.to_owned(),
            dir,
            key,
            uid,
        })
    }

    /// Reads `key`, creating it first if it does not exist.
    fn key(dir: &fs::File, path: &Path, uid: u32) -> Result<Key, CacheError> {
        let key_path = path.join(KEY_FILE);
        let bytes = match open_checked(dir, &key_path, KEY_FILE, Want::Secret, uid)? {
            Some(file) => read_all(file, &key_path)?,
            None => {
                create_key(dir, path)?;
                // Whoever linked it first, this broker or another one.
                open_checked(dir, &key_path, KEY_FILE, Want::Secret, uid)?
                    .map(|file| read_all(file, &key_path))
                    .transpose()?
                    .unwrap_or_default()
            }
        };
        let key: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| CacheError::Unfit {
            path: key_path.clone(),
            unfit: Unfit::KeyLength(bytes.len()),
        })?;
        Ok(Key(key))
    }

    /// `name` opened, if it exists and is fit to be trusted.
    fn entry(&self, name: &str) -> Result<Option<fs::File>, CacheError> {
        open_checked(&self.dir, &self.path.join(name), name, Want::File, self.uid)
    }

    /// Writes `contents` as `name`: to a fresh temporary name (0600), then
    /// renamed over it.
    fn write(&self, name: &str, contents: &[u8]) -> Result<(), CacheError> {
        let path = self.path.join(name);
        let io = |source: std::io::Error| CacheError::Io {
            path: path.clone(),
            source,
        };
        let tmp = tmp_name();
        let written = write_new(&self.dir, &tmp, contents).and_then(|()| {
            rustix::fs::renameat(&self.dir, tmp.as_str(), &self.dir, name).map_err(Into::into)
        });
        if written.is_err() {
            let _ = rustix::fs::unlinkat(&self.dir, tmp.as_str(), AtFlags::empty());
        }
        written.map_err(io)
    }

    /// Deletes the least recently used artifacts beyond `keep`, and
    /// temporary files a crash left behind.
    fn prune(&self, keep: usize) {
        let Ok(entries) = rustix::fs::Dir::read_from(&self.dir) else {
            return;
        };
        let now = SystemTime::now();
        let mut artifacts: Vec<(SystemTime, String)> = Vec::new();
        for entry in entries.filter_map(Result::ok) {
            let Ok(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let artifact = name.ends_with(".cwasm");
            let tmp = name.starts_with(TMP_PREFIX);
            if !artifact && !tmp {
                continue;
            }
            let modified =
                rustix::fs::openat(&self.dir, name.as_str(), read_flags(), Mode::empty())
                    .map(fs::File::from)
                    .ok()
                    .and_then(|f| f.metadata().ok()?.modified().ok());
            let Some(modified) = modified else {
                continue;
            };
            if artifact {
                artifacts.push((modified, name));
            } else if now
                .duration_since(modified)
                .is_ok_and(|age| age > STALE_TMP)
            {
                self.remove(&name);
            }
        }
        if artifacts.len() <= keep {
            return;
        }
        artifacts.sort();
        for (_, name) in &artifacts[..artifacts.len() - keep] {
            self.remove(name);
        }
    }

    fn remove(&self, name: &str) {
        if let Err(e) = rustix::fs::unlinkat(&self.dir, name, AtFlags::empty()) {
            tracing::debug!("cannot prune {}: {e}", self.path.join(name).display());
        }
    }
}

/// Opens `name` in `dir` without following a link, and checks what was
/// opened; `None` if it does not exist.
fn open_checked(
    dir: &fs::File,
    path: &Path,
    name: &str,
    want: Want,
    uid: u32,
) -> Result<Option<fs::File>, CacheError> {
    let unfit = |unfit| CacheError::Unfit {
        path: path.to_owned(),
        unfit,
    };
    let file = match rustix::fs::openat(dir, name, read_flags(), Mode::empty()) {
        Ok(fd) => fs::File::from(fd),
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(rustix::io::Errno::LOOP) => return Err(unfit(Unfit::Symlink)),
        Err(e) => {
            return Err(CacheError::Io {
                path: path.to_owned(),
                source: e.into(),
            });
        }
    };
    let meta = file.metadata().map_err(|source| CacheError::Io {
        path: path.to_owned(),
        source,
    })?;
    check(Facts::from(&meta), want, uid).map_err(unfit)?;
    Ok(Some(file))
}

fn read_all(mut file: fs::File, path: &Path) -> Result<Vec<u8>, CacheError> {
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|source| CacheError::Io {
            path: path.to_owned(),
            source,
        })?;
    Ok(bytes)
}

/// Creates `name` in `dir` (it must not exist), mode 0600, with
/// `contents`, synced.
fn write_new(dir: &fs::File, name: &str, contents: &[u8]) -> std::io::Result<()> {
    let fd = rustix::fs::openat(dir, name, create_flags(), Mode::RUSR | Mode::WUSR)?;
    let mut file = fs::File::from(fd);
    file.write_all(contents)?;
    file.sync_all()
}

/// Makes a new key and links it into place as `key`, unless another broker
/// did first: the key appears whole or not at all.
fn create_key(dir: &fs::File, path: &Path) -> Result<(), CacheError> {
    let key = random_key()?;
    let tmp = tmp_name();
    let linked = write_new(dir, &tmp, &key.0).and_then(|()| {
        match rustix::fs::linkat(dir, tmp.as_str(), dir, KEY_FILE, AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(()),
            Err(e) => Err(e.into()),
        }
    });
    let _ = rustix::fs::unlinkat(dir, tmp.as_str(), AtFlags::empty());
    linked.map_err(|source| CacheError::Io {
        path: path.join(KEY_FILE),
        source,
    })
}

/// 32 bytes from the kernel's random number generator.
fn random_key() -> Result<Key, CacheError> {
    let mut file = fs::File::open("/dev/urandom").map_err(CacheError::Random)?;
    let is_device = file
        .metadata()
        .map_err(CacheError::Random)?
        .file_type()
        .is_char_device();
    if !is_device {
        return Err(CacheError::Random(std::io::Error::other(
            "/dev/urandom is not a character device",
        )));
    }
    let mut key = [0; KEY_LEN];
    file.read_exact(&mut key).map_err(CacheError::Random)?;
    Ok(Key(key))
}

/// The artifact cache of one engine.
#[derive(Debug)]
pub struct ArtifactCache {
    /// `None`: caching off (not configured, or the directory was refused).
    store: Option<Store>,
    /// SHA-256 of the engine's compatibility hash.
    engine_hash: [u8; 32],
    /// Its first 16 hex digits, in file names.
    engine_key: String,
    /// Entries that failed a check (and were recompiled).
    refused: AtomicU64,
}

impl ArtifactCache {
    /// A cache in `dir` (created if needed); `None` disables caching. A
    /// directory that cannot be used is logged and caching is off: a cache
    /// only ever saves time, so it never stops the broker.
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> Self {
        let mut hasher = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_hash: [u8; 32] = hasher.0.finalize().into();
        let engine_key = hex(&engine_hash[..8]);
        let store = dir.and_then(|dir| match Store::open(&dir) {
            Ok(store) => {
                tracing::info!("compiled plugins are cached in {}", dir.display());
                Some(store)
            }
            Err(e) => {
                tracing::warn!(
                    "not caching compiled plugins: {e}; every plugin is compiled at load \
                     (set plugins.cache_dir to a directory only the broker's user can write)"
                );
                None
            }
        });
        ArtifactCache {
            store,
            engine_hash,
            engine_key,
            refused: AtomicU64::new(0),
        }
    }

    /// Entries refused so far (they failed a check and were recompiled).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// The artifact's file name; `None` for a hash that is not hex (it
    /// always is: it comes from [`sha256_hex`]).
    fn name(&self, wasm_hash: &str) -> Option<String> {
        (!wasm_hash.is_empty() && wasm_hash.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| format!("{wasm_hash}-{}.cwasm", self.engine_key))
    }

    fn refuse(&self, e: &CacheError) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        tracing::warn!("ignoring cached plugin artifact: {e}; compiling it again");
    }

    /// The cached component for `wasm_hash`, if an authentic one is cached.
    pub fn load(&self, engine: &Engine, wasm_hash: &str) -> Option<Component> {
        let store = self.store.as_ref()?;
        let name = self.name(wasm_hash)?;
        let path = store.path.join(&name);
        let file = match store.entry(&name) {
            Ok(Some(file)) => file,
            Ok(None) => return None,
            Err(e) => {
                self.refuse(&e);
                return None;
            }
        };
        // Marks it recently used, for pruning (we own it: checked).
        let _ = file.set_modified(SystemTime::now());
        let bytes = match read_all(file, &path) {
            Ok(bytes) => bytes,
            Err(e) => {
                self.refuse(&e);
                return None;
            }
        };
        let body = match authenticate(&store.key, &self.engine_hash, wasm_hash, &bytes) {
            Ok(body) => body,
            Err(why) => {
                self.refuse(&CacheError::Unauthentic { path, why });
                return None;
            }
        };
        // SAFETY: `Component::deserialize` requires bytes produced by
        // `Component::serialize` (of a compatible engine; wasmtime checks
        // that itself and returns an error otherwise). `body` is held in
        // memory, so it cannot change after the check, and its HMAC-SHA256
        // tag verified under the cache's 32-byte secret key, over this
        // engine's compatibility hash, this `.wasm`'s SHA-256 and these
        // bytes. Only a holder of the key can produce such a tag: the key
        // is a regular file owned by the broker's uid with no group or
        // other permission bits, in a directory owned by that uid and
        // writable by no one else, both opened without following links —
        // so only processes of this uid (or root) can read it, and Sluice
        // tags nothing but what `ArtifactCache::store` got from
        // `Component::serialize`. (Root, or another process of the
        // broker's uid, could forge a tag; both can also rewrite the
        // broker itself.)
        #[allow(unsafe_code, reason = "deserializing our own, authenticated artifact")]
        let component = unsafe { Component::deserialize(engine, body) };
        match component {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!("ignoring cached plugin artifact {}: {e}", path.display());
                None
            }
        }
    }

    /// Stores the compiled form of `component`. Failures only cost a
    /// recompile next time, so they are logged, not returned.
    pub fn store(&self, wasm_hash: &str, component: &Component) {
        let Some(store) = &self.store else {
            return;
        };
        let Some(name) = self.name(wasm_hash) else {
            return;
        };
        let body = match component.serialize() {
            Ok(body) => body,
            Err(e) => {
                tracing::warn!("cannot serialize a compiled plugin for the cache: {e}");
                return;
            }
        };
        let contents = encode(&store.key, &self.engine_hash, wasm_hash, &body);
        if let Err(e) = store.write(&name, &contents) {
            tracing::warn!("cannot cache a compiled plugin: {e}");
        }
        store.prune(MAX_ARTIFACTS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENGINE: [u8; 32] = [7; 32];
    const WASM: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sluice-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn the_padded_key_is_the_plain_hmac_key() {
        let key = Key([9; KEY_LEN]);
        let plain = <HmacSha256 as Mac>::new_from_slice(&key.0)
            .expect("any length")
            .chain_update(TAG_CONTEXT)
            .chain_update(ENGINE)
            .chain_update((WASM.len() as u64).to_be_bytes())
            .chain_update(WASM)
            .chain_update(b"body")
            .finalize()
            .into_bytes();
        assert_eq!(
            mac(&key, &ENGINE, WASM, b"body").finalize().into_bytes(),
            plain
        );
    }

    #[test]
    fn authentic_artifacts_verify_and_tampered_ones_do_not() {
        let key = Key([1; KEY_LEN]);
        let file = encode(&key, &ENGINE, WASM, b"compiled");
        assert_eq!(
            authenticate(&key, &ENGINE, WASM, &file),
            Ok(&b"compiled"[..])
        );

        let mut flipped = file.clone();
        if let Some(last) = flipped.last_mut() {
            *last ^= 1;
        }
        assert_eq!(
            authenticate(&key, &ENGINE, WASM, &flipped),
            Err(Unauthentic::Tag)
        );
        // Another key, another engine, another `.wasm`: all refused.
        assert_eq!(
            authenticate(&Key([2; KEY_LEN]), &ENGINE, WASM, &file),
            Err(Unauthentic::Tag)
        );
        assert_eq!(
            authenticate(&key, &[8; 32], WASM, &file),
            Err(Unauthentic::Tag)
        );
        let other = sha256_hex(b"other");
        assert_eq!(
            authenticate(&key, &ENGINE, &other, &file),
            Err(Unauthentic::Tag)
        );
        // The version 1 format: a self-attested checksum.
        let mut v1 = b"SLUICE1\n".to_vec();
        v1.extend_from_slice(&Sha256::digest(b"compiled"));
        v1.extend_from_slice(b"compiled");
        assert_eq!(
            authenticate(&key, &ENGINE, WASM, &v1),
            Err(Unauthentic::Header)
        );
        assert_eq!(
            authenticate(&key, &ENGINE, WASM, b"\0asm...."),
            Err(Unauthentic::Header)
        );
        assert_eq!(
            authenticate(&key, &ENGINE, WASM, MAGIC),
            Err(Unauthentic::Truncated)
        );
    }

    fn facts(is_dir: bool, owner: u32, mode: u32) -> Facts {
        Facts {
            is_dir,
            is_file: !is_dir,
            is_symlink: false,
            owner,
            mode,
        }
    }

    #[test]
    fn only_private_entries_of_the_broker_uid_are_fit() {
        assert_eq!(check(facts(true, 5, 0o700), Want::Dir, 5), Ok(()));
        assert_eq!(check(facts(true, 5, 0o755), Want::Dir, 5), Ok(()));
        assert_eq!(
            check(facts(true, 5, 0o770), Want::Dir, 5),
            Err(Unfit::Writable { mode: 0o770 })
        );
        assert_eq!(
            check(facts(true, 5, 0o1777), Want::Dir, 5),
            Err(Unfit::Writable { mode: 0o1777 })
        );
        assert_eq!(
            check(facts(true, 6, 0o700), Want::Dir, 5),
            Err(Unfit::Owner { owner: 6, uid: 5 })
        );
        assert_eq!(
            check(facts(false, 5, 0o700), Want::Dir, 5),
            Err(Unfit::WrongType("directory"))
        );
        assert_eq!(
            check(facts(true, 5, 0o600), Want::File, 5),
            Err(Unfit::WrongType("regular file"))
        );
        let mut link = facts(true, 5, 0o777);
        link.is_symlink = true;
        assert_eq!(check(link, Want::Dir, 5), Err(Unfit::Symlink));

        assert_eq!(check(facts(false, 5, 0o644), Want::File, 5), Ok(()));
        assert_eq!(
            check(facts(false, 5, 0o664), Want::File, 5),
            Err(Unfit::Writable { mode: 0o664 })
        );
        assert_eq!(check(facts(false, 5, 0o600), Want::Secret, 5), Ok(()));
        assert_eq!(
            check(facts(false, 5, 0o640), Want::Secret, 5),
            Err(Unfit::Readable { mode: 0o640 })
        );
    }

    #[test]
    fn default_dir_is_the_user_cache_or_a_private_temporary_one() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        let tmp = Path::new("/tmp");
        let dir = |pairs| default_dir_from(env(pairs), 1000, tmp);
        assert_eq!(
            dir(&[("HOME", "/home/u"), ("XDG_CACHE_HOME", "/xdg")]),
            Path::new("/xdg/sluice/plugins")
        );
        assert_eq!(
            dir(&[("HOME", "/home/u"), ("XDG_CACHE_HOME", "relative")]),
            Path::new("/home/u/.cache/sluice/plugins")
        );
        assert_eq!(
            dir(&[
                ("HOME", "/home/u"),
                ("CACHE_DIRECTORY", "/var/cache/sluice:/x")
            ]),
            Path::new("/var/cache/sluice/plugins")
        );
        assert_eq!(dir(&[]), Path::new("/tmp/sluice-1000/plugins"));
        assert_eq!(
            dir(&[("HOME", "/"), ("XDG_CACHE_HOME", "")]),
            Path::new("/tmp/sluice-1000/plugins")
        );
    }

    #[test]
    fn the_store_is_private_and_keeps_its_key() {
        let root = scratch("store");
        let path = root.join("a/b");
        let store = Store::open(&path).expect("open");
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&root.join("a")), 0o700);
        assert_eq!(mode(&path), 0o700);
        assert_eq!(mode(&path.join(KEY_FILE)), 0o600);
        let again = Store::open(&path).expect("reopen");
        assert_eq!(store.key.0, again.key.0);

        store.write("x.cwasm", b"bytes").expect("write");
        assert_eq!(mode(&path.join("x.cwasm")), 0o600);
        let read = store.entry("x.cwasm").expect("checked").expect("exists");
        assert_eq!(read_all(read, &path).expect("read"), b"bytes");
        assert!(store.entry("missing.cwasm").expect("checked").is_none());

        // A link in the directory is never followed.
        std::os::unix::fs::symlink(path.join("x.cwasm"), path.join("y.cwasm")).expect("link");
        assert!(matches!(
            store.entry("y.cwasm"),
            Err(CacheError::Unfit {
                unfit: Unfit::Symlink,
                ..
            })
        ));
        // Nor is a linked directory.
        std::os::unix::fs::symlink(&path, root.join("link")).expect("link");
        assert!(matches!(
            Store::open(&root.join("link")),
            Err(CacheError::Unfit {
                unfit: Unfit::Symlink,
                ..
            })
        ));
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn a_key_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let path = scratch("open-key");
        drop(Store::open(&path).expect("open"));
        fs::set_permissions(path.join(KEY_FILE), fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(
            Store::open(&path),
            Err(CacheError::Unfit {
                unfit: Unfit::Readable { mode: 0o644 },
                ..
            })
        ));
        let _ = fs::remove_dir_all(&path);
    }

    #[test]
    fn pruning_keeps_the_most_recently_used() {
        let path = scratch("prune");
        let store = Store::open(&path).expect("open");
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        for i in 0..5u64 {
            store
                .write(&format!("{i}.cwasm"), b"x")
                .expect("write artifact");
            let file = fs::File::options()
                .append(true)
                .open(path.join(format!("{i}.cwasm")))
                .expect("open");
            file.set_modified(old + Duration::from_secs(i))
                .expect("mtime");
        }
        fs::write(path.join("notes.txt"), b"kept").expect("write");
        let stale = path.join(format!("{TMP_PREFIX}1-1"));
        fs::write(&stale, b"left by a crash").expect("write");
        fs::File::options()
            .append(true)
            .open(&stale)
            .expect("open")
            .set_modified(old)
            .expect("mtime");
        fs::write(path.join(format!("{TMP_PREFIX}1-2")), b"being written").expect("write");
        store.prune(2);
        let mut left: Vec<String> = fs::read_dir(&path)
            .expect("read")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        left.sort();
        assert_eq!(left, [".tmp-1-2", "3.cwasm", "4.cwasm", "key", "notes.txt"]);
        let _ = fs::remove_dir_all(&path);
    }

    #[test]
    fn hex_digest() {
        assert_eq!(sha256_hex(b""), WASM);
    }
}
