//! `cargo xtask heaptrack-check`: memtrace's totals against heaptrack's.
//!
//! Each fixture runs once under `memtrace run` and once under `heaptrack`.
//! memtrace's figures come from `memtrace report --format json`
//! (`totals.allocations`, `totals.peak_bytes`, `totals.unfreed_bytes`).
//! heaptrack's come from two places that must agree:
//!
//! * `heaptrack_print`'s summary ("calls to allocation functions: N",
//!   "peak heap memory consumption: X", "total memory leaked: Y"), whose
//!   sizes are rounded to 4 digits with 1000-based units (`118.62K`);
//! * the data file itself (zstd- or gzip-compressed text: `a SIZE TRACE`
//!   allocation infos, `+ INFO` / `- INFO` events, `t IP PARENT` traces,
//!   `i IP MODULE [FUNCTION FILE LINE]...` frames, `s STRING`), replayed
//!   here the way heaptrack_print does it, for exact byte counts.
//!
//! heaptrack's preload library links libstdc++ (and libunwind, liblzma...), so
//! under heaptrack even a C program loads libstdc++, whose constructor
//! allocates its exception emergency pool (about 71 KiB) and heaptrack
//! records it. Such allocations, made by a library constructor (`_dl_init`
//! in the backtrace) of a library the program does not load itself (not in
//! `ldd PROGRAM`), are listed and taken out of heaptrack's figures in the
//! "heaptrack adjusted" column. Nothing else is adjusted: everything the
//! program and its own libraries allocate must match.
//!
//! Requirement: allocation calls within 0.1%, peak heap within 1%. Unfreed
//! bytes are shown for information (pthread DTV sizes depend on which TLS
//! modules are loaded, which differs under the two tools).

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};

use crate::util::{self, Paths, Table};

/// Allowed relative difference in allocation calls.
const CALLS_TOLERANCE: f64 = 0.001;
/// Allowed relative difference in peak heap.
const PEAK_TOLERANCE: f64 = 0.01;

/// A fixture to compare on.
struct Program {
    name: &'static str,
    compiler: &'static str,
    flags: &'static [&'static str],
    source: &'static str,
    args: &'static [&'static str],
}

const PROGRAMS: &[Program] = &[
    Program {
        name: "bench_alloc",
        compiler: "gcc",
        flags: &["-O2", "-g", "-pthread"],
        source: "c/bench_alloc.c",
        args: &["1000000", "1"],
    },
    Program {
        name: "sites",
        compiler: "cc",
        flags: &["-O0", "-g", "-pthread"],
        source: "c/sites.c",
        args: &[],
    },
    Program {
        name: "vector",
        compiler: "g++",
        flags: &["-O0", "-g", "-pthread"],
        source: "cpp/vector.cpp",
        args: &[],
    },
];

