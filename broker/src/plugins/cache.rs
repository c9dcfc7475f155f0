//! The compiled-artifact cache: Cranelift output of each plugin, on disk,
//! keyed by the SHA-256 of the `.wasm` and the engine's compatibility hash,
//! so that a restart (or a reload of an unchanged file) costs no compile.
//!
//! Deserializing an artifact runs native code produced by whoever wrote it,
//! so only files this module wrote are ever loaded: they live in a directory
//! the broker creates with mode 0700, carry a magic header and a SHA-256 of
//! their body, and anything that fails these checks is recompiled and
//! overwritten, never loaded.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

const MAGIC: &[u8; 8] = b"SLUICE1\n";

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

/// The artifact cache of one engine.
#[derive(Debug)]
pub struct ArtifactCache {
    dir: Option<PathBuf>,
    engine_key: String,
}

impl ArtifactCache {
    /// A cache in `dir` (created if needed); `None` disables caching.
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> std::io::Result<Self> {
        if let Some(dir) = &dir {
            create_private_dir(dir)?;
        }
        let mut hasher = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = hex(&hasher.0.finalize())[..16].to_owned();
        Ok(ArtifactCache { dir, engine_key })
    }

    fn path(&self, wasm_hash: &str) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{wasm_hash}-{}.cwasm", self.engine_key)))
    }

    /// The cached component for `wasm_hash`, if a valid one is cached.
    pub fn load(&self, engine: &Engine, wasm_hash: &str) -> Option<Component> {
        let path = self.path(wasm_hash)?;
        let bytes = fs::read(&path).ok()?;
        let body = verified_body(&bytes)?;
        // Marks it recently used, for pruning.
        if let Ok(file) = fs::File::options().append(true).open(&path) {
            let _ = file.set_modified(std::time::SystemTime::now());
        }
        // SAFETY: `body` is an artifact this cache serialized with an engine
        // of the same compatibility hash (it is in the file name), in a
        // directory only the broker's user can write, and its checksum
        // matches: it is exactly what `Component::serialize` produced.
        #[allow(unsafe_code, reason = "deserializing our own, verified artifact")]
        let component = unsafe { Component::deserialize(engine, body) };
        match component {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!("ignoring cached artifact {}: {e}", path.display());
                None
            }
        }
    }

    /// Stores the compiled form of `component`. Failures only cost a
    /// recompile next time, so they are logged, not returned.
    pub fn store(&self, wasm_hash: &str, component: &Component) {
        let Some(path) = self.path(wasm_hash) else {
            return;
        };
        let result = component
            .serialize()
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|body| write_atomically(&path, &body));
        if let Err(e) = result {
            tracing::warn!("cannot cache {}: {e}", path.display());
        }
        if let Some(dir) = &self.dir {
            prune(dir, MAX_ARTIFACTS);
        }
    }
}

/// Deletes the least recently used artifacts of `dir` beyond `keep`.
fn prune(dir: &Path, keep: usize) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut artifacts: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    if artifacts.len() <= keep {
        return;
    }
    artifacts.sort();
    for (_, path) in &artifacts[..artifacts.len() - keep] {
        if let Err(e) = fs::remove_file(path) {
            tracing::debug!("cannot prune {}: {e}", path.display());
        }
    }
}

fn verified_body(bytes: &[u8]) -> Option<&[u8]> {
    let rest = bytes.strip_prefix(MAGIC.as_slice())?;
    if rest.len() < 32 {
        return None;
    }
    let (sum, body) = rest.split_at(32);
    (Sha256::digest(body).as_slice() == sum).then_some(body)
}

fn write_atomically(path: &Path, body: &[u8]) -> std::io::Result<()> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
    let mut file = fs::File::create(&tmp)?;
    file.write_all(MAGIC)?;
    file.write_all(&Sha256::digest(body))?;
    file.write_all(body)?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let meta = fs::metadata(dir)?;
    if meta.permissions().mode() & 0o022 != 0 {
        return Err(std::io::Error::other(format!(
            "cache directory {} is writable by others; refusing to load artifacts from it",
            dir.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tampered_artifacts_are_refused() {
        let body = b"compiled".to_vec();
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(&Sha256::digest(&body));
        file.extend_from_slice(&body);
        assert_eq!(verified_body(&file), Some(&body[..]));
        let mut bad = file.clone();
        if let Some(last) = bad.last_mut() {
            *last ^= 1;
        }
        assert_eq!(verified_body(&bad), None);
        assert_eq!(verified_body(b"\0asm...."), None);
        assert_eq!(verified_body(MAGIC), None);
    }

    #[test]
    fn pruning_keeps_the_most_recently_used() {
        let dir = std::env::temp_dir().join(format!("sluice-prune-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("dir");
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000);
        for i in 0..5u64 {
            let path = dir.join(format!("{i}.cwasm"));
            fs::write(&path, b"x").expect("write");
            let file = fs::File::options().append(true).open(&path).expect("open");
            file.set_modified(old + std::time::Duration::from_secs(i))
                .expect("mtime");
        }
        fs::write(dir.join("notes.txt"), b"kept").expect("write");
        prune(&dir, 2);
        let mut left: Vec<String> = fs::read_dir(&dir)
            .expect("read")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        left.sort();
        assert_eq!(left, ["3.cwasm", "4.cwasm", "notes.txt"]);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn hex_digest() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
