//! The plugin directory as the reloader sees it: every visible `NAME.wasm`
//! entry, followed through symlinks, and whether it is a file that can be
//! loaded.
//!
//! Entries are judged by what they lead to (`stat`, not `lstat`): a
//! symlink to a regular file is a plugin file like any other (so are
//! Kubernetes ConfigMap mounts, `NAME.wasm -> ..data/NAME.wasm`, and
//! `ln -s build/NAME.wasm` deployments), read through the link. A
//! `NAME.wasm` that leads nowhere loadable — a dangling symlink, a symlink
//! loop, a directory (or a symlink to one), a FIFO, socket or device, a
//! file that cannot be opened — is returned with the reason, for the
//! reloader to list and log. Hidden entries (`.NAME.wasm.tmp`, `..data`,
//! `.cache`) and other suffixes are never plugins, but the files that
//! visible symlinks reach through them are.

use std::collections::HashSet;
use std::os::unix::fs::FileTypeExt as _;
use std::path::{Path, PathBuf};

use super::PluginsError;

/// One visible `NAME.wasm` entry of the plugin directory.
#[derive(Debug)]
pub(super) struct Entry {
    /// The file name without `.wasm`.
    pub name: String,
    /// Its path in the directory (the link's, for a symlink).
    pub path: PathBuf,
    /// `Err` when it cannot be loaded.
    pub usable: Result<(), Unusable>,
}

/// Why a `NAME.wasm` entry cannot be loaded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum Unusable {
    #[error("a dangling symlink: its target {target} does not exist")]
    Dangling { target: PathBuf },
    #[error("a symlink loop (through {target})")]
    Loop { target: PathBuf },
    #[error("a symlink to {target} that cannot be followed: {error}")]
    Unfollowable { target: PathBuf, error: String },
    #[error("a directory, not a file")]
    Directory,
    #[error("a symlink to a directory ({target}), not to a file")]
    LinkToDirectory { target: PathBuf },
    #[error("not a regular file but a {kind}")]
    Special { kind: &'static str },
    #[error("unreadable: {error}")]
    Unreadable { error: String },
}

/// Whether `file_name` names a plugin: `NAME.wasm`, not hidden (editors'
/// and copy tools' temporary files are hidden or have another suffix).
pub(super) fn plugin_name(file_name: &str) -> Option<&str> {
    let stem = file_name.strip_suffix(".wasm")?;
    (!file_name.starts_with('.') && !stem.is_empty()).then_some(stem)
}

/// Every visible `NAME.wasm` entry of `dir`, by name, with whether it can
/// be loaded. Entries that vanish while the directory is read are left
/// out.
pub(super) fn scan(dir: &Path) -> Result<Vec<Entry>, PluginsError> {
    let entries = std::fs::read_dir(dir).map_err(|source| PluginsError::Dir {
        path: dir.to_owned(),
        source,
    })?;
    let mut found: Vec<Entry> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = plugin_name(e.file_name().to_str()?)?.to_owned();
            let path = e.path();
            let usable = judge(&path)?;
            Some(Entry { name, path, usable })
        })
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// Whether the entry at `path` leads to a readable regular file; `None`
/// when it is gone.
fn judge(path: &Path) -> Option<Result<(), Unusable>> {
    let own = std::fs::symlink_metadata(path).ok()?;
    let link = own.file_type().is_symlink();
    let target = || std::fs::read_link(path).unwrap_or_default();
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(_) if !link => return None,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Some(Err(Unusable::Dangling { target: target() }));
        }
        Err(_) if loops(path) => return Some(Err(Unusable::Loop { target: target() })),
        Err(e) => {
            return Some(Err(Unusable::Unfollowable {
                target: target(),
                error: e.to_string(),
            }));
        }
    };
    let kind = meta.file_type();
    let unusable = if kind.is_file() {
        // Opened (and closed) here, so that a file the broker may not read
        // is listed with the reason rather than failing its load.
        match std::fs::File::open(path) {
            Ok(_) => return Some(Ok(())),
            Err(e) => Unusable::Unreadable {
                error: e.to_string(),
            },
        }
    } else if kind.is_dir() && link {
        Unusable::LinkToDirectory { target: target() }
    } else if kind.is_dir() {
        Unusable::Directory
    } else {
        Unusable::Special {
            kind: special_kind(&kind),
        }
    };
    Some(Err(unusable))
}

