//! One reading of every source at one instant.

use serde::{Deserialize, Serialize};

/// What the sampler read at one tick. Counters are cumulative, as the kernel
/// keeps them; [`crate::Interval::between`] turns two samples into rates.
/// Sizes are in KiB (`_kib`) or bytes (`_bytes`), as their source gives them.
/// A field is `None` where the source does not exist (no PSI, no memory
/// cgroup, a cgroup without a limit).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Milliseconds since monitoring started.
    pub t_ms: u64,
    /// Live processes in the tree (zombies included).
    pub n_procs: u32,
    /// Resident anonymous memory of the tree (`RssAnon`).
    pub rss_anon_kib: u64,
    /// Resident file-backed memory of the tree (`RssFile`).
    pub rss_file_kib: u64,
    /// Resident shared memory of the tree (`RssShmem`).
    pub rss_shmem_kib: u64,
    /// Swapped-out memory of the tree (`VmSwap`).
    pub swap_kib: u64,
    /// Minor faults of the tree: all threads, and reaped children.
    pub minflt: u64,
    /// Major faults of the tree: all threads, and reaped children.
    pub majflt: u64,
    /// `/proc/vmstat` `pswpin`: pages read from swap, system-wide.
    pub sys_pswpin: u64,
    /// `/proc/vmstat` `pswpout`: pages written to swap, system-wide.
    pub sys_pswpout: u64,
    /// `/proc/vmstat` `pgmajfault`, system-wide.
    pub sys_pgmajfault: u64,
    /// `/proc/vmstat` `pgscan_anon` + `pgscan_file` (before Linux 5.8: the
    /// `pgscan_kswapd`, `pgscan_direct` split): pages scanned by reclaim,
    /// see [`crate::vmstat`].
    pub sys_pgscan: u64,
    /// `/proc/vmstat` `pgsteal_anon` + `pgsteal_file` (before Linux 5.8:
    /// `pgsteal_kswapd`, `pgsteal_direct`): pages reclaimed.
    pub sys_pgsteal: u64,
    /// `/proc/vmstat` `workingset_refault_anon`.
    pub sys_refault_anon: u64,
    /// `/proc/vmstat` `workingset_refault_file`.
    pub sys_refault_file: u64,
    /// `/proc/meminfo` `MemFree`.
    pub mem_free_kib: u64,
    /// `/proc/meminfo` `MemAvailable`.
    pub mem_available_kib: u64,
    /// `/proc/meminfo` `SwapTotal`.
    pub swap_total_kib: u64,
    /// `/proc/meminfo` `SwapFree`.
    pub swap_free_kib: u64,
    /// `/proc/pressure/memory` some avg10, in percent.
    pub psi_some_avg10: Option<f64>,
    /// `/proc/pressure/memory` full avg10, in percent.
    pub psi_full_avg10: Option<f64>,
    /// `/proc/pressure/memory` some total: microseconds in which some task waited.
    pub psi_some_us: Option<u64>,
    /// `/proc/pressure/memory` full total: microseconds in which all tasks waited.
    pub psi_full_us: Option<u64>,
    /// Memory charged to the cgroup (v1 `memory.usage_in_bytes`, v2 `memory.current`).
    pub cg_usage_bytes: Option<u64>,
    /// The cgroup's limit (v1 `memory.limit_in_bytes`, v2 `memory.max`); `None` when unlimited.
    pub cg_limit_bytes: Option<u64>,
    /// The cgroup's swap (v1 `memory.stat` `total_swap`, v2 `memory.swap.current`).
    pub cg_swap_bytes: Option<u64>,
    /// Times the cgroup hit its limit (v1 `memory.failcnt` + `memory.memsw.failcnt`,
    /// v2 `memory.events` `max`).
    pub cg_limit_hits: Option<u64>,
    /// OOM kills in the cgroup (`oom_kill` of v1 `memory.oom_control`, v2 `memory.events`).
    pub cg_oom_kills: Option<u64>,
    /// The cgroup's workingset refaults, anon + file (`memory.stat`).
    pub cg_refault: Option<u64>,
    /// The cgroup's major faults (`memory.stat` `pgmajfault`).
    pub cg_majflt: Option<u64>,
    /// The cgroup's own PSI some total in microseconds (v2 `memory.pressure`).
    pub cg_psi_some_us: Option<u64>,
    /// The cgroup's own PSI full total in microseconds (v2 `memory.pressure`).
    pub cg_psi_full_us: Option<u64>,
}

impl Sample {
    /// Resident memory of the tree: anon + file + shmem.
    pub fn rss_kib(&self) -> u64 {
        self.rss_anon_kib + self.rss_file_kib + self.rss_shmem_kib
    }
}
