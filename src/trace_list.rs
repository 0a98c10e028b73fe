//! How `memtrace run` learns the names of the traces its program's
//! processes create, instead of guessing from a directory listing (where
//! anyone who can write the directory can put a FIFO or a link named like
//! the next trace, or a newer file).
//!
//! `run` creates an empty file in its private directory (`O_EXCL`, mode
//! 0600) and names it in `MEMTRACE_TRACE_LIST`; the recorder of each traced
//! process appends `PID PATH\0` once it has created its trace
//! (`crates/recorder/src/output.rs`, `announce`). `run` reads the file
//! through the descriptor it created, after the program has ended, and
//! removes it.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::{unlinkat, UnlinkatFlags};

use crate::private_dir::PrivateDir;

/// The environment variable naming the list.
pub const ENV: &str = "MEMTRACE_TRACE_LIST";

/// The list file of one run, removed when dropped.
pub struct TraceList {
    dir: OwnedFd,
    name: String,
    file: File,
    path: PathBuf,
}

impl TraceList {
    /// Creates an empty list in `dir`.
    pub fn create(dir: &PrivateDir) -> Result<TraceList> {
        let flags =
            OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let pid = std::process::id();
        for n in 0..100 {
            let name = format!("run-{pid}-{n}.traces");
            match openat(
                dir.fd(),
                name.as_str(),
                flags,
                Mode::from_bits_truncate(0o600),
            ) {
                Ok(fd) => {
                    return Ok(TraceList {
                        path: dir.path().join(&name),
                        dir: dir.fd().try_clone()?,
                        name,
                        file: File::from(fd),
                    })
                }
                // Left by an earlier run of the same pid that was killed.
                Err(Errno::EEXIST) => continue,
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("cannot create {}", dir.path().join(&name).display())
                    })
                }
            }
        }
        anyhow::bail!("cannot create a trace list in {}", dir.path().display())
    }

    /// The list's path, for the environment.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The last trace the process `pid` reported: the last program it
    /// executed, since each image creates its trace as it starts.
    pub fn last_of(&mut self, pid: u32) -> Result<Option<PathBuf>> {
        let mut bytes = Vec::new();
        self.file.seek(SeekFrom::Start(0))?;
        // A file of this user that the recorders append to: bounded by
        // what the program's processes wrote, read once.
        self.file
            .read_to_end(&mut bytes)
            .with_context(|| format!("cannot read {}", self.path.display()))?;
        Ok(parse(&bytes)
            .filter(|(p, _)| *p == pid)
            .last()
            .map(|(_, path)| path))
    }
}

impl Drop for TraceList {
    fn drop(&mut self) {
        let _ = unlinkat(&self.dir, self.name.as_str(), UnlinkatFlags::NoRemoveDir);
    }
}

/// The `PID PATH\0` records; a malformed one is skipped.
fn parse(bytes: &[u8]) -> impl Iterator<Item = (u32, PathBuf)> + '_ {
    bytes.split(|&b| b == 0).filter_map(|record| {
        let space = record.iter().position(|&b| b == b' ')?;
        let pid = std::str::from_utf8(&record[..space]).ok()?.parse().ok()?;
        let path = std::ffi::OsStr::from_bytes(&record[space + 1..]);
        (!path.is_empty()).then(|| (pid, PathBuf::from(path)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_read_in_order_and_bad_ones_skipped() {
        let records: [&[u8]; 5] = [
            b"12 /a/memtrace.sh.12.trace",
            b"junk",
            b"13 /b",
            b"12 /a/x y.trace",
            b"",
        ];
        let bytes = records.join(&0u8);
        let got: Vec<_> = parse(&bytes).collect();
        assert_eq!(
            got,
            vec![
                (12, PathBuf::from("/a/memtrace.sh.12.trace")),
                (13, PathBuf::from("/b")),
                (12, PathBuf::from("/a/x y.trace")),
            ]
        );
    }
}
