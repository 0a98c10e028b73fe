//! `cargo xtask bench`: recorder overhead and analysis speed.
//!
//! Runs `fixtures/c/bench_alloc.c` natively, under `memtrace run`, under
//! heaptrack and under valgrind, interleaved round by round so that machine
//! noise hits every configuration alike, and reports the median wall time,
//! the slowdown against the native run of the same size, the peak RSS
//! (`wait4`'s `ru_maxrss`: the largest process of the tool's process tree),
//! and the trace size per heap event. Then it times the analysis commands on
//! the traces of the last round, and every part of `memtrace frag` alone (the
//! real heap, each policy replay) with its events per second, and compares
//! the allocator share `memtrace latency` reports with one measured without
//! memtrace (`share.rs`). It prints the
//! tables with PASS/FAIL lines for the project's goals and writes them to
//! `target/memtrace-report/bench.md`. `--analyses-only TRACE` times only the
//! analyses, on a trace recorded before (`bench-analyses.md`).
//!
//! The goals are informative: a FAIL does not change the exit status; an
//! error in any step (a build, a crashed run, a wrong checksum) does.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::util::{self, fmt_bytes, fmt_secs, median, Measured, Paths, Table};

/// Arguments of `cargo xtask bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// bench_alloc operations per run [default: 10000000; 1000000 with --quick].
    #[arg(long)]
    pub ops: Option<u64>,
    /// Runs per configuration; the median is reported [default: 3; 1 with --quick].
    #[arg(long)]
    pub runs: Option<usize>,
    /// A fast look: fewer operations and a single run per configuration.
    #[arg(long)]
    pub quick: bool,
    /// Only time the analyses, on this existing single-thread trace of
    /// bench_alloc (no recorder runs, no heaptrack, no valgrind).
    #[arg(long, value_name = "TRACE")]
    pub analyses_only: Option<PathBuf>,
    /// Only the threads-at-scale programs (`threads.rs`), natively and traced.
    #[arg(long)]
    pub threads_only: bool,
}

/// `memtrace frag` split into its parts, each timed alone on the same
/// trace: the real heap (one pass over the trace) and every policy
/// replay (one pass each, the decoding included).
const FRAG_PARTS: &[(&str, &[&str])] = &[
    ("real heap", &["frag", "--simulate", "none", "{trace}"]),
    (
        "first-fit",
        &[
            "frag",
            "--no-real-heap",
            "--simulate",
            "first-fit",
            "{trace}",
        ],
    ),
    (
        "next-fit",
        &[
            "frag",
            "--no-real-heap",
            "--simulate",
            "next-fit",
            "{trace}",
        ],
    ),
    (
        "best-fit",
        &[
            "frag",
            "--no-real-heap",
            "--simulate",
            "best-fit",
            "{trace}",
        ],
    ),
    (
        "worst-fit",
        &[
            "frag",
            "--no-real-heap",
            "--simulate",
            "worst-fit",
            "{trace}",
        ],
    ),
    (
        "buddy",
        &["frag", "--no-real-heap", "--simulate", "buddy", "{trace}"],
    ),
    (
        "slab",
        &["frag", "--no-real-heap", "--simulate", "slab", "{trace}"],
    ),
    (
        "compact",
        &["frag", "--no-real-heap", "--simulate", "compact", "{trace}"],
    ),
    (
        "semispace",
        &[
            "frag",
            "--no-real-heap",
            "--simulate",
            "semispace",
            "{trace}",
        ],
    ),
];

/// `memtrace` analysis commands timed on the single-thread benchmark trace.
/// `{trace}` stands for the trace. Adding a command is adding a line; one
/// whose subcommand does not exist yet (`memtrace help SUB` fails) is listed
/// as skipped.
const MEMTRACE_ANALYSES: &[&[&str]] = &[
    &["report", "{trace}"],
    &["report", "--format", "json", "{trace}"],
    &["leaks", "--error-exitcode", "0", "{trace}"],
    &["frag", "{trace}"],
    &["latency", "{trace}"],
    // Every chart of one trace (into TRACE's `.charts` directory).
    &["plot", "{trace}"],
];

