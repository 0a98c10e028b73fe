//! Fatal signals: write out what was recorded, then die the same way.
//!
//! For SIGSEGV, SIGBUS, SIGILL, SIGFPE and SIGABRT (`abort`), and for the
//! signals whose default action ends a program without a fault (SIGPIPE: a
//! `sort` in a pipeline whose reader has gone; SIGTERM, SIGHUP; SIGXCPU and
//! SIGXFSZ: a resource limit), a handler drains every ring into the trace
//! (uncompressed: zstd would call the C library's `malloc`, whose lock a
//! crash inside `malloc` may hold), adds a note naming the signal and the
//! trailer, then re-raises the signal with its default action, so the
//! program ends with the same status and core dump as without memtrace. A
//! handler the program installs itself replaces ours, as it should.
//!
//! SIGINT and SIGQUIT are left alone: runtimes install their own handler
//! only where they find the default one (CPython's KeyboardInterrupt), so a
//! handler of ours would change what the program does on Ctrl-C. SIGKILL
//! cannot be caught. In those cases what the writer had not written yet is
//! lost (at most the last 10 ms of events, plus the block being filled,
//! sealed every 250 ms).

use std::ffi::{c_int, c_void};

const FATAL: [c_int; 10] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGABRT,
    libc::SIGPIPE,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGXCPU,
    libc::SIGXFSZ,
];

/// Signals the writer thread blocks, so that a signal sent to the process
/// reaches one of the program's own threads (whose handlers expect to run
/// there) and never interrupts the writer in the middle of a block.
const PROCESS_SIGNALS: [c_int; 11] = [
    libc::SIGPIPE,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGXCPU,
    libc::SIGXFSZ,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGALRM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGCHLD,
];

/// Blocks [`PROCESS_SIGNALS`] in the calling thread (the writer).
pub(crate) fn block_process_signals() {
    // SAFETY: builds a signal set on the stack and changes only the calling
    // thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in PROCESS_SIGNALS {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Installs the handler for each fatal signal that has the default action.
pub(crate) fn install() {
    for sig in FATAL {
        // SAFETY: sigaction with a null new action only reads the current one;
        // then installs a handler with a fully initialised struct.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) != 0
                || old.sa_sigaction != libc::SIG_DFL
            {
                continue;
            }
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_fatal_signal as *const () as usize;
            // Reset to the default on entry, so the re-raise below (or a
            // second fault inside the handler) ends the process.
            act.sa_flags =
                libc::SA_SIGINFO | libc::SA_RESETHAND | libc::SA_NODEFER | libc::SA_ONSTACK;
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(sig, &act, std::ptr::null_mut());
        }
    }
}

extern "C" fn on_fatal_signal(sig: c_int, _: *mut libc::siginfo_t, _: *mut c_void) {
    crate::session::finish_after_signal(sig);
    // SAFETY: the disposition is the default again (SA_RESETHAND): the
    // process ends with this signal, as it would have without us.
    unsafe { libc::raise(sig) };
}

/// The signal's name.
pub(crate) fn signal_name(sig: c_int) -> &'static str {
    match sig {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGABRT => "SIGABRT",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        _ => "a fatal signal",
    }
}
