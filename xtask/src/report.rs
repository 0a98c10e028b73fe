//! `cargo xtask report`: memtrace's main job on the bundled fixtures.
//!
//! Builds memtrace and the Rust fixture in release, compiles the C/C++
//! fixtures, records each fixture (the C/C++ ones under `memtrace run`, the
//! Rust one through its own tracking allocator with `MEMTRACE_OUTPUT`) and
//! writes, under `target/memtrace-report/`:
//!
//! * `traces/<name>.trace`: the traces;
//! * `<name>.txt` and `<name>.json`: `memtrace report` in text and JSON;
//! * `<name>.latency.json`, `<name>.frag.json`: `memtrace latency` and
//!   `memtrace frag` in JSON;
//! * `charts/`: the SVG charts (see [`crate::charts`]: `memtrace plot` per
//!   fixture, placeholders for tools not built yet);
//! * `index.html`: every chart with a sentence and the command that made
//!   it; when Chromium is installed it is opened headless, a screenshot is
//!   written to `index.png` and a missing image fails the task;
//! * `summary.md`: the key numbers per fixture (the same tables are printed).
//!
//! One `memtrace plot --data .` per fixture draws its charts and writes its
//! four report files, byte for byte what `memtrace report`, `report --format
//! json`, `latency --format json` and `frag --format json` print, from one
//! reading of the trace (and a second for the real heap's layout) instead
//! of one per command.
//!
//! The fixtures run with `target/memtrace-report` as their working directory
//! and relative paths, so the commands in the table can be pasted there as
//! they are. Any failing step (a build, a fixture exiting non-zero, a missing
//! trace, a failing report) stops the task with an error.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::browser;
use crate::charts;
use crate::util::{self, Paths, Table};

/// How a fixture gets its executable.
enum Build {
    /// Compiled from `fixtures/<source>` into `target/memtrace-report/bin`.
    Compile {
        compiler: &'static str,
        flags: &'static [&'static str],
        source: &'static str,
    },
    /// A binary of the cargo build, in `target/release`.
    Cargo { bin: &'static str },
}

/// How a fixture is recorded.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Recorder {
    /// `memtrace run -q -o TRACE -- PROGRAM ARGS` (the preload library).
    Preload,
    /// The program links the tracking allocator: `MEMTRACE_OUTPUT=TRACE PROGRAM ARGS`.
    TrackingAllocator,
}

/// One fixture of the report.
struct Fixture {
    name: &'static str,
    build: Build,
    args: &'static [&'static str],
    recorder: Recorder,
}

const FIXTURES: &[Fixture] = &[
    Fixture {
        name: "sites",
        build: Build::Compile {
            compiler: "cc",
            flags: &["-O0", "-g", "-pthread"],
            source: "c/sites.c",
        },
        args: &[],
        recorder: Recorder::Preload,
    },
    Fixture {
        name: "vector",
        build: Build::Compile {
            compiler: "g++",
            flags: &["-O0", "-g", "-pthread"],
            source: "cpp/vector.cpp",
        },
        args: &[],
        recorder: Recorder::Preload,
    },
    Fixture {
        name: "bench_alloc",
        build: Build::Compile {
            compiler: "gcc",
            flags: &["-O2", "-g", "-pthread"],
            source: "c/bench_alloc.c",
        },
        args: &["1000000", "1"],
        recorder: Recorder::Preload,
    },
    Fixture {
        name: "rust_sites",
        build: Build::Cargo { bin: "rust_sites" },
        args: &[],
        recorder: Recorder::TrackingAllocator,
    },
];

/// What the columns mean (in `summary.md`).
const LEGEND: &str = "Sizes are exact byte counts. calls: allocator calls (`totals.events`); \
     allocations and frees: blocks allocated and released (a realloc both frees and allocates); \
     peak heap: most live bytes at once; top site: `sites[0]` of the JSON report (most bytes \
     allocated), file relative to the workspace; B/event: trace size / calls. The totals \
     include what libc and libstdc++ allocate for themselves (pthread DTVs, libstdc++'s \
     exception pool at load time, which is vector's top site `call_init`), so they exceed the \
     per-site answers of `fixtures/README.md`.";

