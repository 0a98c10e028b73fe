//! Stopping the program's other threads for the scan, the way conservative
//! collectors do in-process: each thread gets a signal whose handler notes
//! the thread's stack pointer and thread pointer, says so, and waits until
//! the scan is over. The interrupted registers sit in the signal frame above
//! that stack pointer, so scanning the stack from there covers them too.
//!
//! # System calls
//! A thread asleep in a system call is stopped like any other: the signal
//! interrupts the call, the handler waits, and when it returns the kernel
//! restarts the call (the handler is installed with `SA_RESTART`) or, for
//! the calls Linux never restarts after a handler (`nanosleep`, `poll`,
//! `epoll_wait`, `select`, a `futex` wait with a timeout, ...; see
//! signal(7)), the call fails with `EINTR`, as it would for any other
//! signal with a handler. The handler keeps `errno`.
//!
//! A thread that blocks the signal cannot be stopped. If it is asleep in a
//! system call (`/proc/self/task/TID/status` says `S` or `D`),
//! `/proc/self/task/TID/syscall` gives its stack pointer and the call's
//! arguments, and it is scanned from there (the registers its caller
//! saved are not seen); after the scan's last read its count of context
//! switches must be the same and it must still be asleep, or it ran
//! meanwhile and the scan is incomplete. A thread that blocks the signal
//! and runs, or one beyond [`MAX_THREADS`], is unscanned and makes the
//! scan incomplete.
//!
//! # How long
//! A stopped thread waits at most its hold time (the scan's budget plus
//! [`HOLD_MARGIN_NS`]); one that gives up is counted, and the scanner,
//! which checks the count after its last read, calls the scan incomplete.
//!
//! Nothing here allocates once the first signal is sent: a stopped thread
//! may hold an allocator's lock. The threads are listed again (with
//! `getdents64` into a stack buffer) after the signals, so that a thread
//! started meanwhile is stopped too.

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::clock::monotonic_ns;
use crate::memory::try_with_capacity;
use crate::thread::gettid;

/// Threads one scan can stop; more are counted as unscanned.
pub(crate) const MAX_THREADS: usize = 1024;

/// How long to wait for threads to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_millis(500);

/// How much longer than the scan's budget a stopped thread waits: the
/// scanner stops marking at its budget and releases the threads right
/// after its last read.
pub(crate) const HOLD_MARGIN_NS: u64 = 2_000_000_000;

/// Rounds of listing and signalling: a thread started during one is
/// signalled in the next.
const ROUNDS: usize = 4;

struct Slot {
    tid: AtomicI32,
    sp: AtomicU64,
    tp: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Slot = Slot {
    tid: AtomicI32::new(0),
    sp: AtomicU64::new(0),
    tp: AtomicU64::new(0),
};
static SLOTS: [Slot; MAX_THREADS] = [EMPTY; MAX_THREADS];
static CLAIMED: AtomicUsize = AtomicUsize::new(0);
static ANSWERED: AtomicUsize = AtomicUsize::new(0);
static RELEASE: AtomicBool = AtomicBool::new(true);
/// How long a stopped thread waits before it gives up on the scan.
static HOLD_NS: AtomicU64 = AtomicU64::new(10_000_000_000);
/// Threads that gave up waiting while the scan went on.
static GAVE_UP: AtomicU32 = AtomicU32::new(0);

/// Where a stopped thread stands.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ThreadContext {
    /// Its thread id (the tests look for their threads by it).
    #[cfg_attr(not(test), allow(dead_code))]
    pub tid: i32,
    /// Its stack pointer: scan from here to the end of its stack mapping.
    pub sp: u64,
    /// Its thread pointer, 0 if unknown.
    pub tp: u64,
}

/// A thread that blocks the signal, found asleep in a system call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sleeper {
    tid: i32,
    switches: u64,
    /// Its user stack pointer.
    pub sp: u64,
    /// The call's six arguments: registers, scanned as values.
    pub args: [u64; 6],
}

/// Storage for [`stop`], allocated before.
pub(crate) struct Room {
    threads: Vec<ThreadContext>,
    sleepers: Vec<Sleeper>,
    tids: Vec<i32>,
}

