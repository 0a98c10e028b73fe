//! The JSON form of [`Findings`], schema `memtrace-cache/1`.
//!
//! Typed structs, serialized with serde. Their fields are declared in
//! alphabetical order, the order the schema's documents have always had
//! (they used to be `serde_json::Value` maps, which sort their keys); a
//! test checks that the two agree. Parts that were not measured are `null`;
//! a counter that was not measured has a `reason` and no `value`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::cachegrind::SimCounts;
use crate::counters::{EventKind, Outcome, Source};
use crate::findings::{Findings, SiteScatter};
use crate::phases::PhaseCounts;

/// The schema name and version of the JSON output.
pub const SCHEMA: &str = "memtrace-cache/1";

/// Where cachegrind's numbers come from, as the JSON says it.
const SIMULATED: &str = "simulated (cachegrind)";

/// The whole document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheReport {
    /// The counted run, when the program ran.
    pub counters: Option<CountersReport>,
    /// Per-phase counts, when a trace was read.
    pub phases: Option<Vec<PhaseReport>>,
    /// Allocation scatter per site, when a trace was read.
    pub scatter: Option<Vec<ScatterReport>>,
    /// Always [`SCHEMA`].
    pub schema: &'static str,
    /// cachegrind's simulation, when it ran or failed.
    pub simulated: Option<SimulatedReport>,
    /// The trace read, as a path.
    pub trace: Option<String>,
}

/// The counters of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CountersReport {
    /// Figures derived from measured counts.
    pub derived: Vec<DerivedReport>,
    /// Every planned event.
    pub events: Vec<CounterReport>,
    /// The program's exit code; `null` when a signal ended it.
    pub exit_code: Option<i32>,
    /// `/proc/sys/kernel/perf_event_paranoid`, if readable.
    pub perf_event_paranoid: Option<i32>,
}

/// One derived figure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DerivedReport {
    /// What it is.
    pub name: &'static str,
    /// Its value.
    pub value: f64,
}

/// Whether a counter counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CounterStatus {
    /// Counted: the counter has a value.
    Measured,
    /// Opened but never scheduled on a counter.
    NotCounted,
    /// Could not be opened or read.
    Unsupported,
}

/// Who counts an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CounterSource {
    /// The CPU's performance-monitoring unit.
    Hardware,
    /// The kernel.
    Software,
}

impl From<Source> for CounterSource {
    fn from(source: Source) -> CounterSource {
        match source {
            Source::Hardware => CounterSource::Hardware,
            Source::Software => CounterSource::Software,
        }
    }
}

/// One counter's outcome: measured with its multiplexing times, or not
/// measured with the reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum CounterReport {
    /// Counted.
    Measured(MeasuredCounter),
    /// Not counted, or unsupported.
    NotMeasured(UnmeasuredCounter),
}

/// A counter that counted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeasuredCounter {
    /// Its `perf stat` name.
    pub name: &'static str,
    /// The raw count.
    pub raw: u64,
    /// Who counts it.
    pub source: CounterSource,
    /// Always [`CounterStatus::Measured`].
    pub status: CounterStatus,
    /// Nanoseconds it was enabled.
    pub time_enabled_ns: u64,
    /// Nanoseconds it was on a counter.
    pub time_running_ns: u64,
    /// True when the kernel counted user space only.
    pub user_only: bool,
    /// The count scaled for multiplexing.
    pub value: u64,
}

/// A counter that did not count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnmeasuredCounter {
    /// Its `perf stat` name.
    pub name: &'static str,
    /// Why it has no value.
    pub reason: String,
    /// Who counts it.
    pub source: CounterSource,
    /// [`CounterStatus::NotCounted`] or [`CounterStatus::Unsupported`].
    pub status: CounterStatus,
}

impl CounterReport {
    /// The report of `kind`'s `outcome`.
    pub fn of(kind: EventKind, outcome: &Outcome) -> CounterReport {
        let name = kind.name();
        let source = kind.source().into();
        let unmeasured = |status, reason: &str| {
            CounterReport::NotMeasured(UnmeasuredCounter {
                name,
                reason: reason.to_string(),
                source,
                status,
            })
        };
        match outcome {
            Outcome::Measured(m) => CounterReport::Measured(MeasuredCounter {
                name,
                raw: m.raw,
                source,
                status: CounterStatus::Measured,
                time_enabled_ns: m.time_enabled_ns,
                time_running_ns: m.time_running_ns,
                user_only: m.user_only,
                value: m.scaled,
            }),
            Outcome::NeverRan => {
                unmeasured(CounterStatus::NotCounted, "never scheduled on a counter")
            }
            Outcome::Unavailable(why) => unmeasured(CounterStatus::Unsupported, why),
        }
    }
}

