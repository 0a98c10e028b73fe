//! The leak check on programs nobody here wrote: `ls`, `sqlite3` and
//! `python3` free (nearly) everything or keep it reachable. Every block they
//! leave is classified, `ls` and `sqlite3` pass the default check, and no
//! block called lost is pointed to from anywhere but the stack's dead frames
//! (checked with `MEMTRACE_LEAK_SCAN_VERIFY`, which looks up every word of
//! every readable mapping, roots or not, among the lost blocks).

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{memtrace, report_json, scratch};
use serde_json::Value;

struct Checked {
    status: Option<i32>,
    leaks: Value,
    report: Value,
    verify: Vec<String>,
}

fn check(name: &str, program: &[&str], stdin: &str) -> Checked {
    let dir = scratch(name);
    let mut child = memtrace()
        .current_dir(&dir)
        .env("MEMTRACE_LEAK_SCAN_VERIFY", "1")
        .args([
            "run",
            "-q",
            "-o",
            "t.trace",
            "--check-leaks",
            "--format",
            "json",
            "--leaks-output",
            "leaks.json",
            "--",
        ])
        .args(program)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run memtrace");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let leaks: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("leaks.json")).expect("leak report written"),
    )
    .unwrap_or_else(|e| panic!("{name}: leak JSON: {e}; stderr: {stderr}"));
    Checked {
        status: out.status.code(),
        leaks,
        report: report_json(&dir.join("t.trace")),
        verify: stderr
            .lines()
            .filter(|l| l.starts_with("memtrace-verify: block"))
            .map(str::to_string)
            .collect(),
    }
}

fn pair(v: &Value) -> (u64, u64) {
    (v["bytes"].as_u64().unwrap(), v["blocks"].as_u64().unwrap())
}

/// Every block unfreed at exit has a class (or a suppression).
fn assert_all_classified(name: &str, c: &Checked) {
    let (mut bytes, mut blocks) = (0, 0);
    for part in ["totals", "suppressed"] {
        for class in ["definite", "indirect", "possible", "reachable"] {
            let (b, n) = pair(&c.leaks[part][class]);
            bytes += b;
            blocks += n;
        }
    }
    let totals = &c.report["totals"];
    assert_eq!(
        (bytes, blocks),
        (
            totals["unfreed_bytes"].as_u64().unwrap(),
            totals["unfreed_blocks"].as_u64().unwrap()
        ),
        "{name}: classified blocks vs unfreed blocks"
    );
}

/// A lost block is named nowhere but in dead stack frames below the stack
/// pointer (stale copies the conservative scan rightly ignores).
fn assert_lost_means_unreferenced(name: &str, c: &Checked) {
    for line in &c.verify {
        assert!(line.ends_with("[stack]"), "{name}: {line}");
    }
}

/// The default check passes: nothing definitely or indirectly lost.
fn assert_leaks_nothing(name: &str, c: &Checked) {
    assert_eq!(c.status, Some(0), "{}", c.leaks);
    assert_eq!(pair(&c.leaks["totals"]["definite"]), (0, 0));
    assert_eq!(pair(&c.leaks["totals"]["indirect"]), (0, 0));
    assert_all_classified(name, c);
    assert_lost_means_unreferenced(name, c);
}

#[test]
fn ls_leaks_nothing() {
    let c = check("leak-ls", &["ls", "-la", "/usr"], "");
    assert_leaks_nothing("ls", &c);
}

#[test]
fn sqlite3_leaks_nothing() {
    let script = "create table t(x integer, y text);\n\
                  insert into t values (1, 'one'), (2, 'two'), (3, 'three');\n\
                  select sum(x), group_concat(y) from t;\n";
    let c = check("leak-sqlite3", &["sqlite3", ":memory:"], script);
    assert_leaks_nothing("sqlite3", &c);
}

/// CPython keeps its objects in its own mmap'd arenas, which the scan reads
/// as program memory; what it still calls lost is truly unreferenced (a few
/// dict key tables left by interpreter finalization).
#[test]
fn python3_leaves_only_unreferenced_blocks_lost() {
    let c = check(
        "leak-python3",
        &["python3", "-c", "print(sum(range(10)))"],
        "",
    );
    assert_all_classified("python3", &c);
    assert_lost_means_unreferenced("python3", &c);
    // The arenas are scanned: the interpreter's own structures are found.
    assert!(
        pair(&c.leaks["totals"]["reachable"]).1 > 0,
        "python3: nothing reachable means the arenas were not scanned"
    );
}

#[test]
fn native_runs_of_the_same_programs_still_work() {
    // The scan's signal handler and maps reading must not change what the
    // program prints.
    let out = Command::new("ls").arg("/").output().unwrap();
    let dir = scratch("leak-ls-same");
    let traced = memtrace()
        .current_dir(&dir)
        .args([
            "run",
            "-q",
            "-o",
            "t.trace",
            "--check-leaks",
            "--leaks-output",
            "l.txt",
            "--",
            "ls",
            "/",
        ])
        .output()
        .unwrap();
    assert_eq!(traced.stdout, out.stdout);
}

/// Pages a program maps right next to the recorder's own mappings (the
/// kernel merges them into one region) are scanned: the block each one
/// alone points to is still reachable, in every run
/// (`fixtures/c/adjacent_roots.c`).
#[test]
fn memory_merged_with_the_recorders_own_mappings_is_scanned() {
    let source = "fixtures/c/adjacent_roots.c";
    let dir = scratch("leak-adjacent");
    let exe = common::compile("cc", source, &["-O2", "-g"], &dir);
    for run in 0..3 {
        let trace = format!("t{run}.trace");
        let out = common::record(&dir, &trace, &[exe.to_str().unwrap()]);
        assert!(out.status.success(), "{out:?}");
        let stdout = String::from_utf8(out.stdout).unwrap();
        let pages: u64 = stdout
            .trim()
            .strip_prefix("adjacent_roots pages ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("fixture output: {stdout}"));
        assert!(pages > 0, "no page could be placed");
        let json = memtrace()
            .current_dir(&dir)
            .args(["leaks", "--format", "json", &trace])
            .output()
            .unwrap();
        let leaks: Value = serde_json::from_slice(&json.stdout).expect("leak JSON");
        for class in ["definite", "indirect", "possible"] {
            assert_eq!(pair(&leaks["totals"][class]), (0, 0), "run {run}: {class}");
        }
        assert_eq!(
            pair(&leaks["totals"]["reachable"]),
            (48 * pages, pages),
            "run {run}"
        );
    }
}
