//! Per-phase counter deltas from a trace's `PHASE` records.
//!
//! The recorder reads its counters at every `memtrace_phase("name")`:
//! always `getrusage` (minor and major faults, voluntary and involuntary
//! context switches of the whole process), and the `perf_event_open`
//! counters that `MEMTRACE_PHASE_COUNTERS` asked for (`perf:NAME` with their
//! enabled and running times, or the errno that refused them). A phase runs
//! from its record to the next one; an empty name ends the current phase
//! without starting another. The recorder ends a phase still open when the
//! program exits (or execs) with such an empty-named record, so the last
//! phase has every counter too. Only where that record is missing (a
//! program killed by a signal, a trace cut short, or from an earlier
//! recorder) is the last phase closed by the last resource sample, which
//! has the fault counts only; its other counters are absent.

use memtrace_counters::{explain_errno, EventKind, Outcome, Reading};
use memtrace_format::{Event, Phase, ResourceSample};

/// Prefix of the recorder's `perf_event_open` counters in a phase record.
const PERF: &str = "perf:";

/// One phase and what its counters moved by.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseCounts {
    /// The phase name.
    pub name: String,
    /// Start timestamp, in ticks.
    pub start_ts: u64,
    /// End timestamp, in ticks (the next boundary, or the last sample).
    pub end_ts: u64,
    /// `(counter, delta)` of the `getrusage` counters, in the order the
    /// recorder wrote them; `None` when the phase end has no reading of that
    /// counter.
    pub deltas: Vec<(String, Option<u64>)>,
    /// The `perf_event_open` counters, measured over the phase (scaled for
    /// multiplexing by the phase's own enabled and running times), or why
    /// not; empty when the recording asked for none.
    pub perf: Vec<(EventKind, Outcome)>,
}

impl PhaseCounts {
    /// The delta of `counter`, if measured.
    pub fn delta(&self, counter: &str) -> Option<u64> {
        self.deltas
            .iter()
            .find(|(name, _)| name == counter)
            .and_then(|(_, d)| *d)
    }
}

/// Collects phase boundaries and resource samples from events, in order.
#[derive(Debug, Default)]
pub struct PhaseCollector {
    boundaries: Vec<Phase>,
    last_sample: Option<ResourceSample>,
}

impl PhaseCollector {
    /// Looks at one event.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::Phase(phase) => self.boundaries.push(phase.clone()),
            Event::Resources(sample) => self.last_sample = Some(*sample),
            _ => {}
        }
    }

    /// The phases, in the order they started.
    pub fn finish(self) -> Vec<PhaseCounts> {
        let mut phases = Vec::new();
        for (i, start) in self.boundaries.iter().enumerate() {
            if start.name.is_empty() {
                continue;
            }
            let end = match self.boundaries.get(i + 1) {
                Some(next) => End::Boundary(next),
                None => match self.last_sample.filter(|s| s.ts >= start.ts) {
                    Some(sample) => End::Sample(sample),
                    None => End::Unknown(start.ts),
                },
            };
            let end_ts = end.ts();
            let end_value = |name: &str| end.value(name);
            let deltas = start
                .counters
                .iter()
                .filter(|(name, _)| !name.starts_with(PERF))
                .map(|(name, begin)| {
                    let delta = end_value(name).and_then(|end| end.checked_sub(*begin));
                    (name.clone(), delta)
                })
                .collect();
            let perf = perf_outcomes(start, &end);
            phases.push(PhaseCounts {
                name: start.name.clone(),
                start_ts: start.ts,
                end_ts,
                deltas,
                perf,
            });
        }
        phases
    }
}

