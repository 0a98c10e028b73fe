//! The files memtrace writes for its user (charts, flame graphs, leak
//! reports, swap timelines, `cargo xtask report`), written so that a link
//! someone planted is never written through.
//!
//! memtrace often runs as root in CI, in directories that others can write
//! (`/tmp`). A plain `File::create("out.svg")` follows a symbolic link named
//! `out.svg` to wherever it points (`/etc/passwd`) and truncates that. Here
//! a file is never opened for writing under its own name:
//!
//! * its bytes go to a new temporary file, created `O_EXCL | O_NOFOLLOW` in
//!   the same directory (so nothing planted can be opened instead), then
//!   renamed over the name: `rename` replaces the name itself, a symbolic or
//!   hard link included, and never writes into what it named. A reader sees
//!   the old file or the new one, never half of one; on failure the
//!   temporary file is removed.
//! * a name that is a symbolic link, a directory or any other non-regular
//!   file is refused with one line ([`Error`]), so that a planted link is
//!   reported, not silently replaced.
//! * a directory ([`OutDir`]) is created fresh, or, when it exists, used
//!   only if it is a directory (not a link to one) owned by the effective
//!   user. It is opened once, and every file in it is made through that
//!   descriptor (`openat`, `renameat`): swapping the directory for a link
//!   afterwards changes nothing.
//!
//! What it does not do: check the parents of a path the user named (the
//! user chose them; `-o /tmp/x/charts` works when `/tmp/x` is a link the
//! user made), or make files private: they get mode `0666` less the umask,
//! as `File::create` gives. See `docs/security.md`.
//!
//! ```no_run
//! use std::path::Path;
//! let dir = memtrace_safe_write::OutDir::create(Path::new("t.charts"))?;
//! dir.write("heap.svg", b"<svg/>")?;
//! memtrace_safe_write::write_file(Path::new("flame.svg"), b"<svg/>")?;
//! # Ok::<(), memtrace_safe_write::Error>(())
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use nix::errno::Errno;
use nix::fcntl::{openat, renameat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, mkdirat, FileStat, Mode, SFlag};
use nix::unistd::{geteuid, unlinkat, UnlinkatFlags};

/// Why a file or directory was not written.
#[derive(Debug)]
pub struct Error {
    path: PathBuf,
    kind: ErrorKind,
}

/// What was wrong (see [`Error`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The name is a symbolic link.
    Symlink,
    /// A directory was wanted and something else is there.
    NotADirectory,
    /// A file was to be replaced and a directory, a FIFO, a device or a
    /// socket is there.
    NotARegularFile,
    /// The directory exists and belongs to another user (this uid).
    OtherOwner(u32),
    /// The system refused (what was being done, and the error).
    Io(&'static str, io::Error),
}

impl Error {
    /// The path the error is about.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What was wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    fn new(path: &Path, kind: ErrorKind) -> Error {
        Error {
            path: path.to_path_buf(),
            kind,
        }
    }

    fn io(path: &Path, doing: &'static str, e: impl Into<io::Error>) -> Error {
        Error::new(path, ErrorKind::Io(doing, e.into()))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match &self.kind {
            ErrorKind::Symlink => write!(
                f,
                "{path} is a symbolic link: memtrace does not write through links"
            ),
            ErrorKind::NotADirectory => write!(f, "{path} exists and is not a directory"),
            ErrorKind::NotARegularFile => write!(f, "{path} exists and is not a regular file"),
            ErrorKind::OtherOwner(uid) => write!(
                f,
                "{path} belongs to another user (uid {uid}): memtrace writes only into \
                 directories of its own user"
            ),
            ErrorKind::Io(doing, e) => write!(f, "cannot {doing} {path}: {e}"),
        }
    }
}

impl std::error::Error for Error {}

/// A directory memtrace writes files into, opened once (see the crate doc).
#[derive(Debug)]
pub struct OutDir {
    fd: OwnedFd,
    path: PathBuf,
}

