//! Ownership of an output folder: the exclusive lock a run holds for its whole life, what a
//! folder holds before a run starts (nothing, an agentgen dataset, parts no run recorded, or
//! something foreign), `--overwrite`, the check of recorded parts that `--resume` trusts, and
//! exclusive creation of temp files (never through a symlink).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::manifest::{MANIFEST_FILE, Manifest};
use crate::writer::{DATA_DIR, TMP_SUFFIX, WrittenFile, parse_part_file_name};
use crate::{CARD_FILE, Error, Result};

/// The lock file in an output folder. It holds the holder's pid and host (for the message a
/// second process prints); the lock itself is an `flock` the kernel drops when the holder dies.
pub const LOCK_FILE: &str = ".agentgen.lock";

/// An exclusive lock on an output folder, held until dropped (or the process dies: the kernel
/// releases it, so a `kill -9` leaves no stale lock).
#[derive(Debug)]
pub struct FolderLock {
    _file: File,
    path: PathBuf,
}

impl FolderLock {
    /// Create `dir` if needed and lock it without waiting. A folder held by another process
    /// is [`Error::Busy`], naming the holder.
    pub fn acquire(dir: &Path) -> Result<FolderLock> {
        fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
        let path = dir.join(LOCK_FILE);
        let mut file = open_nofollow(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(Error::Busy {
                    dir: dir.to_owned(),
                    holder: if holder.is_empty() {
                        "another process".into()
                    } else {
                        holder.into()
                    },
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(Error::io("lock", &path, e)),
        }
        let me = this_process();
        file.set_len(0).map_err(|e| Error::io("write", &path, e))?;
        file.write_all(me.as_bytes()).map_err(|e| Error::io("write", &path, e))?;
        file.flush().map_err(|e| Error::io("write", &path, e))?;
        Ok(FolderLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Open (creating if missing) a regular file for read and write, refusing a symlink.
fn open_nofollow(path: &Path) -> Result<File> {
    let mut opts = OpenOptions::new();
    opts.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // O_NOFOLLOW (Linux, macOS and the BSDs agree on "refuse a symlink as the last part").
        opts.custom_flags(NOFOLLOW);
    }
    opts.open(path).map_err(|e| Error::io("open", path, e))
}

#[cfg(target_os = "linux")]
const NOFOLLOW: i32 = 0o400_000;
#[cfg(all(unix, not(target_os = "linux")))]
const NOFOLLOW: i32 = 0x0100;

/// How a holder of a folder or a shard names itself to a second process: `pid N on HOST`.
pub fn this_process() -> String {
    format!("pid {} on {}", std::process::id(), hostname())
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "an unknown host".into())
}

/// Create `path` for writing, exclusively: a leftover file or symlink of that name is removed
/// first (the link itself, never its target) and the new file is created with `O_EXCL`, which
/// refuses to follow a link planted in between.
pub fn create_exclusive(path: &Path) -> Result<File> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            return Err(Error::io(
                "create",
                path,
                std::io::Error::new(std::io::ErrorKind::AlreadyExists, "a folder is in the way"),
            ));
        }
        Ok(_) => fs::remove_file(path).map_err(|e| Error::io("remove stale", path, e))?,
        Err(_) => {}
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| Error::io("create", path, e))
}

/// What an output folder holds before a run.
#[derive(Debug, Clone, PartialEq)]
pub enum FolderState {
    /// Missing, empty, or only a lock file, an empty `data/` and temp files.
    Empty,
    /// An agentgen dataset: a readable `manifest.json`.
    Dataset(Box<Manifest>),
    /// Part files named like ours but no manifest recording them.
    Unrecorded,
    /// Something else: the first entry that is not ours.
    Foreign(String),
}

fn is_temp(name: &str) -> bool {
    name.ends_with(TMP_SUFFIX)
}