/// cachegrind's simulation, or why it failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum SimulatedReport {
    /// It ran.
    Ran(Simulated),
    /// It failed.
    Failed(SimulationFailed),
}

/// A simulation that ran.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Simulated {
    /// The simulated caches, as cachegrind describes them.
    pub caches: Vec<String>,
    /// Per function, most first-level data misses first.
    pub functions: Vec<SimCountsReport>,
    /// Always `simulated (cachegrind)`.
    pub source: &'static str,
    /// Whole-run totals.
    pub total: SimCountsReport,
}

/// A simulation that failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimulationFailed {
    /// Why.
    pub error: String,
    /// Always `simulated (cachegrind)`.
    pub source: &'static str,
}

/// Simulated counts, of the whole run or of one function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SimCountsReport {
    /// First-level data misses.
    pub d1_misses: u64,
    /// First-level data read misses.
    pub d1_read_misses: u64,
    /// First-level data write misses.
    pub d1_write_misses: u64,
    /// Data reads.
    pub data_reads: u64,
    /// Data writes.
    pub data_writes: u64,
    /// The function, in a per-function entry; absent in the totals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// Instructions executed.
    pub instructions: u64,
    /// Last-level data misses.
    pub ll_misses: u64,
    /// Last-level data read misses.
    pub ll_read_misses: u64,
    /// Last-level data write misses.
    pub ll_write_misses: u64,
}

impl SimCountsReport {
    /// The report of `c`, of `function` if given.
    pub fn of(c: &SimCounts, function: Option<&str>) -> SimCountsReport {
        SimCountsReport {
            d1_misses: c.d1_misses(),
            d1_read_misses: c.d1_read_misses,
            d1_write_misses: c.d1_write_misses,
            data_reads: c.data_reads,
            data_writes: c.data_writes,
            function: function.map(str::to_string),
            instructions: c.instructions,
            ll_misses: c.ll_misses(),
            ll_read_misses: c.ll_read_misses,
            ll_write_misses: c.ll_write_misses,
        }
    }
}

/// One phase.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseReport {
    /// The `getrusage` deltas by counter name; `null` when not measured.
    pub counters: BTreeMap<String, Option<u64>>,
    /// End timestamp, in ticks.
    pub end_ts: u64,
    /// The phase name.
    pub name: String,
    /// The recorder's `perf_event_open` counters over the phase.
    pub perf: Vec<CounterReport>,
    /// Start timestamp, in ticks.
    pub start_ts: u64,
}

impl PhaseReport {
    /// The report of phase `p`.
    pub fn of(p: &PhaseCounts) -> PhaseReport {
        PhaseReport {
            counters: p.deltas.iter().cloned().collect(),
            end_ts: p.end_ts,
            name: p.name.clone(),
            perf: p
                .perf
                .iter()
                .map(|(kind, outcome)| CounterReport::of(*kind, outcome))
                .collect(),
            start_ts: p.start_ts,
        }
    }
}

/// One site's allocation scatter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScatterReport {
    /// Distinct cache lines over the packed minimum.
    pub line_ratio: f64,
    /// Distinct cache lines its live blocks touched at its peak.
    pub lines: u64,
    /// Mean distance between consecutive allocations, in bytes.
    pub mean_distance: Option<f64>,
    /// Cache lines the blocks would need packed.
    pub min_lines: u64,
    /// Pages the blocks would need packed.
    pub min_pages: u64,
    /// Allocations made.
    pub n_allocs: u64,
    /// Distinct pages over the packed minimum.
    pub page_ratio: f64,
    /// Distinct pages its live blocks touched at its peak.
    pub pages: u64,
    /// Live blocks at its peak.
    pub peak_blocks: u64,
    /// Live bytes at its peak.
    pub peak_bytes: u64,
    /// True when the blocks are spread over many more lines than needed.
    pub scattered: bool,
    /// The site.
    pub site: String,
    /// The stack id in the trace.
    pub stack: u32,
}

impl ScatterReport {
    /// The report of `s`.
    pub fn of(s: &SiteScatter) -> ScatterReport {
        let c = &s.scatter;
        ScatterReport {
            line_ratio: c.line_ratio(),
            lines: c.lines,
            mean_distance: c.mean_distance,
            min_lines: c.min_lines,
            min_pages: c.min_pages,
            n_allocs: c.n_allocs,
            page_ratio: c.page_ratio(),
            pages: c.pages,
            peak_blocks: c.peak_blocks,
            peak_bytes: c.peak_bytes,
            scattered: c.is_scattered(),
            site: s.site.clone(),
            stack: c.stack,
        }
    }
}

