//! The command line as a user meets it: lists of named values checked by
//! clap (one error line naming the valid ones, exit 2), exit codes and the
//! right JSON schemas in every `--help`, counts with the right plural, and
//! no progress bar where stderr is not a terminal.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use common::{compile, memtrace, record, scratch, tag_line};

const SITES_C: &str = "fixtures/c/sites.c";

/// `fixtures/c/sites.c` built and recorded once for the whole file: its
/// directory and `sites.trace` in it.
fn sites_trace() -> &'static (PathBuf, PathBuf) {
    static ONCE: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    ONCE.get_or_init(|| {
        let dir = scratch("cli-names");
        let program = compile("cc", SITES_C, &["-O0", "-g", "-pthread"], &dir);
        let out = record(&dir, "sites.trace", &[program.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let trace = dir.join("sites.trace");
        (dir, trace)
    })
}

fn run(dir: &Path, args: &[&str]) -> Output {
    memtrace()
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run memtrace")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("UTF-8 stdout")
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).expect("UTF-8 stderr")
}

/// `memtrace ARGS` fails with exactly `line` on stderr and exit 2.
fn fails_with_line(args: &[&str], line: &str) {
    let out = run(&sites_trace().0, args);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    assert_eq!(stderr(&out), format!("{line}\n"), "{args:?}");
    assert!(out.stdout.is_empty(), "{args:?}");
}

#[test]
fn a_bad_item_in_a_list_is_one_line_naming_the_valid_values() {
    fails_with_line(
        &["leaks", "--fail-on", "definite,bogus", "sites.trace"],
        "memtrace: invalid value 'bogus' for '--fail-on <CLASSES>' \
         [possible values: definite, indirect, possible, reachable, all, none]",
    );
    fails_with_line(
        &[
            "leaks",
            "--show",
            "possibly",
            "sites.trace",
            "--show",
            "nothing",
        ],
        "memtrace: invalid value 'nothing' for '--show <CLASSES>' \
         [possible values: definite, indirect, possible, reachable, all, none]",
    );
    fails_with_line(
        &["run", "--check-leaks", "--fail-on", "lost", "--", "true"],
        "memtrace: invalid value 'lost' for '--fail-on <CLASSES>' \
         [possible values: definite, indirect, possible, reachable, all, none]",
    );
    fails_with_line(
        &["frag", "--simulate", "first-fit,bogus", "sites.trace"],
        "memtrace: invalid value 'bogus' for '--simulate <POLICIES>' \
         [possible values: first-fit, next-fit, best-fit, worst-fit, buddy, slab, compact, \
         semispace, none]",
    );
    fails_with_line(
        &["plot", "--only", "heap,leak", "sites.trace"],
        "memtrace: invalid value 'leak' for '--only <CHARTS>' \
         [possible values: heap, sizes, latency, frag, policies, flame, leaks]; \
         tip: a similar value exists: 'leaks'",
    );
}

#[test]
fn either_a_trace_or_its_alternative_is_required_by_clap() {
    fails_with_line(
        &["frag"],
        "memtrace: the following required arguments were not provided: <TRACE|--system>; \
         usage: memtrace frag <TRACE|--system>",
    );
    fails_with_line(
        &["frag", "sites.trace", "--system"],
        "memtrace: the argument '[TRACE]' cannot be used with '--system'; \
         usage: memtrace frag <TRACE|--system>",
    );
    fails_with_line(
        &["frag", "--buddyinfo", "b", "sites.trace"],
        "memtrace: the argument '--buddyinfo <FILE>' cannot be used with '[TRACE]'; \
         usage: memtrace frag --buddyinfo <FILE> <TRACE|--system>",
    );
    fails_with_line(
        &["cache"],
        "memtrace: the following required arguments were not provided: \
         <COMMAND|--trace <TRACE>>; usage: memtrace cache <COMMAND|--trace <TRACE>>",
    );
    fails_with_line(
        &["swap"],
        "memtrace: the following required arguments were not provided: \
         <COMMAND|--pid <PID>>; usage: memtrace swap <COMMAND|--pid <PID>>",
    );
}

/// The text leak report of the sites fixture with `args` added.
fn leaks_text(args: &[&str]) -> (String, Option<i32>) {
    let mut all = vec!["leaks", "sites.trace"];
    all.extend(args);
    let out = run(&sites_trace().0, &all);
    assert_eq!(stderr(&out), "", "{all:?}");
    (stdout(&out), out.status.code())
}

