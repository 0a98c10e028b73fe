//! `memtrace latency`: how long the program waited inside the allocator.
//!
//! One pass over the events gives, per allocator function, the exact
//! distribution of the recorded latencies (they are stored within 3%, see
//! [`memtrace_format::quantize_latency`]; this module keeps a count per
//! stored value, so percentiles are exact over what was stored), the total
//! time in the allocator and its share of the traced wall time, the *stalls*
//! (calls that took at least [`Config::stall_ns`]) grouped by site, the sites
//! that cost the most allocator time, and advice that follows from the counts.
//!
//! Rules, so that the numbers can be checked by hand:
//!
//! * **Percentiles** are nearest-rank: p is the smallest latency `v` such that
//!   at least `ceil(p * n)` calls took `v` or less.
//! * **Wall time** is the trace's span ([`memtrace_format::Span`]): the
//!   earliest event to the trailer (or, without one, the last event).
//! * **Thread time** adds up each traced thread's life: from its start (or
//!   first call) to its end (or the end of the span). The allocator's
//!   *share* is its time over the thread time, so it is at most 100% however
//!   many threads run at once; the time outside the allocator is the thread
//!   time less the allocator's.
//! * **CPU time** and **page faults** come from the recorder's last resource
//!   sample (`getrusage` of the process, taken at the end): user + system
//!   time, minor + major faults. No share of CPU time is given: time in the
//!   allocator is wall-clock time, which includes waits the CPU time does not
//!   count. Traces without samples report them as not recorded, never
//!   estimated.
//! * **Sites**: a call belongs to the site of its stack ([`Symbols::site`]).
//!   Frees carry no stack, so a free is counted at the site that allocated
//!   the block it releases (frees of blocks the trace never saw allocated go
//!   to `<no stack>`).
//! * **Heap growth** of a stall, judged against the `HeapRegions` snapshots
//!   (written every 100 ms when the heap's mappings changed, and at the end):
//!   `mapped` when the call returned an address outside every region of the
//!   latest snapshot before it (the heap grew, or the block was mapped, after
//!   that snapshot); else `grew` when the first snapshot after the stall covers
//!   more bytes than the latest one before it; else `none`; `unknown` when no
//!   snapshot precedes the stall. The text says it in words: "took memory
//!   new to the heap", "while the heap grew", "no heap growth", "not known".
//! * **Advice** (per site; "small" = average requested size under
//!   [`SMALL_BYTES`], "many" = at least [`MANY_CALLS`] calls and at least
//!   1/[`MANY_SHARE_DIVISOR`] of all allocation calls): many small
//!   *temporary* allocations ([`crate::replay::StackStats::n_temporary`]) →
//!   reuse a buffer; otherwise many small allocations → allocate them in bulk
//!   (one array, an arena, a pool). Each piece of advice names the allocator
//!   time the site cost, its frees included, and the sizes that matter: the
//!   band from the 10th to the 90th percentile of the site's requests (by
//!   power-of-two size class: the 10th percentile's class's least size to
//!   the 90th's greatest, within the smallest and largest request).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use memtrace_format::{DecodeError, Event, Func, Op, Reader, Region, StackId};
use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::replay::HeapReplay;
use crate::report::{Program, TraceState};
use crate::sink::{drive, EventSink, Trace};
use crate::symbols::{Frame, Symbols};
use crate::units::{count, noun, seconds};

/// Version of the JSON shape.
pub const LATENCY_SCHEMA: &str = "memtrace-latency/2";
/// Allocations under this average requested size are small.
pub const SMALL_BYTES: u64 = 256;
/// A site needs at least this many calls for advice.
pub const MANY_CALLS: u64 = 1000;
/// ... and at least 1/this of all allocation calls.
pub const MANY_SHARE_DIVISOR: u64 = 10;

/// What the analysis is asked for.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Calls that took at least this long are stalls, nanoseconds.
    pub stall_ns: u64,
    /// Sites listed in the top-sites and stall tables.
    pub top: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            stall_ns: 10_000,
            top: 10,
        }
    }
}

/// The latency report of one trace.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyReport {
    /// Always [`LATENCY_SCHEMA`].
    pub schema: &'static str,
    /// What was traced.
    pub program: Program,
    /// Whether the trace is whole.
    pub trace: TraceState,
    /// Whether the recorder measured time inside the allocator at all.
    pub latency_measured: bool,
    /// Traced wall time: earliest event to the trailer, nanoseconds.
    pub wall_ns: u64,
    /// Time inside the allocator, all calls and threads together, nanoseconds.
    pub allocator_ns: u64,
    /// The traced threads' lives added up (see the module docs), nanoseconds.
    pub thread_ns: u64,
    /// `allocator_ns / thread_ns`, at most 1 (0 when the thread time is 0):
    /// the allocator's share of the threads' time.
    pub allocator_share: f64,
    /// Thread time outside the allocator (the program and the recorder), nanoseconds.
    pub outside_allocator_ns: u64,
    /// CPU time of the process (user + system), from the last resource
    /// sample; `None` when the trace has none.
    pub cpu_ns: Option<u64>,
    /// Page faults of the process (minor, major), from the last sample.
    pub page_faults: Option<(u64, u64)>,
    /// Heap calls.
    pub calls: u64,
    /// Allocation calls (malloc, calloc, aligned forms, realloc).
    pub allocation_calls: u64,
    /// Per function, most time first.
    pub functions: Vec<FunctionLatency>,
    /// Calls at or above the threshold.
    pub stalls: Stalls,
    /// Sites by allocator time, most first.
    pub top_sites: Vec<SiteTime>,
    /// What the numbers suggest.
    pub advice: Vec<Advice>,
    /// Symbolization problems and caveats.
    pub warnings: Vec<String>,
}