/// How a configuration runs bench_alloc.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tool {
    /// The program alone.
    Native,
    /// `memtrace run -q -o TRACE --`.
    Memtrace,
    /// `memtrace run` with `MEMTRACE_UNWIND=libgcc` (the exact, slow unwinder).
    MemtraceLibgcc,
    /// `memtrace run` with `MEMTRACE_TIMING=0` (no allocator latency).
    MemtraceNoTiming,
    /// `memtrace run` with `MEMTRACE_LEAK_SCAN=0` (no live-block table, no scan).
    MemtraceNoLeakScan,
    /// `memtrace run` with `MEMTRACE_COMPRESSION=1` (every block compressed,
    /// even when the program has to wait for the writer).
    MemtraceZstd,
    /// `heaptrack -o FILE`.
    Heaptrack,
    /// `valgrind --tool=memcheck --leak-check=no`.
    Valgrind,
}

/// One benchmark configuration (a row of the table).
struct Config {
    label: String,
    tool: Tool,
    ops: u64,
    threads: u32,
    runs: usize,
    /// Index of the native configuration of the same size, for the slowdown.
    baseline: Option<usize>,
    /// Heap events of the program (mallocs + frees, from `--count`).
    events: u64,
    /// The checksum the program must print.
    checksum: u64,
    /// Results of each run.
    results: Vec<RunResult>,
    /// The command line of the last run.
    command: String,
    /// The output file of the last run (trace or heaptrack file).
    output: Option<PathBuf>,
}

struct RunResult {
    wall: f64,
    rss_kib: u64,
    output_bytes: Option<u64>,
}

impl Config {
    fn median_wall(&self) -> f64 {
        median(&self.results.iter().map(|r| r.wall).collect::<Vec<_>>())
    }

    fn median_rss_kib(&self) -> u64 {
        median(
            &self
                .results
                .iter()
                .map(|r| r.rss_kib as f64)
                .collect::<Vec<_>>(),
        ) as u64
    }

    fn output_bytes(&self) -> Option<u64> {
        self.results.last().and_then(|r| r.output_bytes)
    }
}

/// The program's own counts from `bench_alloc --count OPS THREADS`.
pub(crate) struct Counts {
    pub(crate) mallocs: u64,
    pub(crate) frees: u64,
    bytes: u64,
}

