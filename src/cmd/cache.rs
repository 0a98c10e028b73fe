//! `memtrace cache`: what a program's memory layout costs in cache misses.
//!
//! Hardware counters where the machine has them; otherwise, and with
//! `--simulate`, cachegrind's simulated misses; with `--record` or `--trace`,
//! per-phase counters and allocation scatter from a trace. Every number is
//! labelled with its source, and an event that could not be counted is shown
//! with the reason, never as a zero.

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::os::fd::AsFd;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus, Stdio};

use anyhow::{bail, Context, Result};
use clap::{ArgGroup, Args};
use memtrace_analyze::symbols::Symbols;
use memtrace_cache::cachegrind::{self, Simulation};
use memtrace_cache::chart::{BarGroup, MissChart};
use memtrace_cache::counters::{self, CountedRun, EventKind, Outcome, Plan, Source};
use memtrace_cache::derived::{derive, Derived};
use memtrace_cache::phases::{PhaseCollector, PhaseCounts};
use memtrace_cache::scatter::{ScatterReplay, StackScatter};
use memtrace_format::{Extent, Named};
use serde_json::{json, Value};

use crate::cmd::report::Format;
use crate::progress::{self, QuietArg};
use crate::{inspect, preload_lib};

/// Arguments of `memtrace cache`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("input").args(["command", "trace"]).required(true)))]
pub struct CacheArgs {
    /// Output format (JSON schema `memtrace-cache/1`). With json, the
    /// program's stdout goes to stderr so that stdout is one JSON document.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Also run the program under cachegrind for simulated misses (this
    /// happens anyway when no hardware counter can be opened).
    #[arg(long, conflicts_with = "no_simulate")]
    pub simulate: bool,
    /// Never run cachegrind, even without hardware counters.
    #[arg(long)]
    pub no_simulate: bool,
    /// Run the program under the recorder too, writing this trace: adds
    /// per-phase counts and allocation scatter (the counters then include the
    /// recorder's own work).
    #[arg(long, value_name = "TRACE", conflicts_with = "trace")]
    pub record: Option<PathBuf>,
    /// Report per-phase counts and allocation scatter of an existing trace,
    /// without running anything.
    #[arg(long, value_name = "TRACE")]
    pub trace: Option<PathBuf>,
    /// Write an SVG chart of misses per phase (hardware) or per function
    /// (simulated), labelled with its source.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Rows per table (functions, sites).
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Whether reading a trace shows progress.
    #[command(flatten)]
    pub quiet: QuietArg,
    /// The program and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<OsString>,
}

/// One site's scatter, symbolized.
struct SiteScatter {
    site: String,
    scatter: StackScatter,
}

/// Everything measured, for rendering.
#[derive(Default)]
struct Findings {
    counted: Option<CountedRun>,
    derived: Vec<Derived>,
    simulated: Option<std::result::Result<Simulation, String>>,
    phases: Option<Vec<PhaseCounts>>,
    scatter: Option<Vec<SiteScatter>>,
    trace: Option<PathBuf>,
}