/// Runs `cargo xtask heaptrack-check`.
pub fn run() -> Result<ExitCode> {
    let (Some(heaptrack), Some(heaptrack_print)) =
        (util::which("heaptrack"), util::which("heaptrack_print"))
    else {
        println!("skipped: heaptrack not installed");
        return Ok(ExitCode::SUCCESS);
    };
    let paths = Paths::locate()?;
    util::build_memtrace(&paths)?;

    let mut table = Table::new(&[
        "program",
        "metric",
        "memtrace",
        "heaptrack_print",
        "heaptrack exact",
        "heaptrack own",
        "heaptrack adjusted",
        "diff",
        "verdict",
    ]);
    let mut notes: Vec<String> = Vec::new();
    let mut failed = false;
    for p in PROGRAMS {
        let exe = util::compile(&paths, p.compiler, p.flags, p.source, p.name)?;
        let m = memtrace_figures(&paths, &exe, p)?;
        let h = heaptrack_figures(&paths, &heaptrack, &heaptrack_print, p.name, &exe, p.args)?;

        let rows = [
            Metric {
                name: "allocation calls",
                memtrace: m.calls,
                printed: &h.print_calls,
                exact: h.exact.calls,
                own: h.own.calls,
                adjusted: h.adjusted.calls,
                tolerance: Some(CALLS_TOLERANCE),
            },
            Metric {
                name: "peak heap (B)",
                memtrace: m.peak,
                printed: &h.print_peak,
                exact: h.exact.peak,
                own: h.own.peak,
                adjusted: h.adjusted.peak,
                tolerance: Some(PEAK_TOLERANCE),
            },
            Metric {
                name: "unfreed at exit (B)",
                memtrace: m.unfreed,
                printed: &h.print_leaked,
                exact: h.exact.live_bytes,
                own: h.own.live_bytes,
                adjusted: h.adjusted.live_bytes,
                tolerance: None,
            },
        ];
        for Metric {
            name: metric,
            memtrace: mine,
            printed,
            exact,
            own,
            adjusted,
            tolerance,
        } in rows
        {
            let diff = rel_diff(mine, adjusted);
            let verdict = match tolerance {
                Some(t) if diff.abs() <= t => "PASS".to_string(),
                Some(t) => {
                    failed = true;
                    format!("FAIL (> {}%)", t * 100.0)
                }
                None => "info".to_string(),
            };
            table.row(vec![
                p.name.to_string(),
                metric.to_string(),
                mine.to_string(),
                printed.to_string(),
                exact.to_string(),
                own.to_string(),
                adjusted.to_string(),
                format!("{:+.3}%", diff * 100.0),
                verdict,
            ]);
        }

        for (what, n) in &h.own_allocations {
            notes.push(format!(
                "{}: heaptrack's own runtime: {n} x {what}; excluded from \"adjusted\"",
                p.name
            ));
        }
        if m.unmatched_frees > 0 {
            notes.push(format!(
                "{}: memtrace saw {} free() calls of blocks it never saw allocated (calls_by_function {})",
                p.name, m.unmatched_frees, m.calls_by_function
            ));
        }
        if m.dtv_blocks > 0 || h.dtv.live_blocks > 0 {
            notes.push(format!(
                "{}: pthread DTVs (glibc allocate_dtv) live at exit: memtrace {} B in {} blocks, heaptrack {} B in {} blocks",
                p.name, m.dtv_bytes, m.dtv_blocks, h.dtv.live_bytes, h.dtv.live_blocks
            ));
        }
        if !m.complete {
            notes.push(format!("{}: memtrace's trace is not complete", p.name));
        }
    }

    println!();
    print!("{}", table.text());
    println!();
    for n in &notes {
        println!("note: {n}");
    }
    let legend =
        "heaptrack own = allocations made by constructors of libraries that only heaptrack's \
                  preload library loads (peak: their bytes live at heaptrack's peak); adjusted = \
                  heaptrack's data file replayed without them; diff = memtrace vs adjusted.";
    println!("\n{legend}");
    let mut md = String::from("# memtrace vs heaptrack\n\n");
    md.push_str(&table.markdown());
    md.push('\n');
    for n in &notes {
        let _ = writeln!(md, "- {n}");
    }
    let _ = writeln!(md, "\n{legend}");
    let md_path = paths.write("heaptrack-check.md", md)?;
    println!("written: {}", md_path.display());

    if failed {
        println!("heaptrack-check: FAIL");
        Ok(ExitCode::FAILURE)
    } else {
        println!("heaptrack-check: PASS");
        Ok(ExitCode::SUCCESS)
    }
}

/// One compared figure of one program.
struct Metric<'a> {
    name: &'static str,
    memtrace: u64,
    /// heaptrack_print's rounded value, as printed.
    printed: &'a str,
    exact: u64,
    own: u64,
    adjusted: u64,
    /// Allowed relative difference; `None`: shown for information.
    tolerance: Option<f64>,
}

/// `(a - b) / b`, 0 when both are 0.
fn rel_diff(a: u64, b: u64) -> f64 {
    if a == b {
        0.0
    } else if b == 0 {
        f64::INFINITY
    } else {
        (a as f64 - b as f64) / b as f64
    }
}

/// What memtrace says about one run.
pub(crate) struct MemtraceFigures {
    /// Allocation calls (`totals.allocations`).
    pub(crate) calls: u64,
    /// Peak heap in bytes (`totals.peak_bytes`).
    pub(crate) peak: u64,
    /// Bytes still allocated at exit (`totals.unfreed_bytes`).
    pub(crate) unfreed: u64,
    unmatched_frees: u64,
    calls_by_function: String,
    complete: bool,
    dtv_bytes: u64,
    dtv_blocks: u64,
}

