//! The verdict of each interval: ok, reclaiming, swapping or thrashing.

use std::collections::VecDeque;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Interval;

/// How an interval went, from best to worst (the order is the severity).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// No sign of memory pressure.
    Ok,
    /// The kernel takes pages away (limit hits, pressure), nothing waits on
    /// getting them back yet.
    Reclaiming,
    /// The tree has pages in swap and pages are moving to or from swap.
    Swapping,
    /// Evicted pages keep coming back and the program waits for them.
    Thrashing,
}

impl State {
    /// All states, best first.
    pub const ALL: [State; 4] = [
        State::Ok,
        State::Reclaiming,
        State::Swapping,
        State::Thrashing,
    ];

    /// The lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Reclaiming => "reclaiming",
            State::Swapping => "swapping",
            State::Thrashing => "thrashing",
        }
    }

    /// The state of a lowercase name.
    pub fn from_name(name: &str) -> Option<State> {
        State::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// The thresholds of the verdicts; the crate docs explain each rule.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Thresholds {
    /// Refaults per second (evicted pages read back) that thrashing needs.
    pub thrash_refault_per_s: f64,
    /// Major faults per second of the tree that count as waiting for them...
    pub thrash_majflt_per_s: f64,
    /// ...or memory pressure (PSI some, percent of the time) that does.
    pub thrash_stall_pct: f64,
    /// Intervals over which the thrashing rates are averaged.
    pub thrash_intervals: u32,
    /// Swap traffic (pages in + out per second) that counts as swapping.
    pub swap_pages_per_s: f64,
    /// Memory pressure (percent) that counts as reclaiming.
    pub reclaim_stall_pct: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            thrash_refault_per_s: 1000.0,
            thrash_majflt_per_s: 200.0,
            thrash_stall_pct: 10.0,
            thrash_intervals: 3,
            swap_pages_per_s: 256.0,
            reclaim_stall_pct: 5.0,
        }
    }
}

/// What the thrashing rule keeps of one interval.
#[derive(Clone, Copy, Debug)]
struct WindowEntry {
    ms: u64,
    majflt: u64,
    refault: u64,
    /// Milliseconds of PSI "some" stall, if PSI is known.
    stall_ms: Option<f64>,
}

/// Gives each interval its state, in order; it keeps the last
/// `thrash_intervals` intervals for the thrashing rule.
#[derive(Clone, Debug)]
pub struct Classifier {
    thresholds: Thresholds,
    window: VecDeque<WindowEntry>,
}

impl Classifier {
    /// A classifier that has seen no interval yet.
    pub fn new(thresholds: Thresholds) -> Classifier {
        Classifier {
            thresholds,
            window: VecDeque::new(),
        }
    }

    /// The thresholds in use.
    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    /// The state of the next interval.
    pub fn push(&mut self, i: &Interval) -> State {
        let th = &self.thresholds;
        let stall = i.some_pct;
        let ms = i.duration_ms();
        self.window.push_back(WindowEntry {
            ms,
            majflt: i.majflt,
            refault: i.refault,
            stall_ms: stall.map(|pct| pct * ms as f64 / 100.0),
        });
        let n = th.thrash_intervals.max(1) as usize;
        while self.window.len() > n {
            self.window.pop_front();
        }
        if self.window.len() == n && self.thrashing() {
            State::Thrashing
        } else if i.swap_kib > 0 && (i.swapin_per_s + i.swapout_per_s) >= th.swap_pages_per_s {
            State::Swapping
        } else if i.limit_hits > 0 || stall.is_some_and(|s| s >= th.reclaim_stall_pct) {
            State::Reclaiming
        } else {
            State::Ok
        }
    }

    /// The thrashing rule over the window's averages.
    fn thrashing(&self) -> bool {
        let th = &self.thresholds;
        let ms: u64 = self.window.iter().map(|e| e.ms).sum();
        if ms == 0 {
            return false;
        }
        let per_s = |n: u64| n as f64 * 1000.0 / ms as f64;
        let refault_per_s = per_s(self.window.iter().map(|e| e.refault).sum());
        let majflt_per_s = per_s(self.window.iter().map(|e| e.majflt).sum());
        let stall_pct = self
            .window
            .iter()
            .map(|e| e.stall_ms)
            .sum::<Option<f64>>()
            .map(|stall_ms| stall_ms * 100.0 / ms as f64);
        refault_per_s >= th.thrash_refault_per_s
            && (majflt_per_s >= th.thrash_majflt_per_s
                || stall_pct.is_some_and(|s| s >= th.thrash_stall_pct))
    }
}

/// The states of a whole timeline.
pub fn classify(intervals: &[Interval], thresholds: &Thresholds) -> Vec<State> {
    let mut classifier = Classifier::new(thresholds.clone());
    intervals.iter().map(|i| classifier.push(i)).collect()
}