/// At most this many links are followed looking for a loop (Linux's own
/// limit).
const MAX_HOPS: usize = 40;

/// Whether following symlinks from `path` comes back to a link already
/// seen (or goes on past [`MAX_HOPS`]). Only links on the path itself are
/// followed, not links among its directories, which the error of the
/// failed `stat` then describes.
fn loops(path: &Path) -> bool {
    let mut seen = HashSet::new();
    let mut at = path.to_owned();
    for _ in 0..MAX_HOPS {
        if !seen.insert(at.clone()) {
            return true;
        }
        let Ok(next) = std::fs::read_link(&at) else {
            return false;
        };
        at = match at.parent() {
            Some(parent) => parent.join(next),
            None => next,
        };
    }
    true
}

fn special_kind(kind: &std::fs::FileType) -> &'static str {
    if kind.is_fifo() {
        "FIFO"
    } else if kind.is_socket() {
        "socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "device"
    } else {
        "special file"
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::{Unusable, plugin_name, scan};

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

    #[test]
    fn symlinks_are_followed_and_unusable_entries_say_why() {
        let dir = std::env::temp_dir().join(format!("sluice-scan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("..2026_01")).expect("mkdir");
        let file = |name: &str| std::fs::write(dir.join(name), b"wasm").expect("write");
        let link = |to: &str, name: &str| symlink(to, dir.join(name)).expect("symlink");
        file("plain.wasm");
        file("..2026_01/cm.wasm");
        link("..2026_01", "..data");
        link("..data/cm.wasm", "cm.wasm");
        link("plain.wasm", "alias.wasm");
        link("nowhere.wasm", "ghost.wasm");
        link("..2026_01", "folder.wasm");
        link("loop-b.wasm", "loop-a.wasm");
        link("loop-a.wasm", "loop-b.wasm");
        link("plain.wasm/x", "through-file.wasm");
        std::fs::create_dir(dir.join("real-dir.wasm")).expect("mkdir");
        file("notes.txt");
        file(".hidden.wasm");

        let found = scan(&dir).expect("scan");
        let _ = std::fs::remove_dir_all(&dir);
        let got: Vec<(&str, Result<(), Unusable>)> = found
            .iter()
            .map(|e| (e.name.as_str(), e.usable.clone()))
            .collect();
        let target = |t: &str| t.into();
        assert_eq!(got[0], ("alias", Ok(())));
        assert_eq!(got[1], ("cm", Ok(())));
        assert_eq!(
            got[2],
            (
                "folder",
                Err(Unusable::LinkToDirectory {
                    target: target("..2026_01")
                })
            )
        );
        assert_eq!(
            got[3],
            (
                "ghost",
                Err(Unusable::Dangling {
                    target: target("nowhere.wasm")
                })
            )
        );
        assert_eq!(
            got[4],
            (
                "loop-a",
                Err(Unusable::Loop {
                    target: target("loop-b.wasm")
                })
            )
        );
        assert_eq!(got[5].0, "loop-b");
        assert_eq!(got[6], ("plain", Ok(())));
        assert_eq!(got[7], ("real-dir", Err(Unusable::Directory)));
        assert!(
            matches!(&got[8], ("through-file", Err(Unusable::Unfollowable { target, .. })) if *target == std::path::Path::new("plain.wasm/x")),
            "{:?}",
            got[8]
        );
        assert_eq!(got.len(), 9, "{got:?}");
    }
}
