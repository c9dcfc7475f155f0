//! A store whose journal is damaged in the middle (bits flipped, a
//! sector lost) keeps what came before the damage.
//!
//! fjall drops a damaged *tail* of its journal by itself, but refuses to
//! open when a damaged batch is followed by good ones. Then the store is
//! copied aside for inspection, and the journal is cut at the damaged
//! batch: the longest prefix with which the engine opens is found by
//! bisection, each try on a scratch copy (the engine truncates what it
//! opens). Batches after the damage, and newer journal files, are dropped
//! with it: what remains is the store as it was just before the damaged
//! batch was written, never a store with a hole in its history.

use std::path::{Path, PathBuf};

use super::StoreError;
use super::backend::Fjall;

/// Stores larger than this are not bisected (each try copies the store):
/// they are moved aside whole.
const MAX_SALVAGE_BYTES: u64 = 1 << 30;

/// What a salvage kept and dropped.
#[derive(Debug)]
pub(crate) struct Salvaged {
    /// The journal file cut, and the bytes of it kept.
    pub journal: PathBuf,
    pub kept: u64,
    pub dropped: u64,
    /// Newer journal files dropped whole.
    pub dropped_journals: usize,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |e| StoreError::Io(path.to_owned(), e)
}

/// The journal files of the store in `dir`, newest first.
fn journals(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        let number = path
            .extension()
            .filter(|e| *e == "jnl")
            .and(path.file_stem())
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<u64>().ok());
        if let Some(n) = number {
            found.push((n, path));
        }
    }
    found.sort_unstable_by_key(|f| std::cmp::Reverse(f.0));
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

fn size_of_dir(dir: &Path) -> Result<u64, StoreError> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let meta = entry.metadata().map_err(io(dir))?;
        total += if meta.is_dir() {
            size_of_dir(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// Copies the directory tree `from` to `to` (which must not exist).
pub(crate) fn copy_dir(from: &Path, to: &Path) -> Result<(), StoreError> {
    std::fs::create_dir_all(to).map_err(io(to))?;
    for entry in std::fs::read_dir(from).map_err(io(from))? {
        let entry = entry.map_err(io(from))?;
        let target = to.join(entry.file_name());
        if entry.file_type().map_err(io(from))?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target).map_err(io(&target))?;
        }
    }
    Ok(())
}

/// Cuts `journal` (a file of the store in `dir`) to `len` bytes and
/// removes the journals in `newer`.
fn cut(dir: &Path, journal: &Path, len: u64, newer: &[PathBuf]) -> Result<(), StoreError> {
    let name = |p: &Path| dir.join(p.file_name().unwrap_or_default());
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(name(journal))
        .map_err(io(journal))?;
    file.set_len(len).map_err(io(journal))?;
    file.sync_all().map_err(io(journal))?;
    for p in newer {
        std::fs::remove_file(name(p)).map_err(io(p))?;
    }
    Ok(())
}

/// Whether the store in `dir` opens with `journal` cut to `len` and the
/// `newer` journals gone (tried on a copy in `probe`).
fn opens_with(
    dir: &Path,
    probe: &Path,
    journal: &Path,
    len: u64,
    newer: &[PathBuf],
) -> Result<bool, StoreError> {
    let _ = std::fs::remove_dir_all(probe);
    copy_dir(dir, probe)?;
    cut(probe, journal, len, newer)?;
    let opened = Fjall::open(probe).is_ok();
    let _ = std::fs::remove_dir_all(probe);
    Ok(opened)
}

/// Tries to cut the damaged journal of the store in `dir` so that it
/// opens, keeping as much as the damage allows. `None`: the damage is not
/// in the journal (or the store is too large to bisect); nothing was
/// changed.
pub(crate) fn salvage(dir: &Path, aside: &Path) -> Result<Option<Salvaged>, StoreError> {
    if size_of_dir(dir)? > MAX_SALVAGE_BYTES {
        return Ok(None);
    }
    let mut probe = dir.as_os_str().to_owned();
    probe.push(".probe");
    let probe = PathBuf::from(probe);
    let journals = journals(dir)?;
    for (i, journal) in journals.iter().enumerate() {
        let newer = &journals[..i];
        let len = std::fs::metadata(journal).map_err(io(journal))?.len();
        if !opens_with(dir, &probe, journal, 0, newer)? {
            // The damage is older than this journal: it goes whole.
            continue;
        }
        // The longest prefix that opens: opens(lo), not opens(hi + 1).
        let (mut lo, mut hi) = (0, len);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if opens_with(dir, &probe, journal, mid, newer)? {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        copy_dir(dir, aside)?;
        cut(dir, journal, lo, newer)?;
        return Ok(Some(Salvaged {
            journal: journal.clone(),
            kept: lo,
            dropped: len - lo,
            dropped_journals: newer.len(),
        }));
    }
    Ok(None)
}
