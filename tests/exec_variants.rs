//! Every way a program replaces its image finishes its trace first (issue
//! #17): `execl`, `execlp`, `execle`, `execv`, `execve`, `execvp`,
//! `execvpe`, `fexecve`, `execveat` and `syscall(SYS_execve / SYS_execveat)`
//! each leave the image before the exec a complete trace with exactly its
//! calls, both when the exec is the first thing `main` does after one
//! malloc and after 100,000 malloc/free pairs; the new image (`/bin/sh`,
//! which prints its arguments and exits 7) is traced too, and the program's
//! stdout and exit status are those of an untraced run. `posix_spawn`
//! execs in a child and stays covered; a failed exec leaves the process
//! going on, its trace back under `-o`'s name; other system calls made
//! through `syscall(2)` behave as without memtrace.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{compile, memtrace, num, report_json, root, scratch, tag_line};
use serde_json::Value;

const SOURCE: &str = "fixtures/c/exec_variants.c";
/// What `/bin/sh -c 'echo "$@"; exit 7' sh a1 ... a9` prints.
const SH_OUTPUT: &str = "a1 a2 a3 a4 a5 a6 a7 a8 a9\n";
/// The exit status of that shell, which becomes the program's.
const SH_STATUS: i32 = 7;
/// The two sizes of the run before the exec: at once, and after this many
/// malloc/free pairs.
const PAIRS: [u64; 2] = [0, 100_000];

/// The fixture, compiled once for all the tests of this file.
fn fixture() -> &'static Path {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| {
        let dir = scratch("exec-variants-build");
        compile("cc", SOURCE, &["-O0", "-g"], &dir)
    })
}

/// The fixture's stdout and exit status without memtrace.
fn untraced(variant: &str, pairs: u64) -> (String, Option<i32>) {
    let out = std::process::Command::new(fixture())
        .args([variant, &pairs.to_string()])
        .output()
        .expect("run the fixture");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.code(),
    )
}

/// `memtrace run -q -o next.trace -- exec_variants VARIANT PAIRS` in a fresh
/// directory, checked to print and exit as untraced: the directory.
fn run_traced(variant: &str, pairs: u64) -> PathBuf {
    let dir = scratch(&format!("exec-{variant}-{pairs}"));
    let out = memtrace()
        .current_dir(&dir)
        .args(["run", "-q", "-o", "next.trace", "--"])
        .arg(fixture())
        .args([variant, &pairs.to_string()])
        .output()
        .expect("run memtrace");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        (stdout, out.status.code()),
        untraced(variant, pairs),
        "{variant} {pairs}: stdout and status differ from the untraced run; stderr: {stderr}"
    );
    dir
}

/// The trace files in `dir`, sorted by name.
fn traces(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list the scratch dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".trace"))
        .collect();
    names.sort();
    names
}

/// The report's site at `line` of the fixture.
fn site_at<'a>(report: &'a Value, tag: &str) -> &'a Value {
    let line = tag_line(SOURCE, tag);
    let sites: Vec<&Value> = report["sites"]
        .as_array()
        .expect("sites")
        .iter()
        .filter(|s| s["line"].as_u64() == Some(line))
        .collect();
    assert_eq!(sites.len(), 1, "one site at {tag} (line {line})");
    sites[0]
}

/// The image before the exec: complete, with exactly its 1 + PAIRS
/// allocations and PAIRS frees at the known lines.
fn check_before_exec(trace: &Path, pairs: u64) -> Value {
    let report = report_json(trace);
    let what = trace.display();
    assert_eq!(report["trace"]["status"], "complete", "{what}");
    let totals = &report["totals"];
    assert_eq!(num(totals, "events"), 1 + 2 * pairs, "{what}");
    assert_eq!(num(totals, "allocations"), 1 + pairs, "{what}");
    assert_eq!(num(totals, "frees"), pairs, "{what}");
    assert_eq!(num(totals, "bytes_allocated"), 4321 + 48 * pairs, "{what}");
    let first = site_at(&report, "@site first_block");
    assert_eq!(num(first, "allocations"), 1);
    assert_eq!(num(first, "bytes_allocated"), 4321);
    assert_eq!(num(first, "frees"), 0);
    if pairs > 0 {
        let pair = site_at(&report, "@site pair_block");
        assert_eq!(num(pair, "allocations"), pairs);
        assert_eq!(num(pair, "frees"), pairs);
    }
    report
}

/// The shell's own trace: complete, of `/bin/sh`, and at least one call.
fn check_shell(trace: &Path) -> Value {
    let report = report_json(trace);
    let what = trace.display();
    assert_eq!(report["trace"]["status"], "complete", "{what}");
    let sh = std::fs::canonicalize("/bin/sh").expect("/bin/sh");
    assert_eq!(report["program"]["exe"], sh.to_str().unwrap(), "{what}");
    assert!(num(&report["totals"], "events") > 0, "{what}");
    report
}