/// The latency distribution of one allocator function.
#[derive(Debug, Clone, Serialize)]
pub struct FunctionLatency {
    /// `malloc`, `free`, ...
    pub function: String,
    /// Calls.
    pub calls: u64,
    /// Time inside it, nanoseconds.
    pub total_ns: u64,
    /// Mean, nanoseconds.
    pub mean_ns: u64,
    /// Median.
    pub p50_ns: u64,
    /// 90th percentile.
    pub p90_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// Longest call.
    pub max_ns: u64,
    /// Calls per power-of-two bucket of nanoseconds, empty buckets left out.
    pub histogram: Vec<LatencyBucket>,
}

/// Calls whose latency lies in `[min_ns, max_ns]`.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyBucket {
    /// Lower bound, nanoseconds.
    pub min_ns: u64,
    /// Upper bound, nanoseconds.
    pub max_ns: u64,
    /// Calls.
    pub count: u64,
}

/// Calls that took at least the threshold.
#[derive(Debug, Clone, Serialize)]
pub struct Stalls {
    /// The threshold, nanoseconds.
    pub threshold_ns: u64,
    /// Stalls.
    pub calls: u64,
    /// Their time, nanoseconds.
    pub total_ns: u64,
    /// Heap growth (see the module docs): address outside the latest snapshot.
    pub mapped: u64,
    /// The next snapshot covered more bytes.
    pub grew: u64,
    /// Neither.
    pub none: u64,
    /// No snapshot before the stall.
    pub unknown: u64,
    /// Page faults during stalls: not recorded.
    pub page_faults: Option<u64>,
    /// Stalls per site, most first.
    pub sites: Vec<StallSite>,
}

/// The stalls of one site.
#[derive(Debug, Clone, Serialize)]
pub struct StallSite {
    /// `function (file:line)`.
    pub site: String,
    /// Site function.
    pub function: Option<String>,
    /// Site file.
    pub file: Option<String>,
    /// Site line.
    pub line: Option<u32>,
    /// Stalls.
    pub calls: u64,
    /// Their time, nanoseconds.
    pub total_ns: u64,
    /// The longest, nanoseconds.
    pub max_ns: u64,
    /// Stalls per function.
    pub by_function: BTreeMap<String, u64>,
    /// Of which `mapped`.
    pub mapped: u64,
    /// Of which `grew`.
    pub grew: u64,
    /// The stack of the longest stall, innermost first.
    pub stack: Vec<Frame>,
}

/// Allocator time spent for one site.
#[derive(Debug, Clone, Serialize)]
pub struct SiteTime {
    /// `function (file:line)`.
    pub site: String,
    /// Site function.
    pub function: Option<String>,
    /// Site file.
    pub file: Option<String>,
    /// Site line.
    pub line: Option<u32>,
    /// Calls: allocations here plus frees of blocks allocated here.
    pub calls: u64,
    /// Allocation calls (realloc included).
    pub allocations: u64,
    /// Frees of blocks allocated here.
    pub frees: u64,
    /// Allocations freed right after by the same thread.
    pub temporary: u64,
    /// Bytes requested.
    pub bytes_requested: u64,
    /// Smallest request.
    pub min_size: u64,
    /// Largest request.
    pub max_size: u64,
    /// The sizes that matter: the least size of the 10th percentile's
    /// power-of-two class (at least `min_size`)...
    pub size_band_low: u64,
    /// ... to the greatest of the 90th percentile's (at most `max_size`).
    pub size_band_high: u64,
    /// Allocator time of all those calls, nanoseconds.
    pub allocator_ns: u64,
    /// Stalls among them.
    pub stalls: u64,
}

/// One piece of advice.
#[derive(Debug, Clone, Serialize)]
pub struct Advice {
    /// `reuse` (temporary allocations) or `bulk` (many small ones).
    pub kind: &'static str,
    /// `function (file:line)`.
    pub site: String,
    /// Site function.
    pub function: Option<String>,
    /// Site line.
    pub line: Option<u32>,
    /// The site's calls (allocations and the frees of their blocks).
    pub calls: u64,
    /// The allocator time those calls cost, nanoseconds.
    pub allocator_ns: u64,
    /// A sentence for people.
    pub text: String,
}

/// Per-stack accumulation.
#[derive(Debug, Clone, Default)]
struct StackTime {
    allocs: u64,
    frees: u64,
    ticks: u64,
    bytes: u64,
    min_size: u64,
    max_size: u64,
    /// Requests by power-of-two class: index `i` counts sizes of `i`
    /// significant bits (0 for size 0); empty until the first request.
    size_classes: Vec<u64>,
    stalls: u64,
    stall_ticks: u64,
    max_stall: u64,
    stall_by_func: BTreeMap<&'static str, u64>,
    mapped: u64,
    grew: u64,
}

/// Adds one request of `size` bytes to power-of-two size classes.
fn add_size_class(classes: &mut Vec<u64>, size: u64) {
    add_size_class_count(classes, (64 - size.leading_zeros()) as usize, 1);
}

