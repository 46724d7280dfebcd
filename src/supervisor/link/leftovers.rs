//! Clearing away handshake folders that dead supervisors left behind.
//!
//! Each worker's handshake server is a socket in a private folder
//! (`$TMPDIR/.tmpXXXXXX/socket`) that the server removes when it is done,
//! and that the worker removes as soon as it has connected. A supervisor
//! killed (SIGKILL) in the millisecond between creating one and its worker
//! connecting cannot remove it, so every supervisor, as it starts, removes
//! such folders that are certainly dead: owned by this user, holding
//! nothing but a socket named `socket` that nobody listens on any more
//! (connecting is refused), and older than a few seconds (a server that is
//! being set up refuses connections for an instant between creating its
//! socket and listening on it). A live server of any program is left alone.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::wire::bootstrap::is_server_folder_name;

/// How old a dead socket must be to be removed.
pub(crate) const MIN_AGE: Duration = Duration::from_secs(10);

/// Remove dead handshake folders older than `min_age` from `dir`; returns
/// how many.
pub(crate) fn sweep(dir: &Path, min_age: Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    entries
        .flatten()
        .filter(|e| is_server_folder_name(&e.file_name().to_string_lossy()))
        .filter(|e| remove_if_dead(&e.path(), me, min_age).unwrap_or(false))
        .count()
}

fn remove_if_dead(folder: &Path, me: u32, min_age: Duration) -> io::Result<bool> {
    let meta = std::fs::symlink_metadata(folder)?;
    if !meta.is_dir() || meta.uid() != me {
        return Ok(false);
    }
    let mut names = std::fs::read_dir(folder)?;
    let Some(only) = names.next().transpose()? else {
        return Ok(false);
    };
    if names.next().is_some() || only.file_name() != "socket" {
        return Ok(false);
    }
    let socket = only.path();
    let meta = std::fs::symlink_metadata(&socket)?;
    if !meta.file_type().is_socket() || meta.uid() != me {
        return Ok(false);
    }
    let age = SystemTime::now()
        .duration_since(meta.modified()?)
        .unwrap_or_default();
    if age < min_age {
        return Ok(false);
    }
    match UnixStream::connect(&socket) {
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
        _ => return Ok(false),
    }
    std::fs::remove_file(&socket)?;
    std::fs::remove_dir(folder)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn only_dead_handshake_folders_are_removed() {
        let root = std::env::temp_dir().join(format!("pv-sweep-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir(&root).unwrap();
        let make = |name: &str| {
            let d = root.join(name);
            std::fs::create_dir(&d).unwrap();
            d
        };
        // Dead: its listener is gone.
        let dead = make(".tmpAAAAAA");
        drop(UnixListener::bind(dead.join("socket")).unwrap());
        // Alive: somebody still listens.
        let alive = make(".tmpBBBBBB");
        let _listener = UnixListener::bind(alive.join("socket")).unwrap();
        // Not ours to judge: more than a socket, or another name.
        let busy = make(".tmpCCCCCC");
        drop(UnixListener::bind(busy.join("socket")).unwrap());
        std::fs::write(busy.join("notes"), "x").unwrap();
        let other = make("tmpDDDDDD");
        drop(UnixListener::bind(other.join("socket")).unwrap());
        let file = make(".tmpEEEEEE");
        std::fs::write(file.join("socket"), "a regular file").unwrap();

        assert_eq!(sweep(&root, MIN_AGE), 0, "too young to judge");
        assert_eq!(sweep(&root, Duration::ZERO), 1);
        assert!(!dead.exists());
        for kept in [&alive, &busy, &other, &file] {
            assert!(kept.join("socket").exists(), "{}", kept.display());
        }
        std::fs::remove_dir_all(&root).unwrap();
    }
}
