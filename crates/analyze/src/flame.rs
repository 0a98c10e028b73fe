//! Folded stacks for flame graphs: one `root;...;leaf VALUE` line per
//! distinct stack, in the format that `flamegraph.pl` and inferno read.
//!
//! Frames are written outermost first and named by their function, or
//! `module+0xOFFSET` when no debug information or symbol table names it
//! (`??` for an address in no module), inlined frames included. Only the
//! innermost frames that are allocator wrappers or runtime code
//! ([`Frame::is_internal`]: `malloc`, `operator new`, Rust's `alloc::`
//! wrappers, libc, libstdc++, ...) are dropped, so that each stack's leaf is
//! its call site, the function that asked for memory; every frame from
//! there out is kept, in any library. A stack made only of internal frames
//! is kept whole. Stacks whose folded names are equal (two
//! return addresses in one function) are merged, and stacks whose value is 0
//! are left out.
//!
//! [`from_reader`] folds a whole trace, with the program's name and a note
//! for a trace cut short: what `memtrace flamegraph` draws (with inferno).
//!
//! ```
//! use memtrace_analyze::flame::{parse_folded, render_folded};
//!
//! let stacks = vec![("main;work".to_string(), 4096), ("main".to_string(), 24)];
//! let text = render_folded(&stacks);
//! assert_eq!(text, "main;work 4096\nmain 24\n");
//! assert_eq!(parse_folded(&text).unwrap(), stacks);
//! ```

use std::fmt;
use std::io::Read;
use std::path::Path;

use memtrace_format::{Clock, Completeness, DecodeError, Reader, StackTable};
use rustc_hash::FxHashMap;

use crate::replay::{HeapReplay, StackStats};
use crate::sink::Trace;
use crate::symbols::{Frame, Symbols};

/// What a flame graph's widths measure, per allocation stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Measure {
    /// Bytes requested by the stack's allocation calls.
    Bytes,
    /// Allocation calls made from the stack (a realloc counts as one).
    Calls,
    /// Bytes from the stack live at the moment of the heap peak.
    Peak,
    /// Bytes from the stack still live at the end of the trace.
    Leaked,
    /// Nanoseconds the stack's allocation calls spent in the allocator
    /// (frees have no allocation stack and are not counted).
    Latency,
}

impl Measure {
    /// The stack's value for this measure.
    pub fn value(self, stats: &StackStats, clock: &Clock) -> u64 {
        match self {
            Measure::Bytes => stats.bytes_allocated,
            Measure::Calls => stats.n_allocs,
            Measure::Peak => stats.peak_bytes,
            Measure::Leaked => stats.live_bytes,
            Measure::Latency => clock.duration_ns(stats.latency_ticks),
        }
    }

    /// The unit of the values: `bytes`, `calls` or `ns`.
    pub fn unit(self) -> &'static str {
        match self {
            Measure::Bytes | Measure::Peak | Measure::Leaked => "bytes",
            Measure::Calls => "calls",
            Measure::Latency => "ns",
        }
    }

    /// What the values are, for a title: "bytes allocated", ...
    pub fn description(self) -> &'static str {
        match self {
            Measure::Bytes => "bytes allocated",
            Measure::Calls => "allocation calls",
            Measure::Peak => "bytes live at the heap peak",
            Measure::Leaked => "bytes unfreed at exit",
            Measure::Latency => "time in the allocator",
        }
    }
}

