//! Fatal signals: write out what was recorded, then die the same way.
//!
//! For SIGSEGV, SIGBUS, SIGILL, SIGFPE and SIGABRT (`abort`), a handler
//! drains every ring into the trace (uncompressed: zstd would call the C
//! library's `malloc`, whose lock a crash inside `malloc` may hold), adds a
//! note naming the signal and the trailer, then re-raises the signal with
//! its default action, so the program ends with the same status and core
//! dump as without memtrace. A handler the program installs itself replaces
//! ours, as it should. SIGKILL cannot be caught: what the writer had not
//! written yet is lost (at most the last 10 ms of events, plus the block
//! being filled, sealed every 250 ms).

use std::ffi::{c_int, c_void};

const FATAL: [c_int; 5] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGABRT,
];

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
        _ => "a fatal signal",
    }
}
