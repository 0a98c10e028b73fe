//! The progress of a trace being read: a bar on stderr with the bytes read,
//! the rate and the time left, for the analyses that read a trace long
//! enough to make someone wonder (a trace of millions of events).
//!
//! Every command that decodes a trace opens it through [`open`], which puts
//! a [`Counted`] adapter between the file and the decoder: each read adds
//! its bytes to an `indicatif` bar. The bar stays hidden for the first
//! second of the command ([`DELAY`]), so that a quick analysis prints
//! nothing more than before, and it is never drawn when stderr is not a
//! terminal or with `-q` ([`init`]): stderr then carries exactly what it
//! did without it. A bar is cleared when its reader is dropped, so the
//! terminal keeps no trace of it either. A command that reads the trace
//! several times (`frag`, `plot`) shows one bar per pass.

use std::io::{self, BufReader, IsTerminal, Read};
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use memtrace_format::{DecodeError, Extent, Named, Reader, TraceFile};

/// How long a command runs before a bar appears: analyses that end sooner
/// show none.
pub const DELAY: Duration = Duration::from_secs(1);

/// Read buffer of the decoder: the one `memtrace_format::Reader::open` uses.
const BUFFER: usize = 1 << 20;

/// Replaces [`DELAY`] (in milliseconds), for the tests: with 0 the bar is
/// due at the first read, and a test can check that it still never shows
/// where it must not.
pub const DELAY_ENV: &str = "MEMTRACE_PROGRESS_AFTER_MS";

/// The `-q` option of the commands that read a trace.
#[derive(Args, Debug, Clone, Copy, Default)]
pub struct QuietArg {
    /// Show no progress bar (one shows on stderr, when stderr is a
    /// terminal, while a trace takes more than a second to read).
    #[arg(long, short)]
    pub quiet: bool,
}

/// Whether and when bars appear, fixed once per process by [`init`].
#[derive(Debug, Clone, Copy)]
struct Settings {
    /// stderr is a terminal and no `-q`.
    show: bool,
    /// When a bar may appear.
    from: Instant,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// Decides once, as the command starts, whether bars are drawn: only when
/// stderr is a terminal and `quiet` is false.
pub fn init(quiet: bool) {
    let delay = std::env::var(DELAY_ENV)
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map_or(DELAY, Duration::from_millis);
    let _ = SETTINGS.set(Settings {
        show: !quiet && io::stderr().is_terminal(),
        from: Instant::now() + delay,
    });
}

/// A trace reader whose reads advance a progress bar.
pub type ProgressReader = Reader<BufReader<Counted<TraceFile>>>;

/// Opens a trace like `memtrace_format::Reader::open_named`, with a bar
/// for its bytes (see the module doc for when it shows).
pub fn open(path: &Path, extent: Extent, named: Named) -> Result<ProgressReader, DecodeError> {
    let file = TraceFile::open(path, extent, named)?;
    let counted = match SETTINGS.get().filter(|s| s.show) {
        Some(settings) => Counted::new(file, bar(path, extent)).shown_from(settings.from),
        None => Counted::new(file, ProgressBar::hidden()),
    };
    Reader::new(BufReader::with_capacity(BUFFER, counted))
}

/// A hidden bar for the bytes of `path` that `extent` lets a reader read,
/// with the style it shows in.
fn bar(path: &Path, extent: Extent) -> ProgressBar {
    let len = std::fs::metadata(path).map_or(0, |m| m.len());
    let total = match extent {
        Extent::AsOpened => Some(len),
        Extent::Bytes(n) => Some(n.min(len)),
        // A followed trace grows: no total, no time left.
        Extent::Follow { .. } => None,
    };
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let (bar, template) = match total {
        Some(total) => (
            ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden()),
            "reading {msg} {wide_bar} {bytes}/{total_bytes}, {binary_bytes_per_sec}, {eta} left",
        ),
        None => (
            ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden()),
            "{spinner} reading {msg}: {bytes}, {binary_bytes_per_sec}",
        ),
    };
    let style = ProgressStyle::with_template(template).expect("a valid template");
    bar.with_style(style).with_message(name)
}

/// A [`Read`] adapter that adds the bytes of every read to a progress bar,
/// and moves the bar to stderr once its time has come.
#[derive(Debug)]
pub struct Counted<R> {
    inner: R,
    bar: ProgressBar,
    /// When the hidden bar moves to stderr; `None` once it has (or never).
    show_from: Option<Instant>,
}

impl<R> Counted<R> {
    /// Counts the reads of `inner` into `bar`, drawn wherever `bar` draws.
    pub fn new(inner: R, bar: ProgressBar) -> Counted<R> {
        Counted {
            inner,
            bar,
            show_from: None,
        }
    }

    /// Moves the bar to stderr at the first read at or after `from`.
    pub fn shown_from(mut self, from: Instant) -> Counted<R> {
        self.show_from = Some(from);
        self
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        if self.show_from.is_some_and(|from| Instant::now() >= from) {
            self.show_from = None;
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
            // A followed trace may wait long between reads: keep the
            // spinner and the rate moving meanwhile.
            self.bar.enable_steady_tick(Duration::from_millis(200));
        }
        Ok(n)
    }
}

impl<R> Drop for Counted<R> {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_counts_every_byte_read() {
        let bytes: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let bar = ProgressBar::hidden();
        let mut counted = Counted::new(io::Cursor::new(bytes.clone()), bar.clone());
        let mut first = [0u8; 1000];
        counted.read_exact(&mut first).unwrap();
        assert_eq!(bar.position(), 1000);
        let mut rest = Vec::new();
        counted.read_to_end(&mut rest).unwrap();
        assert_eq!(bar.position(), 10_000);
        assert_eq!([&first[..], &rest[..]].concat(), bytes);
    }

    #[test]
    fn a_trace_decoded_through_it_is_counted_to_its_last_byte() {
        use memtrace_format::{Codec, Func, Header, HeapEvent, ThreadItem, Trailer, Writer};
        let mut w = Writer::new(Vec::new(), &Header::default(), Codec::Raw).unwrap();
        let malloc = HeapEvent {
            func: Func::Malloc as u8,
            ts: 1,
            addr: 0x1000,
            size: 24,
            ..Default::default()
        };
        w.batch(1, &[ThreadItem::Heap(malloc)]).unwrap();
        let trace = w.finish(&Trailer::default()).unwrap();
        let bar = ProgressBar::hidden();
        let counted = Counted::new(io::Cursor::new(trace.clone()), bar.clone());
        let mut reader = Reader::new(BufReader::new(counted)).unwrap();
        let mut n_events = 0;
        while reader.next_event().unwrap().is_some() {
            n_events += 1;
        }
        assert_eq!(n_events, 1);
        assert_eq!(bar.position(), trace.len() as u64);
    }
}