fn memtrace_figures(paths: &Paths, exe: &Path, p: &Program) -> Result<MemtraceFigures> {
    let trace = paths.traces.join(format!("check.{}.trace", p.name));
    util::remove_file(&trace)?;
    let mut cmd = Command::new(&paths.memtrace);
    cmd.args(["run", "-q", "-o"])
        .arg(&trace)
        .arg("--")
        .arg(exe)
        .args(p.args)
        .current_dir(&paths.traces);
    eprintln!("xtask: {}", util::show(&cmd));
    util::measure(&mut cmd)?.ok(&cmd)?;
    MemtraceFigures::from_report(&util::report_json(paths, &trace)?)
}

impl MemtraceFigures {
    /// The figures of a parsed `memtrace report --format json`.
    pub(crate) fn from_report(r: &serde_json::Value) -> Result<MemtraceFigures> {
        let t = &r["totals"];
        let get = |k: &str| {
            t[k].as_u64()
                .with_context(|| format!("memtrace report JSON has no totals.{k}"))
        };
        let (mut dtv_bytes, mut dtv_blocks) = (0, 0);
        for site in r["sites"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let in_dtv = site["stack"].as_array().is_some_and(|s| {
                s.iter()
                    .any(|f| f["function"].as_str() == Some("allocate_dtv"))
            });
            if in_dtv {
                dtv_bytes += site["unfreed_bytes"].as_u64().unwrap_or(0);
                dtv_blocks += site["unfreed_blocks"].as_u64().unwrap_or(0);
            }
        }
        Ok(MemtraceFigures {
            calls: get("allocations")?,
            peak: get("peak_bytes")?,
            unfreed: get("unfreed_bytes")?,
            unmatched_frees: get("unmatched_frees")?,
            calls_by_function: t["calls_by_function"].to_string(),
            complete: r["trace"]["complete"].as_bool() == Some(true),
            dtv_bytes,
            dtv_blocks,
        })
    }
}

/// What heaptrack says about one run.
pub(crate) struct HeaptrackFigures {
    /// The data file heaptrack wrote.
    pub(crate) file: PathBuf,
    /// heaptrack_print's summary values, as printed.
    print_calls: String,
    print_peak: String,
    print_leaked: String,
    /// The replay of the whole data file.
    pub(crate) exact: Replay,
    /// Allocations of heaptrack's own runtime ("peak" here: their bytes live
    /// at the moment of the whole file's peak).
    own: Replay,
    /// The replay without heaptrack's own allocations.
    pub(crate) adjusted: Replay,
    /// pthread DTV allocations.
    dtv: Replay,
    /// Descriptions of heaptrack's own allocations, with counts.
    pub(crate) own_allocations: BTreeMap<String, u64>,
}