fn add_size_class_count(classes: &mut Vec<u64>, class: usize, n: u64) {
    if classes.len() <= class {
        classes.resize(65, 0);
    }
    classes[class] += n;
}

/// The 10th-to-90th percentile band of a site's requests (module docs).
fn size_band(t: &StackTime) -> (u64, u64) {
    let total: u64 = t.size_classes.iter().sum();
    if total == 0 {
        return (t.min_size, t.max_size);
    }
    // Nearest rank: the class holding request number ceil(p * total).
    let class_at = |rank: u64| {
        let mut seen = 0;
        t.size_classes
            .iter()
            .position(|&n| {
                seen += n;
                seen >= rank.max(1)
            })
            .unwrap_or(0)
    };
    let least = |class: usize| if class == 0 { 0 } else { 1u64 << (class - 1) };
    let greatest = |class: usize| match class {
        0 => 0,
        64 => u64::MAX,
        c => (1u64 << c) - 1,
    };
    let low = least(class_at(total.div_ceil(10))).max(t.min_size);
    let high = greatest(class_at((total * 9).div_ceil(10))).min(t.max_size);
    (low, high.max(low))
}

/// Each thread's life in ticks: from its start (or first call) to its end.
#[derive(Default)]
struct ThreadLives {
    started: FxHashMap<u32, u64>,
    ended_ticks: u64,
}

impl ThreadLives {
    fn see(&mut self, event: &Event) {
        match event {
            Event::ThreadStart { tid, ts } => {
                self.started.entry(*tid).or_insert(*ts);
            }
            Event::Heap { tid, event } => {
                self.started.entry(*tid).or_insert(event.ts);
            }
            Event::ThreadEnd { tid, ts } => {
                if let Some(start) = self.started.remove(tid) {
                    self.ended_ticks += ts.saturating_sub(start);
                }
            }
            _ => {}
        }
    }

    /// All the lives, those still going ending at `end_ts`.
    fn total_ticks(&self, end_ts: u64) -> u64 {
        self.ended_ticks
            + self
                .started
                .values()
                .map(|&start| end_ts.saturating_sub(start))
                .sum::<u64>()
    }
}

/// Heap-growth bookkeeping over the region snapshots.
#[derive(Default)]
struct Growth {
    /// The latest snapshot and its total size.
    latest: Option<(Vec<Region>, u64)>,
    /// Candidates waiting for the next snapshot.
    pending: Vec<usize>,
}

/// How a stall relates to heap growth (rules in the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GrowthClass {
    Unknown,
    Mapped,
    Grew,
    None,
}

/// A call that may be a stall. Ticks become nanoseconds through clock syncs
/// that keep arriving during the stream, so the threshold is applied at the
/// end; during the pass a call is kept when it reaches the threshold at half
/// the current estimate of ticks per nanosecond (at least 1 ns per tick).
struct Candidate {
    stack: StackId,
    func: Func,
    latency: u64,
    growth: GrowthClass,
}

#[derive(Default)]
struct GrowthCounts {
    mapped: u64,
    grew: u64,
    none: u64,
    unknown: u64,
}

fn region_bytes(regions: &[Region]) -> u64 {
    regions.iter().map(|r| r.end.saturating_sub(r.start)).sum()
}

/// Reads every event of `reader` and builds the latency report.
pub fn from_reader<R: std::io::Read>(
    reader: &mut Reader<R>,
    config: Config,
) -> Result<LatencyReport, DecodeError> {
    let mut sink = LatencySink::new(config);
    drive(reader, &mut [&mut sink])?;
    Ok(sink.report(&Trace::of(reader)))
}

/// The latency analysis as an [`EventSink`]: [`LatencySink::report`] once
/// the trace has been driven through it.
pub struct LatencySink {
    config: Config,
    /// Which stack allocated each freed block.
    replay: HeapReplay,
    hist: FxHashMap<Func, BTreeMap<u64, u64>>,
    per_stack: FxHashMap<StackId, StackTime>,
    growth: Growth,
    last_resources: Option<memtrace_format::ResourceSample>,
    candidates: Vec<Candidate>,
    n_calls: u64,
    n_alloc_calls: u64,
    lives: ThreadLives,
}