impl Room {
    /// Room for [`MAX_THREADS`] threads; `None` when memory is short.
    pub fn new() -> Option<Room> {
        Some(Room {
            threads: try_with_capacity(MAX_THREADS)?,
            sleepers: try_with_capacity(MAX_THREADS)?,
            tids: try_with_capacity(MAX_THREADS)?,
        })
    }
}

/// The other threads, stopped until this is dropped.
pub(crate) struct Stopped {
    /// The threads that answered.
    pub threads: Vec<ThreadContext>,
    /// Threads that block the signal, asleep in a system call.
    pub sleepers: Vec<Sleeper>,
    /// Threads that could be neither stopped nor found asleep.
    pub n_missed: u32,
    tids: Vec<i32>,
}

/// What happened to the threads while the scan read memory.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Held {
    /// Stopped threads that gave up waiting and ran again.
    pub n_gave_up: u32,
    /// Sleepers that ran.
    pub n_woke: u32,
}

impl Stopped {
    /// Call after the scan's last read of program memory, before dropping.
    pub fn held(&self) -> Held {
        let n_woke = self
            .sleepers
            .iter()
            .filter(|s| asleep(s.tid) != Some(s.switches))
            .count() as u32;
        Held {
            n_gave_up: GAVE_UP.load(Ordering::Acquire),
            n_woke,
        }
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        RELEASE.store(true, Ordering::Release);
    }
}

extern "C" fn on_stop_signal(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut c_void) {
    // SAFETY: errno is thread-local; it is restored before returning so the
    // interrupted code sees its own.
    let errno = unsafe { *libc::__errno_location() };
    let marker = 0u64;
    // The signal frame, with the interrupted registers, lies above this.
    let sp = std::ptr::addr_of!(marker) as u64;
    if !RELEASE.load(Ordering::Acquire) {
        let i = CLAIMED.fetch_add(1, Ordering::AcqRel);
        if let Some(slot) = SLOTS.get(i) {
            slot.sp.store(sp, Ordering::Relaxed);
            slot.tp
                .store(super::roots::thread_pointer(), Ordering::Relaxed);
            slot.tid.store(gettid(), Ordering::Release);
        }
        ANSWERED.fetch_add(1, Ordering::AcqRel);
        let start = monotonic_ns();
        let hold = HOLD_NS.load(Ordering::Relaxed);
        while !RELEASE.load(Ordering::Acquire) {
            if monotonic_ns().saturating_sub(start) >= hold {
                GAVE_UP.fetch_add(1, Ordering::AcqRel);
                break;
            }
            // SAFETY: sched_yield is async-signal-safe.
            unsafe { libc::sched_yield() };
        }
    }
    std::hint::black_box(&marker);
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// A real-time signal nobody handles, with our handler installed; `None`
/// when every candidate is taken.
fn install_handler() -> Option<libc::c_int> {
    let (lo, hi) = (libc::SIGRTMIN() + 4, libc::SIGRTMAX() - 1);
    for sig in (lo..=hi).rev() {
        // SAFETY: sigaction with a null new action only reads the current one.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        if unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } != 0 {
            continue;
        }
        let ours = old.sa_sigaction == on_stop_signal as *const () as usize;
        if old.sa_sigaction != libc::SIG_DFL && !ours {
            continue;
        }
        if !ours {
            // SAFETY: installs a handler that is async-signal-safe; the
            // struct is fully initialised.
            let ok = unsafe {
                let mut act: libc::sigaction = std::mem::zeroed();
                act.sa_sigaction = on_stop_signal as *const () as usize;
                act.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
                libc::sigfillset(&mut act.sa_mask);
                libc::sigaction(sig, &act, std::ptr::null_mut()) == 0
            };
            if !ok {
                continue;
            }
        }
        // The handler stays installed after the scan: a late signal must
        // never meet the default action, which would kill the program.
        return Some(sig);
    }
    None
}

