//! Where a reader's bytes come from: a trace file read as far as it was when
//! it was opened, a given number of bytes of it, or followed as it grows.
//!
//! A trace may still be written while it is read (the program runs on, or
//! someone appends to it on purpose): without a bound, a reader would read
//! for as long as the writer writes. [`Extent::AsOpened`], the default,
//! reads the bytes the file had when it was opened and stops there, as if
//! the file had been cut at that moment (`Completeness::NoTrailer` or
//! `Truncated`). [`Extent::Follow`] instead waits for more while the file
//! grows, until the reader has read the trailer (the [`Reader`] reads
//! nothing after it) or the file has not grown for the idle time given.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::DecodeError;
use crate::read::Reader;

/// How often a follower looks whether the file grew. A poll of `fstat`
/// every 50 ms costs nothing measurable and keeps the wait short once the
/// writer wrote its trailer.
const POLL: Duration = Duration::from_millis(50);

/// How far a reader reads a trace file that may still be growing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Extent {
    /// Up to the file's length when it was opened.
    #[default]
    AsOpened,
    /// Up to this many bytes, or the file's end if it is shorter: for a
    /// second pass over exactly what a first pass read.
    Bytes(u64),
    /// As the file grows, until the reader has read the trailer. When the
    /// file has not grown for `idle`, its end is taken as the end of the
    /// trace (a writer that died leaves no trailer).
    Follow {
        /// How long the file may stay the same size before the reader stops.
        idle: Duration,
    },
}

/// Who named a trace's path, which decides whether a symbolic link there
/// is followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Named {
    /// The user, on the command line: a link is followed (their choice).
    ByUser,
    /// memtrace, which found the file (`report --family` listing a
    /// directory, `run` told the name by the recorder): a link is refused,
    /// since whoever can write the directory could have planted it.
    Found,
}

/// A trace file read within an [`Extent`]; see [`Reader::open`].
#[derive(Debug)]
pub struct TraceFile {
    file: File,
    /// Bytes handed out so far.
    position: u64,
    /// Where to stop; `None` reads to the end of the file.
    limit: Option<u64>,
    /// With [`Extent::Follow`]: how long to wait for growth at the end.
    idle: Option<Duration>,
}

impl TraceFile {
    /// Opens `path` to be read within `extent`. Only a regular file is
    /// read: it is opened `O_NONBLOCK` (so a FIFO does not block the open
    /// until someone writes to it), and what was opened is checked with
    /// `fstat`; anything else is [`DecodeError::NotRegularFile`].
    pub fn open(path: &Path, extent: Extent, named: Named) -> Result<TraceFile, DecodeError> {
        let mut flags = libc::O_NONBLOCK | libc::O_CLOEXEC;
        if named == Named::Found {
            flags |= libc::O_NOFOLLOW;
        }
        let file = match OpenOptions::new().read(true).custom_flags(flags).open(path) {
            Err(e) if named == Named::Found && e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(DecodeError::NotRegularFile("a symbolic link"));
            }
            opened => opened?,
        };
        // The file as opened (fstat), not whatever the path names a moment later.
        let meta = file.metadata()?;
        let kind = meta.file_type();
        if !kind.is_file() {
            return Err(DecodeError::NotRegularFile(if kind.is_fifo() {
                "a FIFO"
            } else if kind.is_dir() {
                "a directory"
            } else if kind.is_char_device() {
                "a character device"
            } else if kind.is_block_device() {
                "a block device"
            } else {
                "a socket"
            }));
        }
        // O_NONBLOCK changes nothing for a regular file's reads.
        let (limit, idle) = match extent {
            Extent::AsOpened => (Some(meta.len()), None),
            Extent::Bytes(n) => (Some(n), None),
            Extent::Follow { idle } => (None, Some(idle)),
        };
        Ok(TraceFile {
            file,
            position: 0,
            limit,
            idle,
        })
    }

    /// Bytes read so far: with a [`Reader`] that has reached its end, the
    /// [`Extent::Bytes`] that reads the same trace again.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// One read within the limit, without waiting.
    fn read_now(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let room = match self.limit {
            Some(limit) => {
                let left = limit.saturating_sub(self.position);
                buf.len().min(usize::try_from(left).unwrap_or(usize::MAX))
            }
            None => buf.len(),
        };
        if room == 0 {
            return Ok(0);
        }
        let n = self.file.read(&mut buf[..room])?;
        self.position += n as u64;
        Ok(n)
    }
}

impl Read for TraceFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.read_now(buf)?;
        let Some(idle) = self.idle else {
            return Ok(n);
        };
        if n > 0 || buf.is_empty() {
            return Ok(n);
        }
        // At the end of what is written so far: wait while the file grows.
        let mut still_since = Instant::now();
        let mut len = self.file.metadata()?.len();
        loop {
            if still_since.elapsed() >= idle {
                return Ok(0);
            }
            std::thread::sleep(POLL.min(idle));
            let now = self.file.metadata()?.len();
            if now != len {
                len = now;
                still_since = Instant::now();
            }
            if now > self.position {
                let n = self.read_now(buf)?;
                if n > 0 {
                    return Ok(n);
                }
            }
        }
    }
}

/// A [`Reader`] of a trace file.
pub type TraceReader = Reader<BufReader<TraceFile>>;

impl Reader<BufReader<TraceFile>> {
    /// Opens a trace file the user named and reads its header; the rest is
    /// read within `extent`: by default up to the file's length at this
    /// moment, so that a file still being written is read as it was then.
    /// Only a regular file is read (see [`TraceFile::open`]).
    pub fn open(path: &Path, extent: Extent) -> Result<TraceReader, DecodeError> {
        Reader::open_named(path, extent, Named::ByUser)
    }

    /// [`Reader::open`] for a path that the user or memtrace named.
    pub fn open_named(
        path: &Path,
        extent: Extent,
        named: Named,
    ) -> Result<TraceReader, DecodeError> {
        let file = TraceFile::open(path, extent, named)?;
        Reader::new(BufReader::with_capacity(1 << 20, file))
    }

    /// Bytes of the file read so far (see [`TraceFile::position`]).
    pub fn file_position(&self) -> u64 {
        self.source().get_ref().position()
    }
}