/// Look at `dir` (without changing it).
pub fn classify(dir: &Path) -> Result<FolderState> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FolderState::Empty),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            return Ok(FolderState::Foreign(dir.display().to_string()));
        }
        Err(e) => return Err(Error::io("list", dir, e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    let manifest = if names.iter().any(|n| n == MANIFEST_FILE) {
        Manifest::read(dir).ok().filter(|m| !m.run_id.is_empty())
    } else {
        None
    };
    if let Some(m) = manifest {
        return Ok(FolderState::Dataset(Box::new(m)));
    }
    let mut parts = false;
    for name in &names {
        if name == LOCK_FILE || is_temp(name) {
            continue;
        }
        if name != DATA_DIR {
            return Ok(FolderState::Foreign(name.clone()));
        }
        let data = dir.join(DATA_DIR);
        let inner = fs::read_dir(&data).map_err(|_| {
            Error::io(
                "list",
                &data,
                std::io::Error::new(std::io::ErrorKind::InvalidData, "not a folder"),
            )
        });
        let Ok(inner) = inner else { return Ok(FolderState::Foreign(name.clone())) };
        for e in inner {
            let e = e.map_err(|e| Error::io("list", &data, e))?;
            let n = e.file_name().to_string_lossy().into_owned();
            if is_temp(&n) {
                continue;
            }
            if parse_part_file_name(&n).is_none() {
                return Ok(FolderState::Foreign(format!("{DATA_DIR}/{n}")));
            }
            parts = true;
        }
    }
    Ok(if parts { FolderState::Unrecorded } else { FolderState::Empty })
}

/// Remove what a dataset folder holds that is ours (parts, temp files, manifest, card), for
/// `--overwrite`. Other entries stay. Call it holding the folder's lock.
pub fn clear_dataset(dir: &Path) -> Result<()> {
    let data = dir.join(DATA_DIR);
    if let Ok(entries) = fs::read_dir(&data) {
        for e in entries {
            let e = e.map_err(|e| Error::io("list", &data, e))?;
            let n = e.file_name().to_string_lossy().into_owned();
            let ours = parse_part_file_name(&n).is_some()
                || n.strip_suffix(TMP_SUFFIX).is_some_and(|b| parse_part_file_name(b).is_some())
                || n.ends_with(UNRECORDED_SUFFIX);
            if ours {
                let p = e.path();
                fs::remove_file(&p).map_err(|e| Error::io("remove", &p, e))?;
            }
        }
    }
    for name in [MANIFEST_FILE, CARD_FILE] {
        let p = dir.join(name);
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", &p, e)),
        }
    }
    Ok(())
}

/// Suffix given to a part file no manifest records, when `--resume` moves it out of the
/// dataset (it is kept for a person to look at, never read as data).
pub const UNRECORDED_SUFFIX: &str = ".unrecorded";

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io("read", path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// SHA-256 of `bytes`, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// For `--resume`: check every part `recorded` lists is on disk as recorded (size, and SHA-256
/// where recorded), and move every part that is not recorded out of the dataset (renamed with
/// [`UNRECORDED_SUFFIX`]; a folder belongs to one run of one shard); stale temp files are
/// removed. Call it holding the folder's lock. Returns the names of the parts moved aside.
pub fn reconcile_parts(dir: &Path, recorded: &[WrittenFile]) -> Result<Vec<String>> {
    for f in recorded {
        let p = dir.join(&f.path);
        let meta = fs::metadata(&p).map_err(|e| Error::io("find recorded part", &p, e))?;
        let changed = |what: String| Error::Corrupt {
            path: p.clone(),
            detail: format!("{what} differs from what manifest.json recorded"),
        };
        if meta.len() != f.bytes {
            return Err(changed(format!("size {} (recorded {})", meta.len(), f.bytes)));
        }
        if let Some(want) = &f.sha256
            && &sha256_file(&p)? != want
        {
            return Err(changed("its SHA-256".into()));
        }
    }
    let data = dir.join(DATA_DIR);
    let mut moved = Vec::new();
    let Ok(entries) = fs::read_dir(&data) else { return Ok(moved) };
    for e in entries {
        let e = e.map_err(|e| Error::io("list", &data, e))?;
        let n = e.file_name().to_string_lossy().into_owned();
        if let Some(base) = n.strip_suffix(TMP_SUFFIX) {
            if parse_part_file_name(base).is_some() {
                let p = e.path();
                fs::remove_file(&p).map_err(|e| Error::io("remove stale", &p, e))?;
            }
            continue;
        }
        if parse_part_file_name(&n).is_none() {
            continue;
        }
        let rel = format!("{DATA_DIR}/{n}");
        if !recorded.iter().any(|f| f.path == rel) {
            let from = e.path();
            let to = data.join(format!("{n}{UNRECORDED_SUFFIX}"));
            fs::rename(&from, &to).map_err(|e| Error::io("move aside", &from, e))?;
            moved.push(rel);
        }
    }
    moved.sort();
    Ok(moved)
}
