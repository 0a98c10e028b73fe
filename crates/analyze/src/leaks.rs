//! `memtrace leaks`: the exit-time scan of a trace, classified, grouped by
//! allocation stack, symbolized and filtered by suppressions.
//!
//! The JSON form of [`LeakReport`] is the schema `memtrace-leaks/1`,
//! documented in `docs/leaks-json.md`.

use std::path::Path;

use memtrace_format::{Completeness, DecodeError, Extent, Incomplete, LeakScan};
use memtrace_leaks::ci::{Finding, SourceFrame};
use memtrace_leaks::{
    classify, leaked_cycles, loss_records, FrameText, LeakClass, Suppressions, Totals,
};
use serde::Serialize;

use crate::sink::Trace;
use crate::symbols::{Frame, Symbols};
use crate::units::{bytes as fmt_bytes, count};

/// The schema name and version of the JSON output.
pub const SCHEMA: &str = "memtrace-leaks/1";

/// One loss record, symbolized.
#[derive(Debug, Clone, Serialize)]
pub struct LeakRecord {
    /// Its class.
    pub class: LeakClass,
    /// Number of blocks.
    pub blocks: u64,
    /// Their requested bytes.
    pub bytes: u64,
    /// Bytes of indirectly lost blocks reached only from these (definite only).
    pub indirect_bytes: u64,
    /// The allocation stack, innermost first, the allocator's frames dropped.
    pub stack: Vec<Frame>,
    /// The first frame of the program's own (not an allocator's or runtime's).
    pub site: Frame,
    /// The suppression that silenced it, if one did (`origin: pattern`).
    pub suppressed_by: Option<String>,
}

/// One block of a leaked cycle.
#[derive(Debug, Clone, Serialize)]
pub struct CycleBlock {
    /// Its address.
    pub address: u64,
    /// Requested bytes.
    pub bytes: u64,
    /// Its allocation site.
    pub site: Frame,
}

/// A leaked cycle.
#[derive(Debug, Clone, Serialize)]
pub struct LeakedCycle {
    /// Blocks in cycle order (`a -> b -> ... -> a`).
    pub blocks: Vec<CycleBlock>,
    /// Their total bytes.
    pub bytes: u64,
    /// The suppression that silenced it, if one matched every block.
    pub suppressed_by: Option<String>,
}

/// How the scan went.
#[derive(Debug, Clone, Serialize)]
pub struct ScanInfo {
    /// Scan time in milliseconds.
    pub duration_ms: f64,
    /// Bytes of roots scanned.
    pub root_bytes: u64,
    /// Bytes of heap scanned.
    pub heap_bytes: u64,
    /// Threads whose stacks were scanned.
    pub threads: u32,
    /// Threads that could not be stopped (their stacks are not roots).
    pub threads_unscanned: u32,
    /// False when the scan cannot vouch for its result: `incomplete` says why.
    pub complete: bool,
    /// Why the scan is incomplete, as stable codes (`time-budget`, ...);
    /// empty when it is complete.
    pub incomplete: Vec<String>,
    /// Ranges the scan meant to read that were gone by then (skipped).
    pub unreadable_ranges: u64,
}

impl ScanInfo {
    fn of(scan: &LeakScan) -> ScanInfo {
        let mut incomplete: Vec<String> = scan
            .incomplete_reasons()
            .iter()
            .map(|r| r.code().to_string())
            .collect();
        let unknown = scan.unknown_incomplete_bits();
        if unknown != 0 {
            incomplete.push(format!("unknown-{unknown:#x}"));
        }
        ScanInfo {
            duration_ms: scan.duration_ns as f64 / 1e6,
            root_bytes: scan.root_bytes,
            heap_bytes: scan.heap_bytes,
            threads: scan.n_threads,
            threads_unscanned: scan.n_threads_unscanned,
            complete: scan.is_complete(),
            incomplete,
            unreadable_ranges: scan.n_unreadable,
        }
    }
}

