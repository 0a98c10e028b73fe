//! Stopping the program's other threads for the scan, the way conservative
//! collectors do in-process: each thread gets a signal whose handler notes
//! the thread's stack pointer and thread pointer, says so, and waits until
//! the scan is over. The interrupted registers sit in the signal frame above
//! that stack pointer, so scanning the stack from there covers them too.
//!
//! A thread that blocks the signal cannot be stopped: if it is asleep in a
//! system call, `/proc/self/task/TID/syscall` gives its stack pointer and
//! its stack is still scanned; otherwise it is counted as unscanned.
//!
//! Nothing here allocates once the first signal is sent: a stopped thread
//! may hold an allocator's lock.

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Threads one scan can stop; more are counted as unscanned.
const MAX_THREADS: usize = 1024;

/// How long to wait for threads to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_millis(500);

/// How long a stopped thread waits before it gives up on the scan.
const HOLD_TIMEOUT_NS: u64 = 10_000_000_000;

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

/// Where a stopped thread stands.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ThreadContext {
    /// Its stack pointer: scan from here to the end of its stack mapping.
    pub sp: u64,
    /// Its thread pointer, 0 if unknown.
    pub tp: u64,
}

/// The other threads, stopped until this is dropped.
pub(crate) struct Stopped {
    /// The threads that answered, or whose stack pointer was found otherwise.
    pub threads: Vec<ThreadContext>,
    /// Threads that could not be stopped or located.
    pub n_missed: u32,
}

impl Drop for Stopped {
    fn drop(&mut self) {
        RELEASE.store(true, Ordering::Release);
    }
}

fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

fn monotonic_ns() -> u64 {
    // SAFETY: clock_gettime writes into the timespec we own; it is
    // async-signal-safe.
    let ts = unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
        ts
    };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

extern "C" fn on_stop_signal(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut c_void) {
    // SAFETY: errno is thread-local; it is restored before returning so the
    // interrupted code sees its own.
    let errno = unsafe { *libc::__errno_location() };
    let marker = 0u64;
    // The signal frame, with the interrupted registers, lies above this.
    let sp = std::ptr::addr_of!(marker) as u64;
    let i = CLAIMED.fetch_add(1, Ordering::AcqRel);
    if let Some(slot) = SLOTS.get(i) {
        slot.sp.store(sp, Ordering::Relaxed);
        slot.tp
            .store(super::roots::thread_pointer(), Ordering::Relaxed);
        slot.tid.store(gettid(), Ordering::Release);
    }
    ANSWERED.fetch_add(1, Ordering::AcqRel);
    let start = monotonic_ns();
    while !RELEASE.load(Ordering::Acquire) && monotonic_ns() - start < HOLD_TIMEOUT_NS {
        // SAFETY: sched_yield is async-signal-safe.
        unsafe { libc::sched_yield() };
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

/// The thread ids of the process, but `skip`; an error when
/// `/proc/self/task` cannot be listed.
pub(crate) fn other_threads(skip: &[i32]) -> std::io::Result<Vec<i32>> {
    let dir = std::fs::read_dir("/proc/self/task")?;
    Ok(dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|tid| !skip.contains(tid))
        .collect())
}

/// Stops `tids` (threads of this process). Call with no allocator lock held;
/// `threads` must have room for `tids.len()` entries, so that nothing is
/// allocated while they are stopped.
pub(crate) fn stop(tids: &[i32], mut threads: Vec<ThreadContext>) -> Stopped {
    threads.clear();
    let mut stopped = Stopped {
        threads,
        n_missed: 0,
    };
    if tids.is_empty() {
        return stopped;
    }
    CLAIMED.store(0, Ordering::Release);
    ANSWERED.store(0, Ordering::Release);
    for slot in &SLOTS {
        slot.tid.store(0, Ordering::Relaxed);
    }
    RELEASE.store(false, Ordering::Release);
    let sig = install_handler();
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let mut n_sent = 0;
    for &tid in tids.iter().take(MAX_THREADS) {
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
    let n_answered = CLAIMED.load(Ordering::Acquire).min(MAX_THREADS);
    let mut answered_tids = [0i32; MAX_THREADS];
    for (i, slot) in SLOTS.iter().take(n_answered).enumerate() {
        let tid = slot.tid.load(Ordering::Acquire);
        answered_tids[i] = tid;
        if tid != 0 {
            stopped.threads.push(ThreadContext {
                sp: slot.sp.load(Ordering::Relaxed),
                tp: slot.tp.load(Ordering::Relaxed),
            });
        }
    }
    for &tid in tids {
        if answered_tids[..n_answered].contains(&tid) {
            continue;
        }
        // Not stopped: usable only if it sleeps in a system call.
        match blocked_stack_pointer(tid) {
            Some(sp) if stopped.threads.len() < stopped.threads.capacity() => {
                stopped.threads.push(ThreadContext { sp, tp: 0 })
            }
            _ => stopped.n_missed += 1,
        }
    }
    stopped
}

/// The stack pointer of a thread asleep in a system call, from
/// `/proc/self/task/TID/syscall` ("NR ARG1..ARG6 SP PC"), read without
/// allocating.
fn blocked_stack_pointer(tid: i32) -> Option<u64> {
    let mut path = [0u8; 64];
    let mut w = Cursor {
        buf: &mut path,
        len: 0,
    };
    use std::io::Write as _;
    write!(w, "/proc/self/task/{tid}/syscall\0").ok()?;
    let mut buf = [0u8; 256];
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
    let text = std::str::from_utf8(buf.get(..usize::try_from(n).ok()?)?).ok()?;
    let mut it = text.split_whitespace();
    // "running" or "-1 SP PC" (not in a system call) give no usable stack.
    let nr = it.next()?;
    if nr == "running" || nr.starts_with('-') {
        return None;
    }
    let sp = it.nth(6)?;
    u64::from_str_radix(sp.trim_start_matches("0x"), 16).ok()
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
