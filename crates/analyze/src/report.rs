//! `memtrace report`: the heap profile of one trace, as text or JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use memtrace_format::{Completeness, Func, Header, StackId, StackTable};
use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::replay::HeapReplay;
use crate::sink::Trace;
use crate::symbols::{Frame, Symbols};
use crate::units::{bytes, count, seconds};

/// Version of the JSON report's shape.
pub const REPORT_SCHEMA: &str = "memtrace-report/1";

/// The heap profile of a trace.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Always [`REPORT_SCHEMA`].
    pub schema: &'static str,
    /// What was traced.
    pub program: Program,
    /// Whether the trace is whole.
    pub trace: TraceState,
    /// Totals over the run.
    pub totals: Totals,
    /// Allocation sites (stacks grouped by their call site), most bytes first.
    pub sites: Vec<Site>,
    /// The sites grouped by their function (as heaptrack groups them), most
    /// calls first.
    pub functions: Vec<FunctionTotals>,
    /// Requested sizes by power-of-two bucket.
    pub size_histogram: Vec<SizeBucket>,
    /// Live heap over time.
    pub timeline: Vec<TimelinePoint>,
    /// Resident set size over time, sampled beside the heap (every 100 ms
    /// and at the end; empty for traces from before the samples existed).
    pub rss: Vec<RssPoint>,
    /// The phases, by their starts; the last one ends where the next
    /// begins, or at the end of the trace.
    pub phases: Vec<PhaseMark>,
    /// Symbolization problems.
    pub warnings: Vec<String>,
}

/// The traced process.
#[derive(Debug, Clone, Serialize)]
pub struct Program {
    /// Executable path.
    pub exe: String,
    /// Command line.
    pub cmdline: Vec<String>,
    /// Process id.
    pub pid: u32,
    /// Parent process id.
    pub ppid: u32,
}

/// How complete the trace is.
#[derive(Debug, Clone, Serialize)]
pub struct TraceState {
    /// True when the recorder finished cleanly (a trailer was written).
    pub complete: bool,
    /// Byte offset where the file was cut, if it was.
    pub truncated_at: Option<u64>,
    /// A sentence for people.
    pub status: String,
    /// Messages the recorder left.
    pub notes: Vec<String>,
    /// Heap events the recorder could not record (it ran out of memory),
    /// from the trailer: `None` for a trace without one.
    pub dropped_events: Option<u64>,
}

/// Totals over the whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    /// Wall time covered by the trace, in nanoseconds.
    pub duration_ns: u64,
    /// Heap events.
    pub events: u64,
    /// Calls per allocator function.
    pub calls_by_function: BTreeMap<String, u64>,
    /// Allocations (malloc, calloc, aligned forms, and each successful realloc).
    pub allocations: u64,
    /// Blocks released (by free, delete or realloc).
    pub frees: u64,
    /// Bytes requested.
    pub bytes_allocated: u64,
    /// Highest live heap, in bytes.
    pub peak_bytes: u64,
    /// When it was reached, nanoseconds from the start.
    pub peak_time_ns: u64,
    /// Blocks never freed.
    pub unfreed_blocks: u64,
    /// Their bytes.
    pub unfreed_bytes: u64,
    /// Temporary allocations by memtrace's rule: blocks freed by the thread
    /// that allocated them before it allocated anything else (see
    /// [`HeapReplay::n_temporary`](crate::replay::HeapReplay::n_temporary)).
    pub temporary: u64,
    /// Temporary allocations by heaptrack's rule, as `heaptrack_print`
    /// counts them: frees right after an allocation of the same size and
    /// stack, nothing between, across all threads (see
    /// [`HeapReplay::n_temporary_heaptrack`](crate::replay::HeapReplay::n_temporary_heaptrack)).
    pub temporary_heaptrack: u64,
    /// Frees of blocks the trace never saw allocated.
    pub unmatched_frees: u64,
    /// Allocations that returned NULL.
    pub failed: u64,
    /// Threads seen.
    pub threads: u64,
    /// Nanoseconds spent inside the allocator, all calls together.
    pub allocator_ns: u64,
}