impl OutDir {
    /// Creates the directory `path` (its missing parents too), or opens it
    /// when it exists, is a directory and not a link to one, and belongs to
    /// the effective user.
    pub fn create(path: &Path) -> Result<OutDir, Error> {
        let (parent, name) = split(path);
        let parent_fd = match parent {
            Some(parent) => {
                std::fs::create_dir_all(parent)
                    .map_err(|e| Error::io(parent, "create the directory", e))?;
                open_dir(parent).map_err(|e| Error::io(parent, "open the directory", e))?
            }
            None => open_dir(Path::new(".")).map_err(|e| Error::io(path, "open", e))?,
        };
        // Fresh, or there already: either way what is there now is checked.
        match mkdirat(&parent_fd, name, Mode::from_bits_truncate(0o777)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(Error::io(path, "create the directory", e)),
        }
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(&parent_fd, name, flags, Mode::empty()).map_err(|e| {
            match fstatat(&parent_fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) if is(&st, SFlag::S_IFLNK) => Error::new(path, ErrorKind::Symlink),
                Ok(st) if !is(&st, SFlag::S_IFDIR) => Error::new(path, ErrorKind::NotADirectory),
                _ => Error::io(path, "open the directory", e),
            }
        })?;
        let st = fstat(&fd).map_err(|e| Error::io(path, "inspect", e))?;
        let me = geteuid().as_raw();
        if st.st_uid != me {
            return Err(Error::new(path, ErrorKind::OtherOwner(st.st_uid)));
        }
        Ok(OutDir {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The directory's path as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the file `name` in the directory with `bytes`, or creates
    /// it; its path is returned. A `name` that is a link or not a regular
    /// file is refused.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<PathBuf, Error> {
        let path = self.path.join(name);
        replace(&self.fd, Path::new(name), &path, bytes)?;
        Ok(path)
    }
}

/// One output file the user named (`flamegraph -o FILE`), checked when it
/// is named and written later, so that a bad name is refused before any
/// work (`swap` monitors for minutes before it writes).
#[derive(Debug)]
pub struct OutFile {
    dir: OwnedFd,
    name: PathBuf,
    path: PathBuf,
}

impl OutFile {
    /// Opens the directory that will hold `path`, and refuses a `path`
    /// that is a link or not a regular file now. The directory must exist.
    pub fn new(path: &Path) -> Result<OutFile, Error> {
        let (parent, name) = split(path);
        let dir_path = parent.unwrap_or(Path::new("."));
        let dir = open_dir(dir_path).map_err(|e| Error::io(dir_path, "open the directory", e))?;
        check_replaceable(&dir, name, path)?;
        Ok(OutFile {
            dir,
            name: name.to_path_buf(),
            path: path.to_path_buf(),
        })
    }

    /// The path as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the file with `bytes` (see the crate doc).
    pub fn write(&self, bytes: &[u8]) -> Result<(), Error> {
        replace(&self.dir, &self.name, &self.path, bytes)
    }
}

/// Replaces the file at `path` with `bytes`: [`OutFile::new`] then
/// [`OutFile::write`].
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    OutFile::new(path)?.write(bytes)
}

/// `path`'s parent (`None` for a bare name) and last component; a path
/// that ends in `..` or `/` names its own last component.
fn split(path: &Path) -> (Option<&Path>, &Path) {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) if !parent.as_os_str().is_empty() => {
            (Some(parent), Path::new(name))
        }
        (_, Some(name)) => (None, Path::new(name)),
        // `/`, `..`, `a/..`: no name to create or replace; open it as is.
        (_, None) => (None, path),
    }
}

/// Opens a directory the user named, following links in it (their choice).
fn open_dir(path: &Path) -> nix::Result<OwnedFd> {
    nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

fn is(st: &FileStat, kind: SFlag) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == kind
}

/// Refuses a `name` in `dir` that is a link or not a regular file; a name
/// that does not exist yet is fine.
fn check_replaceable(dir: &impl AsFd, name: &Path, path: &Path) -> Result<(), Error> {
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) if is(&st, SFlag::S_IFLNK) => Err(Error::new(path, ErrorKind::Symlink)),
        Ok(st) if !is(&st, SFlag::S_IFREG) => Err(Error::new(path, ErrorKind::NotARegularFile)),
        Ok(_) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(Error::io(path, "inspect", e)),
    }
}

/// Writes `bytes` to a new temporary file in `dir` and renames it to
/// `name`, after refusing a `name` that is a link or not a regular file.
fn replace(dir: &OwnedFd, name: &Path, path: &Path, bytes: &[u8]) -> Result<(), Error> {
    check_replaceable(dir, name, path)?;
    let (tmp, file) = create_temporary(dir, name).map_err(|e| Error::io(path, "write", e))?;
    let written = write_all(file, bytes).and_then(|()| Ok(renameat(dir, &tmp, dir, name)?));
    if let Err(e) = written {
        let _ = unlinkat(dir, &tmp, UnlinkatFlags::NoRemoveDir);
        return Err(Error::io(path, "write", e));
    }
    Ok(())
}

fn write_all(file: OwnedFd, bytes: &[u8]) -> io::Result<()> {
    let mut file = File::from(file);
    file.write_all(bytes)?;
    file.flush()
}

/// A new file `.NAME.PID-N.tmp` in `dir`, made with `O_EXCL` (a name that
/// is taken, by anything, is skipped) and `O_NOFOLLOW`.
fn create_temporary(dir: &OwnedFd, name: &Path) -> io::Result<(PathBuf, OwnedFd)> {
    static N: AtomicU32 = AtomicU32::new(0);
    let flags =
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut last = Errno::EEXIST;
    for _ in 0..100 {
        let n = N.fetch_add(1, Ordering::Relaxed);
        let mut tmp = std::ffi::OsString::from(".");
        tmp.push(name.as_os_str());
        tmp.push(format!(".{}-{n}.tmp", std::process::id()));
        let tmp = PathBuf::from(tmp);
        match openat(dir, &tmp, flags, Mode::from_bits_truncate(0o666)) {
            Ok(fd) => return Ok((tmp, fd)),
            Err(Errno::EEXIST) => last = Errno::EEXIST,
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.into())
}