impl EventSink for LatencySink {
    fn event(&mut self, event: &Event, trace: &Trace) {
        self.lives.see(event);
        match event {
            Event::Heap { event: e, .. } => {
                let Some(func) = e.func() else { return };
                self.n_calls += 1;
                *self
                    .hist
                    .entry(func)
                    .or_default()
                    .entry(e.latency)
                    .or_default() += 1;
                let stack = match func.op() {
                    Op::Free => self.replay.live.get(&e.addr).map_or(0, |b| b.stack),
                    _ => e.stack,
                };
                let s = self.per_stack.entry(stack).or_default();
                s.ticks += e.latency;
                if func.op() == Op::Free {
                    s.frees += 1;
                } else {
                    self.n_alloc_calls += 1;
                    s.min_size = if s.allocs == 0 {
                        e.size
                    } else {
                        s.min_size.min(e.size)
                    };
                    s.max_size = s.max_size.max(e.size);
                    s.allocs += 1;
                    s.bytes += e.size;
                    add_size_class(&mut s.size_classes, e.size);
                }
                // The clock's estimate improves as syncs arrive: keep every call
                // that might be a stall and decide at the end (see `Candidate`).
                let maybe_ns = (e.latency as f64 * 2.0 * trace.clock.ns_per_tick().max(1.0)) as u64;
                if maybe_ns >= self.config.stall_ns {
                    let growth_class = match &self.growth.latest {
                        None => GrowthClass::Unknown,
                        Some((regions, _))
                            if func.op() != Op::Free
                                && e.addr != 0
                                && !regions.iter().any(|r| r.start <= e.addr && e.addr < r.end) =>
                        {
                            GrowthClass::Mapped
                        }
                        Some(_) => {
                            self.growth.pending.push(self.candidates.len());
                            GrowthClass::None
                        }
                    };
                    self.candidates.push(Candidate {
                        stack,
                        func,
                        latency: e.latency,
                        growth: growth_class,
                    });
                }
            }
            Event::Resources(r) => self.last_resources = Some(*r),
            Event::HeapRegions { regions, .. } => {
                let total = region_bytes(regions);
                let grew = self.growth.latest.as_ref().is_some_and(|(_, t)| total > *t);
                for i in self.growth.pending.drain(..) {
                    if grew {
                        self.candidates[i].growth = GrowthClass::Grew;
                    }
                }
                self.growth.latest = Some((regions.clone(), total));
            }
            _ => {}
        }
        self.replay.apply(event);
    }

    fn finish(&mut self, _: &Trace) {
        self.replay.finish();
    }
}

impl LatencySink {
    /// Nothing seen yet.
    pub fn new(config: Config) -> Self {
        LatencySink {
            config,
            replay: HeapReplay::new(0),
            hist: FxHashMap::default(),
            per_stack: FxHashMap::default(),
            growth: Growth::default(),
            last_resources: None,
            candidates: Vec::new(),
            n_calls: 0,
            n_alloc_calls: 0,
            lives: ThreadLives::default(),
        }
    }

