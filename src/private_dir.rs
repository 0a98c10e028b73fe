//! The private directory where `memtrace run` keeps its own files: the
//! preload library (`preload_lib.rs`) and each run's list of the traces its
//! processes created (`cmd/run.rs`).
//!
//! A file there is loaded into every traced program, as root too, so the
//! directory is checked the way ssh checks `~/.ssh`: it and each directory
//! memtrace creates on the way belong to the effective user and are not
//! writable by group or others; every directory above it belongs to root or
//! to the user and is not writable by others unless sticky (`/tmp`), so
//! nobody else can rename it away and put their own in its place. The path
//! is walked from `/` with `O_NOFOLLOW` after resolving links once, and
//! the directory is kept open: files are made in it with `openat`.
//!
//! Candidates, in order: `$XDG_CACHE_HOME/memtrace` (only an absolute
//! `XDG_CACHE_HOME`, as the XDG spec says), `$HOME/.cache/memtrace`,
//! `/tmp/memtrace-<uid>`, and last a fresh directory from `mkdtemp`,
//! removed when the run ends. A candidate that cannot be created is passed
//! over in silence (a read-only home); one that exists but is not private
//! is passed over with one line on stderr that says why.

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstat, mkdirat, FileStat, Mode};
use nix::unistd::geteuid;

/// A directory checked private (see the module doc), kept open.
#[derive(Debug)]
pub struct PrivateDir {
    fd: OwnedFd,
    path: PathBuf,
    /// Made by `mkdtemp` for this run: removed when dropped.
    temporary: bool,
}

impl PrivateDir {
    /// The first private directory among the candidates (module doc).
    pub fn cache() -> Result<PrivateDir> {
        let uid = geteuid().as_raw();
        let mut candidates = Vec::new();
        let absolute =
            |v: Option<std::ffi::OsString>| v.map(PathBuf::from).filter(|p| p.is_absolute());
        if let Some(xdg) = absolute(std::env::var_os("XDG_CACHE_HOME")) {
            candidates.push(xdg.join("memtrace"));
        } else if let Some(home) = absolute(std::env::var_os("HOME")) {
            candidates.push(home.join(".cache/memtrace"));
        }
        candidates.push(PathBuf::from(format!("/tmp/memtrace-{uid}")));
        let mut refused: Vec<String> = Vec::new();
        let mut found = None;
        for candidate in &candidates {
            match open_private(candidate, uid) {
                Ok(fd) => {
                    found = Some(PrivateDir {
                        fd,
                        path: candidate.clone(),
                        temporary: false,
                    });
                    break;
                }
                Err(Refusal::NotPrivate(why)) => {
                    refused.push(format!("not using {}: {why}", candidate.display()))
                }
                Err(Refusal::Unavailable) => {}
            }
        }
        let dir = match found {
            Some(dir) => dir,
            None => fresh(uid)?,
        };
        if let Some(last) = refused.last_mut() {
            last.push_str(&format!("; using {} instead", dir.path.display()));
        }
        for line in refused {
            eprintln!("memtrace: {line}");
        }
        Ok(dir)
    }