/// Runs `exe args` under heaptrack (in `target/memtrace-report/traces`,
/// data file `check.NAME.heaptrack.*`) and reads its figures, checking the
/// replay of the data file against heaptrack_print's summary.
pub(crate) fn heaptrack_figures<S: AsRef<OsStr>>(
    paths: &Paths,
    heaptrack: &Path,
    heaptrack_print: &Path,
    name: &str,
    exe: &Path,
    args: &[S],
) -> Result<HeaptrackFigures> {
    let prefix = paths.traces.join(format!("check.{name}.heaptrack"));
    util::remove_heaptrack_files(&prefix)?;
    let mut cmd = Command::new(heaptrack);
    cmd.arg("-o")
        .arg(&prefix)
        .arg(exe)
        .args(args)
        .current_dir(&paths.traces);
    eprintln!("xtask: {}", util::show(&cmd));
    util::measure(&mut cmd)?.ok(&cmd)?;
    let file = util::heaptrack_file(&prefix)?;

    // The summary, as heaptrack_print prints it (no backtrace listings).
    let summary = util::output(
        Command::new(heaptrack_print)
            .arg("-f")
            .arg(&file)
            .args(["-a", "0", "-p", "0", "-T", "0", "-l", "0"]),
    )?;
    let field = |prefix: &str| -> Result<String> {
        summary
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .map(|v| v.split_whitespace().next().unwrap_or("").to_string())
            .with_context(|| format!("heaptrack_print printed no {prefix:?} line:\n{summary}"))
    };
    let print_calls = field("calls to allocation functions:")?;
    let print_peak = field("peak heap memory consumption:")?;
    let print_leaked = field("total memory leaked:")?;
    let suppressed = summary
        .lines()
        .find_map(|l| l.trim().strip_prefix("suppressed leaks:"))
        .map(|v| v.split_whitespace().next().unwrap_or("").to_string());

    // The exact replay.
    let own_libs = program_libraries(exe);
    let text = decompress(&file)?;
    let data =
        parse(&text, &own_libs).with_context(|| format!("cannot parse {}", file.display()))?;

    // The replay must agree with heaptrack_print, or the parser is wrong.
    let calls: u64 = print_calls
        .parse()
        .with_context(|| format!("bad call count {print_calls:?}"))?;
    if calls != data.exact.calls {
        bail!(
            "{name}: heaptrack_print says {calls} calls, the data file has {}",
            data.exact.calls
        );
    }
    let (peak, peak_tol) = parse_size(&print_peak)?;
    if (peak - data.exact.peak as f64).abs() > peak_tol {
        bail!(
            "{name}: heaptrack_print says peak {print_peak}, the data file replays to {} B",
            data.exact.peak
        );
    }
    let (mut leaked, mut leaked_tol) = parse_size(&print_leaked)?;
    if let Some(s) = &suppressed {
        let (v, t) = parse_size(s)?;
        leaked += v;
        leaked_tol += t;
    }
    if (leaked - data.exact.live_bytes as f64).abs() > leaked_tol {
        bail!(
            "{name}: heaptrack_print says leaked {print_leaked} (suppressed {suppressed:?}), the data file replays to {} B live at exit",
            data.exact.live_bytes
        );
    }
    let own = Replay {
        calls: data.exact.calls - data.adjusted.calls,
        peak: data.own_at_peak,
        live_bytes: data.exact.live_bytes - data.adjusted.live_bytes,
        live_blocks: data.exact.live_blocks - data.adjusted.live_blocks,
    };
    Ok(HeaptrackFigures {
        file,
        print_calls,
        print_peak,
        print_leaked,
        exact: data.exact,
        own,
        adjusted: data.adjusted,
        dtv: data.dtv,
        own_allocations: data.own_allocations,
    })
}

/// One location of heaptrack_print's "MOST CALLS TO ALLOCATION FUNCTIONS".
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TopCaller {
    /// The function that called the allocator, or its address when unnamed.
    pub(crate) location: String,
    /// Its module's file name ("" when heaptrack printed none).
    pub(crate) module: String,
    /// Calls to allocation functions from it.
    pub(crate) calls: u64,
}

/// The `n` locations with the most calls to allocation functions in a
/// heaptrack data file, as heaptrack_print lists them (backtraces merged by
/// the allocating function, most calls first).
pub(crate) fn most_calls(heaptrack_print: &Path, file: &Path, n: usize) -> Result<Vec<TopCaller>> {
    let text = util::output(
        Command::new(heaptrack_print)
            .arg("-f")
            .arg(file)
            .args(["-a", "1", "-p", "0", "-T", "0", "-l", "0", "-s", "0"])
            .arg("-n")
            .arg(n.to_string()),
    )?;
    Ok(parse_most_calls(&text, n))
}

/// Parses the "MOST CALLS TO ALLOCATION FUNCTIONS" section: each location
/// starts at column 0 with `N calls to allocation functions with X peak
/// consumption from`, then its name, then indented `at FILE:LINE` and `in
/// MODULE` lines; its merged backtraces follow, each under a line `N calls
/// with X peak consumption from:`.
fn parse_most_calls(text: &str, n: usize) -> Vec<TopCaller> {
    let mut out: Vec<TopCaller> = Vec::new();
    let mut lines = text
        .lines()
        .skip_while(|l| l.trim() != "MOST CALLS TO ALLOCATION FUNCTIONS")
        .skip(1)
        .peekable();
    while let Some(line) = lines.next() {
        if out.len() == n {
            break;
        }
        if line.trim().is_empty() || line.starts_with(' ') || line.ends_with(" consumption from:") {
            continue; // a blank line, or a merged backtrace of the last location
        }
        let Some(calls) = line
            .strip_suffix(" peak consumption from")
            .and_then(|l| l.split_once(" calls to allocation functions with "))
            .and_then(|(calls, _)| calls.parse().ok())
        else {
            break; // the next section
        };
        let location = lines.next().unwrap_or_default().trim().to_string();
        let mut module = String::new();
        while let Some(detail) = lines.next_if(|l| l.starts_with("  ") && !l.starts_with("    ")) {
            if let Some(m) = detail.trim().strip_prefix("in ") {
                module = file_name(m);
            }
        }
        out.push(TopCaller {
            location,
            module,
            calls,
        });
    }
    out
}

