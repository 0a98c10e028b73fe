//! What happened between two samples: counts and rates.

use serde::Serialize;

use crate::Sample;

/// The change between two consecutive samples. Counts are differences of
/// cumulative counters (zero where a counter went down, as when a child is
/// reaped outside the tree); rates are per second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Interval {
    /// Start, in milliseconds since monitoring started.
    pub start_ms: u64,
    /// End, in milliseconds since monitoring started.
    pub end_ms: u64,
    /// Resident memory of the tree at the end.
    pub rss_kib: u64,
    /// Swapped-out memory of the tree at the end.
    pub swap_kib: u64,
    /// Major faults of the tree in the interval.
    pub majflt: u64,
    /// Minor faults of the tree in the interval.
    pub minflt: u64,
    /// Pages read from swap, system-wide.
    pub swapin: u64,
    /// Pages written to swap, system-wide.
    pub swapout: u64,
    /// Workingset refaults: the cgroup's where it is known, else the system's.
    pub refault: u64,
    /// Pages scanned by reclaim, system-wide.
    pub scanned: u64,
    /// Times the cgroup hit its limit.
    pub limit_hits: u64,
    /// Major faults of the tree per second.
    pub majflt_per_s: f64,
    /// Minor faults of the tree per second.
    pub minflt_per_s: f64,
    /// Pages read from swap per second.
    pub swapin_per_s: f64,
    /// Pages written to swap per second.
    pub swapout_per_s: f64,
    /// Refaults per second.
    pub refault_per_s: f64,
    /// Share of the interval, in percent, in which some task waited for
    /// memory (the cgroup's PSI where it has its own, else the system's).
    pub some_pct: Option<f64>,
    /// Share of the interval, in percent, in which all tasks waited for memory.
    pub full_pct: Option<f64>,
}

impl Interval {
    /// The interval from `a` to `b` (`b` taken after `a`).
    pub fn between(a: &Sample, b: &Sample) -> Interval {
        let dt_ms = b.t_ms.saturating_sub(a.t_ms);
        let per_s = |n: u64| {
            if dt_ms == 0 {
                0.0
            } else {
                n as f64 * 1000.0 / dt_ms as f64
            }
        };
        let delta = |x: u64, y: u64| y.saturating_sub(x);
        let opt_delta = |x: Option<u64>, y: Option<u64>| match (x, y) {
            (Some(x), Some(y)) => Some(y.saturating_sub(x)),
            _ => None,
        };
        let stall_pct = |us: Option<u64>| {
            us.map(|us| {
                if dt_ms == 0 {
                    0.0
                } else {
                    (us as f64 / 10.0 / dt_ms as f64).min(100.0)
                }
            })
        };
        let refault = opt_delta(a.cg_refault, b.cg_refault).unwrap_or_else(|| {
            delta(
                a.sys_refault_anon + a.sys_refault_file,
                b.sys_refault_anon + b.sys_refault_file,
            )
        });
        let (some_us, full_us) = match opt_delta(a.cg_psi_some_us, b.cg_psi_some_us) {
            Some(some) => (Some(some), opt_delta(a.cg_psi_full_us, b.cg_psi_full_us)),
            None => (
                opt_delta(a.psi_some_us, b.psi_some_us),
                opt_delta(a.psi_full_us, b.psi_full_us),
            ),
        };
        let majflt = delta(a.majflt, b.majflt);
        let minflt = delta(a.minflt, b.minflt);
        let swapin = delta(a.sys_pswpin, b.sys_pswpin);
        let swapout = delta(a.sys_pswpout, b.sys_pswpout);
        Interval {
            start_ms: a.t_ms,
            end_ms: b.t_ms,
            rss_kib: b.rss_kib(),
            swap_kib: b.swap_kib,
            majflt,
            minflt,
            swapin,
            swapout,
            refault,
            scanned: delta(a.sys_pgscan, b.sys_pgscan),
            limit_hits: opt_delta(a.cg_limit_hits, b.cg_limit_hits).unwrap_or(0),
            majflt_per_s: per_s(majflt),
            minflt_per_s: per_s(minflt),
            swapin_per_s: per_s(swapin),
            swapout_per_s: per_s(swapout),
            refault_per_s: per_s(refault),
            some_pct: stall_pct(some_us),
            full_pct: stall_pct(full_us),
        }
    }

    /// Length in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        self.end_ms - self.start_ms
    }
}
