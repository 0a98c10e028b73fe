//! `memtrace run -- PROGRAM ARGS`.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use clap::Args;
use nix::sys::signal::{signal, SigHandler, Signal};

use crate::cmd::report::load_found_report;
use crate::trace_list::{self, TraceList};
use crate::{inspect, preload_lib};

/// Arguments of `memtrace run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Trace file for the program (default: `memtrace.<program>.<pid>.trace`
    /// in the current directory). Traced children get default names beside it.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Do not trace programs that the program executes.
    #[arg(long)]
    pub no_follow: bool,
    /// Print no summary.
    #[arg(long, short)]
    pub quiet: bool,
    /// Check for leaks when the program ends (the report goes to stderr, or
    /// to --leaks-output); exit with --error-exitcode when leaks remain, 3
    /// when the scan was incomplete, unless the program itself failed.
    #[arg(long)]
    pub check_leaks: bool,
    /// Fail (exit 2) when the program cannot be traced because the preload
    /// library cannot be written to its cache (a full or read-only disk),
    /// instead of running the program untraced. --check-leaks implies it.
    #[arg(long)]
    pub require_trace: bool,
    /// Where --check-leaks writes its report.
    #[arg(long, value_name = "FILE", requires = "check_leaks")]
    pub leaks_output: Option<PathBuf>,
    /// How --check-leaks decides and reports.
    #[command(flatten)]
    pub check: crate::cmd::leaks::CheckArgs,
    /// The program and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<OsString>,
}

