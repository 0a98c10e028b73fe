//! The preload library embedded in this binary, written out once per
//! version into the private directory (`private_dir.rs`) and checked by
//! its content at every run before it is given to the loader.
//!
//! # Trust
//!
//! The file's name carries `MEMTRACE_PRELOAD_HASH` (build.rs: FNV-1a of the
//! embedded bytes). That hash is a name, not a check: it is not made to
//! resist forgery. What is checked is the file itself: it is opened with
//! `O_NOFOLLOW`, must be a regular file of this user, writable by no one
//! else, and its bytes must equal the embedded ones, compared through that
//! descriptor (about 20 MB, a few milliseconds from the page cache). A file
//! that fails any of these is replaced, with one line that says why.
//!
//! # What the loader is given: the path, not the descriptor
//!
//! `LD_PRELOAD` is inherited by every program the traced program executes,
//! and each of them opens the library anew. `/proc/self/fd/N` (of the
//! checked descriptor, or of a `memfd` copy) names the library only in a
//! process that still has descriptor N: a program that closes its
//! descriptors before `exec` (Python's `subprocess` does by default,
//! daemons do) would leave its children untraced with a loader error, and
//! one that reuses number N for a file of its own would have the loader map
//! *that* file into its children. `/proc/<memtrace's pid>/fd/N` stops
//! working when `memtrace` exits, and then names whatever a new process of
//! that pid holds. So the loader gets the path. It names the checked file
//! for as long as no one but this user (or root) changes the private
//! directory, which is what its checks establish: the same trust ssh puts
//! in `~/.ssh/authorized_keys`.
//!
//! `MEMTRACE_PRELOAD=/path/lib.so` is the user's explicit choice of library
//! and is used as given.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::fcntl::{openat, renameat, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::{unlinkat, UnlinkatFlags};

use crate::private_dir::PrivateDir;

static PRELOAD_SO: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libmemtrace_preload.so"));

/// The library for `LD_PRELOAD`, and the private directory that holds it
/// (and the run's other files); keep it until the program has ended.
#[derive(Debug)]
pub struct Preload {
    /// What to give the loader.
    pub library: PathBuf,
    /// Where memtrace keeps its own files for this run.
    pub dir: PrivateDir,
}

/// The library: `MEMTRACE_PRELOAD` if set, else the embedded copy in the
/// private directory, checked by content, and written there if missing or
/// wrong (via a temporary file and a rename; on failure nothing is left).
pub fn prepare() -> Result<Preload> {
    let dir = PrivateDir::cache()?;
    if let Some(p) = std::env::var_os("MEMTRACE_PRELOAD") {
        return Ok(Preload {
            library: PathBuf::from(p),
            dir,
        });
    }
    let name = format!("libmemtrace_preload-{}.so", env!("MEMTRACE_PRELOAD_HASH"));
    let library = dir.path().join(&name);
    match check(dir.fd(), &name) {
        Ok(()) => return Ok(Preload { library, dir }),
        Err(Bad::Missing) => {}
        Err(Bad::Not(why)) => eprintln!(
            "memtrace: replacing {}: {why}, not memtrace's preload library",
            library.display()
        ),
    }
    let tmp = format!(".preload-{}.tmp", std::process::id());
    write_new(dir.fd(), &tmp, &name).with_context(|| {
        format!(
            "cannot write the preload library to {}",
            dir.path().join(&tmp).display()
        )
    })?;
    Ok(Preload { library, dir })
}

/// Why the file in the cache is not used as it is.
enum Bad {
    /// There is none.
    Missing,
    /// Something else is there (what it is).
    Not(String),
}

/// Whether `name` in `dir` is the embedded library: a regular file of this
/// user that no one else can write, with exactly the embedded bytes, read
/// through one descriptor opened `O_NOFOLLOW`.
fn check(dir: &OwnedFd, name: &str) -> Result<(), Bad> {
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let fd = match openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Err(Bad::Missing),
        Err(Errno::ELOOP) => return Err(Bad::Not("a symbolic link".into())),
        Err(e) => return Err(Bad::Not(format!("cannot open it ({e})"))),
    };
    let mut file = File::from(fd);
    let meta = file
        .metadata()
        .map_err(|e| Bad::Not(format!("cannot inspect it ({e})")))?;
    if !meta.is_file() {
        return Err(Bad::Not("not a regular file".into()));
    }
    if meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(Bad::Not(format!("owned by uid {}", meta.uid())));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(Bad::Not(format!(
            "writable by others (mode {:o})",
            meta.mode() & 0o7777
        )));
    }
    if !same_content(&mut file, PRELOAD_SO) {
        return Err(Bad::Not("different content".into()));
    }
    Ok(())
}

/// Whether `file` holds exactly `expected`, read to its end.
fn same_content(file: &mut File, expected: &[u8]) -> bool {
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => return at == expected.len(),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        };
        if expected.get(at..at + n) != Some(&buf[..n]) {
            return false;
        }
        at += n;
    }
}

/// Writes the library to `tmp`, a new file in `dir`, and renames it to
/// `name`; on failure (a full or read-only disk) removes what it created.
fn write_new(dir: &OwnedFd, tmp: &str, name: &str) -> io::Result<()> {
    let flags =
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = openat(dir, tmp, flags, Mode::from_bits_truncate(0o755))?;
    let mut f = File::from(fd);
    let written = f.write_all(PRELOAD_SO);
    drop(f);
    let result = written.and_then(|()| Ok(renameat(dir, tmp, dir, name)?));
    if result.is_err() {
        let _ = unlinkat(dir, tmp, UnlinkatFlags::NoRemoveDir);
    }
    result
}