impl CacheReport {
    /// The report of `f`.
    pub fn of(f: &Findings) -> CacheReport {
        let counters = f.counted.as_ref().map(|run| CountersReport {
            derived: f
                .derived
                .iter()
                .map(|d| DerivedReport {
                    name: d.name,
                    value: d.value,
                })
                .collect(),
            events: run
                .events
                .iter()
                .map(|e| CounterReport::of(e.kind, &e.outcome))
                .collect(),
            exit_code: run.exit_code,
            perf_event_paranoid: run.paranoid,
        });
        let simulated = f.simulated.as_ref().map(|s| match s {
            Ok(sim) => SimulatedReport::Ran(Simulated {
                caches: sim.caches.clone(),
                functions: sim
                    .functions
                    .iter()
                    .map(|(name, c)| SimCountsReport::of(c, Some(name)))
                    .collect(),
                source: SIMULATED,
                total: SimCountsReport::of(&sim.total, None),
            }),
            Err(why) => SimulatedReport::Failed(SimulationFailed {
                error: why.clone(),
                source: SIMULATED,
            }),
        });
        CacheReport {
            counters,
            phases: f
                .phases
                .as_ref()
                .map(|phases| phases.iter().map(PhaseReport::of).collect()),
            scatter: f
                .scatter
                .as_ref()
                .map(|sites| sites.iter().map(ScatterReport::of).collect()),
            schema: SCHEMA,
            simulated,
            trace: f.trace.as_ref().map(|p| p.display().to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cachegrind::Simulation;
    use crate::counters::{CountedRun, EventResult, Measured};
    use crate::derived::Derived;
    use crate::scatter::StackScatter;

    /// Findings with every part filled and every variant present.
    fn full() -> Findings {
        let measured = Outcome::Measured(Measured {
            raw: 5,
            scaled: 10,
            time_enabled_ns: 100,
            time_running_ns: 50,
            user_only: true,
        });
        let counts = SimCounts {
            instructions: 1,
            data_reads: 2,
            data_writes: 3,
            d1_read_misses: 4,
            d1_write_misses: 5,
            ll_read_misses: 6,
            ll_write_misses: 7,
        };
        let event = |kind: EventKind, outcome: Outcome| EventResult {
            kind,
            name: kind.name(),
            outcome,
        };
        Findings {
            counted: Some(CountedRun {
                exit_code: Some(3),
                events: vec![
                    event(EventKind::Cycles, measured.clone()),
                    event(EventKind::Instructions, Outcome::NeverRan),
                    event(EventKind::CacheMisses, Outcome::Unavailable("no".into())),
                ],
                paranoid: Some(2),
            }),
            derived: vec![Derived {
                name: "IPC",
                value: 1.5,
            }],
            simulated: Some(Ok(Simulation {
                caches: vec!["D1 cache: 32768 B".into()],
                total: counts,
                functions: vec![("main".into(), counts)],
                files: Default::default(),
            })),
            phases: Some(vec![PhaseCounts {
                name: "list".into(),
                start_ts: 1,
                end_ts: 2,
                deltas: vec![("minor-faults".into(), Some(4)), ("b".into(), None)],
                perf: vec![(EventKind::Cycles, measured)],
            }]),
            scatter: Some(vec![SiteScatter {
                site: "main (a.c:1)".into(),
                scatter: StackScatter {
                    stack: 7,
                    n_allocs: 3,
                    peak_blocks: 2,
                    peak_bytes: 32,
                    lines: 2,
                    min_lines: 1,
                    pages: 1,
                    min_pages: 1,
                    mean_distance: Some(16.0),
                },
            }]),
            trace: Some("t.trace".into()),
        }
    }

    /// The typed report writes the bytes the `serde_json::Value` it replaced
    /// wrote (whose maps sort their keys), for every shape of every part.
    #[test]
    fn fields_are_in_the_order_of_the_documents_before() {
        let mut failed = full();
        failed.simulated = Some(Err("cannot run valgrind".into()));
        for f in [full(), failed, Findings::default()] {
            let report = CacheReport::of(&f);
            let direct = serde_json::to_string_pretty(&report).unwrap();
            let value = serde_json::to_value(&report).unwrap();
            assert_eq!(direct, serde_json::to_string_pretty(&value).unwrap());
        }
    }

    #[test]
    fn unmeasured_counters_have_a_reason_and_no_value() {
        let report = serde_json::to_value(CacheReport::of(&full())).unwrap();
        let events = &report["counters"]["events"];
        assert_eq!(events[0]["status"], "measured");
        assert_eq!(events[0]["value"], 10);
        assert_eq!(events[1]["status"], "not_counted");
        assert_eq!(events[1]["reason"], "never scheduled on a counter");
        assert!(events[1].get("value").is_none());
        assert_eq!(events[2]["status"], "unsupported");
        assert_eq!(report["simulated"]["functions"][0]["function"], "main");
        assert!(report["simulated"]["total"].get("function").is_none());
        assert_eq!(
            report["phases"][0]["counters"]["b"],
            serde_json::Value::Null
        );
    }
}