/// Runs `memtrace run`: the program's exit status becomes ours.
pub fn run(args: RunArgs) -> Result<ExitCode> {
    let program = args.command[0].to_string_lossy().into_owned();
    let resolved = inspect::resolve(&program)?;
    inspect::check(&resolved)?;
    let setup = preload_lib::prepare().and_then(|preload| {
        // The recorders report the traces they create in this list: `run`
        // never looks for "the newest" file in a directory that others
        // may write.
        let list = TraceList::create(&preload.dir)?;
        Ok((preload, list))
    });
    let (preload, mut list) = match setup {
        Ok(setup) => setup,
        // A leak check that did not run must not pass.
        Err(e) if !args.require_trace && !args.check_leaks => {
            eprintln!(
                "memtrace: {e:#}; running {program} untraced (--require-trace makes this an error)"
            );
            let (_, code) = spawn_and_wait(
                Command::new(&args.command[0]).args(&args.command[1..]),
                &program,
            )?;
            return Ok(ExitCode::from(code.clamp(0, 255) as u8));
        }
        Err(e) => return Err(e),
    };

    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let output = args.output.as_ref().map(|o| cwd.join(o));
    if let Some(out) = &output {
        if std::fs::symlink_metadata(out).is_ok() {
            bail!(
                "{} exists already: memtrace never overwrites a trace",
                out.display()
            );
        }
    }
    let dir = output
        .as_ref()
        .and_then(|o| o.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| cwd.clone());

    let mut ld_preload = preload.library.as_os_str().to_owned();
    if let Some(existing) = std::env::var_os("LD_PRELOAD") {
        ld_preload.push(":");
        ld_preload.push(existing);
    }
    let mut command = Command::new(&args.command[0]);
    command
        .args(&args.command[1..])
        .env("LD_PRELOAD", &ld_preload)
        .env("MEMTRACE_DIR", &dir)
        .env("MEMTRACE_FAMILY", format!("{:016x}", family_token()))
        .env(trace_list::ENV, list.path())
        .env_remove("MEMTRACE_DISABLE");
    match &output {
        Some(out) => command.env("MEMTRACE_OUTPUT", out),
        None => command.env_remove("MEMTRACE_OUTPUT"),
    };
    if args.check_leaks {
        // Fail before the program runs, not after, on a bad file (clap
        // checked the options).
        crate::cmd::leaks::load_suppressions(&args.check)?;
        command.env_remove("MEMTRACE_LEAK_SCAN");
    }
    let leaks_output = args
        .leaks_output
        .as_deref()
        .map(memtrace_safe_write::OutFile::new)
        .transpose()?;
    if args.no_follow {
        command.env("MEMTRACE_NO_FOLLOW", "1");
    } else {
        command.env_remove("MEMTRACE_NO_FOLLOW");
    }

    let (pid, code) = spawn_and_wait(&mut command, &program)?;

    let trace = match output {
        Some(out) => Some(out),
        // The program's status is still ours when the list cannot be read.
        None => list.last_of(pid).unwrap_or_else(|e| {
            eprintln!("memtrace: {e:#}");
            None
        }),
    };
    if args.check_leaks {
        // The program's own failure wins over the leak verdict, and over a
        // check that could not be made (a crash leaves no scan).
        let code = match check_leaks(trace.as_deref(), &args, leaks_output.as_ref()) {
            Ok(leak_code) if code == 0 => leak_code.into(),
            Ok(_) => code,
            Err(e) if code != 0 => {
                eprintln!("memtrace: no leak check: {e:#}");
                code
            }
            Err(e) => return Err(e),
        };
        return Ok(ExitCode::from(code.clamp(0, 255) as u8));
    }
    if !args.quiet {
        match trace.as_deref().map(written) {
            None => eprintln!("memtrace: the program wrote no trace"),
            Some(Err(e)) => eprintln!("memtrace: {e:#}"),
            Some(Ok(trace)) => match load_found_report(trace) {
                Ok(r) => {
                    eprint!("{}", memtrace_analyze::report::render_summary(&r, 5));
                    eprintln!("memtrace: trace written to {}", trace.display());
                }
                Err(e) => eprintln!("memtrace: cannot read the trace {}: {e:#}", trace.display()),
            },
        }
    }
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

/// The trace, if the program wrote it: the explicit `-o` name when no
/// process created it is an error naming it.
fn written(trace: &Path) -> Result<&Path> {
    if std::fs::symlink_metadata(trace).is_err() {
        bail!(
            "the program wrote no trace ({} does not exist)",
            trace.display()
        );
    }
    Ok(trace)
}

/// Runs the program and waits for it: its pid, and its exit status as
/// `memtrace run` exits with it (128+N for signal N).
fn spawn_and_wait(command: &mut Command, program: &str) -> Result<(u32, i32)> {
    // Like `time`: Ctrl-C and Ctrl-\ are for the program; we wait and report.
    // SAFETY: installs SIG_IGN, which runs no code of ours.
    unsafe {
        let _ = signal(Signal::SIGINT, SigHandler::SigIgn);
        let _ = signal(Signal::SIGQUIT, SigHandler::SigIgn);
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot run {program}"))?;
    let pid = child.id();
    let status = child.wait().context("waiting for the program")?;
    let code = match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        _ => 1,
    };
    Ok((pid, code))
}

/// Runs the leak check on the program's trace.
fn check_leaks(
    trace: Option<&Path>,
    args: &RunArgs,
    leaks_output: Option<&memtrace_safe_write::OutFile>,
) -> Result<u8> {
    let Some(trace) = trace else {
        bail!("the program wrote no trace");
    };
    let trace = written(trace)?;
    let code = match leaks_output {
        Some(file) => {
            let mut text = Vec::new();
            let code = crate::cmd::leaks::check_found_trace(trace, &args.check, &mut text)?;
            file.write(&text)?;
            code
        }
        None => {
            crate::cmd::leaks::check_found_trace(trace, &args.check, &mut std::io::stderr().lock())?
        }
    };
    if !args.quiet {
        eprintln!("memtrace: trace written to {}", trace.display());
    }
    Ok(code)
}

/// A token shared by every process of this run (the recorder writes it in
/// each trace's header), so that `memtrace report --family` joins this run's
/// traces and not another run's whose pids happen to match: a hash of the
/// pid and the time under a randomly keyed SipHash, never 0.
fn family_token() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.write_u128(now);
    h.finish().max(1)
}