/// Runs `memtrace cache`.
pub fn cache(args: CacheArgs) -> Result<ExitCode> {
    let mut findings = Findings::default();
    let mut status: Option<ExitStatus> = None;
    if let Some(trace) = &args.trace {
        read_trace(trace, &mut findings)?;
    } else {
        let program = args.command[0].to_string_lossy().into_owned();
        let resolved = inspect::resolve(&program)?;
        let rest: Vec<&OsStr> = args.command[1..].iter().map(OsString::as_os_str).collect();
        let record = match &args.record {
            Some(path) => {
                let cwd = std::env::current_dir().context("cannot read the current directory")?;
                let path = cwd.join(path);
                if std::fs::symlink_metadata(&path).is_ok() {
                    bail!(
                        "{} exists already: memtrace never overwrites a trace",
                        path.display()
                    );
                }
                inspect::check(&resolved)?;
                Some(path)
            }
            None => None,
        };
        let mut command = Command::new(&args.command[0]);
        command.args(&rest);
        if args.format == Format::Json {
            command.stdout(Stdio::from(std::io::stderr().as_fd().try_clone_to_owned()?));
        }
        // Kept until the program has ended: a temporary private directory
        // is removed when it is dropped.
        let mut preload = None;
        if let Some(path) = &record {
            let library = &preload.insert(preload_lib::prepare()?).library;
            command
                .env("LD_PRELOAD", library)
                .env("MEMTRACE_OUTPUT", path)
                .env("MEMTRACE_NO_FOLLOW", "1")
                .env("MEMTRACE_PHASE_COUNTERS", "all")
                .env_remove("MEMTRACE_DISABLE");
        }
        let counted = counters::run_command_counted(&Plan::all(), &mut command)
            .with_context(|| format!("cannot run {program}"))?;
        status = Some(counted.status);
        findings.derived = derive(&counted);
        let want_sim = args.simulate || (!args.no_simulate && !counted.any_hardware());
        findings.counted = Some(counted);
        if want_sim {
            findings.simulated = Some(simulate(&resolved, &rest, args.simulate, args.format)?);
        }
        if let Some(path) = &record {
            if path.exists() {
                read_trace(path, &mut findings)?;
            } else {
                eprintln!(
                    "memtrace: the program wrote no trace ({} does not exist)",
                    path.display()
                );
            }
        }
    }
    match args.format {
        Format::Text => print!("{}", render_text(&findings, args.top)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&to_json(&findings))?),
    }
    if let Some(svg) = &args.svg {
        let chart = chart(&findings, &args.command, args.top)
            .context("nothing to chart: no miss counts were measured or simulated")?;
        let text = chart.to_svg().map_err(anyhow::Error::msg)?;
        memtrace_safe_write::write_file(svg, text.as_bytes())?;
    }
    let code = match status {
        None => 0,
        Some(s) => match (s.code(), s.signal()) {
            (Some(code), _) => code,
            (None, Some(signal)) => 128 + signal,
            _ => 1,
        },
    };
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

/// Runs cachegrind; a failure is an error only when asked for explicitly.
fn simulate(
    program: &Path,
    args: &[&OsStr],
    explicit: bool,
    format: Format,
) -> Result<std::result::Result<Simulation, String>> {
    // A fresh private directory (mkdtemp, mode 0700): a predictable name
    // in /tmp could be made beforehand by anyone, with a link planted
    // where cachegrind writes.
    let template = std::env::temp_dir().join("memtrace-cache-XXXXXX");
    let dir = nix::unistd::mkdtemp(&template)
        .with_context(|| format!("cannot create {}", template.display()))?;
    let out = dir.join("cachegrind.out");
    let stdout = match format {
        Format::Json => Stdio::from(std::io::stderr().as_fd().try_clone_to_owned()?),
        Format::Text => Stdio::inherit(),
    };
    let result = cachegrind::simulate(program, args, &out, stdout);
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Ok((_, sim)) => Ok(Ok(sim)),
        Err(e) if explicit => bail!("{e}"),
        Err(e) => Ok(Err(e.to_string())),
    }
}

/// Reads a trace's phases and scatter into `findings`.
fn read_trace(path: &Path, findings: &mut Findings) -> Result<()> {
    let mut reader = progress::open(path, Extent::AsOpened, Named::ByUser)
        .with_context(|| format!("{}", path.display()))?;
    let mut phases = PhaseCollector::default();
    let mut scatter = ScatterReplay::default();
    while let Some(event) = reader
        .next_event()
        .with_context(|| format!("{}", path.display()))?
    {
        phases.apply(&event);
        scatter.apply(&event);
    }
    let mut symbols = Symbols::new(reader.modules());
    let sites = scatter
        .finish()
        .into_iter()
        .map(|s| {
            let frame = symbols.site(reader.stacks(), s.stack);
            let name = frame.name();
            let site = match frame.file_line() {
                Some(fl) => format!("{name} ({fl})"),
                None => name,
            };
            SiteScatter { site, scatter: s }
        })
        .collect();
    findings.phases = Some(phases.finish());
    findings.scatter = Some(sites);
    findings.trace = Some(path.to_path_buf());
    Ok(())
}