/// One allocation site: every stack whose first non-internal frame (see
/// [`Frame::is_internal`]) is the same frame at the same return address.
#[derive(Debug, Clone, Serialize)]
pub struct Site {
    /// The site frame's name: its function, else `module+0xOFFSET`
    /// ([`Frame::name`]).
    pub name: String,
    /// The return address of the site frame.
    pub address: u64,
    /// That address relative to its module's load bias.
    pub module_offset: u64,
    /// Function of the site frame.
    pub function: Option<String>,
    /// Its file.
    pub file: Option<String>,
    /// Its line.
    pub line: Option<u32>,
    /// Its module.
    pub module: Option<String>,
    /// Allocation calls.
    pub allocations: u64,
    /// Bytes requested.
    pub bytes_allocated: u64,
    /// Usable bytes returned (internal waste = usable - requested).
    pub usable_allocated: u64,
    /// Blocks freed.
    pub frees: u64,
    /// Bytes freed.
    pub bytes_freed: u64,
    /// Blocks unfreed at exit.
    pub unfreed_blocks: u64,
    /// Bytes unfreed at exit.
    pub unfreed_bytes: u64,
    /// Bytes live at the peak.
    pub peak_bytes: u64,
    /// Blocks live at the peak.
    pub peak_blocks: u64,
    /// Temporary allocations.
    pub temporary: u64,
    /// Nanoseconds in the allocator for these calls.
    pub allocator_ns: u64,
    /// Distinct stacks merged into this site.
    pub stacks: u64,
    /// The stack with the most bytes, innermost frame first.
    pub stack: Vec<Frame>,
    /// The site frame itself.
    #[serde(skip)]
    pub frame: Frame,
}

impl Site {
    /// `function (file:line)`, or what is known of it ([`Frame::describe`]).
    pub fn describe(&self) -> String {
        self.frame.describe()
    }
}

/// The sites of one function: every site whose frame has the same name in
/// the same module.
#[derive(Debug, Clone, Serialize)]
pub struct FunctionTotals {
    /// The function ([`Frame::name`]: `module+0xOFFSET` when unnamed).
    pub name: String,
    /// Its module.
    pub module: Option<String>,
    /// Allocation calls.
    pub allocations: u64,
    /// Bytes requested.
    pub bytes_allocated: u64,
    /// Sites (return addresses) in the function.
    pub sites: u64,
}

/// Sums sites by function, most calls first, then most bytes, then by name.
fn function_totals(sites: &[Site]) -> Vec<FunctionTotals> {
    let mut by_function: FxHashMap<(&str, Option<&str>), FunctionTotals> = FxHashMap::default();
    for site in sites {
        let totals = by_function
            .entry((site.name.as_str(), site.module.as_deref()))
            .or_insert_with(|| FunctionTotals {
                name: site.name.clone(),
                module: site.module.clone(),
                allocations: 0,
                bytes_allocated: 0,
                sites: 0,
            });
        totals.allocations += site.allocations;
        totals.bytes_allocated = totals.bytes_allocated.saturating_add(site.bytes_allocated);
        totals.sites += 1;
    }
    let mut out: Vec<FunctionTotals> = by_function.into_values().collect();
    out.sort_by(|a, b| {
        b.allocations
            .cmp(&a.allocations)
            .then(b.bytes_allocated.cmp(&a.bytes_allocated))
            .then_with(|| a.name.cmp(&b.name))
            .then_with(|| a.module.cmp(&b.module))
    });
    out
}

/// A size-histogram bucket `[min, max]`.
#[derive(Debug, Clone, Serialize)]
pub struct SizeBucket {
    /// Smallest size in the bucket.
    pub min: u64,
    /// Largest size in the bucket.
    pub max: u64,
    /// Allocations.
    pub count: u64,
}

/// A point of the heap timeline.
#[derive(Debug, Clone, Serialize)]
pub struct TimelinePoint {
    /// Nanoseconds from the start.
    pub time_ns: u64,
    /// Live bytes.
    pub live_bytes: u64,
    /// Heap calls so far.
    pub calls: u64,
}

/// A sample of the process's resident memory and CPU time.
#[derive(Debug, Clone, Serialize)]
pub struct RssPoint {
    /// Nanoseconds from the start.
    pub time_ns: u64,
    /// Resident set size in bytes.
    pub rss_bytes: u64,
    /// User + system CPU time so far, nanoseconds.
    pub cpu_ns: u64,
    /// Minor + major page faults so far.
    pub page_faults: u64,
}

/// A phase boundary.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseMark {
    /// Nanoseconds from the start.
    pub time_ns: u64,
    /// Phase name.
    pub name: String,
}

