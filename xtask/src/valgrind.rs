//! Running a program under valgrind's memcheck and reading its log: the
//! HEAP SUMMARY (`in use at exit`, `total heap usage`) and the LEAK SUMMARY.
//!
//! memcheck counts every call that returns a new block as an alloc: malloc,
//! calloc, realloc (which memcheck always moves: one alloc and one free),
//! memalign and friends, `new`. It has no peak heap.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::util::{self, Paths};

/// Bytes and blocks, as memcheck prints them (`9,941 bytes in 30 blocks`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Amount {
    /// Bytes.
    pub bytes: u64,
    /// Blocks.
    pub blocks: u64,
}

/// What memcheck says about one run.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Memcheck {
    /// `total heap usage: N allocs`.
    pub allocs: u64,
    /// `total heap usage: ..., M frees`.
    pub frees: u64,
    /// `in use at exit`.
    pub in_use_at_exit: Amount,
    /// LEAK SUMMARY: definitely lost.
    pub definite: Amount,
    /// LEAK SUMMARY: indirectly lost.
    pub indirect: Amount,
    /// LEAK SUMMARY: possibly lost.
    pub possible: Amount,
    /// LEAK SUMMARY: still reachable.
    pub reachable: Amount,
    /// LEAK SUMMARY: suppressed (valgrind's default suppressions).
    pub suppressed: Amount,
}

/// Runs `valgrind --leak-check=full exe args` in the traces directory, its
/// log in `NAME.memcheck.log` there (children are not traced: memcheck's
/// default, as for heaptrack), and parses the log.
pub fn memcheck<S: AsRef<OsStr>>(
    paths: &Paths,
    valgrind: &Path,
    name: &str,
    exe: &Path,
    args: &[S],
) -> Result<Memcheck> {
    let log = paths.traces.join(format!("{name}.memcheck.log"));
    util::remove_file(&log)?;
    let mut cmd = Command::new(valgrind);
    cmd.arg("--leak-check=full")
        .arg(format!("--log-file={}", log.display()))
        .arg(exe)
        .args(args)
        .current_dir(&paths.traces);
    eprintln!("xtask: {}", util::show(&cmd));
    util::measure(&mut cmd)?.ok(&cmd)?;
    let text =
        std::fs::read_to_string(&log).with_context(|| format!("cannot read {}", log.display()))?;
    parse(&text).with_context(|| format!("in {}", log.display()))
}

/// Parses a memcheck log.
fn parse(log: &str) -> Result<Memcheck> {
    // Each line is `==PID== TEXT`; the numbers have thousands separators.
    let body = |l: &str| -> String {
        l.splitn(3, "==")
            .nth(2)
            .unwrap_or(l)
            .trim()
            .replace(',', "")
    };
    let lines: Vec<String> = log.lines().map(body).collect();
    let find = |prefix: &str| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(prefix).map(str::trim))
    };
    let numbers = |s: &str| -> Vec<u64> {
        s.split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect()
    };
    let amount = |prefix: &str| -> Result<Option<Amount>> {
        let Some(rest) = find(prefix) else {
            return Ok(None);
        };
        match numbers(rest)[..] {
            [bytes, blocks] => Ok(Some(Amount { bytes, blocks })),
            _ => bail!("cannot read {prefix:?} {rest:?}"),
        }
    };
    let usage = find("total heap usage:").context("no `total heap usage` line")?;
    let [allocs, frees, _bytes] = numbers(usage)[..] else {
        bail!("cannot read `total heap usage: {usage}`");
    };
    let in_use_at_exit = amount("in use at exit:")?.context("no `in use at exit` line")?;
    let mut m = Memcheck {
        allocs,
        frees,
        in_use_at_exit,
        ..Memcheck::default()
    };
    if lines.iter().any(|l| l.contains("no leaks are possible")) {
        return Ok(m); // no LEAK SUMMARY then
    }
    m.definite = amount("definitely lost:")?.context("no LEAK SUMMARY")?;
    m.indirect = amount("indirectly lost:")?.unwrap_or_default();
    m.possible = amount("possibly lost:")?.unwrap_or_default();
    m.reachable = amount("still reachable:")?.unwrap_or_default();
    m.suppressed = amount("suppressed:")?.unwrap_or_default();
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leak_summary() {
        let log = "==7== HEAP SUMMARY:\n\
                   ==7==     in use at exit: 1,117 bytes in 12 blocks\n\
                   ==7==   total heap usage: 2,304 allocs, 2,292 frees, 96,017 bytes allocated\n\
                   ==7== \n\
                   ==7== 17 bytes in 1 blocks are definitely lost in loss record 1 of 4\n\
                   ==7== LEAK SUMMARY:\n\
                   ==7==    definitely lost: 93 bytes in 4 blocks\n\
                   ==7==    indirectly lost: 0 bytes in 0 blocks\n\
                   ==7==      possibly lost: 0 bytes in 0 blocks\n\
                   ==7==    still reachable: 1,024 bytes in 8 blocks\n\
                   ==7==         suppressed: 0 bytes in 0 blocks\n";
        let m = parse(log).unwrap();
        assert_eq!((m.allocs, m.frees), (2304, 2292));
        assert_eq!(
            m.in_use_at_exit,
            Amount {
                bytes: 1117,
                blocks: 12
            }
        );
        assert_eq!(
            m.definite,
            Amount {
                bytes: 93,
                blocks: 4
            }
        );
        assert_eq!(
            m.reachable,
            Amount {
                bytes: 1024,
                blocks: 8
            }
        );
    }

    #[test]
    fn no_leaks_possible() {
        let log = "==9==     in use at exit: 0 bytes in 0 blocks\n\
                   ==9==   total heap usage: 41,294 allocs, 41,294 frees, 6,233,621 bytes allocated\n\
                   ==9== All heap blocks were freed -- no leaks are possible\n";
        let m = parse(log).unwrap();
        assert_eq!(m.allocs, 41294);
        assert_eq!(m.definite, Amount::default());
    }

    #[test]
    fn missing_summary_is_an_error() {
        assert!(parse("==1== nothing\n").is_err());
    }
}
