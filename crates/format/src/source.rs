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

use std::fs::File;
use std::io::{self, BufReader, Read};
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
    /// Up to the file's length when it was opened. Files that have no
    /// length (a pipe) are read to their end.
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
    /// Opens `path` to be read within `extent`.
    pub fn open(path: &Path, extent: Extent) -> io::Result<TraceFile> {
        let file = File::open(path)?;
        // The length of the file as opened (fstat), not of whatever the
        // path names a moment later.
        let meta = file.metadata()?;
        let (limit, idle) = match extent {
            Extent::AsOpened => (meta.is_file().then_some(meta.len()), None),
            Extent::Bytes(n) => (Some(n), None),
            // Only a regular file grows in place; a pipe's end is its end.
            Extent::Follow { idle } => (None, meta.is_file().then_some(idle)),
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
    /// Opens a trace file and reads its header; the rest is read within
    /// `extent`: by default up to the file's length at this moment, so
    /// that a file still being written is read as it was then.
    pub fn open(path: &Path, extent: Extent) -> Result<TraceReader, DecodeError> {
        let file = TraceFile::open(path, extent)?;
        Reader::new(BufReader::with_capacity(1 << 20, file))
    }

    /// Bytes of the file read so far (see [`TraceFile::position`]).
    pub fn file_position(&self) -> u64 {
        self.source().get_ref().position()
    }
}