/// A site: the return address and the frame there (function, file, line).
type SiteKey = (u64, Option<String>, Option<String>, Option<u32>);

/// What a report is built from.
pub struct ReportInput<'a> {
    /// The trace header.
    pub header: &'a Header,
    /// How reading ended.
    pub completeness: &'a Completeness,
    /// Recorder notes.
    pub notes: &'a [String],
    /// The stack table.
    pub stacks: &'a StackTable,
    /// Tick conversion.
    pub clock: &'a memtrace_format::Clock,
    /// The trace's span: its duration, and the origin of every time shown.
    pub span: memtrace_format::Span,
}

impl<'a> ReportInput<'a> {
    /// The input of a trace read to its end.
    pub fn of(trace: &Trace<'a>) -> ReportInput<'a> {
        ReportInput {
            header: trace.header,
            completeness: trace.completeness,
            notes: trace.notes,
            stacks: trace.stacks,
            clock: trace.clock,
            span: trace.span,
        }
    }
}

/// Heap events the recorder could not record, as the trailer says; `None`
/// without a trailer.
pub(crate) fn dropped_events(completeness: &Completeness) -> Option<u64> {
    match completeness {
        Completeness::Complete(trailer) => Some(trailer.n_dropped),
        _ => None,
    }
}

/// Builds the report from a finished replay.
pub fn build(input: &ReportInput, replay: &HeapReplay, symbols: &mut Symbols) -> Report {
    let clock = input.clock;
    let span = input.span;
    let since_start = |ts: u64| span.offset_ns(clock, ts);
    // Group stacks by site.
    let mut by_site: FxHashMap<SiteKey, (Site, u64)> = FxHashMap::default();
    let mut stack_ids: Vec<StackId> = replay.stacks.keys().copied().collect();
    stack_ids.sort_unstable();
    for id in stack_ids {
        let s = &replay.stacks[&id];
        if s.n_allocs == 0 && s.n_freed == 0 {
            continue;
        }
        let site_frame = symbols.site(input.stacks, id);
        // Two calls in one function are two sites; an address holds
        // several frames when calls were inlined into it.
        let key = (
            site_frame.address,
            site_frame.function.clone(),
            site_frame.file.clone(),
            site_frame.line,
        );
        let entry = by_site.entry(key).or_insert_with(|| {
            (
                Site {
                    name: site_frame.name(),
                    address: site_frame.address,
                    module_offset: site_frame.module_offset,
                    function: site_frame.function.clone(),
                    file: site_frame.file.clone(),
                    line: site_frame.line,
                    module: site_frame.module.clone(),
                    allocations: 0,
                    bytes_allocated: 0,
                    usable_allocated: 0,
                    frees: 0,
                    bytes_freed: 0,
                    unfreed_blocks: 0,
                    unfreed_bytes: 0,
                    peak_bytes: 0,
                    peak_blocks: 0,
                    temporary: 0,
                    allocator_ns: 0,
                    stacks: 0,
                    stack: Vec::new(),
                    frame: site_frame.clone(),
                },
                0,
            )
        });
        let (site, best) = entry;
        site.allocations += s.n_allocs;
        site.bytes_allocated = site.bytes_allocated.saturating_add(s.bytes_allocated);
        site.usable_allocated = site.usable_allocated.saturating_add(s.usable_allocated);
        site.frees += s.n_freed;
        site.bytes_freed = site.bytes_freed.saturating_add(s.bytes_freed);
        site.unfreed_blocks += s.live_blocks;
        site.unfreed_bytes = site.unfreed_bytes.saturating_add(s.live_bytes);
        site.peak_bytes = site.peak_bytes.saturating_add(s.peak_bytes);
        site.peak_blocks += s.peak_blocks;
        site.temporary += s.n_temporary;
        site.allocator_ns = site
            .allocator_ns
            .saturating_add(clock.duration_ns(s.latency_ticks));
        site.stacks += 1;
        if site.stack.is_empty() || s.bytes_allocated > *best {
            *best = s.bytes_allocated;
            site.stack = symbols.stack(input.stacks, id);
        }
    }
    let mut sites: Vec<Site> = by_site.into_values().map(|(s, _)| s).collect();
    sites.sort_by(|a, b| {
        b.bytes_allocated
            .cmp(&a.bytes_allocated)
            .then(b.allocations.cmp(&a.allocations))
            .then(a.describe().cmp(&b.describe()))
            .then(a.address.cmp(&b.address))
    });
    let functions = function_totals(&sites);

    let size_histogram = replay
        .size_histogram
        .iter()
        .enumerate()
        .filter(|(_, &n)| n > 0)
        .map(|(i, &count)| SizeBucket {
            min: if i == 0 { 0 } else { 1u64 << (i - 1) },
            max: if i == 0 {
                0
            } else {
                (1u64 << (i - 1)).saturating_mul(2) - 1
            },
            count,
        })
        .collect();

    Report {
        schema: REPORT_SCHEMA,
        program: program_of(input.header),
        trace: trace_state_of(input.completeness, input.notes, "the report covers"),
        totals: totals_of(input, replay),
        sites,
        functions,
        size_histogram,
        timeline: replay
            .timeline
            .iter()
            .map(|p| TimelinePoint {
                time_ns: since_start(p.ts),
                live_bytes: p.live_bytes,
                calls: p.calls,
            })
            .collect(),
        rss: replay
            .resources
            .iter()
            .map(|r| RssPoint {
                time_ns: since_start(r.ts),
                rss_bytes: r.rss_bytes,
                cpu_ns: r.user_ns.saturating_add(r.system_ns),
                page_faults: r.minor_faults.saturating_add(r.major_faults),
            })
            .collect(),
        // An empty name only ends the phase before it (the recorder writes
        // one at exit when a phase is still open): not a phase of its own.
        phases: replay
            .phases
            .iter()
            .filter(|(_, name)| !name.is_empty())
            .map(|(ts, name)| PhaseMark {
                time_ns: since_start(*ts),
                name: name.clone(),
            })
            .collect(),
        warnings: symbols.warnings().to_vec(),
    }
}

/// Reads a trace file and builds its report (a timeline of at most 1000 points).
pub fn from_file(path: &std::path::Path) -> Result<Report, memtrace_format::DecodeError> {
    from_reader(crate::open(path, memtrace_format::Extent::AsOpened)?)
}

/// Builds the report of a trace being read (a timeline of at most
/// [`TIMELINE_POINTS`] points).
pub fn from_reader<R: std::io::Read>(
    mut reader: memtrace_format::Reader<R>,
) -> Result<Report, memtrace_format::DecodeError> {
    let replay = HeapReplay::from_reader(&mut reader, TIMELINE_POINTS)?;
    Ok(from_replay(&replay, &Trace::of(&reader)))
}

/// Points of the report's heap timeline, at most.
pub const TIMELINE_POINTS: usize = 1000;

/// Builds the report of a whole trace from its finished replay (of
/// [`TIMELINE_POINTS`] points), symbolizing its stacks.
pub fn from_replay(replay: &HeapReplay, trace: &Trace) -> Report {
    let mut symbols = Symbols::new(trace.modules);
    let input = ReportInput::of(trace);
    build(&input, replay, &mut symbols)
}

/// Who the trace is of.
fn program_of(header: &Header) -> Program {
    Program {
        exe: header.exe.clone(),
        cmdline: header.cmdline.clone(),
        pid: header.pid,
        ppid: header.ppid,
    }
}

/// Whether the trace is whole, in words too; `covered` names what a cut
/// trace's figures cover ("the report", "the numbers").
pub(crate) fn trace_state_of(
    completeness: &Completeness,
    notes: &[String],
    covered: &str,
) -> TraceState {
    let (complete, truncated_at, status) = match completeness {
        Completeness::Complete(_) => (true, None, "complete".to_string()),
        Completeness::Truncated(at) => (
            false,
            Some(*at),
            format!("truncated at byte {at}: {covered} the part before the cut"),
        ),
        _ => (
            false,
            None,
            "incomplete: no trailer (the program was killed, or is still running)".to_string(),
        ),
    };

    TraceState {
        complete,
        truncated_at,
        status,
        notes: notes.to_vec(),
        dropped_events: dropped_events(completeness),
    }
}

/// The whole trace's totals: nothing here needs a symbol.
fn totals_of(input: &ReportInput, replay: &HeapReplay) -> Totals {
    let clock = input.clock;
    let span = input.span;
    let mut calls_by_function = BTreeMap::new();
    let mut allocator_ticks = 0u64;
    for func in Func::ALL {
        let f = replay.funcs[func as usize];
        if f.calls > 0 {
            calls_by_function.insert(func.name().to_string(), f.calls);
        }
        allocator_ticks = allocator_ticks.saturating_add(f.latency_ticks);
    }
    Totals {
        duration_ns: span.duration_ns(clock),
        events: replay.n_events,
        calls_by_function,
        allocations: replay.n_allocs,
        frees: replay.n_frees,
        bytes_allocated: replay.bytes_allocated,
        peak_bytes: replay.peak_bytes,
        peak_time_ns: span.offset_ns(clock, replay.peak_ts),
        unfreed_blocks: replay.live.len() as u64,
        unfreed_bytes: replay.live_bytes,
        temporary: replay.n_temporary,
        temporary_heaptrack: replay.n_temporary_heaptrack,
        unmatched_frees: replay.n_unmatched_frees,
        failed: replay.n_failed,
        threads: replay.n_threads,
        allocator_ns: clock.duration_ns(allocator_ticks),
    }
}

/// What `report --family` shows of each process: who it is, whether its
/// trace is whole, and its totals, without symbolizing anything (a
/// family of a `make -j` has hundreds of traces, each naming libc).
#[derive(Debug, Clone)]
pub struct Summary {
    /// Who the trace is of.
    pub program: Program,
    /// Whether the trace is whole.
    pub trace: TraceState,
    /// The totals, as in the full report.
    pub totals: Totals,
}

/// Reads a whole trace into its [`Summary`].
pub fn summary_from_reader<R: std::io::Read>(
    mut reader: memtrace_format::Reader<R>,
) -> Result<Summary, memtrace_format::DecodeError> {
    let replay = HeapReplay::from_reader(&mut reader, TIMELINE_POINTS)?;
    let trace = Trace::of(&reader);
    let input = ReportInput::of(&trace);
    Ok(Summary {
        program: program_of(input.header),
        trace: trace_state_of(input.completeness, input.notes, "the report covers"),
        totals: totals_of(&input, &replay),
    })
}

/// How much of the report to print.
#[derive(Debug, Clone, Copy)]
pub struct TextOptions {
    /// Sites listed per table.
    pub top: usize,
    /// Frames printed per stack.
    pub frames: usize,
}

impl Default for TextOptions {
    fn default() -> Self {
        TextOptions { top: 10, frames: 8 }
    }
}

fn write_stack(out: &mut String, stack: &[Frame], max: usize) {
    for f in stack.iter().take(max) {
        let _ = writeln!(
            out,
            "      {}{}",
            if f.inlined { "(inlined) " } else { "" },
            f.describe()
        );
    }
    if stack.len() > max {
        let _ = writeln!(
            out,
            "      ... {}",
            count((stack.len() - max) as u64, "more frame")
        );
    }
}

/// The one-paragraph summary `memtrace run` prints.
pub fn render_summary(r: &Report, top: usize) -> String {
    let t = &r.totals;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "memtrace: {}, {} allocated, peak heap {}, unfreed at exit {} in {}",
        count(t.events, "call"),
        bytes(t.bytes_allocated),
        bytes(t.peak_bytes),
        bytes(t.unfreed_bytes),
        count(t.unfreed_blocks, "block")
    );
    for s in r.sites.iter().take(top) {
        let _ = writeln!(
            out,
            "memtrace:   {} in {} at {}",
            bytes(s.bytes_allocated),
            count(s.allocations, "call"),
            s.describe()
        );
    }
    if !r.trace.complete {
        let _ = writeln!(out, "memtrace: trace {}", r.trace.status);
    }
    out
}