    /// The report of the whole trace driven through this sink (`trace`
    /// as it is at the end).
    pub fn report(mut self, trace: &Trace) -> LatencyReport {
        let mut stall_counts = GrowthCounts::default();
        for c in &self.candidates {
            if trace.clock.duration_ns(c.latency) < self.config.stall_ns {
                continue;
            }
            let s = self.per_stack.entry(c.stack).or_default();
            s.stalls += 1;
            s.stall_ticks += c.latency;
            s.max_stall = s.max_stall.max(c.latency);
            *s.stall_by_func.entry(c.func.name()).or_default() += 1;
            match c.growth {
                GrowthClass::Unknown => stall_counts.unknown += 1,
                GrowthClass::Mapped => {
                    stall_counts.mapped += 1;
                    s.mapped += 1;
                }
                GrowthClass::Grew => {
                    stall_counts.grew += 1;
                    s.grew += 1;
                }
                GrowthClass::None => stall_counts.none += 1,
            }
        }

        let clock = trace.clock.clone();
        let ns = |ticks: u64| clock.duration_ns(ticks);
        let span = trace.span;
        let wall_ns = span.duration_ns(&clock);
        let thread_ns = ns(self.lives.total_ticks(span.end_ts));

        let mut functions: Vec<FunctionLatency> = Func::ALL
            .iter()
            .filter_map(|f| self.hist.get(f).map(|h| function_latency(*f, h, &ns)))
            .collect();
        functions.sort_by(|a, b| {
            b.total_ns
                .cmp(&a.total_ns)
                .then(a.function.cmp(&b.function))
        });
        let allocator_ticks: u64 = self.per_stack.values().map(|s| s.ticks).sum();
        let allocator_ns = ns(allocator_ticks);

        // Group stacks by site.
        let mut symbols = Symbols::new(trace.modules);
        let stacks = trace.stacks;
        let mut ids: Vec<StackId> = self.per_stack.keys().copied().collect();
        ids.sort_unstable();
        let mut sites: BTreeMap<String, (Frame, StackTime, u64, StackId)> = BTreeMap::new();
        for id in ids {
            let s = &self.per_stack[&id];
            let frame = symbols.site(stacks, id);
            let key = site_name(&frame);
            let temporary = self.replay.stacks.get(&id).map_or(0, |r| r.n_temporary);
            let entry = sites
                .entry(key)
                .or_insert_with(|| (frame, StackTime::default(), 0, id));
            let t = &mut entry.1;
            if s.allocs > 0 {
                t.min_size = if t.allocs == 0 {
                    s.min_size
                } else {
                    t.min_size.min(s.min_size)
                };
            }
            t.allocs += s.allocs;
            t.frees += s.frees;
            t.ticks += s.ticks;
            t.bytes += s.bytes;
            t.max_size = t.max_size.max(s.max_size);
            for (i, n) in s.size_classes.iter().enumerate() {
                add_size_class_count(&mut t.size_classes, i, *n);
            }
            t.stalls += s.stalls;
            t.stall_ticks += s.stall_ticks;
            if s.max_stall > t.max_stall || (t.max_stall == 0 && s.stalls > 0) {
                entry.3 = id;
            }
            t.max_stall = t.max_stall.max(s.max_stall);
            for (f, n) in &s.stall_by_func {
                *t.stall_by_func.entry(f).or_default() += n;
            }
            t.mapped += s.mapped;
            t.grew += s.grew;
            entry.2 += temporary;
        }

        let site_time = |name: &str, f: &Frame, t: &StackTime, temporary: u64| SiteTime {
            site: name.to_string(),
            function: f.function.clone(),
            file: f.file.clone(),
            line: f.line,
            calls: t.allocs + t.frees,
            allocations: t.allocs,
            frees: t.frees,
            temporary,
            bytes_requested: t.bytes,
            min_size: t.min_size,
            max_size: t.max_size,
            size_band_low: size_band(t).0,
            size_band_high: size_band(t).1,
            allocator_ns: ns(t.ticks),
            stalls: t.stalls,
        };
        let mut all_sites: Vec<SiteTime> = sites
            .iter()
            .map(|(name, (f, t, temporary, _))| site_time(name, f, t, *temporary))
            .collect();
        all_sites.sort_by(|a, b| {
            b.allocator_ns
                .cmp(&a.allocator_ns)
                .then(b.calls.cmp(&a.calls))
                .then(a.site.cmp(&b.site))
        });

        let mut stall_sites: Vec<StallSite> = sites
            .iter()
            .filter(|(_, (_, t, _, _))| t.stalls > 0)
            .map(|(name, (f, t, _, longest))| StallSite {
                site: name.clone(),
                function: f.function.clone(),
                file: f.file.clone(),
                line: f.line,
                calls: t.stalls,
                total_ns: ns(t.stall_ticks),
                max_ns: ns(t.max_stall),
                by_function: t
                    .stall_by_func
                    .iter()
                    .map(|(f, n)| (f.to_string(), *n))
                    .collect(),
                mapped: t.mapped,
                grew: t.grew,
                stack: symbols.stack(stacks, *longest),
            })
            .collect();
        stall_sites.sort_by(|a, b| {
            b.calls
                .cmp(&a.calls)
                .then(b.total_ns.cmp(&a.total_ns))
                .then(a.site.cmp(&b.site))
        });
        stall_sites.truncate(self.config.top);
        let stalls = Stalls {
            threshold_ns: self.config.stall_ns,
            calls: stall_sites_total(&self.per_stack, |s| s.stalls),
            total_ns: ns(stall_sites_total(&self.per_stack, |s| s.stall_ticks)),
            mapped: stall_counts.mapped,
            grew: stall_counts.grew,
            none: stall_counts.none,
            unknown: stall_counts.unknown,
            page_faults: None,
            sites: stall_sites,
        };

        let advice = all_sites
            .iter()
            .filter_map(|s| advise(s, self.n_alloc_calls))
            .collect();
        all_sites.truncate(self.config.top);

        let header = trace.header;
        let mut warnings = symbols.warnings().to_vec();
        if !header.latency_measured {
            warnings.push(
                "the recorder did not measure time inside the allocator: every latency is 0".into(),
            );
        }
        LatencyReport {
            schema: LATENCY_SCHEMA,
            program: Program {
                exe: header.exe.clone(),
                cmdline: header.cmdline.clone(),
                pid: header.pid,
                ppid: header.ppid,
            },
            trace: crate::report::trace_state_of(
                trace.completeness,
                trace.notes,
                "the numbers cover",
            ),
            latency_measured: header.latency_measured,
            wall_ns,
            allocator_ns,
            thread_ns,
            allocator_share: if thread_ns == 0 {
                0.0
            } else {
                (allocator_ns as f64 / thread_ns as f64).min(1.0)
            },
            outside_allocator_ns: thread_ns.saturating_sub(allocator_ns),
            cpu_ns: self.last_resources.map(|r| r.user_ns + r.system_ns),
            page_faults: self
                .last_resources
                .map(|r| (r.minor_faults, r.major_faults)),
            calls: self.n_calls,
            allocation_calls: self.n_alloc_calls,
            functions,
            stalls,
            top_sites: all_sites,
            advice,
            warnings,
        }
    }
}

fn stall_sites_total(
    per_stack: &FxHashMap<StackId, StackTime>,
    f: impl Fn(&StackTime) -> u64,
) -> u64 {
    per_stack.values().map(f).sum()
}

fn site_name(f: &Frame) -> String {
    f.describe()
}

/// Nearest-rank percentile of an exact histogram, `per_mille` of 1000.
fn percentile(hist: &BTreeMap<u64, u64>, n: u64, per_mille: u64) -> u64 {
    let rank = (n * per_mille).div_ceil(1000).max(1);
    let mut seen = 0;
    for (&value, &count) in hist {
        seen += count;
        if seen >= rank {
            return value;
        }
    }
    hist.keys().next_back().copied().unwrap_or(0)
}

fn function_latency(
    func: Func,
    hist: &BTreeMap<u64, u64>,
    ns: &impl Fn(u64) -> u64,
) -> FunctionLatency {
    let calls: u64 = hist.values().sum();
    let total: u64 = hist.iter().map(|(v, n)| v * n).sum();
    let mut buckets: BTreeMap<usize, u64> = BTreeMap::new();
    for (&ticks, &count) in hist {
        let v = ns(ticks);
        let bucket = if v == 0 {
            0
        } else {
            64 - v.leading_zeros() as usize
        };
        *buckets.entry(bucket).or_default() += count;
    }
    FunctionLatency {
        function: func.name().to_string(),
        calls,
        total_ns: ns(total),
        mean_ns: ns(total) / calls.max(1),
        p50_ns: ns(percentile(hist, calls, 500)),
        p90_ns: ns(percentile(hist, calls, 900)),
        p99_ns: ns(percentile(hist, calls, 990)),
        p999_ns: ns(percentile(hist, calls, 999)),
        max_ns: ns(hist.keys().next_back().copied().unwrap_or(0)),
        histogram: buckets
            .into_iter()
            .map(|(i, count)| LatencyBucket {
                min_ns: if i == 0 { 0 } else { 1u64 << (i - 1) },
                max_ns: if i == 0 {
                    0
                } else {
                    (1u64 << (i - 1)).saturating_mul(2) - 1
                },
                count,
            })
            .collect(),
    }
}