fn render_text(f: &Findings, top: usize) -> String {
    let mut out = String::new();
    if let Some(run) = &f.counted {
        let _ = writeln!(
            out,
            "Counters (perf_event_open), from exec on, threads and children included:"
        );
        for e in &run.events {
            let kind = match e.kind.source() {
                Source::Hardware => "hw",
                Source::Software => "sw",
            };
            let text = match &e.outcome {
                Outcome::Measured(m) => {
                    let mut t = format!("{:>16}", m.scaled);
                    if m.time_running_ns < m.time_enabled_ns {
                        let _ = write!(
                            t,
                            "  (scaled: ran {:.1}% of the time, raw {})",
                            m.running_share() * 100.0,
                            m.raw
                        );
                    }
                    if m.user_only {
                        t.push_str("  (user space only)");
                    }
                    t
                }
                Outcome::NeverRan => format!("{:>16}  never scheduled on a counter", "not counted"),
                Outcome::Unavailable(why) => format!("{:>16}  {why}", "unsupported"),
            };
            let _ = writeln!(out, "  {kind} {:<22} {text}", e.name);
        }
        if let Some(p) = run.paranoid {
            let _ = writeln!(out, "  (perf_event_paranoid = {p})");
        }
        if !f.derived.is_empty() {
            let _ = writeln!(out, "Derived:");
            for d in &f.derived {
                let _ = writeln!(out, "  {:<22} {:>12.4}", d.name, d.value);
            }
        } else if !run.any_hardware() {
            let _ = writeln!(
                out,
                "Derived: none (no hardware counter could be opened; no ratio, MPKI or IPC)"
            );
        }
    }
    match &f.simulated {
        Some(Ok(sim)) => {
            let t = &sim.total;
            let _ = writeln!(
                out,
                "\nSimulated misses (cachegrind; a model of the caches, not the hardware):"
            );
            for c in &sim.caches {
                let _ = writeln!(out, "  {c}");
            }
            let _ = writeln!(out, "  {:<30} {:>14}", "instructions", t.instructions);
            let _ = writeln!(out, "  {:<30} {:>14}", "data references", t.data_refs());
            let _ = writeln!(
                out,
                "  {:<30} {:>14}  ({} read, {} write)",
                "D1 misses (simulated)",
                t.d1_misses(),
                t.d1_read_misses,
                t.d1_write_misses
            );
            let _ = writeln!(
                out,
                "  {:<30} {:>14}  ({} read, {} write)",
                "LL data misses (simulated)",
                t.ll_misses(),
                t.ll_read_misses,
                t.ll_write_misses
            );
            let _ = writeln!(out, "  Functions with the most simulated D1 misses:");
            for (name, c) in sim.functions.iter().take(top) {
                let _ = writeln!(
                    out,
                    "    {:>12} D1  {:>12} LL  {name}",
                    c.d1_misses(),
                    c.ll_misses()
                );
            }
        }
        Some(Err(why)) => {
            let _ = writeln!(out, "\nSimulated misses: not available ({why})");
        }
        None => {}
    }
    if let Some(phases) = &f.phases {
        let _ = writeln!(
            out,
            "\nPhases (recorder's getrusage counters, whole process):"
        );
        if phases.is_empty() {
            let _ = writeln!(out, "  none (the program called no memtrace_phase)");
        }
        for p in phases {
            let cells: Vec<String> = p
                .deltas
                .iter()
                .map(|(name, d)| match d {
                    Some(v) => format!("{name} {v}"),
                    None => format!("{name} not measured"),
                })
                .collect();
            let _ = writeln!(out, "  {:<16} {}", p.name, cells.join(", "));
        }
        render_phase_perf(&mut out, phases);
    }
    if let Some(sites) = &f.scatter {
        let _ = writeln!(
            out,
            "\nAllocation scatter (from the trace; each stack at its own peak of live bytes):"
        );
        let _ = writeln!(
            out,
            "  {:>8} {:>10} {:>10} {:>7} {:>8} {:>9} {:>12}  site",
            "blocks", "lines", "packed", "ratio", "pages", "packed", "mean dist"
        );
        for s in sites.iter().take(top) {
            let c = &s.scatter;
            let dist = c
                .mean_distance
                .map_or_else(|| "-".to_string(), |d| format!("{d:.0} B"));
            let _ = writeln!(
                out,
                "  {:>8} {:>10} {:>10} {:>7.2} {:>8} {:>9} {:>12}  {}{}",
                c.peak_blocks,
                c.lines,
                c.min_lines,
                c.line_ratio(),
                c.pages,
                c.min_pages,
                dist,
                s.site,
                if c.is_scattered() { "  SCATTERED" } else { "" }
            );
        }
        let scattered: Vec<&str> = sites
            .iter()
            .filter(|s| s.scatter.is_scattered())
            .map(|s| s.site.as_str())
            .collect();
        if !scattered.is_empty() {
            let _ = writeln!(
                out,
                "  Scattered (objects spread over >{}x the cache lines they need; allocate them in bulk or from a pool): {}",
                memtrace_cache::scatter::SCATTER_RATIO,
                scattered.join("; ")
            );
        }
    }
    out
}

