//! The treasure hunt's data set on disk, kept safe for a shared machine.
//!
//! `hunt` only ever writes into a folder it created (or one that was empty),
//! marked with its manifest: a non-empty folder without one is refused. It
//! creates each file anew without following symbolic links, so a link
//! planted in its folder cannot redirect a write; its default folder is
//! private to the user (mode 0700, checked). A lock file keeps two hunts
//! off one folder at a time, and [`DataSet::clean`] removes exactly what
//! `hunt` wrote.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::worker::stock::hunt::file_path;

/// A data set on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataSet {
    /// Its folder.
    pub dir: PathBuf,
    /// Number of files.
    pub files: usize,
    /// Lines per file.
    pub lines: usize,
    /// The seed that chose the treasure.
    pub seed: u64,
    /// The number of the treasure file.
    pub treasure: usize,
}

/// The manifest: what the folder holds; with [`MADE_BY`] in it, it marks
/// the folder as `hunt`'s.
const MANIFEST: &str = "hunt.json";
/// What every manifest `hunt` writes says it was made by: a `hunt.json` of
/// anyone else's never makes a folder `hunt`'s.
const MADE_BY: &str = "procvisor hunt";

/// The manifest's form on disk: the data set, or (while the files are
/// being written) none yet.
#[derive(Serialize, Deserialize)]
struct Manifest {
    made_by: String,
    #[serde(default)]
    set: Option<DataSet>,
}

/// The manifest `hunt` wrote in `dir`: `None` if there is none of its own
/// (no file, a link, or anyone else's `hunt.json`); `Some(None)` while a
/// set is being written.
fn manifest(dir: &Path) -> Option<Option<DataSet>> {
    let path = dir.join(MANIFEST);
    if !std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    let m: Manifest = serde_json::from_str(&text).ok()?;
    (m.made_by == MADE_BY).then_some(m.set)
}

/// The manifest's text.
fn manifest_text(set: Option<&DataSet>) -> io::Result<String> {
    serde_json::to_string_pretty(&Manifest {
        made_by: MADE_BY.into(),
        set: set.cloned(),
    })
    .map_err(io::Error::other)
}
/// The lock file.
const LOCK: &str = ".hunt.lock";

/// Whether `name` is one of the files `hunt` writes.
fn is_ours(name: &str) -> bool {
    name == MANIFEST
        || name == LOCK
        || name
            .strip_prefix("file_")
            .and_then(|n| n.strip_suffix(".txt"))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn refuse(msg: String) -> io::Error {
    io::Error::other(msg)
}

/// The effective user id.
fn me() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// A hold on a data set's folder: no other hunt uses it while this lives.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DataSet {
    /// The default folder for a data set of these numbers: under a folder
    /// private to this user in the temp dir, created with mode 0700 (and
    /// refused if it exists with another owner, wider permissions, or as a
    /// symbolic link).
    pub fn default_dir(files: u32, lines: u32, seed: u64) -> io::Result<PathBuf> {
        let base = std::env::temp_dir().join(format!("procvisor-hunt-{}", me()));
        match std::fs::DirBuilder::new().mode(0o700).create(&base) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let m = std::fs::symlink_metadata(&base)?;
        if !m.is_dir() || m.uid() != me() || m.mode() & 0o077 != 0 {
            return Err(refuse(format!(
                "{} is not a private folder of this user (someone else may have made it); remove it, or pass --dir",
                base.display()
            )));
        }
        Ok(base.join(format!("{files}x{lines}-seed{seed}")))
    }

    /// Lock `dir` (creating it if need be) against other hunts; fails at
    /// once, saying so, if another holds it.
    pub fn lock(dir: &Path) -> io::Result<DirLock> {
        ensure_dir(dir)?;
        refuse_foreign(dir)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(dir.join(LOCK))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |_| {
                refuse(format!(
                    "another hunt is using {}; wait for it to end, or pass another --dir",
                    dir.display()
                ))
            },
        )?;
        Ok(DirLock { _file: file })
    }

    /// Reuse the data set in `dir` if it was made with the same numbers,
    /// otherwise create it (`progress` is told each file written). Returns
    /// the data set and whether it was created. A non-empty folder that
    /// `hunt` did not create is refused, and nothing is written through a
    /// symbolic link.
    pub fn prepare(
        dir: &Path,
        files: usize,
        lines: usize,
        seed: u64,
        progress: &dyn Fn(usize),
    ) -> io::Result<(DataSet, bool)> {
        if files == 0 {
            return Err(refuse("a treasure hunt needs at least one file".into()));
        }
        let treasure = SmallRng::seed_from_u64(seed).random_range(0..files);
        let wanted = DataSet {
            dir: dir.to_path_buf(),
            files,
            lines,
            seed,
            treasure,
        };
        ensure_dir(dir)?;
        if refuse_foreign(dir)? {
            let same = manifest(dir).flatten().as_ref() == Some(&wanted);
            if same && std::fs::symlink_metadata(file_path(dir, files - 1)).is_ok() {
                return Ok((wanted, false));
            }
        }
        // The old set goes first (links are removed, not followed), and a
        // stale manifest must not vouch for a half-written set: it is
        // written last. Until then, the folder is marked by an empty one.
        remove_ours(dir, false)?;
        create_new(&dir.join(MANIFEST), manifest_text(None)?.as_bytes())?;
        let plain = b"Not a treasure\n".repeat(lines);
        let gold = b"Treasure\n".repeat(lines);
        for i in 0..files {
            let body = if i == treasure { &gold } else { &plain };
            create_new(&file_path(dir, i), body)?;
            progress(i + 1);
        }
        let manifest = manifest_text(Some(&wanted))?;
        std::fs::remove_file(dir.join(MANIFEST))?;
        create_new(&dir.join(MANIFEST), manifest.as_bytes())?;
        Ok((wanted, true))
    }

    /// Remove the data set in `dir`: the files `hunt` wrote, then the
    /// folder. A folder without `hunt`'s own manifest, or with any file
    /// `hunt` does not write, is left alone.
    pub fn clean(dir: &Path) -> io::Result<usize> {
        if manifest(dir).is_none() {
            return Err(refuse(format!(
                "{} holds no hunt data set (no hunt.json written by hunt); nothing was removed",
                dir.display()
            )));
        }
        refuse_strangers(dir)?;
        let removed = remove_ours(dir, true)?;
        let _ = std::fs::remove_dir(dir);
        Ok(removed)
    }
}