/// Why a scan is incomplete, in words: `"REASON; REASON"`; `None` when it
/// is complete.
pub fn incomplete_reason(scan: &ScanInfo) -> Option<String> {
    if scan.complete {
        return None;
    }
    let words: Vec<String> = scan
        .incomplete
        .iter()
        .map(|code| {
            let reason = Incomplete::ALL.into_iter().find(|r| r.code() == code);
            match reason {
                Some(Incomplete::TimeBudget) => "the scan ran out of its time budget \
                     (MEMTRACE_LEAK_SCAN_BUDGET_MS)"
                    .to_string(),
                Some(Incomplete::ThreadResumed) => {
                    "a stopped thread ran again before the scan ended".to_string()
                }
                Some(Incomplete::ThreadNotStopped) => format!(
                    "{} could not be stopped (blocking the scan's signal while running)",
                    count(scan.threads_unscanned.into(), "thread")
                ),
                Some(Incomplete::ThreadWoke) => {
                    "a thread asleep in a system call ran during the scan".to_string()
                }
                Some(Incomplete::CallsMissed) => "heap calls made while the threads were \
                     being stopped could not all be taken into account"
                    .to_string(),
                Some(Incomplete::EdgesOverflow) => "too many pointers between lost blocks \
                     to record (definitely and indirectly lost may be mixed up)"
                    .to_string(),
                Some(Incomplete::MapsStale) => "the memory map could not be read again \
                     once the threads were stopped"
                    .to_string(),
                Some(Incomplete::ReadFailed) => "reading the program's memory failed".to_string(),
                None => format!("reason {code} of a later memtrace"),
            }
        })
        .collect();
    Some(words.join("; "))
}

/// Everything `memtrace leaks` says about a trace.
#[derive(Debug, Clone, Serialize)]
pub struct LeakReport {
    /// Always [`SCHEMA`].
    pub schema: &'static str,
    /// The traced program.
    pub program: String,
    /// Its pid.
    pub pid: u32,
    /// The scan.
    pub scan: ScanInfo,
    /// Totals per class, suppressed blocks left out.
    pub totals: Totals,
    /// Totals of what the suppressions silenced.
    pub suppressed: Totals,
    /// Loss records, largest first; suppressed ones included (marked).
    pub records: Vec<LeakRecord>,
    /// Leaked cycles, largest first.
    pub cycles: Vec<LeakedCycle>,
}

impl LeakReport {
    /// The unsuppressed loss records, as the CI formats of
    /// [`memtrace_leaks::ci`] take them.
    pub fn findings(&self) -> Vec<Finding<'_, Frame>> {
        self.records
            .iter()
            .filter(|r| r.suppressed_by.is_none())
            .map(|r| Finding {
                class: r.class,
                blocks: r.blocks,
                bytes: r.bytes,
                indirect_bytes: r.indirect_bytes,
                site: &r.site,
                stack: &r.stack,
            })
            .collect()
    }
}

impl SourceFrame for Frame {
    fn function(&self) -> Option<&str> {
        self.function.as_deref()
    }
    fn file(&self) -> Option<&str> {
        self.file.as_deref()
    }
    fn line(&self) -> Option<u32> {
        self.line
    }
    fn module(&self) -> Option<&str> {
        self.module.as_deref()
    }
    fn describe(&self) -> String {
        Frame::describe(self)
    }
}

/// Why a trace has no leak report.
#[derive(Debug)]
pub enum LeakError {
    /// The file could not be decoded.
    Decode(DecodeError),
    /// The trace holds no scan, and why that is.
    NoScan(String),
}