/// Adds the threads of this process but `skip` that `tids` lacks, without
/// allocating (`tids` never grows; those that do not fit are left out).
/// The number of threads found that did not fit; an error when
/// `/proc/self/task` cannot be listed.
pub(crate) fn list_threads(skip: &[i32], tids: &mut Vec<i32>) -> std::io::Result<u32> {
    // SAFETY: the path is NUL-terminated; the descriptor is closed below.
    let fd = unsafe {
        libc::open(
            c"/proc/self/task".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut n_left_out = 0;
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: getdents64 writes at most `buf.len()` bytes into `buf`.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len()) };
        if n <= 0 {
            break;
        }
        // Each entry: d_ino (8), d_off (8), d_reclen (2), d_type (1), name.
        let mut at = 0usize;
        while at + 19 < n as usize {
            let reclen = u16::from_ne_bytes([buf[at + 16], buf[at + 17]]) as usize;
            if reclen == 0 {
                break;
            }
            let name = &buf[at + 19..(at + reclen).min(n as usize)];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            if let Some(tid) = std::str::from_utf8(name).ok().and_then(|s| s.parse().ok()) {
                if !skip.contains(&tid) && !tids.contains(&tid) {
                    if tids.len() < tids.capacity() {
                        tids.push(tid);
                    } else {
                        n_left_out += 1;
                    }
                }
            }
            at += reclen;
        }
    }
    // SAFETY: our descriptor, closed once.
    unsafe { libc::close(fd) };
    Ok(n_left_out)
}

/// Stops every thread of this process but `skip` (the caller among them).
/// Call with no allocator lock held; nothing is allocated from the first
/// signal on. A stopped thread waits at most `hold_ns`.
pub(crate) fn stop(skip: &[i32], room: Room, hold_ns: u64) -> Stopped {
    let Room {
        mut threads,
        mut sleepers,
        mut tids,
    } = room;
    threads.clear();
    sleepers.clear();
    tids.clear();
    CLAIMED.store(0, Ordering::Release);
    ANSWERED.store(0, Ordering::Release);
    GAVE_UP.store(0, Ordering::Release);
    HOLD_NS.store(hold_ns, Ordering::Relaxed);
    for slot in &SLOTS {
        slot.tid.store(0, Ordering::Relaxed);
    }
    RELEASE.store(false, Ordering::Release);
    let mut stopped = Stopped {
        threads,
        sleepers,
        n_missed: 0,
        tids,
    };
    let sig = install_handler();
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let mut n_sent = 0;
    let mut n_left_out = 0;
    for _ in 0..ROUNDS {
        let before = stopped.tids.len();
        n_left_out = list_threads(skip, &mut stopped.tids).unwrap_or(0);
        if stopped.tids.len() == before {
            break;
        }
        for &tid in &stopped.tids[before..] {
            if let Some(sig) = sig {
                // SAFETY: tgkill sends a signal to a thread of our own process.
                if unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, sig) } == 0 {
                    n_sent += 1;
                }
            }
        }
        let start = monotonic_ns();
        while ANSWERED.load(Ordering::Acquire) < n_sent
            && monotonic_ns() - start < ANSWER_TIMEOUT.as_nanos() as u64
        {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    stopped.n_missed += n_left_out;
    let n_answered = CLAIMED.load(Ordering::Acquire).min(MAX_THREADS);
    for slot in SLOTS.iter().take(n_answered) {
        let tid = slot.tid.load(Ordering::Acquire);
        if tid != 0 && stopped.threads.len() < MAX_THREADS {
            stopped.threads.push(ThreadContext {
                tid,
                sp: slot.sp.load(Ordering::Relaxed),
                tp: slot.tp.load(Ordering::Relaxed),
            });
        }
    }
    let answered = |tid: i32| {
        SLOTS
            .iter()
            .take(n_answered)
            .any(|s| s.tid.load(Ordering::Acquire) == tid)
    };
    for k in 0..stopped.tids.len() {
        let tid = stopped.tids[k];
        if answered(tid) {
            continue;
        }
        // Not stopped: usable only if it sleeps in a system call.
        let sleeper = asleep(tid).and_then(|switches| {
            let (sp, args) = syscall_of(tid)?;
            // Asleep before and after reading where: the same sleep.
            (asleep(tid) == Some(switches)).then_some(Sleeper {
                tid,
                switches,
                sp,
                args,
            })
        });
        match sleeper {
            Some(s) if stopped.sleepers.len() < stopped.sleepers.capacity() => {
                stopped.sleepers.push(s)
            }
            _ => stopped.n_missed += 1,
        }
    }
    stopped
}