/// File names of the program and of every library it loads (`ldd`), for
/// telling heaptrack's libraries from the program's. Empty when ldd fails,
/// which makes nothing count as heaptrack's own.
fn program_libraries(exe: &Path) -> Option<HashSet<String>> {
    let out = Command::new("ldd").arg(exe).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let mut libs = HashSet::new();
    libs.insert(file_name(&exe.to_string_lossy()));
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)".
        for word in line.split_whitespace() {
            if word != "=>" && !word.starts_with('(') {
                libs.insert(file_name(word));
            }
        }
    }
    Some(libs)
}

fn file_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map_or_else(|| path.to_string(), |n| n.to_string_lossy().into_owned())
}

/// The data file as text, decompressed with `zstd -dc` or `gzip -dc`.
fn decompress(file: &Path) -> Result<String> {
    let name = file.to_string_lossy();
    let tool = if name.ends_with(".zst") {
        "zstd"
    } else if name.ends_with(".gz") {
        "gzip"
    } else {
        return std::fs::read_to_string(file).with_context(|| format!("{}", file.display()));
    };
    if util::which(tool).is_none() {
        bail!(
            "{tool} is needed to read {} exactly and is not installed",
            file.display()
        );
    }
    let out = Command::new(tool)
        .arg("-dc")
        .arg(file)
        .output()
        .with_context(|| format!("cannot run {tool}"))?;
    if !out.status.success() {
        bail!("{tool} -dc {} failed ({})", file.display(), out.status);
    }
    String::from_utf8(out.stdout).context("the heaptrack data file is not UTF-8 text")
}

/// Totals of a replay of `+`/`-` events.
#[derive(Default, Clone, Copy, Debug)]
pub(crate) struct Replay {
    /// Allocation events.
    pub(crate) calls: u64,
    /// Highest live bytes.
    pub(crate) peak: u64,
    /// Bytes live at the end.
    pub(crate) live_bytes: u64,
    /// Blocks live at the end.
    pub(crate) live_blocks: u64,
}

impl Replay {
    fn alloc(&mut self, live: &mut i128, size: u64) {
        self.calls += 1;
        self.live_blocks += 1;
        *live += i128::from(size);
        self.live_bytes = u64::try_from(*live).unwrap_or(0);
        self.peak = self.peak.max(self.live_bytes);
    }

    fn free(&mut self, live: &mut i128, size: u64) {
        self.live_blocks = self.live_blocks.saturating_sub(1);
        *live -= i128::from(size);
        self.live_bytes = u64::try_from(*live).unwrap_or(0);
    }
}

/// What an allocation info stands for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The program or its own libraries.
    Program,
    /// glibc's pthread DTV (also the program's).
    Dtv,
    /// heaptrack's runtime.
    Own,
}

/// The replayed data file.
struct Data {
    exact: Replay,
    adjusted: Replay,
    dtv: Replay,
    own_at_peak: u64,
    own_allocations: BTreeMap<String, u64>,
}

