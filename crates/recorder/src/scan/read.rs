//! The one way the leak scan reads program memory: copies made by the
//! kernel, which report an address that is not mapped as an error instead
//! of a `SIGSEGV`. Whatever another thread unmaps, and whenever, the scan
//! cannot fault.
//!
//! The copy is `process_vm_readv` on the calling thread's own id: it needs
//! no ptrace permission there (the kernel's `__ptrace_may_access` lets any
//! thread of a process read its own process before it looks at
//! `kernel.yama.ptrace_scope`, capabilities or `PR_SET_DUMPABLE`; checked
//! with a dumpable=0 process under another uid). Heap blocks are small and
//! numerous, and a system call per block made the scan of a million
//! blocks several times slower, so ranges are read a batch at a time: in
//! address order, ranges at most [`GAP`] bytes apart are read as one
//! (never across a page that holds none of them, which could be
//! unmapped), and up to [`MAX_RUNS`] such runs go into one call (each costs
//! the kernel a page walk: about 0.4 us, as much as copying 1.5 KiB). A
//! call stops at the first address it cannot read and says how many bytes
//! it copied; the range there is counted as unreadable and skipped, and the
//! call is made again for the ranges after it.
//!
//! Where `process_vm_readv` is refused (a kernel without it, a seccomp
//! filter that answers `ENOSYS` or `EPERM`), the copy goes through a pipe:
//! `write` from program memory into it, also `EFAULT` on a bad address,
//! then `read` into the buffer. One run per call: slower, as safe.
//!
//! Everything is allocated by [`MemReader::new`], before the other threads
//! are stopped; reading allocates nothing.

use std::io;

use crate::thread::gettid;

/// Bytes of the copy buffer: at most this much is read per call.
pub(crate) const BUFFER_BYTES: usize = 1 << 20;

/// Runs per call: the kernel's `UIO_MAXIOV` (`IOV_MAX`).
const MAX_RUNS: usize = 1024;

/// Ranges per batch.
const MAX_SPANS: usize = 8192;

/// Ranges this close are read as one run. Less than a page, so that the
/// bytes between them lie in the pages that hold them.
const GAP: u64 = 128;

/// Bytes of the window [`MemReader::read_near`] reads around a block.
const WINDOW_BYTES: u64 = 32 << 10;

const PAGE: u64 = 4096;

/// A range to read: `len` bytes (a multiple of 8) from `addr`, the
/// caller's name for it, and where the last copy put it in the buffer.
#[derive(Debug, Clone, Copy)]
struct Span {
    addr: u64,
    len: u64,
    tag: u32,
    at: u64,
}

/// How the bytes are copied.
enum Copier {
    /// `process_vm_readv` on this thread id.
    VmReadv(libc::pid_t),
    /// `write` into this pipe and `read` back; its capacity in bytes.
    Pipe {
        read: i32,
        write: i32,
        capacity: u64,
    },
}

/// Reads program memory into its own buffer; see the module docs.
pub(crate) struct MemReader {
    copier: Copier,
    buf: Vec<u64>,
    spans: Vec<Span>,
    remote: Vec<libc::iovec>,
    /// Buffer bytes the batch may need: each range's length plus [`GAP`].
    reserved: u64,
    window: Vec<u64>,
    /// The window's address and the bytes of it read.
    window_at: (u64, u64),
    /// Ranges (or parts of ranges) that could not be read: gone by then.
    pub n_unreadable: u64,
    /// Calls that failed for a reason other than an unmapped address.
    pub n_failed: u64,
}

