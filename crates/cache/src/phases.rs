//! Per-phase counter deltas from a trace's `PHASE` records.
//!
//! The recorder reads its counters (today `getrusage`: minor and major
//! faults, voluntary and involuntary context switches of the whole process)
//! at every `memtrace_phase("name")`. A phase runs from its record to the
//! next one; an empty name ends the current phase without starting another.
//! A phase still open at the end of the trace is closed by the last resource
//! sample, which has the fault counts only; its other counters are absent.

use memtrace_format::{Event, Phase, ResourceSample};

/// One phase and what its counters moved by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseCounts {
    /// The phase name.
    pub name: String,
    /// Start timestamp, in ticks.
    pub start_ts: u64,
    /// End timestamp, in ticks (the next boundary, or the last sample).
    pub end_ts: u64,
    /// `(counter, delta)`, in the order the recorder wrote them; `None` when
    /// the phase end has no reading of that counter.
    pub deltas: Vec<(String, Option<u64>)>,
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
                .map(|(name, begin)| {
                    let delta = end_value(name).and_then(|end| end.checked_sub(*begin));
                    (name.clone(), delta)
                })
                .collect();
            phases.push(PhaseCounts {
                name: start.name.clone(),
                start_ts: start.ts,
                end_ts,
                deltas,
            });
        }
        phases
    }
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
}
