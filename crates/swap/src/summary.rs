//! A run summed up, and the one-line live status.

use std::fmt::Write as _;

use serde::Serialize;

use crate::{Interval, Sample, State};

/// The interval that went worst: the most severe state, then the most
/// refaults plus major faults per second, then the most pressure.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WorstInterval {
    /// Its state.
    pub state: State,
    /// Start, in milliseconds since monitoring started.
    pub start_ms: u64,
    /// End, in milliseconds since monitoring started.
    pub end_ms: u64,
    /// Major faults of the tree per second.
    pub majflt_per_s: f64,
    /// Refaults per second.
    pub refault_per_s: f64,
    /// Swap traffic, pages in + out per second (system-wide).
    pub swap_pages_per_s: f64,
    /// Memory pressure, percent (PSI some).
    pub some_pct: Option<f64>,
}

/// Totals and peaks of a run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// Samples taken.
    pub n_samples: usize,
    /// From the first sample to the last, in milliseconds.
    pub duration_ms: u64,
    /// Milliseconds spent in each state, in the order of [`State::ALL`].
    pub ms_in_state: [u64; 4],
    /// The worst state reached.
    pub worst_state: State,
    /// When the tree first entered the worst state (ms), unless it is ok.
    pub worst_state_since_ms: Option<u64>,
    /// The worst interval, if there was any interval.
    pub worst_interval: Option<WorstInterval>,
    /// Peak resident memory of the tree.
    pub peak_rss_kib: u64,
    /// Peak swapped-out memory of the tree.
    pub peak_swap_kib: u64,
    /// Pages read from swap during the run, system-wide.
    pub swapin_pages: u64,
    /// Pages written to swap during the run, system-wide.
    pub swapout_pages: u64,
    /// Major faults of the tree during the run.
    pub majflt: u64,
    /// Minor faults of the tree during the run.
    pub minflt: u64,
    /// Workingset refaults (the cgroup's where known, else the system's).
    pub refaults: u64,
    /// Times the cgroup hit its limit.
    pub limit_hits: u64,
}

impl Summary {
    /// Sums up `samples`, whose consecutive intervals got `states`.
    pub fn build(samples: &[Sample], intervals: &[Interval], states: &[State]) -> Summary {
        let mut ms_in_state = [0; 4];
        let mut worst: Option<(usize, State)> = None;
        for (n, (interval, &state)) in intervals.iter().zip(states).enumerate() {
            ms_in_state[state as usize] += interval.duration_ms();
            let worse = match worst {
                None => true,
                Some((w, ws)) => {
                    let wi = &intervals[w];
                    let key = |i: &Interval| {
                        (i.refault_per_s + i.majflt_per_s, i.some_pct.unwrap_or(0.0))
                    };
                    (state, key(interval)) > (ws, key(wi))
                }
            };
            if worse {
                worst = Some((n, state));
            }
        }
        let worst_state = states.iter().copied().max().unwrap_or(State::Ok);
        let worst_state_since_ms = (worst_state != State::Ok)
            .then(|| {
                states
                    .iter()
                    .position(|&s| s == worst_state)
                    .map(|n| intervals[n].start_ms)
            })
            .flatten();
        let worst_interval = worst.map(|(n, state)| {
            let i = &intervals[n];
            WorstInterval {
                state,
                start_ms: i.start_ms,
                end_ms: i.end_ms,
                majflt_per_s: i.majflt_per_s,
                refault_per_s: i.refault_per_s,
                swap_pages_per_s: i.swapin_per_s + i.swapout_per_s,
                some_pct: i.some_pct,
            }
        });
        let sum = |f: fn(&Interval) -> u64| intervals.iter().map(f).sum();
        Summary {
            n_samples: samples.len(),
            duration_ms: match (samples.first(), samples.last()) {
                (Some(a), Some(b)) => b.t_ms - a.t_ms,
                _ => 0,
            },
            ms_in_state,
            worst_state,
            worst_state_since_ms,
            worst_interval,
            peak_rss_kib: samples.iter().map(Sample::rss_kib).max().unwrap_or(0),
            peak_swap_kib: samples.iter().map(|s| s.swap_kib).max().unwrap_or(0),
            swapin_pages: sum(|i| i.swapin),
            swapout_pages: sum(|i| i.swapout),
            majflt: sum(|i| i.majflt),
            minflt: sum(|i| i.minflt),
            refaults: sum(|i| i.refault),
            limit_hits: sum(|i| i.limit_hits),
        }
    }

    /// The summary as text, one fact per line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let secs = |ms: u64| ms as f64 / 1000.0;
        let _ = writeln!(
            out,
            "verdict: {} ({} over {:.1} s)",
            self.worst_state,
            count(self.n_samples as u64, "sample"),
            secs(self.duration_ms)
        );
        if let Some(since) = self.worst_state_since_ms {
            let _ = writeln!(out, "  {} since {:.1} s", self.worst_state, secs(since));
        }
        for state in State::ALL {
            let ms = self.ms_in_state[state as usize];
            let share = if self.duration_ms == 0 {
                0.0
            } else {
                ms as f64 * 100.0 / self.duration_ms as f64
            };
            let _ = writeln!(out, "  {:<10} {:>8.1} s  {share:>5.1} %", state, secs(ms));
        }
        if let Some(w) = &self.worst_interval {
            let _ = writeln!(
                out,
                "worst interval: {:.1}-{:.1} s {}: {:.0} major faults/s, {:.0} refaults/s, {:.0} swap pages/s, pressure {}",
                secs(w.start_ms),
                secs(w.end_ms),
                w.state,
                w.majflt_per_s,
                w.refault_per_s,
                w.swap_pages_per_s,
                pct(w.some_pct)
            );
        }
        let _ = writeln!(
            out,
            "peak RSS {}, peak swap {}",
            mib(self.peak_rss_kib),
            mib(self.peak_swap_kib)
        );
        let _ = writeln!(
            out,
            "totals: {}, {}, {} swapped in, {} out (system), {}, {}",
            count(self.majflt, "major fault"),
            count(self.minflt, "minor fault"),
            count(self.swapin_pages, "page"),
            self.swapout_pages,
            count(self.refaults, "refault"),
            count(self.limit_hits, "cgroup limit hit")
        );
        out
    }
}

/// A count with its noun, in the singular for 1 (`1 sample`, `2 samples`):
/// `memtrace_analyze::units::count`, which this crate does not depend on.
fn count(n: u64, singular: &str) -> String {
    if n == 1 {
        format!("{n} {singular}")
    } else {
        format!("{n} {singular}s")
    }
}

/// The live status line of one interval (no newline): the most telling
/// numbers first, since a terminal may cut the end.
pub fn render_status(interval: &Interval, state: State) -> String {
    format!(
        "{:>6.1}s {:<10} rss {} swap {} majflt {:.0}/s refault {:.0}/s swap in/out {:.0}/{:.0}/s pressure some {} full {} minflt {:.0}/s",
        interval.end_ms as f64 / 1000.0,
        state,
        mib(interval.rss_kib),
        mib(interval.swap_kib),
        interval.majflt_per_s,
        interval.refault_per_s,
        interval.swapin_per_s,
        interval.swapout_per_s,
        pct(interval.some_pct),
        pct(interval.full_pct),
        interval.minflt_per_s,
    )
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn pct(p: Option<f64>) -> String {
    p.map_or_else(|| "n/a".to_owned(), |p| format!("{p:.0}%"))
}
