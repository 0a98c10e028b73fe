//! `memtrace cache`: what a program's memory layout costs in cache misses.
//!
//! Hardware counters where the machine has them; otherwise, and with
//! `--simulate`, cachegrind's simulated misses; with `--record` or `--trace`,
//! per-phase counters and allocation scatter from a trace. Every number is
//! labelled with its source, and an event that could not be counted is shown
//! with the reason, never as a zero.

use std::ffi::{OsStr, OsString};
use std::os::fd::AsFd;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus, Stdio};

use anyhow::{bail, Context, Result};
use clap::{ArgGroup, Args};
use memtrace_analyze::symbols::Symbols;
use memtrace_cache::cachegrind::Simulation;
use memtrace_cache::chart::{self, ChartConfig};
use memtrace_cache::counters::Plan;
use memtrace_cache::derived::derive;
use memtrace_cache::findings::{Findings, SiteScatter};
use memtrace_cache::json::CacheReport;
use memtrace_cache::text::render_text;
use memtrace_format::{Extent, Named};

use crate::cmd::report::Format;
use crate::progress::{self, QuietArg};
use crate::{inspect, preload_lib};

mod cachegrind;
mod counted;

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
    /// (simulated, the program's own functions first), labelled with its
    /// source.
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
        let (exited, counted) = counted::run_counted(&Plan::all(), &mut command)
            .with_context(|| format!("cannot run {program}"))?;
        status = Some(exited);
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
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&CacheReport::of(&findings))?
        ),
    }
    if let Some(svg) = &args.svg {
        let config = ChartConfig {
            program: program_words(&args.command),
            top: args.top,
        };
        let plan = chart::plan(&findings, &config)
            .context("nothing to chart: no miss counts were measured or simulated")?;
        let text = memtrace_plot::bars(&plan).map_err(|e| anyhow::anyhow!("{e}"))?;
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

/// Reads a trace's phases and scatter into `findings`, naming each
/// scatter site by its symbolized site frame.
fn read_trace(path: &Path, findings: &mut Findings) -> Result<()> {
    let mut reader = progress::open(path, Extent::AsOpened, Named::ByUser)
        .with_context(|| format!("{}", path.display()))?;
    let (phases, scatter) = memtrace_cache::findings::read_trace(&mut reader)
        .with_context(|| format!("{}", path.display()))?;
    let mut symbols = Symbols::new(reader.modules());
    let sites = scatter
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
    findings.phases = Some(phases);
    findings.scatter = Some(sites);
    findings.trace = Some(path.to_path_buf());
    Ok(())
}

/// The command line for a chart's title: the program's file name and its
/// arguments.
fn program_words(command: &[OsString]) -> String {
    command
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
        .unwrap_or_default()
}
