//! `memtrace leaks TRACE`: the leak check, for people and for CI.
//!
//! Exit codes: 0 when no leak of a `--fail-on` class remains (after
//! suppressions), `--error-exitcode` (default 1) when one does, 2 on an
//! error (unreadable trace, no scan in it, bad suppressions file), 3
//! ([`INCOMPLETE_EXIT`]) when the scan was incomplete, whatever it found:
//! its classes cannot be trusted either way.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use memtrace_analyze::leaks::{self, LeakReport, TextOptions};
use memtrace_format::{Extent, Named};
use memtrace_leaks::ci::{self, CiOptions};
use memtrace_leaks::{LeakClass, Suppressions};

use crate::cmd::extent::FollowArg;
use crate::cmd::list::Item;
use crate::progress::{self, QuietArg};

/// The exit status when the scan is incomplete.
pub const INCOMPLETE_EXIT: u8 = 3;

/// Output formats.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// Readable text, memcheck's wording.
    Text,
    /// JSON, schema `memtrace-leaks/1` (docs/leaks-json.md).
    Json,
    /// SARIF 2.1.0, for code-scanning tools.
    Sarif,
    /// GitHub Actions workflow commands (`::error file=...,line=...::`).
    Github,
}

/// A leak class on the command line, in a comma-separated list: memcheck's
/// words are accepted too (`definitely-lost`, `still-reachable`, ...).
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum ClassArg {
    /// Definitely lost: no pointer to the block remains.
    #[value(aliases = ["definitely", "definitely-lost"])]
    Definite,
    /// Indirectly lost: reachable only from lost blocks.
    #[value(aliases = ["indirectly", "indirectly-lost"])]
    Indirect,
    /// Possibly lost: only pointers into its interior remain.
    #[value(aliases = ["possibly", "possibly-lost"])]
    Possible,
    /// Still reachable from the roots at exit.
    #[value(alias = "still-reachable")]
    Reachable,
    /// The four classes.
    All,
    /// No class (also an empty list).
    None,
}

impl ClassArg {
    /// The classes a list names, in [`LeakClass::ALL`]'s order, each once.
    pub fn classes(list: &[ClassArg]) -> Vec<LeakClass> {
        LeakClass::ALL
            .into_iter()
            .filter(|&c| {
                list.iter().any(|&a| match a {
                    ClassArg::All => true,
                    ClassArg::None => false,
                    ClassArg::Definite => c == LeakClass::Definite,
                    ClassArg::Indirect => c == LeakClass::Indirect,
                    ClassArg::Possible => c == LeakClass::Possible,
                    ClassArg::Reachable => c == LeakClass::Reachable,
                })
            })
            .collect()
    }
}

/// What decides whether leaks fail the check; shared with `memtrace run --check-leaks`.
#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    /// Classes that fail the check, comma-separated.
    #[arg(
        long,
        value_name = "CLASSES",
        value_delimiter = ',',
        value_parser = Item::empty_is(ClassArg::None),
        default_value = "definite,indirect"
    )]
    pub fail_on: Vec<ClassArg>,
    /// Exit status when leaks of a --fail-on class remain (an incomplete
    /// scan exits 3 instead, errors 2).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub error_exitcode: u8,
    /// A suppressions file: `leak:PATTERN` lines (LeakSanitizer's format)
    /// matching a function, source file or module of the allocation stack.
    #[arg(long, value_name = "FILE")]
    pub suppressions: Vec<PathBuf>,
    /// Do not apply the built-in suppressions (one-time allocations of the C
    /// library and the dynamic loader; see `memtrace leaks --list-builtin`).
    #[arg(long)]
    pub no_builtin_suppressions: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Classes whose records the text form prints, comma-separated.
    #[arg(
        long,
        value_name = "CLASSES",
        value_delimiter = ',',
        value_parser = Item::empty_is(ClassArg::None),
        default_value = "definite,indirect,possible"
    )]
    pub show: Vec<ClassArg>,
    /// Frames printed per stack.
    #[arg(long, default_value_t = 12)]
    pub frames: usize,
    /// Make source paths in SARIF and GitHub output relative to this
    /// directory (default: the current directory).
    #[arg(long, value_name = "DIR")]
    pub source_root: Option<PathBuf>,
}

/// Arguments of `memtrace leaks`.
#[derive(Args, Debug)]
pub struct LeaksArgs {
    /// The trace file.
    #[arg(required_unless_present = "list_builtin")]
    pub trace: Option<PathBuf>,
    /// Print the built-in suppressions and exit.
    #[arg(long)]
    pub list_builtin: bool,
    /// How to check and report.
    #[command(flatten)]
    pub check: CheckArgs,
    /// How much of a trace still being written to read.
    #[command(flatten)]
    pub follow: FollowArg,
    /// Whether reading shows progress.
    #[command(flatten)]
    pub quiet: QuietArg,
}

