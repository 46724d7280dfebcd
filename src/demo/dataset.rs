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

/// The manifest: what the folder holds; its presence marks the folder as
/// `hunt`'s.
const MANIFEST: &str = "hunt.json";
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
            if let Ok(text) = std::fs::read_to_string(dir.join(MANIFEST)) {
                let same = serde_json::from_str::<DataSet>(&text).ok().as_ref() == Some(&wanted);
                if same && std::fs::symlink_metadata(file_path(dir, files - 1)).is_ok() {
                    return Ok((wanted, false));
                }
            }
        }
        // The old set goes first (links are removed, not followed), and a
        // stale manifest must not vouch for a half-written set: it is
        // written last. Until then, the folder is marked by an empty one.
        remove_ours(dir, false)?;
        create_new(&dir.join(MANIFEST), b"")?;
        let plain = b"Not a treasure\n".repeat(lines);
        let gold = b"Treasure\n".repeat(lines);
        for i in 0..files {
            let body = if i == treasure { &gold } else { &plain };
            create_new(&file_path(dir, i), body)?;
            progress(i + 1);
        }
        let manifest = serde_json::to_string_pretty(&wanted).map_err(io::Error::other)?;
        std::fs::remove_file(dir.join(MANIFEST))?;
        create_new(&dir.join(MANIFEST), manifest.as_bytes())?;
        Ok((wanted, true))
    }

    /// Remove the data set in `dir`: the files `hunt` wrote, then the
    /// folder if nothing else is left in it. A folder without a manifest is
    /// left alone.
    pub fn clean(dir: &Path) -> io::Result<usize> {
        match std::fs::symlink_metadata(dir.join(MANIFEST)) {
            Ok(m) if m.is_file() => {}
            _ => {
                return Err(refuse(format!(
                    "{} holds no hunt data set; nothing was removed",
                    dir.display()
                )))
            }
        }
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

/// Refuse a non-empty folder that holds no manifest (hunt did not create
/// it); returns whether the folder holds a manifest.
fn refuse_foreign(dir: &Path) -> io::Result<bool> {
    if std::fs::symlink_metadata(dir.join(MANIFEST)).is_ok_and(|m| m.is_file()) {
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