/// The full text report.
pub fn render_text(r: &Report, opt: TextOptions) -> String {
    let t = &r.totals;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "program: {} (pid {})",
        r.program.cmdline.join(" "),
        r.program.pid
    );
    let _ = writeln!(out, "trace: {}", r.trace.status);
    if let Some(n) = r.trace.dropped_events.filter(|&n| n > 0) {
        let _ = writeln!(
            out,
            "dropped: {} the recorder could not record (out of memory)",
            count(n, "heap event")
        );
    }
    for note in &r.trace.notes {
        let _ = writeln!(out, "recorder note: {note}");
    }
    let calls: Vec<String> = t
        .calls_by_function
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let _ = writeln!(out, "duration: {}", seconds(t.duration_ns));
    let _ = writeln!(out, "calls: {} ({})", t.events, calls.join(", "));
    let _ = writeln!(
        out,
        "allocations: {}, frees: {}, threads: {}",
        t.allocations, t.frees, t.threads
    );
    let _ = writeln!(
        out,
        "bytes allocated: {} ({})",
        bytes(t.bytes_allocated),
        count(t.bytes_allocated, "byte")
    );
    let _ = writeln!(
        out,
        "peak heap: {} ({}) at {}",
        bytes(t.peak_bytes),
        count(t.peak_bytes, "byte"),
        seconds(t.peak_time_ns)
    );
    if let Some(peak) = r.rss.iter().max_by_key(|p| p.rss_bytes) {
        let last = r.rss.last().map_or(0, |p| p.cpu_ns);
        let _ = writeln!(
            out,
            "peak RSS: {} at {} (sampled every 100 ms); CPU time {}",
            bytes(peak.rss_bytes),
            seconds(peak.time_ns),
            seconds(last)
        );
    }
    let _ = writeln!(
        out,
        "unfreed at exit: {} ({}) in {}",
        bytes(t.unfreed_bytes),
        count(t.unfreed_bytes, "byte"),
        count(t.unfreed_blocks, "block")
    );
    let _ = writeln!(
        out,
        "temporary allocations: {} (freed by their thread before it allocated again)",
        t.temporary
    );
    let _ = writeln!(
        out,
        "temporary allocations, heaptrack's rule: {} (freed right after an allocation of the same size and stack)",
        t.temporary_heaptrack
    );
    let _ = writeln!(out, "time in the allocator: {}", seconds(t.allocator_ns));
    if t.unmatched_frees > 0 || t.failed > 0 {
        let _ = writeln!(
            out,
            "frees of unknown blocks: {}, failed allocations: {}",
            t.unmatched_frees, t.failed
        );
    }

    let mut table = |title: &str, key: &dyn Fn(&Site) -> u64, line: &dyn Fn(&Site) -> String| {
        let mut sites: Vec<&Site> = r.sites.iter().filter(|s| key(s) > 0).collect();
        if sites.is_empty() {
            return;
        }
        sites.sort_by_key(|s| std::cmp::Reverse(key(s)));
        let _ = writeln!(out, "\n{title}:");
        for s in sites.into_iter().take(opt.top) {
            let _ = writeln!(out, "  {} at {}", line(s), s.describe());
            write_stack(&mut out, &s.stack, opt.frames);
        }
    };
    table(
        "top sites by bytes allocated",
        &|s| s.bytes_allocated,
        &|s| {
            format!(
                "{} in {}",
                bytes(s.bytes_allocated),
                count(s.allocations, "call")
            )
        },
    );
    table("top sites by calls", &|s| s.allocations, &|s| {
        format!(
            "{} ({})",
            count(s.allocations, "call"),
            bytes(s.bytes_allocated)
        )
    });
    table("stacks live at peak", &|s| s.peak_bytes, &|s| {
        format!(
            "{} in {}",
            bytes(s.peak_bytes),
            count(s.peak_blocks, "block")
        )
    });
    table("temporary allocations", &|s| s.temporary, &|s| {
        format!("{} of {}", s.temporary, count(s.allocations, "call"))
    });
    table("unfreed at exit", &|s| s.unfreed_bytes, &|s| {
        format!(
            "{} in {}",
            bytes(s.unfreed_bytes),
            count(s.unfreed_blocks, "block")
        )
    });
    if !r.functions.is_empty() {
        let _ = writeln!(out, "\ntop functions by calls (their sites together):");
        for f in r.functions.iter().take(opt.top) {
            let _ = writeln!(
                out,
                "  {} ({}) in {} at {} ({})",
                count(f.allocations, "call"),
                bytes(f.bytes_allocated),
                count(f.sites, "site"),
                f.name,
                f.module.as_deref().unwrap_or("?")
            );
        }
    }

    if !r.size_histogram.is_empty() {
        let _ = writeln!(out, "\nallocation sizes:");
        let max = r.size_histogram.iter().map(|b| b.count).max().unwrap_or(1);
        for b in &r.size_histogram {
            let bar = "#".repeat(((b.count * 40).div_ceil(max)) as usize);
            let _ = writeln!(
                out,
                "  {:>10} - {:<10} {:>10}  {bar}",
                b.min, b.max, b.count
            );
        }
    }
    for w in &r.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    out
}