/// Parses and replays a heaptrack data file (format version 2 or 3).
fn parse(text: &str, own_libs: &Option<HashSet<String>>) -> Result<Data> {
    let mut strings: Vec<&str> = Vec::new(); // string i is strings[i - 1]
    let mut ips: Vec<(usize, Vec<usize>)> = Vec::new(); // (module, functions), ip i is ips[i - 1]
    let mut traces: Vec<(usize, usize)> = Vec::new(); // (ip, parent), trace i is traces[i - 1]
    let mut infos: Vec<(u64, Kind, String)> = Vec::new(); // (size, kind, description)
    let (mut exact, mut adjusted, mut dtv) =
        (Replay::default(), Replay::default(), Replay::default());
    let (mut live_all, mut live_adj, mut live_dtv) = (0i128, 0i128, 0i128);
    let (mut own_live, mut own_at_peak) = (0u64, 0u64);
    let mut own_allocations: BTreeMap<String, u64> = BTreeMap::new();
    let hex = |s: Option<&str>, line: &str| -> Result<u64> {
        let s = s.with_context(|| format!("short line {line:?}"))?;
        u64::from_str_radix(s, 16).with_context(|| format!("bad number {s:?} in {line:?}"))
    };
    for line in text.lines() {
        let Some((tag, rest)) = line.split_at_checked(1) else {
            continue;
        };
        let rest = rest.strip_prefix(' ').unwrap_or(rest);
        match tag {
            "v" => {
                let mut f = rest.split_whitespace();
                let _heaptrack_version = f.next();
                let file_version = hex(f.next(), line)?;
                if !(2..=3).contains(&file_version) {
                    bail!("heaptrack file format {file_version} is not supported (2 or 3)");
                }
            }
            "s" => {
                // Version 3: "s LENGTH STRING" (hex length); version 2: "s STRING".
                let s = match rest.split_once(' ') {
                    Some((len, s))
                        if usize::from_str_radix(len, 16).is_ok_and(|n| n == s.len()) =>
                    {
                        s
                    }
                    _ => rest,
                };
                strings.push(s);
            }
            "i" => {
                let mut f = rest.split_whitespace();
                let _ip = f.next();
                let module = hex(f.next(), line)? as usize;
                let rest: Vec<&str> = f.collect();
                let functions = rest
                    .chunks(3)
                    .filter_map(|c| usize::from_str_radix(c[0], 16).ok())
                    .collect();
                ips.push((module, functions));
            }
            "t" => {
                let mut f = rest.split_whitespace();
                let ip = hex(f.next(), line)? as usize;
                let parent = hex(f.next(), line)? as usize;
                traces.push((ip, parent));
            }
            "a" => {
                let mut f = rest.split_whitespace();
                let size = hex(f.next(), line)?;
                let trace = hex(f.next(), line)? as usize;
                let (kind, what) = classify(size, trace, &strings, &ips, &traces, own_libs);
                infos.push((size, kind, what));
            }
            "+" | "-" => {
                let mut f = rest.split_whitespace();
                let index = hex(f.next(), line)? as usize;
                if f.next().is_some() {
                    bail!("old heaptrack event format {line:?} is not supported");
                }
                let (size, kind, what) = infos
                    .get(index)
                    .with_context(|| format!("unknown allocation info in {line:?}"))?;
                let (size, kind) = (*size, *kind);
                if tag == "+" {
                    exact.alloc(&mut live_all, size);
                    if exact.peak == exact.live_bytes {
                        own_at_peak = own_live + if kind == Kind::Own { size } else { 0 };
                    }
                    match kind {
                        Kind::Own => {
                            own_live += size;
                            *own_allocations.entry(what.clone()).or_default() += 1;
                        }
                        Kind::Dtv => {
                            dtv.alloc(&mut live_dtv, size);
                            adjusted.alloc(&mut live_adj, size);
                        }
                        Kind::Program => adjusted.alloc(&mut live_adj, size),
                    }
                } else {
                    exact.free(&mut live_all, size);
                    match kind {
                        Kind::Own => own_live -= size,
                        Kind::Dtv => {
                            dtv.free(&mut live_dtv, size);
                            adjusted.free(&mut live_adj, size);
                        }
                        Kind::Program => adjusted.free(&mut live_adj, size),
                    }
                }
            }
            _ => {}
        }
    }
    Ok(Data {
        exact,
        adjusted,
        dtv,
        own_at_peak,
        own_allocations,
    })
}