/// The cargo packages built in release.
const PACKAGES: &[&str] = &["memtrace", "memtrace-fixtures-rust"];

/// A fixture recorded.
struct Recorded {
    name: &'static str,
    /// The command that recorded the trace, as run in `target/memtrace-report`.
    command: String,
    trace: PathBuf,
    trace_bytes: u64,
}

/// What one fixture gave.
struct Outcome {
    name: &'static str,
    /// The command that recorded the trace, as run in `target/memtrace-report`.
    command: String,
    trace: PathBuf,
    trace_bytes: u64,
    /// The `memtrace plot` that drew its charts and wrote its report files.
    plotted: charts::Plotted,
    text: PathBuf,
    json: PathBuf,
    /// `memtrace report --format json`, parsed.
    report: serde_json::Value,
    /// `memtrace latency --format json`, parsed.
    latency: serde_json::Value,
    /// `memtrace frag --format json`, parsed.
    frag: serde_json::Value,
}

/// Runs `cargo xtask report`.
pub fn run() -> Result<ExitCode> {
    let paths = Paths::locate()?;
    remove_outputs(&paths)?;

    util::build_release(&paths, PACKAGES)?;
    let mut exes = Vec::new();
    for f in FIXTURES {
        let exe = match &f.build {
            Build::Compile {
                compiler,
                flags,
                source,
            } => util::compile(&paths, compiler, flags, source, f.name)
                .with_context(|| format!("fixture {}: compiling failed", f.name))?,
            Build::Cargo { bin } => {
                let exe = paths.release.join(bin);
                if !exe.exists() {
                    bail!(
                        "fixture {}: the build produced no {}",
                        f.name,
                        exe.display()
                    );
                }
                exe
            }
        };
        exes.push(exe);
    }

    let start = Instant::now();
    let mut recorded = Vec::new();
    for (f, exe) in FIXTURES.iter().zip(&exes) {
        let r = record(&paths, f, exe).with_context(|| format!("fixture {} failed", f.name))?;
        recorded.push(r);
    }
    let record_time = start.elapsed();
    let analysis_start = Instant::now();
    let mut outcomes = Vec::new();
    for r in recorded {
        let name = r.name;
        outcomes.push(analyse(&paths, r).with_context(|| format!("fixture {name} failed"))?);
    }
    let analysis_time = analysis_start.elapsed();
    let n_fixture_charts: usize = outcomes.iter().map(|o| o.plotted.n_charts).sum();

    let table = summary_table(&paths, &outcomes)?;
    let costs = cost_table(&outcomes)?;
    let notes = notes(&outcomes);
    let chart_start = Instant::now();
    let plotted: Vec<(&str, &charts::Plotted)> =
        outcomes.iter().map(|o| (o.name, &o.plotted)).collect();
    let charts = charts::draw(&paths, &plotted)?;
    let page = memtrace_plot::page::html(&memtrace_plot::page::Page {
        title: "memtrace on the bundled fixtures".to_string(),
        intro: charts::intro(&paths),
        sections: charts.sections.clone(),
    });
    let index = paths.write("index.html", page)?;
    let page_check = check_page(&index, charts.files.len())?;
    let chart_time = chart_start.elapsed();

    let mut md = String::from("# memtrace on the bundled fixtures\n\n");
    let _ = writeln!(
        md,
        "Written by `cargo xtask report`. The commands ran in `{}`; `memtrace` \
         there is `{}`. Expected values per site are in `fixtures/README.md`.\n",
        paths.report.display(),
        paths.memtrace.display()
    );
    md.push_str(&table.markdown());
    let _ = writeln!(md, "\n{LEGEND}");
    let _ = writeln!(md, "\nAllocator cost and fragmentation:\n");
    md.push_str(&costs.markdown());
    let _ = writeln!(md, "\n{COST_LEGEND}");
    let _ = writeln!(
        md,
        "\nCharts: open `index.html` ({} charts; {page_check}).",
        charts.files.len()
    );
    for (chart, reason) in &charts.skipped {
        let _ = writeln!(md, "- skipped: {chart}: {reason}");
    }
    if !notes.is_empty() {
        md.push('\n');
        for n in &notes {
            let _ = writeln!(md, "- {n}");
        }
    }
    md.push_str("\nFiles:\n\n");
    for o in &outcomes {
        let _ = writeln!(
            md,
            "- {}: `{}`, `{}`, `{}`, `{name}.latency.json`, `{name}.frag.json`",
            o.name,
            rel(&paths.report, &o.trace),
            rel(&paths.report, &o.text),
            rel(&paths.report, &o.json),
            name = o.name,
        );
    }
    for c in &charts.files {
        let _ = writeln!(md, "- chart: `{}`", rel(&paths.report, c));
    }
    let summary = paths.write("summary.md", md)?;

    println!();
    print!("{}", table.text());
    println!();
    print!("{}", costs.text());
    for n in &notes {
        println!("note: {n}");
    }
    for (chart, reason) in &charts.skipped {
        println!("skipped: {chart}: {reason}");
    }
    println!(
        "\nrecorded {} fixtures in {}; analysed them and drew their {n_fixture_charts} charts \
         (one memtrace plot each) in {}; {} more charts and the page in {}; {page_check}",
        outcomes.len(),
        util::fmt_secs(record_time.as_secs_f64()),
        util::fmt_secs(analysis_time.as_secs_f64()),
        charts.files.len().saturating_sub(n_fixture_charts),
        util::fmt_secs(chart_time.as_secs_f64()),
    );
    println!("written:");
    println!("  {}", summary.display());
    println!("  {}  <- open this", index.display());
    for o in &outcomes {
        for p in [&o.text, &o.json, &o.trace] {
            println!("  {}", p.display());
        }
    }
    for c in &charts.files {
        println!("  {}", c.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Removes what an earlier run wrote (memtrace never overwrites a trace, and
/// a failed run must not leave an old summary that looks current).
fn remove_outputs(paths: &Paths) -> Result<()> {
    for file in ["summary.md", "index.html", "index.png"] {
        util::remove_file(&paths.report.join(file))?;
    }
    let charts = paths.report.join("charts");
    if charts.exists() {
        std::fs::remove_dir_all(&charts)
            .with_context(|| format!("cannot remove {}", charts.display()))?;
    }
    for f in FIXTURES {
        util::remove_file(&trace_path(paths, f))?;
        for ext in ["txt", "json", "latency.json", "frag.json"] {
            util::remove_file(&paths.report.join(format!("{}.{ext}", f.name)))?;
        }
    }
    Ok(())
}

fn trace_path(paths: &Paths, f: &Fixture) -> PathBuf {
    paths.traces.join(format!("{}.trace", f.name))
}

/// Records one fixture.
fn record(paths: &Paths, f: &Fixture, exe: &Path) -> Result<Recorded> {
    let trace = trace_path(paths, f);
    let trace_rel = rel(&paths.report, &trace);
    let exe_rel = rel(&paths.report, exe);

    // Run with absolute program paths (a relative program together with
    // current_dir is platform-specific) but show the command as it reads in
    // target/memtrace-report: the arguments are relative to it.
    let (mut cmd, shown) = match f.recorder {
        Recorder::Preload => {
            let mut cmd = Command::new(&paths.memtrace);
            cmd.args(["run", "-q", "-o", &trace_rel, "--", &exe_rel])
                .args(f.args);
            let mut shown = Command::new(rel(&paths.report, &paths.memtrace));
            shown
                .args(["run", "-q", "-o", &trace_rel, "--", &exe_rel])
                .args(f.args);
            (cmd, shown)
        }
        Recorder::TrackingAllocator => {
            let mut cmd = Command::new(exe);
            cmd.args(f.args).env("MEMTRACE_OUTPUT", &trace_rel);
            let mut shown = Command::new(&exe_rel);
            shown.args(f.args).env("MEMTRACE_OUTPUT", &trace_rel);
            (cmd, shown)
        }
    };
    cmd.current_dir(&paths.report);
    let command = util::show(&shown);
    eprintln!("xtask: (in {}) {command}", paths.report.display());
    let run = util::measure(&mut cmd)?;
    if !run.status.success() {
        bail!(
            "`{command}` exited with {}; stderr:\n{}",
            run.status,
            tail(&run.stderr)
        );
    }
    if !trace.exists() {
        bail!(
            "`{command}` wrote no trace {}; stderr:\n{}",
            trace.display(),
            tail(&run.stderr)
        );
    }
    let trace_bytes = util::file_size(&trace)?;
    Ok(Recorded {
        name: f.name,
        command,
        trace,
        trace_bytes,
    })
}

/// Draws a recorded fixture's charts and writes its report files, with one
/// `memtrace plot --data` (see [`charts::plot_fixture`]), and reads the
/// JSON back for the tables.
fn analyse(paths: &Paths, r: Recorded) -> Result<Outcome> {
    let plotted = charts::plot_fixture(paths, r.name, &r.trace)?;
    let json_of = |what: &str, ext: &str| -> Result<(PathBuf, serde_json::Value)> {
        let path = paths.report.join(format!("{}.{ext}", r.name));
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("`{}` wrote no {}", plotted.command, path.display()))?;
        let value = serde_json::from_str(&text)
            .with_context(|| format!("{}: invalid {what} JSON", path.display()))?;
        Ok((path, value))
    };
    let (json, report) = json_of("report", "json")?;
    let (_, latency) = json_of("latency", "latency.json")?;
    let (_, frag) = json_of("frag", "frag.json")?;
    let text = paths.report.join(format!("{}.txt", r.name));
    if !text.is_file() {
        bail!("`{}` wrote no {}", plotted.command, text.display());
    }
    Ok(Outcome {
        name: r.name,
        command: r.command,
        trace: r.trace,
        trace_bytes: r.trace_bytes,
        plotted,
        text,
        json,
        report,
        latency,
        frag,
    })
}

/// The last lines of a program's stderr, for error messages.
fn tail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().collect();
    let start = lines.len().saturating_sub(15);
    if lines.is_empty() {
        "(empty)".to_string()
    } else {
        lines[start..].join("\n")
    }
}

/// `path` relative to `base` (`x`), to `base`'s parent (`../x`), or whole.
fn rel(base: &Path, path: &Path) -> String {
    if let Ok(p) = path.strip_prefix(base) {
        return p.display().to_string();
    }
    if let Some(parent) = base.parent() {
        if let Ok(p) = path.strip_prefix(parent) {
            return format!("../{}", p.display());
        }
    }
    path.display().to_string()
}

/// The table of `summary.md` and stdout: one row per fixture.
fn summary_table(paths: &Paths, outcomes: &[Outcome]) -> Result<Table> {
    let mut table = Table::new(&[
        "fixture",
        "calls",
        "allocations",
        "frees",
        "bytes allocated",
        "peak heap",
        "unfreed at exit",
        "top site",
        "trace size",
        "B/event",
        "command",
    ]);
    table.align_left(&[6, 7, 10]);
    for o in outcomes {
        let t = &o.report["totals"];
        let get = |k: &str| {
            t[k].as_u64()
                .with_context(|| format!("{}: memtrace report JSON has no totals.{k}", o.name))
        };
        let events = get("events")?;
        let per_event = if events == 0 {
            "-".to_string()
        } else {
            format!("{:.1}", o.trace_bytes as f64 / events as f64)
        };
        table.row(vec![
            o.name.to_string(),
            events.to_string(),
            get("allocations")?.to_string(),
            get("frees")?.to_string(),
            get("bytes_allocated")?.to_string(),
            get("peak_bytes")?.to_string(),
            format!(
                "{} in {} blocks",
                get("unfreed_bytes")?,
                get("unfreed_blocks")?
            ),
            top_site(&paths.root, &o.report),
            o.trace_bytes.to_string(),
            per_event,
            o.command.clone(),
        ]);
    }
    Ok(table)
}

/// `function file:line` of `sites[0]`, the file relative to the workspace.
fn top_site(root: &Path, report: &serde_json::Value) -> String {
    let site = &report["sites"][0];
    if site.is_null() {
        return "-".to_string();
    }
    let function = site["function"].as_str().unwrap_or("?");
    match (site["file"].as_str(), site["line"].as_u64()) {
        (Some(file), Some(line)) => {
            let file = Path::new(file)
                .strip_prefix(root)
                .map_or_else(|_| file.to_string(), |p| p.display().to_string());
            format!("{function} {file}:{line}")
        }
        _ => {
            let module = site["module"]
                .as_str()
                .map(|m| m.rsplit('/').next().unwrap_or(m))
                .unwrap_or("?");
            format!("{function} ({module})")
        }
    }
}

/// Things worth a look: incomplete traces, warnings in the reports.
fn notes(outcomes: &[Outcome]) -> Vec<String> {
    let mut notes = Vec::new();
    for o in outcomes {
        let trace = &o.report["trace"];
        if trace["complete"].as_bool() != Some(true) {
            notes.push(format!(
                "{}: trace is not complete (status {})",
                o.name, trace["status"]
            ));
        }
        for w in o.report["warnings"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let w = w.as_str().map_or_else(|| w.to_string(), str::to_string);
            notes.push(format!("{}: {w}", o.name));
        }
    }
    notes
}

/// What the columns of the cost table mean.
const COST_LEGEND: &str = "allocator time: time inside the allocator, all calls \
     (`memtrace latency`), and its share of the traced wall time; stalls: calls of at least \
     10 us; real heap at peak: glibc's main heap when live bytes peaked (`memtrace frag`): \
     its extent, free bytes in holes, external fragmentation (1 - largest hole / free); best \
     policy: the lowest peak footprint among the replayed allocator models.";

/// Allocator time, stalls, real-heap fragmentation and the best policy, per fixture.
fn cost_table(outcomes: &[Outcome]) -> Result<Table> {
    let mut table = Table::new(&[
        "fixture",
        "allocator time",
        "share of run",
        "stalls",
        "heap extent at peak",
        "free in holes",
        "ext. frag.",
        "best policy",
    ]);
    table.align_left(&[7]);
    for o in outcomes {
        let l = &o.latency;
        let get = |v: &serde_json::Value, k: &str, what: &str| {
            v.pointer(k)
                .and_then(serde_json::Value::as_u64)
                .with_context(|| format!("{}: memtrace {what} JSON has no {k}", o.name))
        };
        let share = l["allocator_share"].as_f64().unwrap_or(0.0);
        let heap = &o.frag["real_heap"];
        let (extent, holes, external) = if heap["measured"].as_bool() == Some(true) {
            (
                util::fmt_bytes(get(heap, "/at_peak/extent_bytes", "frag")?),
                util::fmt_bytes(get(heap, "/at_peak/free_in_holes", "frag")?),
                format!("{:.3}", heap["at_peak"]["external"].as_f64().unwrap_or(0.0)),
            )
        } else {
            ("not measured".into(), "-".into(), "-".into())
        };
        table.row(vec![
            o.name.to_string(),
            fmt_ns(get(l, "/allocator_ns", "latency")?),
            format!("{:.1}%", share * 100.0),
            get(l, "/stalls/calls", "latency")?.to_string(),
            extent,
            holes,
            external,
            o.frag["best"]["policy"].as_str().unwrap_or("-").to_string(),
        ]);
    }
    Ok(table)
}

/// Nanoseconds as `412.3 us`, `264.0 ms` or `1.25 s`.
fn fmt_ns(ns: u64) -> String {
    let ns = ns as f64;
    if ns < 1e6 {
        format!("{:.1} us", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.1} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// Opens the page in headless Chromium when it is installed: a screenshot
/// to `index.png`, and an error if any of the `expected` images is missing.
/// Returns a sentence for the summary.
fn check_page(index: &Path, expected: usize) -> Result<String> {
    let Some(chromium) = browser::find_chromium() else {
        return Ok("page not checked: chromium is not installed".to_string());
    };
    let shot = index.with_file_name("index.png");
    let check = browser::check_page(&chromium, index, &shot, (1100, 1600))
        .map_err(|e| anyhow::anyhow!("checking {} in chromium: {e}", index.display()))?;
    if !check.broken.is_empty() || check.loaded != expected {
        bail!(
            "{}: {} of {expected} images loaded in chromium; missing: {}",
            index.display(),
            check.loaded,
            check.broken.join(", ")
        );
    }
    Ok(format!(
        "checked in headless chromium: all {} images load, screenshot index.png",
        check.loaded
    ))
}