/// The recorder's per-phase `perf_event_open` counts: a row per phase of
/// the measured ones, then each unsupported counter once with its reason.
fn render_phase_perf(out: &mut String, phases: &[PhaseCounts]) {
    if phases.iter().all(|p| p.perf.is_empty()) {
        return;
    }
    let _ = writeln!(
        out,
        "\nPhases (perf_event_open in the recorder: the marking thread and the threads it started):"
    );
    let measured_anywhere = |kind: EventKind| {
        phases.iter().any(|p| {
            p.perf
                .iter()
                .any(|(k, o)| *k == kind && matches!(o, Outcome::Measured(_)))
        })
    };
    let mut unsupported: Vec<(EventKind, String)> = Vec::new();
    for p in phases {
        let mut cells = Vec::new();
        for (kind, outcome) in &p.perf {
            match outcome {
                Outcome::Measured(m) => {
                    let mut cell = format!("{} {}", kind.name(), m.scaled);
                    if m.time_running_ns < m.time_enabled_ns {
                        let _ = write!(cell, " (scaled, ran {:.0}%)", m.running_share() * 100.0);
                    }
                    cells.push(cell);
                }
                Outcome::NeverRan => cells.push(format!("{} never scheduled", kind.name())),
                Outcome::Unavailable(why) if measured_anywhere(*kind) => {
                    cells.push(format!("{} not measured ({why})", kind.name()));
                }
                Outcome::Unavailable(why) => {
                    if !unsupported.iter().any(|(k, _)| k == kind) {
                        unsupported.push((*kind, why.clone()));
                    }
                }
            }
        }
        let _ = writeln!(out, "  {:<16} {}", p.name, cells.join(", "));
    }
    for (kind, why) in unsupported {
        let _ = writeln!(out, "  {:<22} unsupported  {why}", kind.name());
    }
}

fn to_json(f: &Findings) -> Value {
    let counters = f.counted.as_ref().map(|run| {
        let events: Vec<Value> = run
            .events
            .iter()
            .map(|e| outcome_json(e.kind, &e.outcome))
            .collect();
        let exit = run.status.code();
        json!({
            "perf_event_paranoid": run.paranoid,
            "exit_code": exit,
            "events": events,
            "derived": f.derived.iter().map(|d| json!({"name": d.name, "value": d.value})).collect::<Vec<_>>(),
        })
    });
    let simulated = f.simulated.as_ref().map(|s| match s {
        Ok(sim) => {
            let counts = |c: &cachegrind::SimCounts| {
                json!({
                    "instructions": c.instructions,
                    "data_reads": c.data_reads, "data_writes": c.data_writes,
                    "d1_misses": c.d1_misses(), "d1_read_misses": c.d1_read_misses,
                    "d1_write_misses": c.d1_write_misses,
                    "ll_misses": c.ll_misses(), "ll_read_misses": c.ll_read_misses,
                    "ll_write_misses": c.ll_write_misses,
                })
            };
            json!({
                "source": "simulated (cachegrind)",
                "caches": sim.caches,
                "total": counts(&sim.total),
                "functions": sim.functions.iter().map(|(n, c)| {
                    let mut v = counts(c);
                    v["function"] = json!(n);
                    v
                }).collect::<Vec<_>>(),
            })
        }
        Err(why) => json!({"source": "simulated (cachegrind)", "error": why}),
    });
    let phases = f.phases.as_ref().map(|phases| {
        phases
            .iter()
            .map(|p| {
                let counters: serde_json::Map<String, Value> = p
                    .deltas
                    .iter()
                    .map(|(n, d)| (n.clone(), d.map_or(Value::Null, |v| json!(v))))
                    .collect();
                let perf: Vec<Value> = p
                    .perf
                    .iter()
                    .map(|(kind, outcome)| outcome_json(*kind, outcome))
                    .collect();
                json!({"name": p.name, "start_ts": p.start_ts, "end_ts": p.end_ts, "counters": counters, "perf": perf})
            })
            .collect::<Vec<_>>()
    });
    let scatter = f.scatter.as_ref().map(|sites| {
        sites
            .iter()
            .map(|s| {
                let c = &s.scatter;
                json!({
                    "site": s.site, "stack": c.stack, "n_allocs": c.n_allocs,
                    "peak_blocks": c.peak_blocks, "peak_bytes": c.peak_bytes,
                    "lines": c.lines, "min_lines": c.min_lines, "line_ratio": c.line_ratio(),
                    "pages": c.pages, "min_pages": c.min_pages, "page_ratio": c.page_ratio(),
                    "mean_distance": c.mean_distance, "scattered": c.is_scattered(),
                })
            })
            .collect::<Vec<_>>()
    });
    json!({
        "schema": "memtrace-cache/1",
        "counters": counters,
        "simulated": simulated,
        "trace": f.trace.as_ref().map(|p| p.display().to_string()),
        "phases": phases,
        "scatter": scatter,
    })
}