#[test]
fn class_lists_take_all_none_aliases_spaces_and_empty_items() {
    let (every, code) = leaks_text(&["--show", "all", "--fail-on", "all"]);
    assert_eq!(code, Some(1));
    assert_eq!(
        leaks_text(&["--show", "definite,indirect,possible,reachable"]).0,
        every
    );
    // The sites fixture's classes: one definitely lost block, five still reachable.
    assert!(
        every.contains("1000 bytes in 1 block are definitely lost\n"),
        "{every}"
    );
    assert!(
        every.contains("20480 bytes in 5 blocks are still reachable\n"),
        "{every}"
    );
    let (lost, _) = leaks_text(&["--show", " definitely-lost,"]);
    assert!(lost.contains("are definitely lost"), "{lost}");
    assert!(!lost.contains("are still reachable"), "{lost}");
    let (summary, code) = leaks_text(&["--show", "none", "--fail-on", ""]);
    assert_eq!(code, Some(0));
    assert!(summary.starts_with("LEAK SUMMARY"), "{summary}");
    assert_eq!(leaks_text(&["--fail-on", "none"]).1, Some(0));
    assert_eq!(leaks_text(&["--fail-on", "reachable, possible"]).1, Some(1));
    assert_eq!(leaks_text(&["--fail-on", "possible"]).1, Some(0));
}

#[test]
fn counts_of_one_are_singular() {
    let (dir, _) = sites_trace();
    let line = tag_line(SITES_C, "@site leak_one");
    let at = format!(
        "leak_one ({}:{line})",
        common::root().join(SITES_C).display()
    );
    let report = stdout(&run(dir, &["report", "sites.trace"]));
    assert!(
        report.contains(&format!("\n  1000 B in 1 call at {at}\n")),
        "{report}"
    );
    assert!(
        report.contains(&format!("\n  1 call (1000 B) at {at}\n")),
        "{report}"
    );
    assert!(
        report.contains(&format!("\n  1000 B in 1 block at {at}\n")),
        "{report}"
    );
    assert!(
        report.contains("\n  200 calls (7.81 KiB) in 1 site at thread_worker ("),
        "{report}"
    );
    assert!(
        !report.contains(" 1 calls") && !report.contains(" 1 blocks"),
        "{report}"
    );
    let latency = stdout(&run(dir, &["latency", "sites.trace"]));
    let row = latency
        .lines()
        .find(|l| l.ends_with(&at))
        .unwrap_or_else(|| panic!("no leak_one row: {latency}"));
    // The noun is padded to its plural's width: the columns stay aligned.
    assert!(
        row.ends_with(&format!("          1 call         0 stalls  {at}")),
        "{row}"
    );
    let family = stdout(&run(dir, &["report", "--family", "sites.trace"]));
    assert!(
        family.starts_with("Process family (1 traced process):\n"),
        "{family}"
    );
    let leaks = leaks_text(&[]).0;
    assert!(
        leaks.contains("\n   definitely lost: 1000 bytes in 1 block\n"),
        "{leaks}"
    );
    assert!(leaks.ends_with(" of heap, 1 thread\n"), "{leaks}");
}

/// `memtrace ARGS --help`.
fn help(args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.push("--help");
    let out = run(Path::new("."), &all);
    assert_eq!(out.status.code(), Some(0), "{all:?}");
    stdout(&out)
}

