//! `memtrace swap -- PROGRAM ARGS` and `memtrace swap --pid PID`: sample a
//! process tree at a fixed interval, show a live verdict, and sum it up.

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{ArgGroup, Args};
use memtrace_swap::timeline::{self, Timeline};
use memtrace_swap::{
    render_status, Baseline, Classifier, Interval, Sample, Sampler, State, Summary, Thresholds,
};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// `si_code` of a signal the kernel sent (a terminal's Ctrl-C), as opposed
/// to one sent with `kill` (`SI_USER`).
const SI_KERNEL: i32 = 0x80;

/// Arguments of `memtrace swap`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("target").args(["command", "pid"]).required(true)))]
pub struct SwapArgs {
    /// Sampling interval in milliseconds.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub interval: u64,
    /// Monitor this running process and its descendants instead of running
    /// a program; Ctrl-C stops monitoring and leaves the process running.
    #[arg(long, conflicts_with = "cgroup")]
    pub pid: Option<i32>,
    /// Start the program inside this cgroup (a v1 or v2 directory): it is
    /// moved there before it runs its first instruction.
    #[arg(long)]
    pub cgroup: Option<PathBuf>,
    /// Timeline file: FILE.csv (one row per sample) or FILE.json (samples,
    /// intervals, verdicts, summary).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// SVG timeline chart: RSS, swap, major faults/s, pressure, state bands.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// No live view; the summary is still printed.
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub thresholds: ThresholdArgs,
    /// The program and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<OsString>,
}

/// The verdict thresholds (see `memtrace_swap::Thresholds`).
#[derive(Args, Debug)]
pub struct ThresholdArgs {
    /// Thrashing: refaults (evicted pages read back) per second...
    #[arg(long, value_name = "PER_S", default_value_t = Thresholds::default().thrash_refault_per_s)]
    pub thrash_refault: f64,
    /// ...with major faults per second of the process tree...
    #[arg(long, value_name = "PER_S", default_value_t = Thresholds::default().thrash_majflt_per_s)]
    pub thrash_majflt: f64,
    /// ...or memory pressure (PSI some, % of the time) at least this...
    #[arg(long, value_name = "PCT", default_value_t = Thresholds::default().thrash_stall_pct)]
    pub thrash_stall: f64,
    /// ...averaged over this many intervals.
    #[arg(long, value_name = "N", default_value_t = Thresholds::default().thrash_intervals, value_parser = clap::value_parser!(u32).range(1..))]
    pub thrash_intervals: u32,
    /// Swapping: swap-in + swap-out pages per second (with pages of the tree in swap).
    #[arg(long, value_name = "PER_S", default_value_t = Thresholds::default().swap_pages_per_s)]
    pub swap_pages: f64,
    /// Reclaiming: memory pressure in % (or any cgroup limit hit).
    #[arg(long, value_name = "PCT", default_value_t = Thresholds::default().reclaim_stall_pct)]
    pub reclaim_stall: f64,
}

impl ThresholdArgs {
    fn thresholds(&self) -> Thresholds {
        Thresholds {
            thrash_majflt_per_s: self.thrash_majflt,
            thrash_refault_per_s: self.thrash_refault,
            thrash_stall_pct: self.thrash_stall,
            thrash_intervals: self.thrash_intervals,
            swap_pages_per_s: self.swap_pages,
            reclaim_stall_pct: self.reclaim_stall,
        }
    }
}

/// What is being monitored.
enum Target {
    /// A program we started: we reap it and exit with its status.
    Child(Child),
    /// A process we attached to.
    Attached,
}