/// The built-in suppressions (unless turned off) and those of every
/// `--suppressions` file; a file that cannot be read or parsed is an error.
pub fn load_suppressions(check: &CheckArgs) -> Result<Suppressions> {
    let mut s = if check.no_builtin_suppressions {
        Suppressions::default()
    } else {
        Suppressions::builtin()
    };
    for path in &check.suppressions {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read suppressions file {}", path.display()))?;
        s.add_file(&path.display().to_string(), &text)?;
    }
    Ok(s)
}

/// Runs `memtrace leaks`.
pub fn leaks(args: LeaksArgs) -> Result<ExitCode> {
    if args.list_builtin {
        for (pattern, reason) in memtrace_leaks::BUILTIN {
            println!("leak:{pattern}\t# {reason}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(trace) = &args.trace else {
        bail!("no trace given");
    };
    let extent = args.follow.extent();
    let code = check_trace_within(
        trace,
        extent,
        Named::ByUser,
        &args.check,
        &mut std::io::stdout().lock(),
    )?;
    Ok(ExitCode::from(code))
}

/// Checks the trace `memtrace run` found (as long as it is now), writes
/// the report to `out`, and returns the exit status the check asks for: 0,
/// `--error-exitcode` when leaks remain, or [`INCOMPLETE_EXIT`] when the
/// scan is incomplete.
pub fn check_found_trace(trace: &Path, check: &CheckArgs, out: &mut dyn Write) -> Result<u8> {
    check_trace_within(trace, Extent::AsOpened, Named::Found, check, out)
}

/// [`check_found_trace`], reading the trace within `extent`.
pub fn check_trace_within(
    trace: &Path,
    extent: Extent,
    named: Named,
    check: &CheckArgs,
    out: &mut dyn Write,
) -> Result<u8> {
    let fail_on = ClassArg::classes(&check.fail_on);
    let show = ClassArg::classes(&check.show);
    let suppressions = load_suppressions(check)?;
    let context = || format!("{}", trace.display());
    let reader = progress::open(trace, extent, named).with_context(context)?;
    let report = leaks::from_reader(reader, &suppressions).with_context(context)?;
    let root = match &check.source_root {
        Some(r) => r.clone(),
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    let incomplete = leaks::incomplete_reason(&report.scan);
    let ci_options = CiOptions {
        fail_on: &fail_on,
        root: &root,
        tool_version: env!("CARGO_PKG_VERSION"),
    };
    match check.format {
        Format::Text => {
            let mut mask = [false; 4];
            for (i, c) in LeakClass::ALL.iter().enumerate() {
                mask[i] = show.contains(c);
            }
            write!(
                out,
                "{}",
                leaks::render_text(
                    &report,
                    TextOptions {
                        frames: check.frames,
                        show: mask
                    }
                )
            )?;
        }
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?,
        Format::Sarif => {
            let log = ci::sarif(&report.findings(), incomplete.as_deref(), &ci_options);
            writeln!(out, "{}", serde_json::to_string_pretty(&log)?)?;
        }
        Format::Github => write!(
            out,
            "{}",
            ci::github(&report.findings(), incomplete.as_deref(), &ci_options)
        )?,
    }
    if let Some(why) = incomplete {
        // The text form has this line; the others carry it in their own way.
        if check.format != Format::Text {
            eprintln!("memtrace: leak scan incomplete: {why}");
        }
        return Ok(INCOMPLETE_EXIT);
    }
    Ok(if failing(&report, &fail_on) {
        check.error_exitcode
    } else {
        0
    })
}

/// True when a class of `fail_on` has unsuppressed blocks.
pub fn failing(report: &LeakReport, fail_on: &[LeakClass]) -> bool {
    fail_on.iter().any(|&c| report.totals.of(c).1 > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_of_a_class_is_the_one_the_leaks_crate_reads() {
        for arg in ClassArg::value_variants() {
            let value = arg.to_possible_value().expect("a name");
            for name in value.get_name_and_aliases() {
                let parsed: Vec<LeakClass> = LeakClass::parse(name).into_iter().collect();
                match arg {
                    ClassArg::All => assert_eq!(ClassArg::classes(&[*arg]), LeakClass::ALL),
                    ClassArg::None => assert!(ClassArg::classes(&[*arg]).is_empty()),
                    _ => assert_eq!(ClassArg::classes(&[*arg]), parsed, "{name}"),
                }
            }
        }
    }

    #[test]
    fn a_list_names_each_class_once_in_order() {
        use ClassArg::*;
        let classes = ClassArg::classes(&[Reachable, Definite, None, Reachable]);
        assert_eq!(classes, [LeakClass::Definite, LeakClass::Reachable]);
        assert_eq!(ClassArg::classes(&[All, None]), LeakClass::ALL);
    }
}
