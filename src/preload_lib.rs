//! The preload library embedded in this binary, written out once per version.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

static PRELOAD_SO: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libmemtrace_preload.so"));

/// A path to the preload library: `MEMTRACE_PRELOAD` if set, else the
/// embedded copy written to `$XDG_CACHE_HOME/memtrace` (or `~/.cache`, or a
/// private directory under `/tmp`), named by its content hash.
pub fn path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("MEMTRACE_PRELOAD") {
        return Ok(PathBuf::from(p));
    }
    let dir = cache_dir()?;
    let name = format!("libmemtrace_preload-{}.so", env!("MEMTRACE_PRELOAD_HASH"));
    let path = dir.join(name);
    if fs::metadata(&path).is_ok_and(|m| m.len() == PRELOAD_SO.len() as u64) {
        return Ok(path);
    }
    // Write under a temporary name, then rename: concurrent runs never see half a file.
    let tmp = dir.join(format!(".preload-{}.tmp", std::process::id()));
    write_new(&tmp, &path)
        .with_context(|| format!("cannot write the preload library to {}", tmp.display()))?;
    Ok(path)
}

/// Writes the library to `tmp`, a new file, and renames it to `path`; on
/// failure (a full or read-only disk) removes what it created.
fn write_new(tmp: &Path, path: &Path) -> std::io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o755)
        .custom_flags(libc::O_NOFOLLOW)
        .open(tmp)?;
    let written = f.write_all(PRELOAD_SO);
    drop(f);
    let result = written.and_then(|()| fs::rename(tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(tmp);
    }
    result
}

fn cache_dir() -> Result<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
    if let Some(base) = base {
        let dir = base.join("memtrace");
        if DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .is_ok()
        {
            return Ok(dir);
        }
    }
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let dir = PathBuf::from(format!("/tmp/memtrace-{uid}"));
    let _ = DirBuilder::new().mode(0o700).create(&dir);
    let meta =
        fs::symlink_metadata(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    if !meta.is_dir() || meta.uid() != uid || meta.permissions().mode() & 0o022 != 0 {
        bail!("{} is not a private directory of this user", dir.display());
    }
    Ok(dir)
}