/// Runs `memtrace swap`.
pub fn swap(args: SwapArgs) -> Result<ExitCode> {
    let thresholds = args.thresholds.thresholds();
    let output = args
        .output
        .as_deref()
        .map(TimelineFile::create)
        .transpose()?;
    let svg = args
        .svg
        .as_deref()
        .map(memtrace_safe_write::OutFile::new)
        .transpose()?;

    // The program starts with our signal mask, so it is started first; then
    // the signals are blocked here and read from a descriptor between samples.
    // A program we start is counted from a baseline read before it starts,
    // however late the first tick comes on a loaded machine.
    let (mut target, pid, baseline) = match args.pid {
        Some(pid) => (Target::Attached, pid, None),
        None => {
            let baseline = Baseline::take(args.cgroup.as_deref());
            let child = spawn(&args.command, args.cgroup.as_deref())?;
            let pid = child.id() as i32;
            (Target::Child(child), pid, Some(baseline))
        }
    };
    let mut signals = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGCHLD,
    ] {
        signals.add(s);
    }
    signals.thread_block().context("cannot block signals")?;
    let signal_fd = SignalFd::with_flags(&signals, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .context("cannot create a signalfd")?;
    let (mut sampler, first) = match baseline {
        Some(baseline) => {
            let first = baseline.sample().clone();
            (Sampler::attach_after(baseline, pid)?, first)
        }
        None => {
            let mut sampler = Sampler::attach(pid)?;
            let first = sampler.sample();
            (sampler, first)
        }
    };

    let mut live = LiveView::new(args.quiet);
    let mut classifier = Classifier::new(thresholds.clone());
    let mut samples = vec![first];
    let mut intervals: Vec<Interval> = Vec::new();
    let mut states: Vec<State> = Vec::new();
    let tick = Duration::from_millis(args.interval);
    let mut next = Instant::now() + tick;
    loop {
        let wait = next.saturating_duration_since(Instant::now());
        let timeout = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(signal_fd.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, timeout);
        let mut stop = false;
        while let Ok(Some(info)) = signal_fd.read_signal() {
            let signo = info.ssi_signo as i32;
            if signo == Signal::SIGCHLD as i32 {
                continue;
            }
            match &target {
                // A terminal's Ctrl-C reached the program already; a kill
                // aimed at us is passed on. We go on until the program ends.
                Target::Child(child) if info.ssi_code != SI_KERNEL => {
                    if let Ok(signal) = Signal::try_from(signo) {
                        let _ = kill(Pid::from_raw(child.id() as i32), signal);
                    }
                }
                Target::Child(_) => {}
                Target::Attached => stop = true,
            }
        }
        let ended = match &target {
            Target::Child(child) => child_exited(child),
            Target::Attached => !sampler.root_alive(),
        };
        let now = Instant::now();
        if now >= next || ended || stop {
            let sample = sampler.sample();
            let interval = Interval::between(samples.last().expect("one sample"), &sample);
            let state = classifier.push(&interval);
            live.show(&interval, state);
            samples.push(sample);
            intervals.push(interval);
            states.push(state);
            next += tick;
            if next < now {
                next = now + tick;
            }
        }
        if ended || stop {
            break;
        }
    }
    live.finish();

    let code = match &mut target {
        Target::Child(child) => {
            let status = child.wait().context("waiting for the program")?;
            match (status.code(), status.signal()) {
                (Some(code), _) => code,
                (None, Some(signal)) => 128 + signal,
                _ => 1,
            }
        }
        Target::Attached => 0,
    };

    let summary = Summary::build(&samples, &intervals, &states);
    let command: Vec<String> = args
        .command
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if let Some(out) = output {
        let timeline = Timeline {
            schema: timeline::JSON_SCHEMA,
            command: command.clone(),
            pid,
            cgroup: sampler.cgroup().map(|c| c.dir.display().to_string()),
            interval_ms: args.interval,
            thresholds: &thresholds,
            samples: &samples,
            intervals: &intervals,
            states: &states,
            summary: &summary,
        };
        out.finish(&samples, &timeline)?;
    }
    if let Some(file) = &svg {
        // The program's name, not the whole command line, as the title.
        let program = match command.first() {
            Some(c) => Path::new(c)
                .file_name()
                .map_or_else(|| c.to_string(), |n| n.to_string_lossy().into_owned()),
            None => format!("pid {pid}"),
        };
        let chart =
            memtrace_swap::chart::render_svg(&program, &summary, &samples, &intervals, &states)
                .map_err(|e| anyhow::anyhow!("cannot draw the chart: {e}"))?;
        file.write(chart.as_bytes())?;
    }
    // The files first: a closed stderr pipe must not lose them.
    eprint!("{}", summary.render());
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

/// Starts the program, inside `cgroup` when given.
fn spawn(command: &[OsString], cgroup: Option<&Path>) -> Result<Child> {
    let program = command[0].to_string_lossy().into_owned();
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..]);
    if let Some(dir) = cgroup {
        let path = dir.join("cgroup.procs");
        // Owned by the closure, so by `cmd`: open until the child has moved
        // itself, then closed at exec (`O_CLOEXEC`), and in this process
        // when `cmd` is dropped.
        let procs = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot use the cgroup {}", dir.display()))?;
        // SAFETY: the closure runs in the child between fork and exec and
        // makes only async-signal-safe calls: `write_all` of one byte is
        // write(2) on a descriptor that stays open until exec (again on
        // EINTR), allocating nothing; "0" moves the calling process.
        unsafe {
            cmd.pre_exec(move || (&procs).write_all(b"0"));
        }
    }
    cmd.spawn().with_context(|| match cgroup {
        Some(dir) => format!("cannot run {program} in the cgroup {}", dir.display()),
        None => format!("cannot run {program}"),
    })
}

/// Whether our child has exited (it stays a zombie, still readable, until `wait`).
fn child_exited(child: &Child) -> bool {
    let pid = Pid::from_raw(child.id() as i32);
    matches!(
        waitid(
            Id::Pid(pid),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT
        ),
        Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..))
    )
}

/// The status line on a terminal (cut to its width, so that it never wraps
/// and `\r` keeps it on one line), plain lines elsewhere, both on stderr.
struct LiveView {
    quiet: bool,
    terminal: bool,
}

impl LiveView {
    fn new(quiet: bool) -> LiveView {
        LiveView {
            quiet,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    fn width() -> usize {
        terminal_size::terminal_size_of(std::io::stderr())
            .map_or(80, |(w, _)| usize::from(w.0))
            .saturating_sub(1)
    }

    fn show(&mut self, interval: &Interval, state: State) {
        if self.quiet {
            return;
        }
        let mut line = render_status(interval, state);
        let mut err = std::io::stderr().lock();
        let _ = if self.terminal {
            if let Some((cut, _)) = line.char_indices().nth(Self::width()) {
                line.truncate(cut);
            }
            write!(err, "\r\x1b[K{line}")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }

    fn finish(&mut self) {
        if !self.quiet && self.terminal {
            eprintln!();
        }
    }
}

/// The `--output` file, checked before monitoring starts and written at the end.
struct TimelineFile {
    file: memtrace_safe_write::OutFile,
    json: bool,
}

impl TimelineFile {
    fn create(path: &Path) -> Result<TimelineFile> {
        let json = match path.extension().and_then(|e| e.to_str()) {
            Some("csv") => false,
            Some("json") => true,
            _ => bail!(
                "{}: the timeline file must end in .csv or .json",
                path.display()
            ),
        };
        let file = memtrace_safe_write::OutFile::new(path)?;
        Ok(TimelineFile { file, json })
    }

    fn finish(self, samples: &[Sample], timeline: &Timeline) -> Result<()> {
        let text = if self.json {
            timeline.to_json()
        } else {
            timeline::to_csv(samples, timeline.states)
        };
        Ok(self.file.write(text.as_bytes())?)
    }
}