/// The advice a site's numbers support, if any (rules in the module docs).
fn advise(s: &SiteTime, n_alloc_calls: u64) -> Option<Advice> {
    let many = |n: u64| n >= MANY_CALLS && n * MANY_SHARE_DIVISOR >= n_alloc_calls;
    let small = s.allocations > 0 && s.bytes_requested / s.allocations < SMALL_BYTES;
    if !small || s.function.as_deref() == Some("<no stack>") {
        return None;
    }
    let sizes = if s.min_size == s.max_size {
        format!("all of {} B", s.min_size)
    } else if s.size_band_low == s.size_band_high {
        format!("80% of them {} B", s.size_band_low)
    } else {
        format!("80% of them {}-{} B", s.size_band_low, s.size_band_high)
    };
    let cost = seconds(s.allocator_ns);
    let (kind, text) = if many(s.temporary) {
        (
            "reuse",
            format!(
                "{} temporary small allocations ({sizes}, freed before the thread allocated again): \
                 reuse one buffer or use the stack; with their frees they cost {cost} in the allocator",
                s.temporary
            ),
        )
    } else if many(s.allocations) {
        (
            "bulk",
            format!(
                "{} small allocations ({sizes}) from one site: allocate them in bulk \
                 (one array, an arena or a pool); with their frees they cost {cost} in the allocator",
                s.allocations
            ),
        )
    } else {
        return None;
    };
    Some(Advice {
        kind,
        site: s.site.clone(),
        function: s.function.clone(),
        line: s.line,
        calls: s.calls,
        allocator_ns: s.allocator_ns,
        text,
    })
}

/// Reads a trace file and builds its latency report.
pub fn from_file(path: &std::path::Path, config: Config) -> Result<LatencyReport, DecodeError> {
    let mut reader = crate::open(path, memtrace_format::Extent::AsOpened)?;
    from_reader(&mut reader, config)
}