/// The phase's `perf:` events, in the order the recorder wrote them.
fn perf_outcomes(start: &Phase, end: &End) -> Vec<(EventKind, Outcome)> {
    let value = |name: &str| {
        start
            .counters
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    };
    let paranoid = value("perf:paranoid").map(|v| v as i64 as i32);
    let mut out = Vec::new();
    for (name, _) in &start.counters {
        let Some(rest) = name.strip_prefix(PERF) else {
            continue;
        };
        let (event, suffix) = rest.split_once(':').unwrap_or((rest, ""));
        let Some(kind) = EventKind::from_name(event) else {
            continue;
        };
        let outcome = match suffix {
            "errno" => Outcome::Unavailable(explain_errno(
                kind,
                value(name).unwrap_or(0) as i32,
                paranoid,
            )),
            "" => {
                let reading = |at: &dyn Fn(&str) -> Option<u64>| {
                    Some(Reading {
                        raw: at(&format!("{PERF}{event}"))?,
                        time_enabled_ns: at(&format!("{PERF}{event}:enabled-ns"))?,
                        time_running_ns: at(&format!("{PERF}{event}:running-ns"))?,
                    })
                };
                let begin = reading(&|n| value(n));
                let finish = reading(&|n| end.value(n));
                match (begin, finish) {
                    (Some(b), Some(f)) => match difference(b, f) {
                        Some(delta) => {
                            let user_only = value(&format!("{PERF}{event}:user-only")).is_some();
                            Outcome::of(delta, user_only)
                        }
                        None => Outcome::Unavailable(
                            "the counter went backwards (read by another process?)".into(),
                        ),
                    },
                    _ => Outcome::Unavailable(
                        "not read at the phase's end (no later memtrace_phase)".into(),
                    ),
                }
            }
            _ => continue,
        };
        out.push((kind, outcome));
    }
    out
}

fn difference(begin: Reading, end: Reading) -> Option<Reading> {
    Some(Reading {
        raw: end.raw.checked_sub(begin.raw)?,
        time_enabled_ns: end.time_enabled_ns.checked_sub(begin.time_enabled_ns)?,
        time_running_ns: end.time_running_ns.checked_sub(begin.time_running_ns)?,
    })
}

/// Where a phase's counters were last read.
enum End<'a> {
    /// The next phase boundary: every counter.
    Boundary(&'a Phase),
    /// The last resource sample: the fault counts only.
    Sample(ResourceSample),
    /// Nothing after the phase started (its start timestamp).
    Unknown(u64),
}