/// One counter's outcome as JSON: measured with its multiplexing times, not
/// counted, or unsupported with the reason.
fn outcome_json(kind: EventKind, outcome: &Outcome) -> Value {
    let name = kind.name();
    let source = match kind.source() {
        Source::Hardware => "hardware",
        Source::Software => "software",
    };
    match outcome {
        Outcome::Measured(m) => json!({
            "name": name, "source": source, "status": "measured",
            "value": m.scaled, "raw": m.raw,
            "time_enabled_ns": m.time_enabled_ns,
            "time_running_ns": m.time_running_ns,
            "user_only": m.user_only,
        }),
        Outcome::NeverRan => json!({
            "name": name, "source": source, "status": "not_counted",
            "reason": "never scheduled on a counter",
        }),
        Outcome::Unavailable(why) => json!({
            "name": name, "source": source, "status": "unsupported",
            "reason": why,
        }),
    }
}

/// The miss events a chart shows, in order.
const MISS_EVENTS: [EventKind; 4] = [
    EventKind::L1dLoadMisses,
    EventKind::LlcLoadMisses,
    EventKind::CacheMisses,
    EventKind::DtlbLoadMisses,
];

/// Misses per phase where hardware counted them in the recorder; else
/// hardware totals for the run; else simulated misses per function (the
/// fixtures keep each pattern in its own function).
fn chart(f: &Findings, command: &[OsString], top: usize) -> Option<MissChart> {
    let program = command
        .first()
        .map(|p| {
            let mut words: Vec<String> = command
                .iter()
                .map(|w| w.to_string_lossy().into_owned())
                .collect();
            words[0] = Path::new(p)
                .file_name()
                .map_or_else(|| words[0].clone(), |n| n.to_string_lossy().into_owned());
            words.join(" ")
        })
        .unwrap_or_default();
    let phase_groups: Vec<BarGroup> = f
        .phases
        .iter()
        .flatten()
        .filter_map(|p| {
            let values: Vec<(String, u64)> = MISS_EVENTS
                .into_iter()
                .filter_map(|k| {
                    let (_, outcome) = p.perf.iter().find(|(kind, _)| *kind == k)?;
                    Some((k.name().to_string(), outcome.value()?))
                })
                .collect();
            (!values.is_empty()).then(|| BarGroup {
                label: p.name.clone(),
                values,
            })
        })
        .collect();
    if !phase_groups.is_empty() {
        return Some(MissChart {
            title: format!("misses per phase of {program}"),
            source: "hardware counters, per phase".into(),
            groups: phase_groups,
        });
    }
    if let Some(run) = f.counted.as_ref().filter(|r| r.any_hardware()) {
        let values: Vec<(String, u64)> = MISS_EVENTS
            .into_iter()
            .filter_map(|k| Some((k.name().to_string(), run.value(k)?)))
            .collect();
        if !values.is_empty() {
            return Some(MissChart {
                title: format!("misses of {program}"),
                source: "hardware counters".into(),
                groups: vec![BarGroup {
                    label: program,
                    values,
                }],
            });
        }
    }
    let Some(Ok(sim)) = &f.simulated else {
        return None;
    };
    let mut groups = vec![BarGroup {
        label: "whole run".into(),
        values: vec![
            ("D1 misses".into(), sim.total.d1_misses()),
            ("LL misses".into(), sim.total.ll_misses()),
        ],
    }];
    groups.extend(sim.functions.iter().take(top).map(|(name, c)| BarGroup {
        label: name.clone(),
        values: vec![
            ("D1 misses".into(), c.d1_misses()),
            ("LL misses".into(), c.ll_misses()),
        ],
    }));
    Some(MissChart {
        title: format!("misses per function of {program}"),
        source: "simulated (cachegrind)".into(),
        groups,
    })
}