impl MemReader {
    /// A reader whose buffers are all allocated; an error when no safe way
    /// to read memory works here, or memory is short (kind `OutOfMemory`).
    pub fn new() -> io::Result<MemReader> {
        let mut reader = MemReader::with_copier(Copier::VmReadv(gettid()))?;
        if reader.probe() {
            return Ok(reader);
        }
        let refused = io::Error::last_os_error();
        reader.copier = open_pipe().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("process_vm_readv: {refused}; a pipe instead: {e}"),
            )
        })?;
        if reader.probe() {
            Ok(reader)
        } else {
            Err(io::Error::other(format!(
                "process_vm_readv: {refused}; a pipe instead: {}",
                io::Error::last_os_error()
            )))
        }
    }

    /// A reader that copies through a pipe (the fallback), for tests.
    #[cfg(test)]
    pub fn through_pipe() -> io::Result<MemReader> {
        MemReader::with_copier(open_pipe()?)
    }

    fn with_copier(copier: Copier) -> io::Result<MemReader> {
        let oom = || io::Error::from(io::ErrorKind::OutOfMemory);
        let words = |bytes: usize| -> io::Result<Vec<u64>> {
            let mut v = crate::memory::try_with_capacity(bytes / 8).ok_or_else(oom)?;
            v.resize(bytes / 8, 0);
            Ok(v)
        };
        Ok(MemReader {
            copier,
            buf: words(BUFFER_BYTES)?,
            spans: crate::memory::try_with_capacity(MAX_SPANS).ok_or_else(oom)?,
            remote: crate::memory::try_with_capacity(MAX_RUNS).ok_or_else(oom)?,
            reserved: 0,
            window: words(WINDOW_BYTES as usize)?,
            window_at: (0, 0),
            n_unreadable: 0,
            n_failed: 0,
        })
    }

    /// True when a word of this function's own stack can be copied.
    fn probe(&mut self) -> bool {
        let word = std::hint::black_box(0x5ca7_u64);
        let addr = std::ptr::addr_of!(word) as u64;
        self.copy_one(addr, 8) == 8 && self.buf[0] == word
    }

    /// True when nothing was pushed since the batch was started or read.
    pub fn batch_is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Starts a new batch.
    pub fn clear(&mut self) {
        self.spans.clear();
        self.reserved = 0;
    }

    /// Adds `len` bytes at `addr` (rounded down to whole words) to the
    /// batch, named `tag`; false, adding nothing, when the batch is full
    /// (read it first). An empty batch takes any range of up to
    /// [`BUFFER_BYTES`].
    pub fn push(&mut self, tag: u32, addr: u64, len: u64) -> bool {
        let len = len & !7;
        let room = BUFFER_BYTES as u64;
        let fits = if self.spans.is_empty() {
            len <= room
        } else {
            self.spans.len() < MAX_SPANS && self.reserved + len + GAP <= room
        };
        if fits {
            self.spans.push(Span {
                addr,
                len,
                tag,
                at: 0,
            });
            self.reserved += len + GAP;
        }
        fits
    }

    /// Reads the batch: calls `f(tag, words)` for every range read whole,
    /// in address order, and counts the others as unreadable.
    pub fn read(&mut self, mut f: impl FnMut(u32, &[u64])) {
        self.spans.sort_unstable_by_key(|s| s.addr);
        let mut first = 0;
        while first < self.spans.len() {
            let (copied, laid_out) = self.copy(first);
            let mut k = first;
            while k < laid_out {
                let Span { at, len, tag, .. } = self.spans[k];
                if at + len > copied {
                    break;
                }
                f(tag, &self.buf[(at / 8) as usize..((at + len) / 8) as usize]);
                k += 1;
            }
            if k < laid_out {
                // The copy stopped inside (or at the start of) range `k`.
                self.n_unreadable += 1;
                k += 1;
            }
            first = k;
        }
    }

    /// Reads the `len` bytes at `addr` (whole words) alone: `f(words)` if
    /// they could be read, else counted as unreadable. The aligned
    /// [`WINDOW_BYTES`] around them are read and kept, and later ranges
    /// inside them come from there: a linked list, whose next block is
    /// known only once this one is read, is mostly laid out in address
    /// order, so one call serves hundreds of its blocks instead of one. The
    /// window is as current as any read: the threads that could write it
    /// are stopped.
    pub fn read_near(&mut self, addr: u64, len: u64, f: impl FnOnce(&[u64])) {
        let len = len & !7;
        let end = addr + len;
        let (at, valid) = self.window_at;
        if !(addr >= at && end <= at + valid && addr % 8 == at % 8) {
            self.window_at = (0, 0);
            // The aligned window, else (a page of it before the range is
            // not mapped) the window from the range's page on.
            for start in [addr & !(WINDOW_BYTES - 1), addr & !(PAGE - 1)] {
                if end <= start + WINDOW_BYTES && addr.is_multiple_of(8) {
                    let copied = self.copy_into_window(start);
                    self.window_at = (start, copied);
                    if end <= start + copied {
                        break;
                    }
                }
            }
        }
        let (at, valid) = self.window_at;
        if addr >= at && end <= at + valid && addr % 8 == at % 8 {
            let first = ((addr - at) / 8) as usize;
            f(&self.window[first..first + (len / 8) as usize]);
            return;
        }
        // Not in a window (unaligned, too large, or an earlier page of the
        // window is unmapped): alone.
        let mut words = None;
        self.clear();
        self.push(0, addr, len);
        self.read(|_, w| words = Some(w.len()));
        if words.is_some() {
            f(&self.buf[..(len / 8) as usize]);
        }
    }

    /// Copies the window at `start` into `window`: the bytes copied.
    fn copy_into_window(&mut self, start: u64) -> u64 {
        // The window and the buffer swap places for one copy.
        std::mem::swap(&mut self.buf, &mut self.window);
        let copied = self.copy_one(start, WINDOW_BYTES);
        std::mem::swap(&mut self.buf, &mut self.window);
        copied
    }

    /// Reads `range` (8-byte aligned) in pieces of the buffer's size: calls
    /// `f(address, words)` for every readable stretch, skipping a page
    /// wherever a read stops, and counting each skip as unreadable.
    pub fn read_range(&mut self, range: std::ops::Range<u64>, mut f: impl FnMut(u64, &[u64])) {
        let mut at = range.start;
        while at + 8 <= range.end {
            let len = (range.end - at).min(BUFFER_BYTES as u64) & !7;
            let copied = self.copy_one(at, len);
            if copied > 0 {
                f(at, &self.buf[..(copied / 8) as usize]);
            }
            let stop = at + copied;
            if copied == len {
                at = stop;
                continue;
            }
            // The copy stopped in the page at `stop`. A pipe copies a page's
            // worth at a time, so the rest of that page may still be
            // readable when the copy began inside it: try it alone.
            let page_end = ((stop & !(PAGE - 1)) + PAGE).min(range.end) & !7;
            if !stop.is_multiple_of(PAGE) && page_end > stop && page_end - stop < len - copied {
                let rest = page_end - stop;
                let got = self.copy_one(stop, rest);
                if got > 0 {
                    f(stop, &self.buf[..(got / 8) as usize]);
                }
                if got == rest {
                    at = page_end;
                    continue;
                }
            }
            self.n_unreadable += 1;
            at = page_end.max(stop + 8);
        }
    }

    /// Copies `len` bytes at `addr` to the start of the buffer: the bytes
    /// copied, whole words.
    fn copy_one(&mut self, addr: u64, len: u64) -> u64 {
        self.clear();
        self.push(0, addr, len);
        self.copy(0).0 & !7
    }

    /// Lays the ranges of the batch from `first` on out in runs (see the
    /// module docs), each range's place in the buffer in its `at`, and
    /// copies them in order until one cannot be read: the bytes copied,
    /// and the end of the ranges laid out (those after wait for a call
    /// of their own when the runs ran out).
    fn copy(&mut self, first: usize) -> (u64, usize) {
        self.remote.clear();
        let mut total = 0u64;
        let mut run = (0u64, 0u64); // start and end in memory
        let mut run_at = 0u64; // start in the buffer
        let mut laid_out = self.spans.len();
        for k in first..self.spans.len() {
            let s = &mut self.spans[k];
            let joins = !self.remote.is_empty()
                && s.addr >= run.1
                && s.addr - run.1 <= GAP
                && (s.addr - run.0).is_multiple_of(8);
            if joins {
                run.1 = run.1.max(s.addr + s.len);
                s.at = run_at + (s.addr - run.0);
                if let Some(last) = self.remote.last_mut() {
                    last.iov_len = (run.1 - run.0) as usize;
                }
            } else {
                if self.remote.len() == MAX_RUNS {
                    laid_out = k;
                    break;
                }
                run_at = total;
                run = (s.addr, s.addr + s.len);
                s.at = run_at;
                self.remote.push(libc::iovec {
                    iov_base: s.addr as *mut libc::c_void,
                    iov_len: s.len as usize,
                });
            }
            total = run_at + (run.1 - run.0);
        }
        if total == 0 {
            return (0, laid_out);
        }
        // The runs take at most the lengths plus one GAP each of the ranges
        // pushed (`reserved`), which `push` kept within the buffer.
        debug_assert!(total as usize <= self.buf.len() * 8);
        let local_ptr = self.buf.as_mut_ptr();
        let copied = match self.copier {
            Copier::VmReadv(tid) => {
                let local = libc::iovec {
                    iov_base: local_ptr.cast(),
                    iov_len: total as usize,
                };
                // SAFETY: the local iovec is our buffer, which holds the
                // `total` bytes asked for (checked above); the remote ones
                // are only read by the kernel, which reports an unmapped
                // one as an error.
                let n = unsafe {
                    libc::process_vm_readv(
                        tid,
                        &local,
                        1,
                        self.remote.as_ptr(),
                        self.remote.len() as libc::c_ulong,
                        0,
                    )
                };
                if n < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EFAULT) {
                    self.n_failed += 1;
                }
                n.max(0) as u64
            }
            Copier::Pipe {
                read,
                write,
                capacity,
            } => {
                let mut done = 0u64;
                'runs: for r in &self.remote {
                    let mut off = 0u64;
                    while off < r.iov_len as u64 {
                        let len = (r.iov_len as u64 - off).min(capacity);
                        let src = (r.iov_base as u64 + off) as *const libc::c_void;
                        // SAFETY: `write` only reads `len` bytes at `src`,
                        // and fails with EFAULT, touching nothing, where
                        // one is not mapped.
                        let n = unsafe { libc::write(write, src, len as usize) };
                        if n <= 0 {
                            done += off;
                            break 'runs;
                        }
                        // SAFETY: the destination lies in our buffer, below
                        // `total` bytes from its start (checked above), and
                        // the pipe holds exactly the `n` bytes just written.
                        let got = unsafe {
                            libc::read(
                                read,
                                local_ptr.cast::<u8>().add((done + off) as usize).cast(),
                                n as usize,
                            )
                        };
                        if got != n {
                            self.n_failed += 1;
                            done += off;
                            break 'runs;
                        }
                        off += n as u64;
                    }
                    done += off;
                }
                done
            }
        };
        (copied, laid_out)
    }
}