#[test]
fn every_help_names_the_exit_codes_and_only_its_own_schemas() {
    let (dir, _) = sites_trace();
    let schema = |args: &[&str]| {
        let out = run(dir, args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        json["schema"].as_str().expect("a schema").to_string()
    };
    let cases: [(&str, Vec<String>); 6] = [
        (
            "report",
            vec![
                schema(&["report", "--format", "json", "sites.trace"]),
                schema(&["report", "--family", "--format", "json", "sites.trace"]),
            ],
        ),
        (
            "latency",
            vec![schema(&["latency", "--format", "json", "sites.trace"])],
        ),
        (
            "frag",
            vec![
                schema(&["frag", "--format", "json", "sites.trace"]),
                schema(&["frag", "--system", "--format", "json"]),
            ],
        ),
        (
            "leaks",
            vec![schema(&[
                "leaks",
                "--format",
                "json",
                "--fail-on",
                "none",
                "sites.trace",
            ])],
        ),
        (
            "cache",
            vec![schema(&[
                "cache",
                "--format",
                "json",
                "--trace",
                "sites.trace",
            ])],
        ),
        ("swap", vec!["memtrace-swap/1".to_string()]),
    ];
    for (command, schemas) in &cases {
        let text = help(&[command]);
        for s in schemas {
            assert!(
                text.contains(s.as_str()),
                "memtrace {command} --help lacks {s}"
            );
        }
        let named: Vec<&str> = text
            .split(|c: char| !(c.is_alphanumeric() || c == '-' || c == '/'))
            .filter(|w| w.starts_with("memtrace-") && w.contains('/'))
            .collect();
        for n in named {
            assert!(
                schemas.iter().any(|s| s == n),
                "memtrace {command} --help names {n}, not one of {schemas:?}"
            );
        }
    }
    for command in [
        "run",
        "report",
        "frag",
        "flamegraph",
        "latency",
        "leaks",
        "plot",
        "swap",
        "cache",
    ] {
        let text = help(&[command]);
        assert!(
            text.contains("\nExit status: "),
            "memtrace {command} --help has no exit codes"
        );
        assert!(text.contains(" 2 "), "memtrace {command} --help: no exit 2");
    }
    assert!(help(&["leaks"]).contains("3 when the scan was incomplete"));
    assert!(help(&["swap"]).contains("Usage: memtrace swap [OPTIONS] <COMMAND|--pid <PID>>"));
    assert!(help(&["plot"]).contains("- leaks:"));
}

/// Every command that decodes a trace, on the sites fixture.
const DECODING: [&[&str]; 8] = [
    &["report", "sites.trace"],
    &["report", "--follow=1", "sites.trace"],
    &["latency", "sites.trace"],
    &["frag", "sites.trace"],
    &["leaks", "sites.trace"],
    &["flamegraph", "sites.trace"],
    &["cache", "--trace", "sites.trace"],
    &["plot", "sites.trace", "-o", "charts"],
];

#[test]
fn no_progress_is_shown_when_stderr_is_not_a_terminal() {
    let (dir, _) = sites_trace();
    for args in DECODING {
        let plain = run(dir, args);
        // With the bar due at the first read, stderr is still not a
        // terminal: not one byte more.
        let due = memtrace()
            .current_dir(dir)
            .args(args)
            .env("MEMTRACE_PROGRESS_AFTER_MS", "0")
            .output()
            .unwrap();
        assert_eq!(stderr(&due), stderr(&plain), "{args:?}");
        assert_eq!(stdout(&due), stdout(&plain), "{args:?}");
        assert_eq!(due.status.code(), plain.status.code(), "{args:?}");
        assert_eq!(stderr(&due), "", "{args:?}");
    }
}

/// `memtrace ARGS` on a terminal (a pseudo-terminal of `script`), stdout
/// discarded, the bar due at the first read: what the terminal showed.
fn on_a_terminal(args: &str) -> Option<String> {
    let (dir, _) = sites_trace();
    let memtrace = env!("CARGO_BIN_EXE_memtrace");
    let out = std::process::Command::new("script")
        .args([
            "-qec",
            &format!("{memtrace} {args} >/dev/null"),
            "/dev/null",
        ])
        .current_dir(dir)
        .env("MEMTRACE_PROGRESS_AFTER_MS", "0")
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn on_a_terminal_the_bar_shows_the_bytes_read_unless_quiet() {
    let Some(shown) = on_a_terminal("report sites.trace") else {
        common::skip(
            "on_a_terminal_the_bar_shows_the_bytes_read_unless_quiet",
            "no `script` (util-linux) to make a terminal",
        );
        return;
    };
    let size = std::fs::metadata(&sites_trace().1).unwrap().len();
    let total = format!("{:.2} KiB", size as f64 / 1024.0);
    assert!(
        shown.starts_with("reading sites.trace ") && shown.contains(&format!("{total}/{total}")),
        "{shown:?}"
    );
    assert_eq!(on_a_terminal("report -q sites.trace").unwrap(), "");
    assert_eq!(
        on_a_terminal("leaks -q --fail-on none sites.trace").unwrap(),
        ""
    );
}