pub(crate) fn count(bench: &Path, ops: u64, threads: u32) -> Result<Counts> {
    let out = util::output(
        Command::new(bench)
            .arg("--count")
            .arg(ops.to_string())
            .arg(threads.to_string()),
    )?;
    let field = |name: &str| -> Result<u64> {
        out.split_whitespace()
            .find_map(|w| w.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            .with_context(|| format!("bench_alloc --count printed no {name}= in {out:?}"))?
            .parse()
            .with_context(|| format!("bad {name}= in {out:?}"))
    };
    Ok(Counts {
        mallocs: field("mallocs")?,
        frees: field("frees")?,
        bytes: field("bytes")?,
    })
}

/// Installed external tools.
struct Tools {
    heaptrack: Option<PathBuf>,
    heaptrack_print: Option<PathBuf>,
    valgrind: Option<PathBuf>,
}

/// Runs `cargo xtask bench`.
pub fn run(args: &BenchArgs) -> Result<ExitCode> {
    let ops = args
        .ops
        .unwrap_or(if args.quick { 1_000_000 } else { 10_000_000 });
    let runs = args.runs.unwrap_or(if args.quick { 1 } else { 3 }).max(1);
    let small_ops = (ops / 10).max(1);

    let paths = Paths::locate()?;
    util::build_memtrace(&paths)?;
    if let Some(trace) = &args.analyses_only {
        return analyses_only(&paths, trace, runs);
    }
    if args.threads_only {
        let threads = crate::threads::measure(&paths, args.quick)?;
        let md = crate::threads::markdown(&threads, args.quick);
        let out = paths.write("bench-threads.md", &md)?;
        print!("{md}");
        println!("xtask: wrote {}", out.display());
        return Ok(ExitCode::SUCCESS);
    }
    let bench = util::compile_bench_alloc(&paths)?;
    let tools = Tools {
        heaptrack: util::which("heaptrack"),
        heaptrack_print: util::which("heaptrack_print"),
        valgrind: util::which("valgrind"),
    };

    // The configurations, in the order they run within a round.
    let mut configs: Vec<Config> = Vec::new();
    let mut add = |label: &str,
                   tool: Tool,
                   ops: u64,
                   threads: u32,
                   runs: usize,
                   baseline: Option<usize>|
     -> Result<usize> {
        let c = count(&bench, ops, threads)?;
        configs.push(Config {
            label: label.to_string(),
            tool,
            ops,
            threads,
            runs,
            baseline,
            events: c.mallocs + c.frees,
            checksum: c.bytes,
            results: Vec::new(),
            command: String::new(),
            output: None,
        });
        Ok(configs.len() - 1)
    };
    let mut skipped: Vec<String> = Vec::new();
    let native1 = add("native", Tool::Native, ops, 1, runs, None)?;
    let memtrace1 = add("memtrace run", Tool::Memtrace, ops, 1, runs, Some(native1))?;
    add(
        "memtrace run, MEMTRACE_TIMING=0 (no latency)",
        Tool::MemtraceNoTiming,
        ops,
        1,
        runs,
        Some(native1),
    )?;
    add(
        "memtrace run, MEMTRACE_LEAK_SCAN=0 (no leak scan)",
        Tool::MemtraceNoLeakScan,
        ops,
        1,
        runs,
        Some(native1),
    )?;
    let zstd1 = add(
        "memtrace run, MEMTRACE_COMPRESSION=1 (every block zstd)",
        Tool::MemtraceZstd,
        ops,
        1,
        runs,
        Some(native1),
    )?;
    let heaptrack1 = match &tools.heaptrack {
        Some(_) => Some(add(
            "heaptrack",
            Tool::Heaptrack,
            ops,
            1,
            runs,
            Some(native1),
        )?),
        None => {
            skipped.push("heaptrack: skipped: heaptrack not installed".into());
            None
        }
    };
    let native8 = add("native, 8 threads", Tool::Native, ops, 8, runs, None)?;
    let memtrace8 = add(
        "memtrace run, 8 threads",
        Tool::Memtrace,
        ops,
        8,
        runs,
        Some(native8),
    )?;
    let small_native = add("native (ops/10)", Tool::Native, small_ops, 1, runs, None)?;
    match &tools.valgrind {
        Some(_) => {
            add(
                "valgrind memcheck (ops/10)",
                Tool::Valgrind,
                small_ops,
                1,
                runs,
                Some(small_native),
            )?;
        }
        None => skipped.push("valgrind: skipped: valgrind not installed".into()),
    }
    add(
        "memtrace run, MEMTRACE_UNWIND=libgcc (ops/10, 1 run)",
        Tool::MemtraceLibgcc,
        small_ops,
        1,
        1,
        Some(small_native),
    )?;

    // Interleaved rounds: round r runs every configuration once.
    for round in 0..runs {
        for (i, c) in configs.iter_mut().enumerate() {
            if round >= c.runs {
                continue;
            }
            eprintln!(
                "xtask: round {}/{runs}: {} ({} ops, {} threads)",
                round + 1,
                c.label,
                c.ops,
                c.threads
            );
            run_config(&paths, &bench, &tools, i, c)?;
        }
    }

    // Check the recorder's counts on the traces it wrote.
    let mut warnings: Vec<String> = Vec::new();
    for c in configs.iter().filter(|c| {
        matches!(
            c.tool,
            Tool::Memtrace
                | Tool::MemtraceLibgcc
                | Tool::MemtraceNoTiming
                | Tool::MemtraceNoLeakScan
                | Tool::MemtraceZstd
        )
    }) {
        let trace = c.output.as_ref().context("no trace")?;
        let counts = count(&bench, c.ops, c.threads)?;
        warnings.extend(check_trace(&paths, trace, &c.label, &counts, c.threads)?);
    }

    // Analysis times on the single-thread traces of the last round.
    let trace1 = configs[memtrace1]
        .output
        .clone()
        .context("no memtrace trace")?;
    let mut analyses: Vec<Analysis> = Vec::new();
    for argv in MEMTRACE_ANALYSES {
        let sub = argv[0];
        let exists = Command::new(&paths.memtrace)
            .args(["help", sub])
            .output()
            .is_ok_and(|o| o.status.success());
        let shown: Vec<String> = argv.iter().map(|a| a.replace("{trace}", "TRACE")).collect();
        let label = format!("memtrace {}", shown.join(" "));
        if !exists {
            skipped.push(format!("{label}: skipped: not built yet"));
            continue;
        }
        let mut cmd = Command::new(&paths.memtrace);
        for a in *argv {
            if *a == "{trace}" {
                cmd.arg(&trace1);
            } else {
                cmd.arg(a);
            }
        }
        analyses.push(time_analysis(label, cmd, runs)?);
    }
    let frag_table = frag_parts(&paths, &trace1, runs)?;
    let heaptrack_file = heaptrack1.and_then(|i| configs[i].output.clone());
    match (&tools.heaptrack_print, &heaptrack_file) {
        (Some(hp), Some(file)) => {
            let mut cmd = Command::new(hp);
            cmd.arg("-f").arg(file);
            analyses.push(time_analysis("heaptrack_print -f FILE".into(), cmd, runs)?);
        }
        _ => skipped.push("heaptrack_print: skipped: heaptrack not installed".into()),
    }
    // heaptrack's own figure for the traced process alone, for context.
    let heaptrack_process_rss = analyses
        .iter()
        .find(|a| a.label.starts_with("heaptrack_print"))
        .and_then(|a| parse_peak_rss(&a.stdout));

    // Tables.
    let mut table = Table::new(&[
        "configuration",
        "ops",
        "threads",
        "runs",
        "median wall",
        "slowdown",
        "peak RSS",
        "output size",
        "bytes/event",
    ]);
    for c in &configs {
        let wall = c.median_wall();
        let slowdown = c.baseline.map(|b| wall / configs[b].median_wall());
        let out_bytes = c.output_bytes();
        table.row(vec![
            c.label.clone(),
            c.ops.to_string(),
            c.threads.to_string(),
            c.results.len().to_string(),
            fmt_secs(wall),
            slowdown.map_or_else(|| "1.00x".into(), |s| format!("{s:.2}x")),
            fmt_bytes(c.median_rss_kib() * 1024),
            out_bytes.map_or_else(
                || "-".into(),
                |b| {
                    let note = if c.tool == Tool::Heaptrack {
                        " (zstd)"
                    } else {
                        ""
                    };
                    format!("{}{note}", fmt_bytes(b))
                },
            ),
            out_bytes.map_or_else(
                || "-".into(),
                |b| format!("{:.2}", b as f64 / c.events as f64),
            ),
        ]);
    }
    let mut analysis_table = Table::new(&[
        "analysis (on the 1-thread trace)",
        "runs",
        "median wall",
        "peak RSS",
    ]);
    for a in &analyses {
        analysis_table.row(vec![
            a.label.clone(),
            a.walls.len().to_string(),
            fmt_secs(median(&a.walls)),
            fmt_bytes(a.rss_kib * 1024),
        ]);
    }

    // Goals.
    let slowdown = |i: usize| {
        configs[i].median_wall() / configs[configs[i].baseline.unwrap_or(i)].median_wall()
    };
    let mut goals: Vec<Goal> = Vec::new();
    let m1 = slowdown(memtrace1);
    match heaptrack1 {
        Some(h) => {
            let h1 = slowdown(h);
            goals.push(Goal::check(
                m1 <= h1 / 3.0,
                format!("memtrace slowdown <= heaptrack slowdown / 3: {m1:.2}x vs {h1:.2}x / 3 = {:.2}x", h1 / 3.0),
            ));
        }
        None => goals.push(Goal::skip(
            "memtrace slowdown <= heaptrack slowdown / 3: skipped: heaptrack not installed",
        )),
    }
    let bpe =
        configs[memtrace1].output_bytes().unwrap_or(0) as f64 / configs[memtrace1].events as f64;
    let floor = crate::floor::measure(&trace1)?;
    let zstd_bpe = configs[zstd1].output_bytes().unwrap_or(0) as f64 / configs[zstd1].events as f64;
    goals.push(Goal::check(
        bpe <= 1.0,
        format!(
            "trace bytes per event <= 1.0: {bpe:.2}, {zstd_bpe:.2} with every block compressed at \
             {:.2}x (information floor of the program's own \
             choices, before any timestamp, address or latency: {:.2} = alloc/free {:.2} + \
             size and stack {:.2} + which block each free releases {:.2} bits/event, over 8)",
            slowdown(zstd1),
            floor.bytes_per_event(),
            floor.op_bits,
            floor.alloc_bits,
            floor.free_bits
        ),
    ));
    let m8 = slowdown(memtrace8);
    goals.push(Goal::check(
        m8 <= 1.5 * m1,
        format!(
            "8-thread slowdown <= 1.5 x 1-thread slowdown: {m8:.2}x vs 1.5 x {m1:.2}x = {:.2}x",
            1.5 * m1
        ),
    ));
    match heaptrack1 {
        Some(h) => {
            let (mr, hr) = (
                configs[memtrace1].median_rss_kib(),
                configs[h].median_rss_kib(),
            );
            goals.push(Goal::check(
                mr < hr,
                format!(
                    "recorder peak RSS < heaptrack peak RSS: {} vs {} (largest process of each tree{})",
                    fmt_bytes(mr * 1024),
                    fmt_bytes(hr * 1024),
                    heaptrack_process_rss
                        .as_ref()
                        .map_or(String::new(), |r| format!("; heaptrack_print says the traced process alone peaked at {r}"))
                ),
            ));
        }
        None => goals.push(Goal::skip(
            "recorder peak RSS < heaptrack peak RSS: skipped: heaptrack not installed",
        )),
    }
    let report_time = analyses
        .iter()
        .find(|a| a.label == "memtrace report TRACE")
        .map(|a| median(&a.walls));
    let print_time = analyses
        .iter()
        .find(|a| a.label.starts_with("heaptrack_print"))
        .map(|a| median(&a.walls));
    match (report_time, print_time) {
        (Some(r), Some(p)) => goals.push(Goal::check(
            r < p,
            format!(
                "memtrace report time < heaptrack_print time: {} vs {}",
                fmt_secs(r),
                fmt_secs(p)
            ),
        )),
        _ => goals.push(Goal::skip(
            "memtrace report time < heaptrack_print time: skipped: heaptrack not installed",
        )),
    }

    goals.push(leak_scan_goal(&paths)?);
    let share = crate::share::measure(&paths, runs)?;
    goals.push(Goal::check(share.agrees(), share.describe()));
    let threads = crate::threads::measure(&paths, args.quick)?;
    for (pass, text) in &threads.goals {
        goals.push(Goal::check(*pass, text.clone()));
    }

    // Print.
    println!();
    print!("{}", table.text());
    println!();
    print!("{}", analysis_table.text());
    println!();
    print!("{}", frag_table.text());
    println!();
    print!("{}", threads.table.text());
    println!();
    for s in &skipped {
        println!("{s}");
    }
    for w in &warnings {
        println!("WARNING: {w}");
    }
    for g in &goals {
        println!("{}", g.line());
    }

    // bench.md.
    let mut md = String::new();
    let _ = writeln!(md, "# memtrace recorder benchmark\n");
    let _ = writeln!(
        md,
        "`cargo xtask bench --ops {ops} --runs {runs}`: fixtures/c/bench_alloc.c (gcc -O2 -g -pthread). \
         Configurations run interleaved, round by round; wall time is the median over the runs; \
         slowdown is against the native run of the same size in the same invocation; peak RSS is \
         `wait4`'s `ru_maxrss` of the tool's process tree (its largest process; median over runs); \
         bytes/event is the output file size over the program's mallocs + frees (`bench_alloc --count`). \
         valgrind and the libgcc unwinder run at ops/10 against a native run at ops/10.\n"
    );
    md.push_str(&table.markdown());
    md.push('\n');
    md.push_str(&analysis_table.markdown());
    md.push('\n');
    md.push_str(&frag_table.markdown());
    md.push('\n');
    for s in &skipped {
        let _ = writeln!(md, "- {s}");
    }
    for w in &warnings {
        let _ = writeln!(md, "- WARNING: {w}");
    }
    let _ = writeln!(md, "\n## Goals\n");
    for g in &goals {
        let _ = writeln!(md, "- {}", g.line());
    }
    md.push('\n');
    let threads_md = crate::threads::markdown(&threads, args.quick);
    paths.write("bench-threads.md", &threads_md)?;
    md.push_str(&threads_md);
    let _ = writeln!(md, "\n## Commands (last round)\n\n```sh");
    for c in &configs {
        let _ = writeln!(md, "{}", c.command);
    }
    for a in &analyses {
        let _ = writeln!(md, "{}", a.command);
    }
    let _ = writeln!(md, "```\n\n## Machine\n");
    for (k, v) in util::machine_info() {
        let _ = writeln!(md, "- {k}: {v}");
    }
    for (name, tool) in [
        ("heaptrack", &tools.heaptrack),
        ("valgrind", &tools.valgrind),
    ] {
        if let Some(t) = tool {
            let _ = writeln!(md, "- {name}: {}", util::version(t));
        }
    }
    let md_path = paths.write("bench.md", md)?;
    println!("\nwritten: {}", md_path.display());
    Ok(ExitCode::SUCCESS)
}

/// Runs one configuration once and records the result.
fn run_config(
    paths: &Paths,
    bench: &Path,
    tools: &Tools,
    index: usize,
    c: &mut Config,
) -> Result<()> {
    let round = c.results.len();
    let stem = format!("bench.{index}.{}ops.{}t.r{round}", c.ops, c.threads);
    let mut output: Option<PathBuf> = None;
    let mut cmd = match c.tool {
        Tool::Native => Command::new(bench),
        Tool::Memtrace
        | Tool::MemtraceLibgcc
        | Tool::MemtraceNoTiming
        | Tool::MemtraceNoLeakScan
        | Tool::MemtraceZstd => {
            let trace = paths.traces.join(format!("{stem}.trace"));
            util::remove_file(&trace)?;
            let mut cmd = Command::new(&paths.memtrace);
            if c.tool == Tool::MemtraceLibgcc {
                cmd.env("MEMTRACE_UNWIND", "libgcc");
            }
            if c.tool == Tool::MemtraceNoTiming {
                cmd.env("MEMTRACE_TIMING", "0");
            }
            if c.tool == Tool::MemtraceNoLeakScan {
                cmd.env("MEMTRACE_LEAK_SCAN", "0");
            }
            if c.tool == Tool::MemtraceZstd {
                cmd.env("MEMTRACE_COMPRESSION", "1");
            }
            cmd.args(["run", "-q", "-o"])
                .arg(&trace)
                .arg("--")
                .arg(bench);
            output = Some(trace);
            cmd
        }
        Tool::Heaptrack => {
            let prefix = paths.traces.join(format!("{stem}.heaptrack"));
            util::remove_heaptrack_files(&prefix)?;
            let mut cmd = Command::new(tools.heaptrack.as_ref().context("heaptrack")?);
            cmd.arg("-o").arg(&prefix).arg(bench);
            output = Some(prefix);
            cmd
        }
        Tool::Valgrind => {
            let mut cmd = Command::new(tools.valgrind.as_ref().context("valgrind")?);
            cmd.args(["--tool=memcheck", "--leak-check=no"]).arg(bench);
            cmd
        }
    };
    cmd.arg(c.ops.to_string())
        .arg(c.threads.to_string())
        .current_dir(&paths.traces);
    let m: Measured = util::measure(&mut cmd)?.ok(&cmd)?;
    let expected = format!("checksum={}", c.checksum);
    if !m.stdout.lines().any(|l| l.trim() == expected) {
        bail!(
            "`{}` did not print {expected}; stdout: {:?}",
            util::show(&cmd),
            m.stdout.trim()
        );
    }
    if c.tool == Tool::Heaptrack {
        output = Some(util::heaptrack_file(output.as_ref().context("no prefix")?)?);
    }
    let output_bytes = match &output {
        Some(p) => Some(util::file_size(p)?),
        None => None,
    };
    // Keep only the last round's file.
    if let Some(old) = c.output.take() {
        util::remove_file(&old)?;
    }
    c.output = output;
    c.command = util::show(&cmd);
    c.results.push(RunResult {
        wall: m.wall.as_secs_f64(),
        rss_kib: m.max_rss_kib,
        output_bytes,
    });
    Ok(())
}

/// Compares the trace's totals with the program's own counts; returns
/// warnings for every difference (they are memtrace bugs to report).
fn check_trace(
    paths: &Paths,
    trace: &Path,
    label: &str,
    counts: &Counts,
    threads: u32,
) -> Result<Vec<String>> {
    let r = util::report_json(paths, trace)?;
    let t = &r["totals"];
    let get = |k: &str| t[k].as_u64().unwrap_or(u64::MAX);
    let mut warnings = Vec::new();
    if r["trace"]["complete"].as_bool() != Some(true) {
        warnings.push(format!(
            "{label}: trace {} is not complete: {}",
            trace.display(),
            r["trace"]["status"]
        ));
    }
    // With N > 1 threads glibc adds N DTV callocs (pthread_create); they may
    // be freed by thread teardown or stay live to the end.
    let extra = if threads > 1 { u64::from(threads) } else { 0 };
    let allocs = get("allocations");
    if allocs != counts.mallocs + extra {
        warnings.push(format!(
            "{label}: memtrace recorded {allocs} allocations, the program made {} (+{extra} glibc DTV callocs)",
            counts.mallocs
        ));
    }
    let frees = get("frees");
    if frees < counts.frees || frees > counts.frees + extra {
        warnings.push(format!(
            "{label}: memtrace recorded {frees} frees, the program made {}",
            counts.frees
        ));
    }
    let unmatched = get("unmatched_frees");
    if unmatched > 0 {
        warnings.push(format!(
            "{label}: memtrace saw {unmatched} free() calls of blocks it never saw allocated (calls_by_function {})",
            t["calls_by_function"]
        ));
    }
    let bytes = get("bytes_allocated");
    if threads == 1 && bytes != counts.bytes {
        warnings.push(format!(
            "{label}: memtrace recorded {bytes} bytes allocated, the program {}",
            counts.bytes
        ));
    }
    Ok(warnings)
}

/// Live blocks at exit in the leak-scan measurement.
const SCAN_BLOCKS: u64 = 1_000_000;

/// The exit-time leak scan of a heap of a million live blocks
/// (fixtures/c/many_blocks.c), as the scan itself timed it.
fn leak_scan_goal(paths: &Paths) -> Result<Goal> {
    let exe = util::compile(
        paths,
        "gcc",
        &["-O2", "-g"],
        "c/many_blocks.c",
        "many_blocks",
    )?;
    let trace = paths.traces.join("many_blocks.trace");
    util::remove_file(&trace)?;
    let mut run = Command::new(&paths.memtrace);
    run.args(["run", "-q", "-o"])
        .arg(&trace)
        .arg("--")
        .arg(&exe)
        .arg(SCAN_BLOCKS.to_string());
    eprintln!("xtask: leak scan of {SCAN_BLOCKS} live blocks");
    util::measure(&mut run)?.ok(&run)?;
    let mut leaks = Command::new(&paths.memtrace);
    leaks
        .args(["leaks", "--format", "json", "--error-exitcode", "0"])
        .arg(&trace);
    let out = util::measure(&mut leaks)?.ok(&leaks)?;
    let json: serde_json::Value =
        serde_json::from_str(&out.stdout).context("memtrace leaks --format json")?;
    let ms = json["scan"]["duration_ms"]
        .as_f64()
        .context("no scan duration in the leak report")?;
    let heap = json["scan"]["heap_bytes"].as_u64().unwrap_or(0);
    Ok(Goal::check(
        ms < 1000.0,
        format!(
            "leak scan of {SCAN_BLOCKS} live blocks < 1 s: {ms:.0} ms ({} of heap read)",
            fmt_bytes(heap)
        ),
    ))
}

/// Timing of one analysis command.
struct Analysis {
    label: String,
    command: String,
    walls: Vec<f64>,
    cpus: Vec<f64>,
    rss_kib: u64,
    stdout: String,
}

fn time_analysis(label: String, mut cmd: Command, runs: usize) -> Result<Analysis> {
    let mut walls = Vec::new();
    let mut cpus = Vec::new();
    let mut rss = Vec::new();
    let mut stdout = String::new();
    for round in 0..runs {
        eprintln!("xtask: round {}/{runs}: {label}", round + 1);
        let m = util::measure(&mut cmd)?.ok(&cmd)?;
        walls.push(m.wall.as_secs_f64());
        cpus.push(m.cpu.as_secs_f64());
        rss.push(m.max_rss_kib as f64);
        stdout = m.stdout;
    }
    Ok(Analysis {
        label,
        command: util::show(&cmd),
        walls,
        cpus,
        rss_kib: median(&rss) as u64,
        stdout,
    })
}

/// `memtrace ARGV` with `{trace}` replaced.
fn memtrace_cmd(paths: &Paths, argv: &[&str], trace: &Path) -> Command {
    let mut cmd = Command::new(&paths.memtrace);
    for a in argv {
        if *a == "{trace}" {
            cmd.arg(trace);
        } else {
            cmd.arg(a);
        }
    }
    cmd
}

/// The heap calls in a trace (every call is one event), from its report.
fn heap_events(paths: &Paths, trace: &Path) -> Result<u64> {
    let r = util::report_json(paths, trace)?;
    let calls = r["totals"]["calls_by_function"]
        .as_object()
        .context("no totals.calls_by_function in the report")?;
    Ok(calls.values().filter_map(serde_json::Value::as_u64).sum())
}

/// Times every part of `memtrace frag` on `trace`: a row per part with the
/// median wall time, the median CPU time and the heap events per second.
fn frag_parts(paths: &Paths, trace: &Path, runs: usize) -> Result<Table> {
    let events = heap_events(paths, trace)?;
    let mut table = Table::new(&[
        &format!("memtrace frag part ({events} heap events)"),
        "runs",
        "median wall",
        "median CPU",
        "events/s (wall)",
        "peak RSS",
    ]);
    for (part, argv) in FRAG_PARTS {
        let a = time_analysis(
            format!("memtrace frag: {part}"),
            memtrace_cmd(paths, argv, trace),
            runs,
        )?;
        let wall = median(&a.walls);
        table.row(vec![
            format!(
                "{part} (`memtrace {}`)",
                argv.join(" ").replace("{trace}", "TRACE")
            ),
            a.walls.len().to_string(),
            fmt_secs(wall),
            fmt_secs(median(&a.cpus)),
            format!("{:.2} M", events as f64 / wall / 1e6),
            fmt_bytes(a.rss_kib * 1024),
        ]);
    }
    Ok(table)
}

/// `cargo xtask bench --analyses-only TRACE`: the analysis tables alone.
fn analyses_only(paths: &Paths, trace: &Path, runs: usize) -> Result<ExitCode> {
    let mut table = Table::new(&["analysis", "runs", "median wall", "median CPU", "peak RSS"]);
    for argv in MEMTRACE_ANALYSES {
        let exists = Command::new(&paths.memtrace)
            .args(["help", argv[0]])
            .output()
            .is_ok_and(|o| o.status.success());
        if !exists {
            continue;
        }
        let label = format!("memtrace {}", argv.join(" ").replace("{trace}", "TRACE"));
        let a = time_analysis(label.clone(), memtrace_cmd(paths, argv, trace), runs)?;
        table.row(vec![
            label,
            a.walls.len().to_string(),
            fmt_secs(median(&a.walls)),
            fmt_secs(median(&a.cpus)),
            fmt_bytes(a.rss_kib * 1024),
        ]);
    }
    let frag = frag_parts(paths, trace, runs)?;
    println!();
    print!("{}", table.text());
    println!();
    print!("{}", frag.text());
    let mut md = String::new();
    let _ = writeln!(md, "# memtrace analysis benchmark\n");
    let _ = writeln!(
        md,
        "`cargo xtask bench --analyses-only {} --runs {runs}`: median wall and CPU (user + system) \
         time over the runs.\n",
        trace.display()
    );
    md.push_str(&table.markdown());
    md.push('\n');
    md.push_str(&frag.markdown());
    let _ = writeln!(md, "\n## Machine\n");
    for (k, v) in util::machine_info() {
        let _ = writeln!(md, "- {k}: {v}");
    }
    let md_path = paths.write("bench-analyses.md", md)?;
    println!("\nwritten: {}", md_path.display());
    Ok(ExitCode::SUCCESS)
}

/// heaptrack_print's "peak RSS (including heaptrack overhead): X".
fn parse_peak_rss(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("peak RSS (including heaptrack overhead):"))
        .map(|v| format!("{} (heaptrack units, 1000-based)", v.trim()))
}

/// A goal's verdict.
struct Goal {
    verdict: &'static str,
    text: String,
}

impl Goal {
    fn check(pass: bool, text: String) -> Goal {
        Goal {
            verdict: if pass { "PASS" } else { "FAIL" },
            text,
        }
    }

    fn skip(text: &str) -> Goal {
        Goal {
            verdict: "SKIP",
            text: text.to_string(),
        }
    }

    fn line(&self) -> String {
        format!("{}: {}", self.verdict, self.text)
    }
}