    /// The directory's descriptor, for `openat`.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Why a candidate is not used.
enum Refusal {
    /// It exists and others could change it: said on stderr.
    NotPrivate(String),
    /// It cannot be created or opened (no such parent, a read-only file
    /// system, no permission): passed over in silence.
    Unavailable,
}

/// Opens `path`, creating what is missing with mode 0700, and checks every
/// directory from `/` down (module doc).
fn open_private(path: &Path, uid: u32) -> Result<OwnedFd, Refusal> {
    // Links above the directory are resolved once (a home under a link is
    // common); the walk below then refuses any link, so a component swapped
    // for a link meanwhile is caught.
    let mut existing = path.to_path_buf();
    let mut missing: Vec<&OsStr> = Vec::new();
    let mut rest = path;
    while std::fs::symlink_metadata(&existing).is_err() {
        let (Some(parent), Some(name)) = (rest.parent(), rest.file_name()) else {
            return Err(Refusal::Unavailable);
        };
        missing.push(name);
        rest = parent;
        existing = parent.to_path_buf();
    }
    missing.reverse();
    let real = std::fs::canonicalize(&existing).map_err(|_| Refusal::Unavailable)?;

    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut dir = nix::fcntl::open("/", flags, Mode::empty()).map_err(|_| Refusal::Unavailable)?;
    let mut shown = PathBuf::from("/");
    let components: Vec<&OsStr> = real
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name),
            _ => None,
        })
        .collect();
    let n_existing = components.len();
    check_ancestor(&dir, &shown, uid)?;
    for (i, name) in components.iter().chain(missing.iter()).enumerate() {
        shown.push(name);
        let created = i >= n_existing;
        if created {
            match mkdirat(&dir, *name, Mode::from_bits_truncate(0o700)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(_) => return Err(Refusal::Unavailable),
            }
        }
        dir = match openat(&dir, *name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ELOOP | Errno::ENOTDIR) => {
                return Err(Refusal::NotPrivate(format!(
                    "{} is not a directory (a link or a file)",
                    shown.display()
                )))
            }
            Err(_) => return Err(Refusal::Unavailable),
        };
        let last = i + 1 == n_existing + missing.len();
        if created || last {
            check_own(&dir, &shown, uid)?;
        } else {
            check_ancestor(&dir, &shown, uid)?;
        }
    }
    Ok(dir)
}

fn stat(fd: &OwnedFd) -> Result<FileStat, Refusal> {
    fstat(fd).map_err(|_| Refusal::Unavailable)
}

/// A directory memtrace keeps files in: the user's, writable by no one else.
fn check_own(fd: &OwnedFd, path: &Path, uid: u32) -> Result<(), Refusal> {
    let st = stat(fd)?;
    if st.st_uid != uid {
        return Err(Refusal::NotPrivate(format!(
            "{} belongs to uid {}, not to this user (uid {uid})",
            path.display(),
            st.st_uid
        )));
    }
    if st.st_mode & 0o022 != 0 {
        return Err(Refusal::NotPrivate(format!(
            "{} is writable by {} (mode {:o})",
            path.display(),
            if st.st_mode & 0o002 != 0 {
                "others"
            } else {
                "its group"
            },
            st.st_mode & 0o7777
        )));
    }
    Ok(())
}

/// A directory above it: root's or the user's, and writable by no one else
/// unless sticky (where others cannot rename what is not theirs).
fn check_ancestor(fd: &OwnedFd, path: &Path, uid: u32) -> Result<(), Refusal> {
    let st = stat(fd)?;
    if st.st_uid != 0 && st.st_uid != uid {
        return Err(Refusal::NotPrivate(format!(
            "{} belongs to uid {}, neither root nor this user (uid {uid})",
            path.display(),
            st.st_uid
        )));
    }
    if st.st_mode & 0o022 != 0 && st.st_mode & 0o1000 == 0 {
        return Err(Refusal::NotPrivate(format!(
            "{} is writable by {} (mode {:o})",
            path.display(),
            if st.st_mode & 0o002 != 0 {
                "others"
            } else {
                "its group"
            },
            st.st_mode & 0o7777
        )));
    }
    Ok(())
}

/// The last resort: a new directory `/tmp/memtrace-<uid>.XXXXXX` (mode
/// 0700, made by `mkdtemp`, so nobody else's), removed at the end of the
/// run; checked like the others, since `/tmp` itself must be sound.
fn fresh(uid: u32) -> Result<PrivateDir> {
    let template = PathBuf::from(format!("/tmp/memtrace-{uid}.XXXXXX"));
    let path = nix::unistd::mkdtemp(&template)
        .with_context(|| format!("cannot create a private directory {}", template.display()))?;
    match open_private(&path, uid) {
        Ok(fd) => Ok(PrivateDir {
            fd,
            path,
            temporary: true,
        }),
        Err(refusal) => {
            let _ = std::fs::remove_dir(&path);
            let why = match refusal {
                Refusal::NotPrivate(why) => why,
                Refusal::Unavailable => format!("cannot open {}", path.display()),
            };
            anyhow::bail!("no private directory for memtrace: {why}")
        }
    }
}