/// A frame's name in a folded line ([`Frame::name`]: its function, else
/// `module+0xOFFSET`, else `??`), with `;` (the frame separator) replaced
/// by `,` and line breaks and other control characters by spaces.
pub fn frame_name(frame: &Frame) -> String {
    let name = frame.name();
    let name = name.trim();
    if name.is_empty() {
        return "??".to_string();
    }
    name.chars()
        .map(|c| match c {
            ';' => ',',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

/// One stack, given innermost first, as a folded stack (outermost first,
/// `;`-separated), without its leading internal frames (see the module docs).
/// An empty stack is `<no stack>`.
pub fn fold(frames: &[Frame]) -> String {
    if frames.is_empty() {
        return "<no stack>".to_string();
    }
    let first_external = frames.iter().position(|f| !f.is_internal()).unwrap_or(0);
    let names: Vec<String> = frames[first_external..]
        .iter()
        .rev()
        .map(frame_name)
        .collect();
    names.join(";")
}

/// The folded stacks of a replayed trace with their values, nonzero values
/// only, sorted by stack.
pub fn folded_stacks(
    replay: &HeapReplay,
    stacks: &StackTable,
    symbols: &mut Symbols,
    clock: &Clock,
    measure: Measure,
) -> Vec<(String, u64)> {
    let mut merged: FxHashMap<String, u64> = FxHashMap::default();
    for (&id, stats) in &replay.stacks {
        let value = measure.value(stats, clock);
        if value == 0 {
            continue;
        }
        let folded = fold(&symbols.stack(stacks, id));
        let sum = merged.entry(folded).or_default();
        *sum = sum.saturating_add(value);
    }
    let mut out: Vec<(String, u64)> = merged.into_iter().collect();
    out.sort_unstable();
    out
}

/// The folded lines, `STACK VALUE\n` each.
pub fn render_folded(stacks: &[(String, u64)]) -> String {
    let mut out = String::new();
    for (stack, value) in stacks {
        out.push_str(stack);
        out.push(' ');
        out.push_str(&value.to_string());
        out.push('\n');
    }
    out
}

/// A trace's stacks folded for one measure, with what a flame graph's
/// title needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folded {
    /// `root;...;leaf VALUE` lines ([`render_folded`]).
    pub text: String,
    /// No stack has any of the measure.
    pub empty: bool,
    /// The program's file name.
    pub program: String,
    /// The trace carries allocator latencies.
    pub latency_measured: bool,
    /// A note when the trace is cut or unfinished.
    pub subtitle: Option<String>,
    /// What symbolization warned about (missing or mismatched files).
    pub warnings: Vec<String>,
}

/// Reads a trace to its end and folds its stacks by `measure`: what
/// `memtrace flamegraph` writes.
pub fn from_reader<R: Read>(
    reader: &mut Reader<R>,
    measure: Measure,
) -> Result<Folded, DecodeError> {
    let replay = HeapReplay::from_reader(reader, 0)?;
    Ok(from_replay(&replay, &Trace::of(reader), measure))
}

/// Folds the stacks of a whole trace by `measure` from its finished replay
/// (of any number of timeline points: the stacks are the same).
pub fn from_replay(replay: &HeapReplay, trace: &Trace, measure: Measure) -> Folded {
    let mut symbols = Symbols::new(trace.modules);
    let stacks = folded_stacks(replay, trace.stacks, &mut symbols, trace.clock, measure);
    let header = trace.header;
    let program = Path::new(&header.exe)
        .file_name()
        .map_or_else(|| header.exe.clone(), |n| n.to_string_lossy().into());
    let subtitle = match trace.completeness {
        Completeness::Complete(_) => None,
        Completeness::Truncated(at) => Some(format!("trace cut at byte {at}")),
        Completeness::NoTrailer | Completeness::Reading => {
            Some("trace without trailer: recording did not end cleanly".to_string())
        }
    };
    Folded {
        text: render_folded(&stacks),
        empty: stacks.is_empty(),
        program,
        latency_measured: header.latency_measured,
        subtitle,
        warnings: symbols.warnings().iter().map(ToString::to_string).collect(),
    }
}

/// A folded line that does not end in ` VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The 1-based line number.
    pub line: usize,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: not `STACK VALUE`", self.line)
    }
}

impl std::error::Error for ParseError {}