/// Renders the report as text.
pub fn render_text(r: &LatencyReport, frames: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "trace: {}", r.trace.status);
    let _ = writeln!(
        out,
        "{} over {} of traced wall time; {} in the allocator, {:.1}% of the \
         traced threads' {}; {} outside it (program and recorder)",
        count(r.calls, "heap call"),
        seconds(r.wall_ns),
        seconds(r.allocator_ns),
        r.allocator_share * 100.0,
        seconds(r.thread_ns),
        seconds(r.outside_allocator_ns)
    );
    match (r.cpu_ns, r.page_faults) {
        (Some(cpu), Some((minor, major))) => {
            let _ = writeln!(
                out,
                "CPU time: {} (user + system, all threads); page faults: {minor} minor, {major} major",
                seconds(cpu),
            );
        }
        _ => {
            let _ = writeln!(out, "CPU time: not recorded; page faults: not recorded");
        }
    }
    let _ = writeln!(
        out,
        "\n{:<16} {:>10} {:>11} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10}",
        "function", "calls", "total", "mean", "p50", "p90", "p99", "p99.9", "max"
    );
    for f in &r.functions {
        let _ = writeln!(
            out,
            "{:<16} {:>10} {:>11} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10}",
            f.function,
            f.calls,
            seconds(f.total_ns),
            seconds(f.mean_ns),
            seconds(f.p50_ns),
            seconds(f.p90_ns),
            seconds(f.p99_ns),
            seconds(f.p999_ns),
            seconds(f.max_ns)
        );
    }
    for f in &r.functions {
        let _ = writeln!(out, "\n{} latency histogram:", f.function);
        let widest = f.histogram.iter().map(|b| b.count).max().unwrap_or(1);
        for b in &f.histogram {
            let bar = (b.count * 40).div_ceil(widest) as usize;
            let _ = writeln!(
                out,
                "  {:>9} - {:>9} {:>10} {}",
                seconds(b.min_ns),
                seconds(b.max_ns),
                b.count,
                "#".repeat(bar)
            );
        }
    }
    let s = &r.stalls;
    let _ = writeln!(
        out,
        "\nstalls (calls of {} or more): {}, {} in all; {} took memory new to the heap, \
         {} came while the heap grew, {} with no heap growth, {} not known (no heap snapshot before them); \
         page faults per stall: not recorded",
        seconds(s.threshold_ns),
        s.calls,
        seconds(s.total_ns),
        s.mapped,
        s.grew,
        s.none,
        s.unknown
    );
    for site in &s.sites {
        let by: Vec<String> = site
            .by_function
            .iter()
            .map(|(f, n)| format!("{n} {f}"))
            .collect();
        let _ = writeln!(
            out,
            "  {:>8} {:<6} {:>11} (max {}) [{}] {} new memory, {} heap grew  {}",
            site.calls,
            noun(site.calls, "stall"),
            seconds(site.total_ns),
            seconds(site.max_ns),
            by.join(", "),
            site.mapped,
            site.grew,
            site.site
        );
        for f in site.stack.iter().take(frames) {
            let _ = writeln!(out, "      {}", f.describe());
        }
    }
    let _ = writeln!(
        out,
        "\ntop sites by allocator time (frees count at the allocating site):"
    );
    for site in &r.top_sites {
        let _ = writeln!(
            out,
            "  {:>11} {:>10} {:<5} {:>8} {:<6}  {}",
            seconds(site.allocator_ns),
            site.calls,
            noun(site.calls, "call"),
            site.stalls,
            noun(site.stalls, "stall"),
            site.site
        );
    }
    if !r.advice.is_empty() {
        let _ = writeln!(out, "\nadvice:");
        for a in &r.advice {
            let _ = writeln!(out, "  {}: {}", a.site, a.text);
        }
    }
    for w in &r.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use memtrace_format::{
        dequantize_latency, quantize_latency, ClockSync, Codec, Header, HeapEvent, ThreadItem,
        TickSource, Trailer, Writer,
    };

    fn header() -> Header {
        Header {
            pid: 1,
            exe: "synthetic".into(),
            ticks: TickSource::Tsc,
            latency_measured: true,
            ..Header::default()
        }
    }

    fn heap(func: Func, ts: u64, latency: u64, addr: u64, size: u64) -> ThreadItem {
        ThreadItem::Heap(HeapEvent {
            func: func as u8,
            ts,
            latency,
            addr,
            size,
            usable: size,
            stack: if func == Func::Free { 0 } else { 1 },
            ..Default::default()
        })
    }

    /// Writes a trace at 2 ns per tick with one stack node, `items` on
    /// thread 1, `regions` snapshots, and a trailer at `end`.
    fn trace(items: &[ThreadItem], regions: &[(u64, Vec<Region>)], end: u64) -> Vec<u8> {
        let mut w = Writer::new(Vec::new(), &header(), Codec::Raw).unwrap();
        w.clock_sync(ClockSync {
            ticks: 0,
            mono_ns: 0,
        })
        .unwrap();
        w.stack_nodes(1, &[(0, 0x1234)]).unwrap();
        for (ts, r) in regions {
            w.heap_regions(*ts, r).unwrap();
        }
        w.batch(1, items).unwrap();
        w.clock_sync(ClockSync {
            ticks: 1000,
            mono_ns: 2000,
        })
        .unwrap();
        w.finish(&Trailer {
            ts: end,
            ..Default::default()
        })
        .unwrap()
    }

    fn analyze(bytes: &[u8], stall_ns: u64) -> LatencyReport {
        let mut reader = Reader::new(bytes).unwrap();
        from_reader(&mut reader, Config { stall_ns, top: 10 }).unwrap()
    }

    #[test]
    fn the_allocators_share_is_of_the_threads_time_and_at_most_one() {
        // Two threads live from tick 100 to the trailer at 1000 and each
        // spends 600 ticks in one malloc: 1200 ticks in the allocator, more
        // than the 900 of the run, less than the threads' 1800.
        let mut w = Writer::new(Vec::new(), &header(), Codec::Raw).unwrap();
        w.clock_sync(ClockSync {
            ticks: 0,
            mono_ns: 0,
        })
        .unwrap();
        w.stack_nodes(1, &[(0, 0x1234)]).unwrap();
        for tid in [1u32, 2] {
            let start = ThreadItem::Start { ts: 100 };
            let call = heap(Func::Malloc, 200, 600, 0x1000 * u64::from(tid), 32);
            w.batch(tid, &[start, call]).unwrap();
        }
        w.clock_sync(ClockSync {
            ticks: 1000,
            mono_ns: 2000,
        })
        .unwrap();
        let bytes = w
            .finish(&Trailer {
                ts: 1000,
                ..Default::default()
            })
            .unwrap();
        let r = analyze(&bytes, u64::MAX);
        let latency = dequantize_latency(quantize_latency(600));
        // 2 ns per tick.
        assert_eq!(r.wall_ns, 1800);
        assert_eq!(r.thread_ns, 3600);
        assert_eq!(r.allocator_ns, 2 * 2 * latency);
        assert_eq!(r.allocator_share, (4 * latency) as f64 / 3600.0);
        assert_eq!(r.outside_allocator_ns, 3600 - 4 * latency);
        let text = render_text(&r, 4);
        assert!(
            text.contains(&format!(
                "2 heap calls over {} of traced wall time; {} in the allocator, {:.1}% of the traced threads' {}",
                seconds(1800),
                seconds(4 * latency),
                r.allocator_share * 100.0,
                seconds(3600)
            )),
            "{text}"
        );
    }

    #[test]
    fn the_size_band_runs_from_the_10th_to_the_90th_percentiles_class() {
        // 100 requests: 5 of 6 B, 90 of 16 B, 5 of 2,048,008 B.
        let mut t = StackTime {
            min_size: 6,
            max_size: 2_048_008,
            ..StackTime::default()
        };
        for (size, n) in [(6, 5), (16, 90), (2_048_008, 5)] {
            for _ in 0..n {
                add_size_class(&mut t.size_classes, size);
            }
        }
        // Rank 10 and rank 90 both fall among the 16s: class 16-31 B.
        assert_eq!(size_band(&t), (16, 31));
        // All the same size: the band is that size.
        let mut one = StackTime {
            min_size: 40,
            max_size: 40,
            ..StackTime::default()
        };
        add_size_class(&mut one.size_classes, 40);
        assert_eq!(size_band(&one), (40, 40));
        // Size 0 has a class of its own.
        let mut zero = StackTime::default();
        add_size_class(&mut zero.size_classes, 0);
        assert_eq!(size_band(&zero), (0, 0));
    }

    #[test]
    fn percentiles_are_exact_nearest_rank_values() {
        // 1000 mallocs of 1..=10 ticks, 100 of each, then one of 5000 ticks.
        let mut items: Vec<ThreadItem> = (0..1000)
            .map(|i| heap(Func::Malloc, 10 + i, i % 10 + 1, 0x10_0000 + 64 * i, 32))
            .collect();
        items.push(heap(Func::Malloc, 2000, 5000, 0x90_0000, 32));
        let r = analyze(&trace(&items, &[], 4010), 1000);
        let big = dequantize_latency(quantize_latency(5000));
        assert_ne!(big, 5000, "5000 ticks is stored approximately");
        let m = &r.functions[0];
        assert_eq!(m.function, "malloc");
        assert_eq!(m.calls, 1001);
        // 2 ns per tick. Nearest ranks of 1001 calls: p50 = ceil(500.5) =
        // 501st -> 6 ticks (1..=5 hold 500), p90 = 901st -> 10, p99 = 991st
        // -> 10, p99.9 = ceil(999.999) = 1000th -> 10; the max is the stall.
        assert_eq!(
            (m.p50_ns, m.p90_ns, m.p99_ns, m.p999_ns, m.max_ns),
            (12, 20, 20, 20, 2 * big)
        );
        assert_eq!(m.total_ns, 2 * (5500 + big));
        assert_eq!(r.allocator_ns, 2 * (5500 + big));
        // Wall time: first event (ts 10) to the trailer (ts 4010).
        assert_eq!(r.wall_ns, 8000);
        assert_eq!(r.cpu_ns, None);
        // Histogram: 2-3 ns (1 tick), 4-7 ns (2, 3), 8-15 (4..7), 16-31 (8..10), the stall.
        let counts: Vec<(u64, u64)> = m.histogram.iter().map(|b| (b.min_ns, b.count)).collect();
        assert_eq!(
            counts,
            vec![(2, 100), (4, 200), (8, 400), (16, 300), (8192, 1)]
        );
        // One stall: the 5000-tick call (10 us >= 1 us; 20 ns is not).
        assert_eq!(r.stalls.calls, 1);
        assert_eq!(r.stalls.total_ns, 2 * big);
        assert_eq!(r.stalls.sites.len(), 1);
        assert_eq!(r.stalls.sites[0].by_function["malloc"], 1);
        // No snapshot: its heap growth is unknown.
        assert_eq!(r.stalls.unknown, 1);
        // 1001 small blocks from one site, none freed: allocate them in bulk.
        assert_eq!(r.advice.len(), 1);
        assert_eq!(r.advice[0].kind, "bulk");
        assert_eq!(r.advice[0].calls, 1001);
    }

    #[test]
    fn frees_count_at_the_allocating_site_and_temporaries_advise_reuse() {
        let mut items = Vec::new();
        for i in 0..1000 {
            items.push(heap(Func::Malloc, 10 + 2 * i, 3, 0x1000, 100));
            items.push(heap(Func::Free, 11 + 2 * i, 2, 0x1000, 0));
        }
        let r = analyze(&trace(&items, &[], 3000), 10_000);
        assert_eq!(r.calls, 2000);
        assert_eq!(r.allocation_calls, 1000);
        assert_eq!(r.top_sites.len(), 1);
        let s = &r.top_sites[0];
        assert_eq!((s.allocations, s.frees, s.temporary), (1000, 1000, 1000));
        assert_eq!(s.allocator_ns, 2 * 5 * 1000);
        assert_eq!(r.stalls.calls, 0);
        assert_eq!(r.advice.len(), 1);
        assert_eq!(r.advice[0].kind, "reuse");
        assert_eq!(r.advice[0].allocator_ns, 10_000);
    }

    #[test]
    fn stalls_are_matched_against_heap_region_snapshots() {
        let small = vec![Region {
            start: 0x1000,
            end: 0x2000,
            kind: 0,
        }];
        let bigger = vec![Region {
            start: 0x1000,
            end: 0x3000,
            kind: 0,
        }];
        let items = [
            heap(Func::Malloc, 5, 100, 0x1100, 8), // before any snapshot: unknown
            heap(Func::Malloc, 10, 100, 0x9000, 8), // outside [0x1000, 0x2000): mapped
            heap(Func::Malloc, 20, 100, 0x1200, 8), // inside; next snapshot grew
            heap(Func::Malloc, 40, 100, 0x1300, 8), // inside; next snapshot the same
            heap(Func::Malloc, 41, 1, 0x1400, 8),  // not a stall
        ];
        let regions = [(7, small), (30, bigger.clone()), (50, bigger)];
        let r = analyze(&trace(&items, &regions, 60), 200);
        let s = &r.stalls;
        assert_eq!(s.calls, 4);
        assert_eq!((s.unknown, s.mapped, s.grew, s.none), (1, 1, 1, 1));
        assert_eq!((s.sites[0].mapped, s.sites[0].grew), (1, 1));
        // Too few calls for advice.
        assert!(r.advice.is_empty());
    }
}