/// Decides whether an allocation info is heaptrack's own (made by the
/// constructor of a library the program does not load), a pthread DTV, or
/// the program's; returns a description for the own ones.
fn classify(
    size: u64,
    trace: usize,
    strings: &[&str],
    ips: &[(usize, Vec<usize>)],
    traces: &[(usize, usize)],
    own_libs: &Option<HashSet<String>>,
) -> (Kind, String) {
    let string = |i: usize| {
        if i == 0 {
            ""
        } else {
            strings.get(i - 1).copied().unwrap_or("")
        }
    };
    let mut functions: Vec<&str> = Vec::new();
    let mut innermost_module: Option<&str> = None;
    let mut t = trace;
    let mut guard = 0;
    while t != 0 && guard < 10_000 {
        let Some(&(ip, parent)) = traces.get(t - 1) else {
            break;
        };
        if let Some((module, funcs)) = ips.get(ip.wrapping_sub(1)) {
            innermost_module.get_or_insert(string(*module));
            functions.extend(funcs.iter().map(|&f| string(f)));
        }
        t = parent;
        guard += 1;
    }
    if let (Some(libs), Some(module)) = (own_libs, innermost_module) {
        let name = file_name(module);
        if functions.contains(&"_dl_init") && !name.is_empty() && !libs.contains(&name) {
            return (Kind::Own, format!("{size} B allocated by a constructor (_dl_init) in {name}, a library the program does not load itself"));
        }
    }
    if functions.contains(&"allocate_dtv") {
        return (Kind::Dtv, String::new());
    }
    (Kind::Program, String::new())
}

/// Parses a heaptrack size such as `45.92K`, `640B` or `1.05M` (1000-based
/// units) into bytes, with half a unit of the last printed digit as the
/// rounding tolerance.
fn parse_size(s: &str) -> Result<(f64, f64)> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number.parse().with_context(|| format!("bad size {s:?}"))?;
    let scale = match unit {
        "" | "B" => 1.0,
        "K" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        _ => bail!("unknown unit in size {s:?}"),
    };
    let decimals = number.split_once('.').map_or(0, |(_, d)| d.len()) as i32;
    let tolerance = 0.5 * 10f64.powi(-decimals) * scale + 0.5;
    Ok((value * scale, tolerance))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("640B").unwrap().0, 640.0);
        let (v, t) = parse_size("118.62K").unwrap();
        assert!((v - 118_620.0).abs() < 1e-6 && (t - 5.5).abs() < 1e-9);
        assert_eq!(parse_size("1.05M").unwrap().0, 1_050_000.0);
        assert!(parse_size("3X").is_err());
    }

    #[test]
    fn most_calls_section() {
        let text = "reading file\nMOST CALLS TO ALLOCATION FUNCTIONS\n\
                    41269 calls to allocation functions with 1.99M peak consumption from\n\
                    0x7f78d3fb1503\n  in /lib/libsqlite3.so.0\n\
                    20000 calls with 0B peak consumption from:\n    sqlite3Malloc\n      in /lib/libsqlite3.so.0\n\
                    30 calls to allocation functions with 2.09M peak consumption from\n\
                    main\n  at p.c:3\n  in /tmp/p\n\n\
                    total runtime: 0.1s.\ncalls to allocation functions: 41299 (1/s)\n";
        let top = parse_most_calls(text, 5);
        assert_eq!(
            top,
            [
                TopCaller {
                    location: "0x7f78d3fb1503".into(),
                    module: "libsqlite3.so.0".into(),
                    calls: 41269
                },
                TopCaller {
                    location: "main".into(),
                    module: "p".into(),
                    calls: 30
                },
            ]
        );
        assert_eq!(parse_most_calls(text, 1).len(), 1);
    }

    #[test]
    fn replay_small_file() {
        let text = "v 10400 3\nX ./p\ns 5 ./p.x\ns 9 libfoo.so\ns 8 _dl_init\ns 4 main\n\
                    i 1000 2\ni 2000 1 3\ni 3000 1 4\nt 2 0\nt 1 1\nt 3 0\n\
                    a 64 2\n+ 0\na 10 3\n+ 1\n+ 1\n- 1\n";
        let libs: HashSet<String> = ["p.x".to_string()].into_iter().collect();
        let d = parse(text, &Some(libs)).unwrap();
        assert_eq!(d.exact.calls, 3);
        assert_eq!(d.exact.peak, 100 + 32);
        assert_eq!(d.exact.live_bytes, 100 + 16);
        assert_eq!(d.adjusted.calls, 2);
        assert_eq!(d.adjusted.peak, 32);
        assert_eq!(d.own_at_peak, 100);
    }
}