impl Drop for MemReader {
    fn drop(&mut self) {
        if let Copier::Pipe { read, write, .. } = self.copier {
            // SAFETY: both descriptors were opened by `open_pipe` and are
            // closed only here.
            unsafe {
                libc::close(read);
                libc::close(write);
            }
        }
    }
}

/// A pipe for the fallback copy, non-blocking (a full pipe would be a bug,
/// not a wait), as large as the kernel lets us make it.
fn open_pipe() -> io::Result<Copier> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 writes two descriptors into the array we own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fcntl on a descriptor we own; failure leaves the default size.
    let capacity = unsafe {
        libc::fcntl(fds[1], libc::F_SETPIPE_SZ, BUFFER_BYTES as libc::c_int);
        libc::fcntl(fds[1], libc::F_GETPIPE_SZ)
    };
    Ok(Copier::Pipe {
        read: fds[0],
        write: fds[1],
        capacity: (capacity.max(4096) as u64) & !7,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three pages mapped, the middle one unmapped again.
    struct Holey(u64);

    impl Holey {
        fn new() -> Holey {
            // SAFETY: a fresh anonymous mapping, written through its own
            // pointer, and the middle page unmapped: no Rust object lives
            // there.
            let base = unsafe {
                let p = libc::mmap(
                    std::ptr::null_mut(),
                    3 * PAGE as usize,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                );
                assert_ne!(p, libc::MAP_FAILED);
                let words = p.cast::<u64>();
                for i in 0..(3 * PAGE / 8) as usize {
                    *words.add(i) = i as u64;
                }
                libc::munmap(p.cast::<u8>().add(PAGE as usize).cast(), PAGE as usize);
                p as u64
            };
            Holey(base)
        }
    }

    impl Drop for Holey {
        fn drop(&mut self) {
            // SAFETY: our own mapping; unmapping a hole too is harmless.
            unsafe { libc::munmap(self.0 as *mut libc::c_void, 3 * PAGE as usize) };
        }
    }

    fn batch_around_a_hole(r: &mut MemReader) {
        let h = Holey::new();
        r.clear();
        r.push(1, h.0, 16); // words 0 and 1
        r.push(2, h.0 + PAGE - 8, 16); // runs into the hole
        r.push(3, h.0 + PAGE, 8); // in the hole
        r.push(4, h.0 + 2 * PAGE, 8); // word 1024, after the hole
        let mut got = Vec::new();
        r.read(|tag, words| got.push((tag, words.to_vec())));
        assert_eq!(got, vec![(1, vec![0, 1]), (4, vec![1024])]);
        assert_eq!(r.n_unreadable, 2);
        assert_eq!(r.n_failed, 0);
    }

    #[test]
    fn an_unmapped_range_is_counted_not_a_signal() {
        batch_around_a_hole(&mut MemReader::new().unwrap());
    }

    #[test]
    fn the_pipe_fallback_reads_the_same() {
        batch_around_a_hole(&mut MemReader::through_pipe().unwrap());
    }

    #[test]
    fn a_range_over_a_hole_is_read_around_it() {
        for mut r in [
            MemReader::new().unwrap(),
            MemReader::through_pipe().unwrap(),
        ] {
            let h = Holey::new();
            let mut got = Vec::new();
            r.read_range(h.0 + 8..h.0 + 3 * PAGE, |addr, words| {
                got.push((addr - h.0, words.len(), words[0]));
            });
            assert_eq!(got, vec![(8, 511, 1), (2 * PAGE, 512, 1024)]);
            assert_eq!(r.n_unreadable, 1);
        }
    }

    #[test]
    fn a_batch_of_more_ranges_than_one_call_takes_is_read_whole() {
        // Every other word: runs of many ranges, more ranges than a batch.
        let data: Vec<u64> = (0..4 * MAX_SPANS as u64).collect();
        let mut r = MemReader::new().unwrap();
        let mut sum = 0;
        let mut at = 0;
        while at < data.len() {
            r.clear();
            while at < data.len() && r.push(at as u32, std::ptr::addr_of!(data[at]) as u64, 8) {
                at += 2;
            }
            r.read(|tag, words| {
                assert_eq!(words, &[u64::from(tag)]);
                sum += words[0];
            });
        }
        assert_eq!(sum, data.iter().step_by(2).sum::<u64>());
        assert_eq!(r.n_unreadable, 0);
    }
}