impl End<'_> {
    fn ts(&self) -> u64 {
        match self {
            End::Boundary(p) => p.ts,
            End::Sample(s) => s.ts,
            End::Unknown(ts) => *ts,
        }
    }

    fn value(&self, name: &str) -> Option<u64> {
        match self {
            End::Boundary(p) => p.counters.iter().find(|(n, _)| n == name).map(|(_, v)| *v),
            End::Sample(s) => match name {
                "minor-faults" => Some(s.minor_faults),
                "major-faults" => Some(s.major_faults),
                _ => None,
            },
            End::Unknown(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(ts: u64, name: &str, faults: u64, switches: u64) -> Event {
        Event::Phase(Phase {
            ts,
            tid: 1,
            name: name.into(),
            counters: vec![
                ("minor-faults".into(), faults),
                ("voluntary-switches".into(), switches),
            ],
        })
    }

    #[test]
    fn deltas_between_boundaries_and_to_the_last_sample() {
        let mut c = PhaseCollector::default();
        for e in [
            phase(10, "build", 100, 1),
            phase(20, "walk", 150, 3),
            phase(30, "", 170, 4),
            phase(40, "tail", 180, 4),
            Event::Resources(ResourceSample {
                ts: 50,
                minor_faults: 200,
                ..Default::default()
            }),
        ] {
            c.apply(&e);
        }
        let phases = c.finish();
        assert_eq!(phases.len(), 3);
        assert_eq!(phases[0].name, "build");
        assert_eq!(phases[0].delta("minor-faults"), Some(50));
        assert_eq!(phases[0].delta("voluntary-switches"), Some(2));
        assert_eq!(phases[1].delta("minor-faults"), Some(20));
        assert_eq!((phases[1].start_ts, phases[1].end_ts), (20, 30));
        assert_eq!(phases[2].delta("minor-faults"), Some(20));
        assert_eq!(phases[2].delta("voluntary-switches"), None);
        assert_eq!(phases[2].end_ts, 50);
    }

    fn perf_phase(ts: u64, name: &str, cycles: (u64, u64, u64)) -> Event {
        Event::Phase(Phase {
            ts,
            tid: 1,
            name: name.into(),
            counters: vec![
                ("minor-faults".into(), 0),
                ("perf:cycles".into(), cycles.0),
                ("perf:cycles:enabled-ns".into(), cycles.1),
                ("perf:cycles:running-ns".into(), cycles.2),
                ("perf:LLC-loads:errno".into(), libc::ENOENT as u64),
                ("perf:paranoid".into(), 2),
            ],
        })
    }

    #[test]
    fn perf_counters_are_scaled_by_each_phases_own_running_time() {
        let mut c = PhaseCollector::default();
        for e in [
            // "list": 1000 cycles counted in 50 of its 100 ns -> 2000.
            perf_phase(10, "list", (500, 1000, 1000)),
            // "array": 300 cycles, counted all its 100 ns -> 300.
            perf_phase(20, "array", (1500, 1100, 1050)),
            perf_phase(30, "tail", (1800, 1200, 1150)),
        ] {
            c.apply(&e);
        }
        let phases = c.finish();
        assert_eq!(phases.len(), 3);
        // rusage counters stay apart from perf counters.
        assert_eq!(
            phases[0].deltas,
            vec![("minor-faults".to_string(), Some(0))]
        );
        assert_eq!(phases[0].perf.len(), 2);
        let (kind, cycles) = &phases[0].perf[0];
        assert_eq!(*kind, EventKind::Cycles);
        let Outcome::Measured(m) = cycles else {
            panic!("{cycles:?}")
        };
        assert_eq!((m.raw, m.scaled), (1000, 2000));
        let Outcome::Measured(m) = &phases[1].perf[0].1 else {
            panic!()
        };
        assert_eq!((m.raw, m.scaled, m.time_running_ns), (300, 300, 100));
        let (kind, llc) = &phases[0].perf[1];
        assert_eq!(*kind, EventKind::LlcLoads);
        let Outcome::Unavailable(why) = llc else {
            panic!("{llc:?}")
        };
        assert!(why.starts_with("ENOENT: no PMU"), "{why}");
        // The last phase has no later boundary: not measured, and said so.
        assert!(
            matches!(&phases[2].perf[0].1, Outcome::Unavailable(w) if w.contains("phase's end"))
        );
    }

    #[test]
    fn the_exit_boundary_closes_the_last_phase() {
        let mut c = PhaseCollector::default();
        // As the recorder writes it for a program that never ends its last
        // phase: the empty-named boundary at exit, then a last sample.
        for e in [
            perf_phase(10, "list", (500, 1000, 1000)),
            perf_phase(20, "array", (1500, 1100, 1050)),
            perf_phase(30, "", (1800, 1200, 1150)),
            Event::Resources(ResourceSample {
                ts: 40,
                ..Default::default()
            }),
        ] {
            c.apply(&e);
        }
        let phases = c.finish();
        let names: Vec<&str> = phases.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["list", "array"]);
        // "array": 300 cycles in its 100 ns, all counted: measured, not
        // "not read at the phase's end"; its end is the boundary, not the
        // sample.
        let Outcome::Measured(m) = &phases[1].perf[0].1 else {
            panic!("{:?}", phases[1].perf[0])
        };
        assert_eq!((m.raw, m.scaled, m.time_running_ns), (300, 300, 100));
        assert_eq!(phases[1].end_ts, 30);
        assert_eq!(phases[1].delta("minor-faults"), Some(0));
    }

    #[test]
    fn multiplexed_phase_counts_are_scaled() {
        let mut c = PhaseCollector::default();
        for e in [
            perf_phase(10, "half", (0, 0, 0)),
            perf_phase(20, "", (1000, 100, 50)),
        ] {
            c.apply(&e);
        }
        let phases = c.finish();
        let Outcome::Measured(m) = &phases[0].perf[0].1 else {
            panic!()
        };
        assert_eq!((m.raw, m.scaled), (1000, 2000));
        assert_eq!(m.running_share(), 0.5);
    }
}