impl std::fmt::Display for LeakError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LeakError::Decode(e) => write!(f, "{e}"),
            LeakError::NoScan(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for LeakError {}

impl From<DecodeError> for LeakError {
    fn from(e: DecodeError) -> Self {
        LeakError::Decode(e)
    }
}

/// Reads a trace's scan and builds the report.
pub fn from_file(path: &Path, suppressions: &Suppressions) -> Result<LeakReport, LeakError> {
    from_reader(crate::open(path, Extent::AsOpened)?, suppressions)
}

/// Reads the scan of a trace being read and builds the report.
pub fn from_reader<R: std::io::Read>(
    mut reader: memtrace_format::Reader<R>,
    suppressions: &Suppressions,
) -> Result<LeakReport, LeakError> {
    reader.skip_to_end()?;
    from_trace(&Trace::of(&reader), suppressions)
}

/// Builds the report from the scan of a whole trace read to its end (by
/// [`crate::sink::drive`], say).
pub fn from_trace(trace: &Trace, suppressions: &Suppressions) -> Result<LeakReport, LeakError> {
    let Some(scan) = trace.leak_scan else {
        // The recorder notes why it could not scan (no descriptor left to
        // read /proc/self/maps, say).
        let noted = trace
            .notes
            .iter()
            .find_map(|n| n.strip_prefix("no leak scan: "));
        let why = match (noted, trace.completeness) {
            (Some(reason), _) => format!("the trace has no leak scan: {reason}"),
            (None, Completeness::Complete(_)) => "the trace has no leak scan: the program did \
                 not end through exit() (it called _exit or exec), or it was recorded with \
                 MEMTRACE_LEAK_SCAN=0"
                .into(),
            (None, _) => "the trace has no leak scan: it ends before the program exited \
                 (killed or crashed)"
                .into(),
        };
        return Err(LeakError::NoScan(why));
    };
    let mut symbols = Symbols::new(trace.modules);
    let program = trace.header.exe.clone();
    let pid = trace.header.pid;
    Ok(build(
        scan,
        trace.stacks,
        &mut symbols,
        suppressions,
        program,
        pid,
    ))
}

fn frame_text(frames: &[Frame]) -> Vec<FrameText> {
    frames
        .iter()
        .map(|f| FrameText {
            function: f.function.clone(),
            file: f.file.clone(),
            module: f.module.clone().unwrap_or_default(),
        })
        .collect()
}

/// Builds the report from a scan.
pub fn build(
    scan: &LeakScan,
    stacks: &memtrace_format::StackTable,
    symbols: &mut Symbols,
    suppressions: &Suppressions,
    program: String,
    pid: u32,
) -> LeakReport {
    let classes = classify(scan);
    let mut records = Vec::new();
    let mut suppressed_stacks = std::collections::HashMap::new();
    for r in loss_records(scan, &classes) {
        let all = symbols.stack(stacks, r.stack);
        let site = symbols.site(stacks, r.stack);
        // Drop the allocator's own frames (malloc, operator new, Rust's
        // alloc shims) from the top: the stack starts at who asked.
        let first_own = all.iter().position(|f| !f.is_internal()).unwrap_or(0);
        let stack = all[first_own..].to_vec();
        let suppressed_by = suppressions
            .matching(&frame_text(&all))
            .map(|s| format!("{}: leak:{}", s.origin, s.pattern));
        suppressed_stacks.insert(r.stack, suppressed_by.clone());
        records.push(LeakRecord {
            class: r.class,
            blocks: r.n_blocks,
            bytes: r.bytes,
            indirect_bytes: r.indirect_bytes,
            stack,
            site,
            suppressed_by,
        });
    }
    let is_suppressed = |i: usize| {
        suppressed_stacks
            .get(&scan.blocks[i].stack)
            .is_some_and(|s| s.is_some())
    };
    let totals = memtrace_leaks::totals(scan, &classes, &|i| !is_suppressed(i));
    let suppressed = memtrace_leaks::totals(scan, &classes, &is_suppressed);
    let cycles = leaked_cycles(scan, &classes)
        .into_iter()
        .map(|c| {
            let all_suppressed = c.blocks.iter().all(|&i| is_suppressed(i as usize));
            let suppressed_by = if all_suppressed {
                suppressed_stacks
                    .get(&scan.blocks[c.blocks[0] as usize].stack)
                    .cloned()
                    .flatten()
            } else {
                None
            };
            LeakedCycle {
                blocks: c
                    .blocks
                    .iter()
                    .map(|&i| {
                        let b = &scan.blocks[i as usize];
                        CycleBlock {
                            address: b.addr,
                            bytes: b.size,
                            site: symbols.site(stacks, b.stack),
                        }
                    })
                    .collect(),
                bytes: c.bytes,
                suppressed_by,
            }
        })
        .collect();
    LeakReport {
        schema: SCHEMA,
        program,
        pid,
        scan: ScanInfo::of(scan),
        totals,
        suppressed,
        records,
        cycles,
    }
}

/// Options of the text form.
#[derive(Debug, Clone, Copy)]
pub struct TextOptions {
    /// Frames printed per stack.
    pub frames: usize,
    /// Classes whose records are printed in full.
    pub show: [bool; 4],
}

/// `function (file.c:12)`, with the file's base name only.
fn short_site(f: &Frame) -> String {
    let function = f.name();
    match (&f.file, f.line) {
        (Some(file), Some(line)) => {
            let base = file.rsplit('/').next().unwrap_or(file);
            format!("{function} ({base}:{line})")
        }
        _ => function.to_string(),
    }
}

/// The readable report, memcheck's wording.
pub fn render_text(r: &LeakReport, opts: TextOptions) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let shown = |c: LeakClass| opts.show[LeakClass::ALL.iter().position(|&x| x == c).unwrap_or(0)];
    for rec in r
        .records
        .iter()
        .filter(|rec| rec.suppressed_by.is_none() && shown(rec.class))
    {
        let amount = if rec.indirect_bytes > 0 {
            format!(
                "{} ({} direct, {} indirect) bytes",
                rec.bytes + rec.indirect_bytes,
                rec.bytes,
                rec.indirect_bytes
            )
        } else {
            count(rec.bytes, "byte")
        };
        let _ = writeln!(
            out,
            "{amount} in {} are {}",
            count(rec.blocks, "block"),
            rec.class.phrase()
        );
        for (k, f) in rec.stack.iter().take(opts.frames).enumerate() {
            let _ = writeln!(
                out,
                "    {} {}",
                if k == 0 { "at" } else { "by" },
                f.describe()
            );
        }
        out.push('\n');
    }
    for c in r.cycles.iter().filter(|c| c.suppressed_by.is_none()) {
        let names: Vec<String> = c.blocks.iter().map(|b| short_site(&b.site)).collect();
        let _ = writeln!(
            out,
            "leaked cycle of {}, {}: {} -> {}",
            count(c.blocks.len() as u64, "block"),
            count(c.bytes, "byte"),
            names.join(" -> "),
            names[0]
        );
        for b in &c.blocks {
            let _ = writeln!(
                out,
                "    {} at {:#x} from {}",
                count(b.bytes, "byte"),
                b.address,
                b.site.describe()
            );
        }
        out.push('\n');
    }
    let _ = writeln!(out, "LEAK SUMMARY ({}, pid {}):", r.program, r.pid);
    for class in LeakClass::ALL {
        let (bytes, blocks) = r.totals.of(class);
        let _ = writeln!(
            out,
            "  {:>16}: {} in {}",
            class.phrase(),
            count(bytes, "byte"),
            count(blocks, "block")
        );
    }
    let (sb, sn): (u64, u64) = LeakClass::ALL
        .iter()
        .map(|&c| r.suppressed.of(c))
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    let _ = writeln!(
        out,
        "  {:>16}: {} in {}",
        "suppressed",
        count(sb, "byte"),
        count(sn, "block")
    );
    let _ = writeln!(
        out,
        "  scan: {:.1} ms, {} of roots and {} of heap, {}{}",
        r.scan.duration_ms,
        fmt_bytes(r.scan.root_bytes),
        fmt_bytes(r.scan.heap_bytes),
        count(r.scan.threads.into(), "thread"),
        if r.scan.threads_unscanned > 0 {
            format!(
                " ({} could not be stopped: pointers they hold are not seen)",
                r.scan.threads_unscanned
            )
        } else {
            String::new()
        }
    );
    if let Some(why) = incomplete_reason(&r.scan) {
        let _ = writeln!(out, "leak scan incomplete: {why}");
    }
    out
}