/// Reads folded lines back, in order; empty lines are skipped.
pub fn parse_folded(text: &str) -> Result<Vec<(String, u64)>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed = line
            .rsplit_once(' ')
            .and_then(|(stack, value)| Some((stack.to_string(), value.parse().ok()?)))
            .filter(|(stack, _)| !stack.is_empty());
        out.push(parsed.ok_or(ParseError { line: i + 1 })?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use memtrace_format::{Event, Func, HeapEvent};

    fn frame(function: Option<&str>, module: &str) -> Frame {
        Frame {
            address: 0x1000,
            function: function.map(str::to_string),
            file: None,
            line: None,
            module: Some(module.to_string()),
            module_offset: 0x1234,
            inlined: false,
            symbol_offset: None,
        }
    }

    #[test]
    fn leading_internal_frames_are_dropped_and_order_is_outermost_first() {
        let frames = [
            frame(Some("malloc"), "/usr/lib/libc.so.6"),
            frame(Some("operator new(unsigned long)"), "/usr/lib/libstdc++.so"),
            frame(Some("make_nodes"), "/tmp/vector"),
            frame(Some("main"), "/tmp/vector"),
            frame(Some("__libc_start_main"), "/usr/lib/libc.so.6"),
        ];
        assert_eq!(fold(&frames), "__libc_start_main;main;make_nodes");
    }

    #[test]
    fn library_frames_without_debug_info_are_kept_and_unknown_ones_named() {
        let frames = [
            frame(Some("malloc"), "/usr/lib/x86_64-linux-gnu/libc.so.6"),
            frame(
                Some("sqlite3Malloc"),
                "/usr/lib/x86_64-linux-gnu/libsqlite3.so.0",
            ),
            frame(None, "/usr/lib/x86_64-linux-gnu/libsqlite3.so.0"),
            frame(
                Some("sqlite3_step"),
                "/usr/lib/x86_64-linux-gnu/libsqlite3.so.0",
            ),
            frame(None, "/usr/bin/sqlite3"),
            frame(
                Some("__libc_start_main"),
                "/usr/lib/x86_64-linux-gnu/libc.so.6",
            ),
        ];
        assert_eq!(
            fold(&frames),
            "__libc_start_main;sqlite3+0x1234;sqlite3_step;libsqlite3.so.0+0x1234;sqlite3Malloc"
        );
    }

    #[test]
    fn all_internal_stacks_are_kept_whole_and_empty_ones_named() {
        let frames = [
            frame(Some("malloc"), "/usr/lib/libc.so.6"),
            frame(Some("__libc_start_main"), "/usr/lib/libc.so.6"),
        ];
        assert_eq!(fold(&frames), "__libc_start_main;malloc");
        assert_eq!(fold(&[]), "<no stack>");
    }

    #[test]
    fn names_are_safe_for_the_folded_format() {
        let f = |name| frame_name(&frame(name, "/tmp/a"));
        assert_eq!(f(None), "a+0x1234");
        assert_eq!(f(Some("")), "??");
        assert_eq!(f(Some("<[u8; 8] as Foo>::bar")), "<[u8, 8] as Foo>::bar");
        assert_eq!(f(Some("a\nb\r\tc")), "a b  c");
    }

    #[test]
    fn measures_pick_their_counter() {
        let mut s = StackStats::default();
        s.bytes_allocated = 100;
        s.n_allocs = 3;
        s.peak_bytes = 60;
        s.live_bytes = 20;
        s.latency_ticks = 7;
        let clock = Clock::default(); // 1 ns per tick when unknown
        let values: Vec<u64> = [
            Measure::Bytes,
            Measure::Calls,
            Measure::Peak,
            Measure::Leaked,
            Measure::Latency,
        ]
        .iter()
        .map(|m| m.value(&s, &clock))
        .collect();
        assert_eq!(values, [100, 3, 60, 20, 7]);
        assert_eq!(Measure::Latency.unit(), "ns");
        assert_eq!(Measure::Peak.unit(), "bytes");
    }

    fn ev(func: Func, ts: u64, addr: u64, size: u64, stack: u32) -> Event {
        Event::Heap {
            tid: 1,
            event: HeapEvent {
                func: func as u8,
                ts,
                latency: 5,
                addr,
                old_addr: 0,
                size,
                usable: size,
                align: 0,
                stack,
            },
        }
    }

    #[test]
    fn stacks_with_equal_names_merge_and_zero_values_are_left_out() {
        // No modules: every frame is "??". Stacks 2 and 3 are both two
        // frames deep, so they fold to the same line.
        let mut table = StackTable::new();
        let a = table.push(0, 0x10);
        let b = table.push(a, 0x20);
        let c = table.push(a, 0x30);
        let mut replay = HeapReplay::new(0);
        replay.apply(&ev(Func::Malloc, 1, 0x100, 10, a));
        replay.apply(&ev(Func::Malloc, 2, 0x200, 20, b));
        replay.apply(&ev(Func::Malloc, 3, 0x300, 30, c));
        replay.apply(&ev(Func::Free, 4, 0x100, 0, 0));
        replay.finish();
        let mut symbols = Symbols::new(&[]);
        let clock = Clock::default();
        let mut fold = |m| folded_stacks(&replay, &table, &mut symbols, &clock, m);
        let bytes = fold(Measure::Bytes);
        assert_eq!(bytes, [("??".to_string(), 10), ("??;??".to_string(), 50)]);
        assert_eq!(fold(Measure::Calls)[1].1, 2);
        assert_eq!(fold(Measure::Leaked), [("??;??".to_string(), 50)]);
        assert_eq!(fold(Measure::Latency)[1].1, 10);
        let text = render_folded(&bytes);
        assert_eq!(text, "?? 10\n??;?? 50\n");
        assert_eq!(parse_folded(&text).unwrap(), bytes);
    }

    #[test]
    fn parse_rejects_lines_without_a_value() {
        assert_eq!(parse_folded("a;b 1\n\na 2\n").unwrap().len(), 2);
        assert_eq!(parse_folded("a;b 1\na;b\n"), Err(ParseError { line: 2 }));
        assert_eq!(parse_folded(" 3\n"), Err(ParseError { line: 1 }));
    }
}