/// Reads a small `/proc/self/task/TID/NAME` file into `buf` without
/// allocating: the text read, `None` on failure.
fn read_task_file<'a>(tid: i32, name: &str, buf: &'a mut [u8]) -> Option<&'a str> {
    let mut path = [0u8; 64];
    let mut w = Cursor {
        buf: &mut path,
        len: 0,
    };
    use std::io::Write as _;
    write!(w, "/proc/self/task/{tid}/{name}\0").ok()?;
    // SAFETY: the path is NUL-terminated; read fills our buffer.
    let n = unsafe {
        let fd = libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return None;
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n
    };
    std::str::from_utf8(buf.get(..usize::try_from(n).ok()?)?).ok()
}

/// The thread's count of context switches if it is asleep (state `S` or
/// `D`), `None` if it runs, may run, or cannot be read.
fn asleep(tid: i32) -> Option<u64> {
    let mut buf = [0u8; 4096];
    let text = read_task_file(tid, "status", &mut buf)?;
    let mut sleeping = false;
    let mut switches = 0u64;
    let mut n_counts = 0;
    for line in text.lines() {
        if let Some(state) = line.strip_prefix("State:") {
            sleeping = matches!(state.trim_start().as_bytes().first(), Some(b'S' | b'D'));
        } else if let Some(v) = line
            .strip_prefix("voluntary_ctxt_switches:")
            .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
        {
            switches += v.trim().parse::<u64>().ok()?;
            n_counts += 1;
        }
    }
    (sleeping && n_counts == 2).then_some(switches)
}

/// The stack pointer and arguments of a thread inside a system call, from
/// `/proc/self/task/TID/syscall` ("NR ARG1..ARG6 SP PC").
fn syscall_of(tid: i32) -> Option<(u64, [u64; 6])> {
    let mut buf = [0u8; 256];
    let text = read_task_file(tid, "syscall", &mut buf)?;
    let mut it = text.split_whitespace();
    // "running" or "-1 SP PC" (not in a system call) give no usable stack.
    let nr = it.next()?;
    if nr == "running" || nr.starts_with('-') {
        return None;
    }
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    let mut args = [0u64; 6];
    for a in &mut args {
        *a = hex(it.next()?)?;
    }
    Some((hex(it.next()?)?, args))
}

