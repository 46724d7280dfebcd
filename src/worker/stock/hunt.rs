//! The treasure hunt's worker side: where the files are, how one is
//! searched, and the `hunt` handler that searches a range of them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::worker::JobContext;

/// The word a treasure file holds on every line.
pub const TREASURE: &[u8] = b"Treasure";

/// The path of file number `i` of a data set in `dir`.
pub fn file_path(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("file_{i:06}.txt"))
}

/// Whether `bytes` hold the treasure word (searched over every byte).
pub fn holds_treasure(bytes: &[u8]) -> bool {
    memchr::memmem::find(bytes, TREASURE).is_some()
}

/// Input of the `hunt` handler: search files `first .. first + count` of the
/// data set in `dir`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HuntArgs {
    /// The data set's folder.
    pub dir: PathBuf,
    /// First file number.
    pub first: usize,
    /// How many files.
    pub count: usize,
    /// Search every file even after a hit.
    #[serde(default)]
    pub full_scan: bool,
}

/// Output of the `hunt` handler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HuntFound {
    /// The number of the file holding the treasure, if it is in the range.
    pub found: Option<usize>,
    /// Files read.
    pub files: usize,
    /// Bytes read.
    pub bytes: u64,
}

/// Search a range of files; stops at the first hit unless `full_scan`, and
/// when the job is cancelled.
pub fn hunt(args: HuntArgs, ctx: &JobContext) -> Result<HuntFound, String> {
    let mut out = HuntFound {
        found: None,
        files: 0,
        bytes: 0,
    };
    for i in args.first..args.first + args.count {
        if ctx.is_cancelled() {
            return Err("cancelled".into());
        }
        let path = file_path(&args.dir, i);
        let bytes =
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        out.files += 1;
        out.bytes += bytes.len() as u64;
        if out.found.is_none() && holds_treasure(&bytes) {
            out.found = Some(i);
            if !args.full_scan {
                break;
            }
        }
    }
    Ok(out)
}