/// One exec variant at both sizes: the image before it (its default name,
/// since `-o` follows the process) and the shell after it (`next.trace`),
/// in the same process.
fn exec_finishes_the_trace(variant: &str) {
    for pairs in PAIRS {
        let dir = run_traced(variant, pairs);
        let names = traces(&dir);
        let before: Vec<&String> = names
            .iter()
            .filter(|n| n.starts_with("memtrace.exec_variants."))
            .collect();
        assert_eq!(names.len(), 2, "{variant} {pairs}: {names:?}");
        assert_eq!(before.len(), 1, "{variant} {pairs}: {names:?}");
        let image = check_before_exec(&dir.join(before[0]), pairs);
        let shell = check_shell(&dir.join("next.trace"));
        assert_eq!(
            num(&shell["program"], "pid"),
            num(&image["program"], "pid"),
            "{variant} {pairs}: the shell replaced the same process"
        );
    }
}

#[test]
fn execl_finishes_the_trace() {
    exec_finishes_the_trace("execl");
}

#[test]
fn execlp_finishes_the_trace() {
    exec_finishes_the_trace("execlp");
}

#[test]
fn execle_finishes_the_trace() {
    exec_finishes_the_trace("execle");
}

#[test]
fn execv_finishes_the_trace() {
    exec_finishes_the_trace("execv");
}

#[test]
fn execve_finishes_the_trace() {
    exec_finishes_the_trace("execve");
}

#[test]
fn execvp_finishes_the_trace() {
    exec_finishes_the_trace("execvp");
}

#[test]
fn execvpe_finishes_the_trace() {
    exec_finishes_the_trace("execvpe");
}

#[test]
fn fexecve_finishes_the_trace() {
    exec_finishes_the_trace("fexecve");
}

#[test]
fn execveat_finishes_the_trace() {
    exec_finishes_the_trace("execveat");
}

#[test]
fn syscall_execve_finishes_the_trace() {
    exec_finishes_the_trace("syscall-execve");
}

#[test]
fn syscall_execveat_finishes_the_trace() {
    exec_finishes_the_trace("syscall-execveat");
}

/// `posix_spawn` execs in a child: the parent keeps `-o`'s name and ends at
/// exit; the child (the shell) has its own trace.
#[test]
fn posix_spawn_traces_parent_and_child() {
    for pairs in PAIRS {
        let dir = run_traced("posix_spawn", pairs);
        let names = traces(&dir);
        assert_eq!(names.len(), 2, "{pairs}: {names:?}");
        let parent = check_before_exec(&dir.join("next.trace"), pairs);
        let child: Vec<&String> = names.iter().filter(|n| *n != "next.trace").collect();
        let child = check_shell(&dir.join(child[0]));
        assert_eq!(
            num(&child["program"], "ppid"),
            num(&parent["program"], "pid"),
            "{pairs}: the shell is the fixture's child"
        );
    }
}

/// An exec that fails returns its error to the program, which goes on; the
/// trace, finished before the attempt, is back under `-o`'s name.
#[test]
fn a_failed_exec_keeps_errno_and_the_trace_name() {
    for pairs in PAIRS {
        let dir = run_traced("missing", pairs);
        let (stdout, status) = untraced("missing", pairs);
        assert_eq!(stdout, "execl failed: No such file or directory\n");
        assert_eq!(status, Some(3));
        assert_eq!(traces(&dir), ["next.trace"], "{pairs}");
        check_before_exec(&dir.join("next.trace"), pairs);
    }
}

/// memtrace interposes `syscall(2)` to see exec through it: every other
/// system call made that way gives the program what glibc's would (the
/// result, `errno`, a sixth argument passed on the stack).
#[test]
fn other_system_calls_through_syscall_are_unchanged() {
    let expected = "close -1 EBADF\ngetpid same\nmmap page\nmmap offset 1 EINVAL\n";
    assert_eq!(untraced("syscalls", 0), (expected.to_string(), Some(0)));
    let dir = run_traced("syscalls", 0);
    assert_eq!(traces(&dir), ["next.trace"]);
    check_before_exec(&dir.join("next.trace"), 0);
}

/// The untraced fixture does what its comment says, so that comparing
/// with it means something.
#[test]
fn the_fixture_prints_the_shell_output() {
    assert!(root().join(SOURCE).exists());
    for variant in ["execl", "execle", "syscall-execveat", "posix_spawn"] {
        assert_eq!(
            untraced(variant, 3),
            (SH_OUTPUT.to_string(), Some(SH_STATUS)),
            "{variant}"
        );
    }
}
