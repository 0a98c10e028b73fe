//! Figures derived from measured counts: miss ratios, misses per thousand
//! instructions (MPKI) and instructions per cycle (IPC). A figure whose
//! inputs were not both measured is absent, never zero.

use crate::counters::{CountedRun, EventKind};

/// One derived figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Derived {
    /// What it is, e.g. `L1d miss ratio`.
    pub name: &'static str,
    /// The value (a ratio in 0..1 for miss ratios).
    pub value: f64,
}

/// Every figure whose inputs were measured (and whose denominator is not zero).
pub fn derive(run: &CountedRun) -> Vec<Derived> {
    use EventKind::*;
    let ratio = |name, num: EventKind, den: EventKind, scale: f64| {
        let n = run.value(num)?;
        let d = run.value(den)?;
        (d > 0).then(|| Derived {
            name,
            value: n as f64 * scale / d as f64,
        })
    };
    [
        ratio("IPC", Instructions, Cycles, 1.0),
        ratio("cache miss ratio", CacheMisses, CacheReferences, 1.0),
        ratio("L1d load miss ratio", L1dLoadMisses, L1dLoads, 1.0),
        ratio("LLC load miss ratio", LlcLoadMisses, LlcLoads, 1.0),
        ratio("cache MPKI", CacheMisses, Instructions, 1000.0),
        ratio("L1d MPKI", L1dLoadMisses, Instructions, 1000.0),
        ratio("LLC MPKI", LlcLoadMisses, Instructions, 1000.0),
        ratio("dTLB MPKI", DtlbLoadMisses, Instructions, 1000.0),
    ]
    .into_iter()
    .flatten()
    .collect()
}
