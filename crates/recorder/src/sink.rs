//! The trace file, guarded against the traced program.
//!
//! The trace's descriptor lives inside someone else's program, which may
//! close it (shells close descriptors they do not know), or `dup2` another
//! file onto its number. Writing then would corrupt the program's own file.
//! So the descriptor is moved high, out of the way of ordinary numbering, and
//! before every write its identity (device and inode) is checked: when it is
//! no longer our file, recording stops instead.

use std::fs::File;
use std::io::{self, Write};
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd};

/// Descriptors at or above this number are rarely touched by programs.
const HIGH_FD: libc::c_int = 700;

/// A trace file that refuses to write once its descriptor changed hands.
pub(crate) struct TraceFile {
    file: ManuallyDrop<File>,
    dev: u64,
    ino: u64,
}

impl TraceFile {
    /// Takes ownership of a freshly created trace file.
    pub(crate) fn new(file: File) -> io::Result<TraceFile> {
        let fd = file.as_raw_fd();
        // SAFETY: fcntl duplicates a descriptor we own; on success we own the copy.
        let high = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, HIGH_FD) };
        let file = if high >= 0 {
            drop(file);
            // SAFETY: `high` is a new descriptor that nothing else owns.
            unsafe { File::from_raw_fd(high) }
        } else {
            file
        };
        let (dev, ino) = identity(file.as_raw_fd()).ok_or_else(io::Error::last_os_error)?;
        Ok(TraceFile {
            file: ManuallyDrop::new(file),
            dev,
            ino,
        })
    }

    fn intact(&self) -> bool {
        identity(self.file.as_raw_fd()) == Some((self.dev, self.ino))
    }

    fn check(&self) -> io::Result<()> {
        if self.intact() {
            Ok(())
        } else {
            Err(io::Error::other(
                "the program closed or reused the trace's file descriptor",
            ))
        }
    }
}

fn identity(fd: libc::c_int) -> Option<(u64, u64)> {
    // SAFETY: fstat fills the struct we own; a bad fd just fails.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        (libc::fstat(fd, &mut st) == 0).then_some((st.st_dev, st.st_ino))
    }
}

impl Write for TraceFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.check()?;
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for TraceFile {
    fn drop(&mut self) {
        if self.intact() {
            // SAFETY: the descriptor is still ours; it is closed once, here.
            unsafe { ManuallyDrop::drop(&mut self.file) };
        }
        // Otherwise the number belongs to the program now: leave it open.
    }
}
