//! Runs a program under valgrind's cachegrind with the cache simulation on;
//! `memtrace_cache::cachegrind` parses what it writes.

use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

use memtrace_cache::cachegrind::{parse, SimError, Simulation};

/// Runs `program args` under cachegrind, writing its output to `out_file`,
/// and parses it. The program's stdout goes to `stdout`, its stderr is
/// passed through; valgrind's own messages go to `out_file` with the
/// extension `.log`, removed after a successful run.
pub fn simulate(
    program: &Path,
    args: &[&OsStr],
    out_file: &Path,
    stdout: Stdio,
) -> Result<(ExitStatus, Simulation), SimError> {
    let log = out_file.with_extension("log");
    let mut out_arg = OsString::from("--cachegrind-out-file=");
    out_arg.push(out_file);
    let mut log_arg = OsString::from("--log-file=");
    log_arg.push(&log);
    let status = Command::new("valgrind")
        .arg("--tool=cachegrind")
        .arg("--cache-sim=yes")
        .arg(&out_arg)
        .arg(&log_arg)
        .arg(program)
        .args(args)
        .stdout(stdout)
        .status()
        .map_err(SimError::NoValgrind)?;
    let text = std::fs::read_to_string(out_file).map_err(|e| {
        let log_text = std::fs::read_to_string(&log).unwrap_or_default();
        let last = log_text.lines().last().unwrap_or("").to_string();
        SimError::Failed(format!("no output file ({e}); {last}"))
    })?;
    let _ = std::fs::remove_file(&log);
    Ok((status, parse(&text)?))
}