/// Create `dir` (private to the user) if it does not exist; refuse a
/// symbolic link or anything that is not a folder.
fn ensure_dir(dir: &Path) -> io::Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let m = std::fs::symlink_metadata(dir)?;
    if m.file_type().is_symlink() || !m.is_dir() {
        return Err(refuse(format!(
            "{} is not a folder (a symbolic link or a file); pass --dir with a folder",
            dir.display()
        )));
    }
    Ok(())
}

/// Refuse a non-empty folder that holds no manifest of `hunt`'s (hunt did
/// not create it), and one of `hunt`'s that holds anything else; returns
/// whether the folder holds `hunt`'s manifest.
fn refuse_foreign(dir: &Path) -> io::Result<bool> {
    if manifest(dir).is_some() {
        refuse_strangers(dir)?;
        return Ok(true);
    }
    if std::fs::read_dir(dir)?
        .flatten()
        .any(|e| e.file_name() != LOCK)
    {
        return Err(refuse(format!(
            "{} is not empty and hunt did not create it; pass --dir with a new or empty folder",
            dir.display()
        )));
    }
    Ok(false)
}

/// Refuse a folder that holds anything `hunt` does not write: it is not
/// `hunt`'s to change.
fn refuse_strangers(dir: &Path) -> io::Result<()> {
    for e in std::fs::read_dir(dir)?.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        // A link under one of hunt's names is removed, never followed:
        // only a folder under such a name is a stranger.
        let folder = e.file_type().is_ok_and(|t| t.is_dir());
        if !is_ours(&name) || folder {
            return Err(refuse(format!(
                "{} holds {name:?}, which hunt did not write; nothing was changed: remove it, or pass --dir with a new or empty folder",
                dir.display()
            )));
        }
    }
    Ok(())
}

/// Remove the files `hunt` writes from `dir` (the lock too, if `lock`).
fn remove_ours(dir: &Path, lock: bool) -> io::Result<usize> {
    let mut n = 0;
    for e in std::fs::read_dir(dir)?.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if is_ours(&name) && (lock || name != LOCK) {
            std::fs::remove_file(e.path())?;
            n += 1;
        }
    }
    Ok(n)
}

/// Write a new file, failing if anything (a file, a link) is at `path`.
fn create_new(path: &Path, body: &[u8]) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?
        .write_all(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_with_someone_elses_hunt_json_is_neither_cleaned_nor_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join(MANIFEST), r#"{"mine": true}"#).unwrap();
        std::fs::write(d.join("file_1.txt"), "my notes").unwrap();
        assert!(DataSet::clean(d)
            .unwrap_err()
            .to_string()
            .contains("no hunt data set"));
        assert!(DataSet::prepare(d, 3, 2, 1, &|_| {}).is_err());
        assert_eq!(
            std::fs::read_to_string(d.join("file_1.txt")).unwrap(),
            "my notes"
        );
        assert_eq!(
            std::fs::read_to_string(d.join(MANIFEST)).unwrap(),
            r#"{"mine": true}"#
        );
    }

    #[test]
    fn hunts_own_folder_is_reused_and_cleaned_but_not_with_a_strangers_file_in_it() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("set");
        let (set, made) = DataSet::prepare(&d, 3, 2, 7, &|_| {}).unwrap();
        assert!(made);
        let (again, made) = DataSet::prepare(&d, 3, 2, 7, &|_| {}).unwrap();
        assert_eq!((again, made), (set, false));
        std::fs::write(d.join("notes.txt"), "mine").unwrap();
        let e = DataSet::clean(&d).unwrap_err().to_string();
        assert!(e.contains("notes.txt"), "{e}");
        assert!(file_path(&d, 0).exists(), "nothing removed");
        std::fs::remove_file(d.join("notes.txt")).unwrap();
        assert_eq!(DataSet::clean(&d).unwrap(), 4);
        assert!(!d.exists());
    }
}