/// A fixed buffer for `write!`.
struct Cursor<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl std::io::Write for Cursor<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = self.buf.len() - self.len;
        let n = data.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&data[..n]);
        self.len += n;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// True when thread `tid` sleeps in `read` of `fd`.
    fn reading(tid: i32, fd: i32) -> bool {
        syscall_of(tid).is_some_and(|(_, args)| args[0] == fd as u64) && asleep(tid).is_some()
    }

    #[test]
    fn threads_are_listed_without_allocating_and_skips_are_skipped() {
        let me = gettid();
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || {
            tx.send(gettid()).unwrap();
            done_rx.recv().unwrap();
        });
        let other_tid = rx.recv().unwrap();
        let mut tids = Vec::with_capacity(MAX_THREADS);
        assert_eq!(list_threads(&[me], &mut tids).unwrap(), 0);
        assert!(tids.contains(&other_tid));
        assert!(!tids.contains(&me));
        let mut small = Vec::with_capacity(0);
        assert!(list_threads(&[me], &mut small).unwrap() >= 1);
        assert!(small.is_empty());
        done_tx.send(()).unwrap();
        other.join().unwrap();
    }

    #[test]
    fn a_thread_asleep_in_a_system_call_is_seen_as_asleep() {
        // A stop in a test beside this one would wake the reader with its
        // signal and change its count of switches.
        let _turn = take_turn();
        let mut fds = [0i32; 2];
        // SAFETY: pipe writes two descriptors into our array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            tx.send(gettid()).unwrap();
            let mut b = 0u8;
            // SAFETY: reads one byte into a local.
            unsafe { libc::read(fds[0], std::ptr::addr_of_mut!(b).cast(), 1) }
        });
        let tid = rx.recv().unwrap();
        // Readiness: /proc says it is in read (system call 0).
        while !reading(tid, fds[0]) {
            std::thread::yield_now();
        }
        let switches = asleep(tid).expect("asleep in read");
        assert_eq!(asleep(tid), Some(switches));
        assert_eq!(asleep(gettid()), None, "the caller runs");
        // SAFETY: writes one byte from a local.
        assert_eq!(unsafe { libc::write(fds[1], [1u8].as_ptr().cast(), 1) }, 1);
        assert_eq!(reader.join().unwrap(), 1);
        // SAFETY: our descriptors.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
    }

    /// The tests that stop threads take turns: the stop's state is global.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// This test's turn; a test that failed before does not fail the rest.
    fn take_turn() -> std::sync::MutexGuard<'static, ()> {
        ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A thread blocked in `read` of a pipe of its own, `block_signals`
    /// first if asked; it returns what `read` returned and `errno`.
    struct Reader {
        fds: [i32; 2],
        tid: i32,
        thread: std::thread::JoinHandle<(isize, i32)>,
    }

    impl Reader {
        fn start(block_signals: bool) -> Reader {
            let mut fds = [0i32; 2];
            // SAFETY: pipe writes two descriptors into our array.
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
            let (tx, rx) = std::sync::mpsc::channel();
            let thread = std::thread::spawn(move || {
                if block_signals {
                    // SAFETY: fills a local set and blocks it for this thread.
                    unsafe {
                        let mut all: libc::sigset_t = std::mem::zeroed();
                        libc::sigfillset(&mut all);
                        libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
                    }
                }
                tx.send(gettid()).unwrap();
                let mut b = 0u8;
                // SAFETY: errno is this thread's; read writes one byte
                // into a local.
                unsafe {
                    *libc::__errno_location() = 0;
                    let n = libc::read(fds[0], std::ptr::addr_of_mut!(b).cast(), 1);
                    (n, *libc::__errno_location())
                }
            });
            let tid = rx.recv().unwrap();
            // Readiness: /proc says it sleeps in read of this pipe.
            while !reading(tid, fds[0]) {
                std::thread::yield_now();
            }
            Reader { fds, tid, thread }
        }

        /// Writes the byte it waits for; what its read returned.
        fn finish(self) -> (isize, i32) {
            // SAFETY: writes one byte from a constant.
            assert_eq!(
                unsafe { libc::write(self.fds[1], [1u8].as_ptr().cast(), 1) },
                1
            );
            let result = self.thread.join().unwrap();
            // SAFETY: our descriptors.
            unsafe {
                libc::close(self.fds[0]);
                libc::close(self.fds[1]);
            }
            result
        }
    }

    #[test]
    fn a_read_interrupted_by_the_stop_is_restarted_not_failed() {
        let _turn = take_turn();
        let reader = Reader::start(false);
        let stopped = stop(&[gettid()], Room::new().unwrap(), 10_000_000_000);
        assert!(stopped.threads.iter().any(|t| t.tid == reader.tid));
        assert!(stopped.sleepers.is_empty());
        assert_eq!(stopped.held(), Held::default());
        drop(stopped);
        // SA_RESTART: the read goes on and gets the byte; errno untouched.
        assert_eq!(reader.finish(), (1, 0));
    }

    #[test]
    fn a_sleeper_that_blocks_the_signal_is_scanned_and_its_waking_seen() {
        let _turn = take_turn();
        let reader = Reader::start(true);
        let stopped = stop(&[gettid()], Room::new().unwrap(), 10_000_000_000);
        let sleeper = stopped.sleepers.iter().find(|s| s.tid == reader.tid);
        assert_eq!(sleeper.map(|s| s.args[0]), Some(reader.fds[0] as u64));
        assert!(!stopped.threads.iter().any(|t| t.tid == reader.tid));
        assert_eq!(stopped.held().n_woke, 0, "still asleep");
        assert_eq!(reader.finish(), (1, 0));
        assert_eq!(stopped.held().n_woke, 1, "it ran");
    }

    #[test]
    fn a_thread_held_past_its_limit_gives_up_and_is_counted() {
        let _turn = take_turn();
        let reader = Reader::start(false);
        let stopped = stop(&[gettid()], Room::new().unwrap(), 1_000_000);
        while stopped.held().n_gave_up == 0 {
            std::thread::yield_now();
        }
        drop(stopped);
        assert_eq!(reader.finish(), (1, 0));
    }
}
