//! The process's resource use, sampled by the writer thread: resident set
//! size, CPU time and page faults.

use memtrace_format::ResourceSample;

/// `getrusage(RUSAGE_SELF)`: the process's resource use so far (the one
/// place the recorder asks for it).
fn usage() -> libc::rusage {
    // SAFETY: getrusage fills the struct we own; all-zero bytes are a
    // valid rusage, left as they are if the call fails.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    }
}

/// The counters a phase boundary records, by name: faults and context
/// switches of the whole process.
pub(crate) fn rusage_counters() -> Vec<(String, u64)> {
    let usage = usage();
    vec![
        ("minor-faults".into(), usage.ru_minflt as u64),
        ("major-faults".into(), usage.ru_majflt as u64),
        ("voluntary-switches".into(), usage.ru_nvcsw as u64),
        ("involuntary-switches".into(), usage.ru_nivcsw as u64),
    ]
}

/// A sample now, stamped `ts`. Fields that cannot be read are 0.
pub(crate) fn sample(ts: u64) -> ResourceSample {
    let usage = usage();
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    ResourceSample {
        ts,
        rss_bytes: resident_bytes().unwrap_or(0),
        user_ns: ns(usage.ru_utime),
        system_ns: ns(usage.ru_stime),
        minor_faults: usage.ru_minflt as u64,
        major_faults: usage.ru_majflt as u64,
    }
}

/// Resident bytes from `/proc/self/statm` (its second field, in pages).
fn resident_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}
