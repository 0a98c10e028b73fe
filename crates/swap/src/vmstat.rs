//! `/proc/vmstat`: the system-wide counters of a [`Sample`], parsed from the
//! file's text so that every kernel's layout can be tested on a capture.
//!
//! # Reclaim scans and steals
//!
//! The kernel has counted the pages reclaim scanned (`pgscan_*`) and took
//! (`pgsteal_*`) in several layouts, each a split of the same pages:
//!
//! * by reclaimer: `pgscan_kswapd` and `pgscan_direct` (since 4.8; before,
//!   one counter per zone, `pgscan_kswapd_normal`, `pgscan_direct_dma32`,
//!   ...), then `pgscan_khugepaged` (6.2) and `pgscan_proactive` (in the
//!   6.18 capture);
//! * by LRU list: `pgscan_anon` and `pgscan_file` (since 5.8).
//!
//! The two splits are not equal: the global reclaimer counters leave out
//! reclaim inside a memory cgroup that hit its limit (`mm/vmscan.c` adds
//! them `if (!cgroup_reclaim(sc))`, and counts them in the cgroup's own
//! `memory.stat` instead), while `pgscan_anon`/`pgscan_file` count every
//! scan. On a machine whose programs run in limited cgroups (containers,
//! VMs that give each job a cgroup) the reclaimer split stays at 0 while
//! reclaim runs: the 6.18 capture in `tests/data/vmstat-6.18` has 9,045,304
//! pages scanned by anon+file and 0 by kswapd+direct+khugepaged+proactive.
//! So the anon+file split is read when the kernel has it, and the reclaimer
//! split (summed over its zones on old kernels) only when it has not; the
//! two are never added together, which would count pages twice.
//! `pgscan_direct_throttle` counts throttling events, not pages: it is
//! never part of the sum.

use crate::Sample;

/// Fills the `sys_*` fields of `sample` from `text`, the content of
/// `/proc/vmstat`. A counter the kernel does not have reads as 0; lines
/// that are not `NAME VALUE` are skipped.
pub fn parse_into(text: &str, sample: &mut Sample) {
    let counters = Counters::parse(text);
    sample.sys_pswpin = counters.get("pswpin");
    sample.sys_pswpout = counters.get("pswpout");
    sample.sys_pgmajfault = counters.get("pgmajfault");
    sample.sys_pgscan = counters.reclaim("pgscan");
    sample.sys_pgsteal = counters.reclaim("pgsteal");
    sample.sys_refault_anon = counters.get("workingset_refault_anon");
    sample.sys_refault_file = counters.get("workingset_refault_file");
}

/// Reads `/proc/vmstat` into `sample`; leaves it untouched when the file
/// cannot be read.
pub(crate) fn read_into(sample: &mut Sample) {
    if let Ok(text) = std::fs::read_to_string("/proc/vmstat") {
        parse_into(&text, sample);
    }
}

/// The file's `NAME VALUE` pairs, in file order.
struct Counters<'a>(Vec<(&'a str, u64)>);

impl<'a> Counters<'a> {
    fn parse(text: &'a str) -> Counters<'a> {
        Counters(
            text.lines()
                .filter_map(|line| {
                    let (name, value) = line.split_once(' ')?;
                    Some((name, value.trim().parse().ok()?))
                })
                .collect(),
        )
    }

    fn get(&self, name: &str) -> u64 {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, v)| *v)
    }

    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| *n == name)
    }

    /// The pages of `kind` (`pgscan` or `pgsteal`): the anon+file split
    /// where the kernel has it, else the reclaimer split over every zone.
    fn reclaim(&self, kind: &str) -> u64 {
        let (anon, file) = (format!("{kind}_anon"), format!("{kind}_file"));
        if self.has(&anon) || self.has(&file) {
            return self.get(&anon).saturating_add(self.get(&file));
        }
        let reclaimers = ["kswapd", "direct", "khugepaged", "proactive"];
        self.0
            .iter()
            .filter(|(name, _)| {
                let Some(rest) = name.strip_prefix(kind).and_then(|r| r.strip_prefix('_')) else {
                    return false;
                };
                // `kswapd`, or `kswapd_normal` on kernels before 4.8; not
                // `direct_throttle`, a count of events.
                reclaimers.iter().any(|r| {
                    rest.strip_prefix(r)
                        .is_some_and(|zone| zone.is_empty() || zone.starts_with('_'))
                }) && *name != "pgscan_direct_throttle"
            })
            .fold(0u64, |sum, (_, v)| sum.saturating_add(*v))
    }
}
