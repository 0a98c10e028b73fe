//! The leak check as CI uses it, end to end: the exit status of every
//! `--fail-on` choice and of `--error-exitcode`, `memtrace run
//! --check-leaks`, suppressions files (good and bad), and the JSON, SARIF
//! and GitHub outputs, the first two validated against their schemas
//! (`docs/memtrace-leaks-1.schema.json`, and SARIF's official schema vendored
//! in `tests/data/`).
//!
//! The numbers are those of `fixtures/c/leaks.c` (its header derives them):
//! definitely lost 312 B in 7 blocks, indirectly lost 136 B in 4, possibly
//! lost 64 B in 1, still reachable 300 B in 3; and of
//! `fixtures/c/leak_exit.c`: 100 B in 1 block definitely lost, or nothing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use common::{compile, memtrace, root, scratch, tag_line};
use serde_json::{json, Value};

const LEAKS_C: &str = "fixtures/c/leaks.c";

/// `fixtures/c/leaks.c` built and recorded once for the whole file.
struct Recorded {
    dir: PathBuf,
    trace: PathBuf,
}

fn leaks_trace() -> &'static Recorded {
    static ONCE: OnceLock<Recorded> = OnceLock::new();
    ONCE.get_or_init(|| {
        let dir = scratch("leak-ci");
        let program = compile("cc", LEAKS_C, &["-O0", "-g"], &dir);
        let out = memtrace()
            .current_dir(&dir)
            .args(["run", "-q", "-o", "leaks.trace", "--"])
            .arg(&program)
            .output()
            .expect("run memtrace");
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        Recorded {
            trace: dir.join("leaks.trace"),
            dir,
        }
    })
}

/// `fixtures/c/leak_exit.c`, built once.
fn leak_exit() -> &'static Path {
    static ONCE: OnceLock<PathBuf> = OnceLock::new();
    ONCE.get_or_init(|| {
        let dir = scratch("leak-exit");
        compile("cc", "fixtures/c/leak_exit.c", &["-O0", "-g"], &dir)
    })
}

/// A suppressions file with `text`, beside the recorded trace.
fn suppressions(name: &str, text: &str) -> PathBuf {
    let path = leaks_trace().dir.join(name);
    std::fs::write(&path, text).expect("write suppressions file");
    path
}

/// `memtrace leaks ARGS TRACE`, run at the repository root (so that source
/// paths are reported relative to it).
fn leaks(args: &[&str]) -> Output {
    memtrace()
        .current_dir(root())
        .arg("leaks")
        .args(args)
        .arg(&leaks_trace().trace)
        .output()
        .expect("run memtrace leaks")
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("memtrace exited normally")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("UTF-8 output")
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).expect("UTF-8 output")
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).expect("the output is JSON")
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// The totals object of the JSON report for the fixture's four classes.
fn totals(
    definite: [u64; 2],
    indirect: [u64; 2],
    possible: [u64; 2],
    reachable: [u64; 2],
) -> Value {
    let t = |[bytes, blocks]: [u64; 2]| json!({ "bytes": bytes, "blocks": blocks });
    json!({
        "definite": t(definite),
        "indirect": t(indirect),
        "possible": t(possible),
        "reachable": t(reachable),
    })
}

fn zero_totals() -> Value {
    totals([0, 0], [0, 0], [0, 0], [0, 0])
}

fn fixture_totals() -> Value {
    totals([312, 7], [136, 4], [64, 1], [300, 3])
}

#[test]
fn each_fail_on_choice_fails_exactly_when_its_classes_remain() {
    // The fixture's sites by class: drop_blocks, drop_tree and drop_cycle
    // make every definitely and indirectly lost block, keep_interior the
    // possibly lost one, keep_global the still reachable ones.
    let lost = suppressions(
        "lost.supp",
        "# the lost sites\nleak:drop_blocks\nleak:drop_tree\nleak:drop_cycle\n",
    );
    let interior = suppressions("interior.supp", "leak:keep_interior\n");
    let global = suppressions("global.supp", "leak:keep_global\n");
    let everything = suppressions(
        "everything.supp",
        "leak:drop_\nleak:keep_interior\nleak:keep_global\n",
    );
    let cases: &[(Option<&str>, Option<&Path>, i32)] = &[
        // Every class is present: every choice fails.
        (None, None, 1),
        (Some("definite"), None, 1),
        (Some("indirect"), None, 1),
        (Some("possible"), None, 1),
        (Some("reachable"), None, 1),
        (Some("all"), None, 1),
        // The lost sites suppressed: the default, definite and indirect
        // pass; possible and all still fail.
        (None, Some(&lost), 0),
        (Some("definite"), Some(&lost), 0),
        (Some("indirect"), Some(&lost), 0),
        (Some("possible"), Some(&lost), 1),
        (Some("all"), Some(&lost), 1),
        // The only possibly lost block suppressed: possible passes, a list
        // with another class present does not.
        (Some("possible"), Some(&interior), 0),
        (Some("possible,reachable"), Some(&interior), 1),
        // The still reachable blocks suppressed.
        (Some("reachable"), Some(&global), 0),
        // Everything suppressed: even `all` passes.
        (Some("all"), Some(&everything), 0),
    ];
    // Each case is its own process; run them side by side.
    std::thread::scope(|scope| {
        for &(fail_on, supp, expected) in cases {
            scope.spawn(move || {
                let mut args = vec!["--format", "json"];
                if let Some(classes) = fail_on {
                    args.extend(["--fail-on", classes]);
                }
                if let Some(s) = supp {
                    args.extend(["--suppressions", path_str(s)]);
                }
                let out = leaks(&args);
                assert_eq!(
                    code(&out),
                    expected,
                    "memtrace leaks {args:?}: {}",
                    stderr(&out)
                );
                assert_eq!(stderr(&out), "", "memtrace leaks {args:?}");
            });
        }
    });
}

#[test]
fn error_exitcode_replaces_1_and_only_when_the_check_fails() {
    let interior = suppressions("interior-2.supp", "leak:keep_interior\n");
    assert_eq!(code(&leaks(&["--error-exitcode", "7"])), 7);
    assert_eq!(
        code(&leaks(&[
            "--error-exitcode",
            "42",
            "--fail-on",
            "reachable"
        ])),
        42
    );
    let passing = [
        "--error-exitcode",
        "7",
        "--fail-on",
        "possible",
        "--suppressions",
        path_str(&interior),
    ];
    assert_eq!(code(&leaks(&passing)), 0);
}

#[test]
fn a_suppressions_file_silences_one_site_and_no_other() {
    let before = leaks(&["--format", "json"]);
    assert_eq!(code(&before), 1);
    let before = json_of(&before);
    assert_eq!(before["totals"], fixture_totals());
    assert_eq!(before["suppressed"], zero_totals());

    let supp = suppressions("drop_blocks.supp", "# one site\nleak:drop_blocks\n");
    let after = leaks(&["--format", "json", "--suppressions", path_str(&supp)]);
    // Other definitely lost blocks remain: still a failure.
    assert_eq!(code(&after), 1);
    let after = json_of(&after);
    assert_eq!(
        after["totals"],
        totals([312 - 240, 7 - 5], [136, 4], [64, 1], [300, 3])
    );
    assert_eq!(
        after["suppressed"],
        totals([240, 5], [0, 0], [0, 0], [0, 0])
    );

    // The record of drop_blocks is kept and marked; no other one is.
    let records = after["records"].as_array().expect("records");
    assert_eq!(records.len(), 9);
    let expected_by = format!("{}:2: leak:drop_blocks", supp.display());
    for r in records {
        let function = r["site"]["function"].as_str().expect("site function");
        if function == "drop_blocks" {
            assert_eq!(r["suppressed_by"], json!(expected_by));
            assert_eq!(
                (r["class"].as_str(), r["bytes"].as_u64()),
                (Some("definite"), Some(240))
            );
        } else {
            assert_eq!(r["suppressed_by"], Value::Null, "{function}");
        }
    }

    // The text report leaves it out and counts it as suppressed.
    let text = stdout(&leaks(&["--suppressions", path_str(&supp)]));
    let headlines: Vec<&str> = text.lines().filter(|l| l.contains(" are ")).collect();
    assert_eq!(
        headlines,
        [
            "128 (32 direct, 96 indirect) bytes in 1 block are definitely lost",
            "80 (40 direct, 40 indirect) bytes in 1 block are definitely lost",
            "64 bytes in 1 block are possibly lost",
            "40 bytes in 1 block are indirectly lost",
            "32 bytes in 1 block are indirectly lost",
            "32 bytes in 1 block are indirectly lost",
            "32 bytes in 1 block are indirectly lost",
        ]
    );
    let summary: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("LEAK SUMMARY"))
        .skip(1)
        .take(5)
        .map(str::trim)
        .collect();
    assert_eq!(
        summary,
        [
            "definitely lost: 72 bytes in 2 blocks",
            "indirectly lost: 136 bytes in 4 blocks",
            "possibly lost: 64 bytes in 1 block",
            "still reachable: 300 bytes in 3 blocks",
            "suppressed: 240 bytes in 5 blocks",
        ]
    );

    // SARIF and GitHub leave it out too.
    let sarif = json_of(&leaks(&[
        "--format",
        "sarif",
        "--suppressions",
        path_str(&supp),
    ]));
    let results = sarif["runs"][0]["results"].as_array().expect("results");
    assert_eq!(results.len(), 8);
    assert!(results
        .iter()
        .all(|r| r["locations"][0]["logicalLocations"][0]["fullyQualifiedName"] != "drop_blocks"));
    let github = stdout(&leaks(&[
        "--format",
        "github",
        "--suppressions",
        path_str(&supp),
    ]));
    assert_eq!(github.lines().count(), 8);
    assert!(!github.contains("drop_blocks"), "{github}");
}

#[test]
fn a_bad_suppressions_file_is_one_error_line_and_exit_2() {
    let cases = [
        (
            "race.supp",
            "leak:drop_blocks\nrace:worker\n",
            "2: unknown suppression type `race` (only `leak` exists)",
        ),
        (
            "nonsense.supp",
            "# comment\nnonsense\n",
            "2: expected `leak:PATTERN`, found `nonsense`",
        ),
        ("empty.supp", "leak:\n", "1: empty pattern"),
    ];
    for (name, text, message) in cases {
        let path = suppressions(name, text);
        let out = leaks(&["--suppressions", path_str(&path)]);
        assert_eq!(code(&out), 2, "{name}");
        assert_eq!(stdout(&out), "", "{name}");
        assert_eq!(
            stderr(&out),
            format!("memtrace: {}:{message}\n", path.display()),
            "{name}"
        );
    }

    let missing = leaks_trace().dir.join("missing.supp");
    let out = leaks(&["--suppressions", path_str(&missing)]);
    assert_eq!(code(&out), 2);
    assert_eq!(
        stderr(&out),
        format!(
            "memtrace: cannot read suppressions file {}: No such file or directory (os error 2)\n",
            missing.display()
        )
    );

    // `run --check-leaks` refuses it before running the program: no trace.
    let dir = scratch("leak-ci-bad-supp");
    let bad = dir.join("bad.supp");
    std::fs::write(&bad, "nonsense\n").expect("write");
    let out = memtrace()
        .current_dir(&dir)
        .args(["run", "-q", "--check-leaks", "--suppressions"])
        .arg(&bad)
        .args(["-o", "t.trace", "--"])
        .arg(leak_exit())
        .args(["leak", "0"])
        .output()
        .expect("run memtrace");
    assert_eq!(code(&out), 2);
    assert_eq!(
        stderr(&out),
        format!(
            "memtrace: {}:1: expected `leak:PATTERN`, found `nonsense`\n",
            bad.display()
        )
    );
    assert!(!dir.join("t.trace").exists(), "the program ran");
}

/// `memtrace run -q --check-leaks ARGS -o TRACE -- leak_exit PROGRAM_ARGS` in
/// a fresh directory.
fn run_checked(args: &[&str], program_args: &[&str]) -> Output {
    let dir = scratch("leak-ci-run");
    memtrace()
        .current_dir(&dir)
        .args(["run", "-q", "--check-leaks"])
        .args(args)
        .args(["-o", "t.trace", "--"])
        .arg(leak_exit())
        .args(program_args)
        .output()
        .expect("run memtrace")
}

#[test]
fn run_check_leaks_exits_1_on_leaks_and_keeps_the_programs_own_failure() {
    // (check options, leak_exit's arguments): each run is its own process,
    // so they run side by side.
    let runs: [(&[&str], &[&str]); 8] = [
        // Leaks, the program succeeds: the check fails.
        (&[], &["leak", "0"]),
        (&["--error-exitcode", "9"], &["leak", "0"]),
        // The program's own failure wins over the leak verdict.
        (&[], &["leak", "3"]),
        (&["--error-exitcode", "9"], &["leak", "3"]),
        // No leak of a --fail-on class.
        (&[], &["free", "0"]),
        (&["--fail-on", "possible,reachable"], &["leak", "0"]),
        // No scan (_exit): the program's failure wins; its success does not.
        (&[], &["leak", "5", "_exit"]),
        (&[], &["leak", "0", "_exit"]),
    ];
    let outs: Vec<Output> = std::thread::scope(|scope| {
        let handles: Vec<_> = runs
            .iter()
            .map(|&(args, program_args)| scope.spawn(move || run_checked(args, program_args)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("run"))
            .collect()
    });
    let codes: Vec<i32> = outs.iter().map(code).collect();
    assert_eq!(codes, [1, 9, 3, 3, 0, 0, 5, 2], "{outs:#?}");

    // The report goes to stderr.
    let out = &outs[0];
    assert_eq!(stdout(out), "");
    let report = stderr(out);
    let leak_exit_c = root().join("fixtures/c/leak_exit.c");
    let line = tag_line("fixtures/c/leak_exit.c", "@site drop_one");
    let mut lines = report.lines();
    assert_eq!(
        lines.next(),
        Some("100 bytes in 1 block are definitely lost")
    );
    assert_eq!(
        lines.next(),
        Some(format!("    at drop_one ({}:{line})", leak_exit_c.display()).as_str())
    );
    let summary: Vec<&str> = report
        .lines()
        .skip_while(|l| !l.starts_with("LEAK SUMMARY"))
        .skip(1)
        .take(2)
        .map(str::trim)
        .collect();
    assert_eq!(
        summary,
        [
            "definitely lost: 100 bytes in 1 block",
            "indirectly lost: 0 bytes in 0 blocks"
        ]
    );
    // Without a scan: one line saying why.
    let err = stderr(&outs[6]);
    assert!(
        err.starts_with("memtrace: no leak check: ")
            && err.contains("no leak scan")
            && err.lines().count() == 1,
        "{err}"
    );
    let err = stderr(&outs[7]);
    assert!(
        err.starts_with("memtrace: ") && err.contains("no leak scan") && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn run_check_leaks_writes_the_json_report_to_leaks_output() {
    let dir = scratch("leak-ci-run-json");
    let program = compile("cc", LEAKS_C, &["-O0", "-g"], &dir);
    let out = memtrace()
        .current_dir(&dir)
        .args(["run", "-q", "--check-leaks", "--format", "json"])
        .args(["--leaks-output", "leaks.json", "-o", "t.trace", "--"])
        .arg(&program)
        .output()
        .expect("run memtrace");
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    let report: Value =
        serde_json::from_slice(&std::fs::read(dir.join("leaks.json")).expect("read report"))
            .expect("JSON");
    assert_eq!(report["totals"], fixture_totals());
    validate(&leaks_schema(), &report);
}

/// A draft-07 validator for `schema`, formats checked, no remote fetching
/// (jsonschema is built without its HTTP and file resolvers).
fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::draft7::meta::validate(schema).expect("the schema is valid draft-07");
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft7)
        .should_validate_formats(true)
        .build(schema)
        .expect("compile the schema")
}

fn read_json(path: &str) -> Value {
    let text = std::fs::read_to_string(root().join(path)).expect("read schema");
    serde_json::from_str(&text).expect("schema is JSON")
}

fn leaks_schema() -> Value {
    read_json("docs/memtrace-leaks-1.schema.json")
}

fn sarif_schema() -> Value {
    read_json("tests/data/sarif-schema-2.1.0.json")
}

fn validate(schema: &Value, instance: &Value) {
    let v = validator(schema);
    let errors: Vec<String> = v
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn json_output_follows_its_documented_schema() {
    let schema = leaks_schema();
    let supp = suppressions("json.supp", "leak:keep_global\n");
    let plain = json_of(&leaks(&["--format", "json"]));
    let suppressed = json_of(&leaks(&[
        "--format",
        "json",
        "--suppressions",
        path_str(&supp),
    ]));
    let raw = json_of(&leaks(&["--format", "json", "--no-builtin-suppressions"]));
    for report in [&plain, &suppressed, &raw] {
        validate(&schema, report);
    }

    // The schema is not vacuous: the old tuple totals, an unknown class and
    // an undocumented field are each rejected.
    let v = validator(&schema);
    let mut tuples = plain.clone();
    tuples["totals"]["definite"] = json!([312, 7]);
    assert!(!v.is_valid(&tuples));
    let mut class = plain.clone();
    class["records"][0]["class"] = json!("leaked");
    assert!(!v.is_valid(&class));
    let mut extra = plain.clone();
    extra["records"][0]["colour"] = json!("red");
    assert!(!v.is_valid(&extra));

    // Exact content.
    assert_eq!(plain["schema"], "memtrace-leaks/1");
    assert_eq!(plain["totals"], fixture_totals());
    assert_eq!(
        suppressed["suppressed"],
        totals([0, 0], [0, 0], [0, 0], [300, 3])
    );
    let records = plain["records"].as_array().expect("records");
    let summary: Vec<(&str, u64, u64, u64, &str, u64)> = records
        .iter()
        .map(|r| {
            (
                r["class"].as_str().expect("class"),
                r["blocks"].as_u64().expect("blocks"),
                r["bytes"].as_u64().expect("bytes"),
                r["indirect_bytes"].as_u64().expect("indirect_bytes"),
                r["site"]["function"].as_str().expect("function"),
                r["site"]["line"].as_u64().expect("line"),
            )
        })
        .collect();
    let at = |tag: &str| tag_line(LEAKS_C, tag);
    assert_eq!(
        summary,
        [
            (
                "reachable",
                3,
                300,
                0,
                "keep_global",
                at("@site keep_global")
            ),
            (
                "definite",
                5,
                240,
                0,
                "drop_blocks",
                at("@site drop_blocks")
            ),
            ("definite", 1, 32, 96, "new_node", at("@site new_node")),
            (
                "definite",
                1,
                40,
                40,
                "drop_cycle",
                at("@site drop_cycle_a")
            ),
            (
                "possible",
                1,
                64,
                0,
                "keep_interior",
                at("@site keep_interior")
            ),
            ("indirect", 1, 40, 0, "drop_cycle", at("@site drop_cycle_b")),
            ("indirect", 1, 32, 0, "new_node", at("@site new_node")),
            ("indirect", 1, 32, 0, "new_node", at("@site new_node")),
            ("indirect", 1, 32, 0, "new_node", at("@site new_node")),
        ]
    );
    let cycles = plain["cycles"].as_array().expect("cycles");
    assert_eq!(cycles.len(), 1);
    assert_eq!(cycles[0]["bytes"], 80);
    let cycle_lines: Vec<u64> = cycles[0]["blocks"]
        .as_array()
        .expect("blocks")
        .iter()
        .map(|b| b["site"]["line"].as_u64().expect("line"))
        .collect();
    assert_eq!(
        cycle_lines,
        [at("@site drop_cycle_a"), at("@site drop_cycle_b")]
    );
}

#[test]
fn sarif_output_is_valid_sarif_2_1_0_with_each_leak_at_its_line() {
    let schema = sarif_schema();
    assert_eq!(
        schema["$id"],
        "https://raw.githubusercontent.com/oasis-tcs/sarif-spec/master/Schemata/sarif-schema-2.1.0.json"
    );
    let repo = root();
    let log = json_of(&leaks(&[
        "--format",
        "sarif",
        "--source-root",
        path_str(&repo),
    ]));
    let all = json_of(&leaks(&["--format", "sarif", "--fail-on", "all"]));
    for l in [&log, &all] {
        validate(&schema, l);
    }
    // Not vacuous: a level SARIF does not have is rejected.
    let mut bad = log.clone();
    bad["runs"][0]["results"][0]["level"] = json!("fatal");
    assert!(!validator(&schema).is_valid(&bad));

    assert_eq!(log["version"], "2.1.0");
    let run = &log["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "memtrace");
    let mut base = repo.display().to_string();
    base.push('/');
    assert_eq!(
        run["originalUriBaseIds"]["%SRCROOT%"]["uri"],
        json!(format!("file://{base}"))
    );
    let results = run["results"].as_array().expect("results");
    let levels: Vec<(&str, &str)> = results
        .iter()
        .map(|r| (r["ruleId"].as_str().unwrap(), r["level"].as_str().unwrap()))
        .collect();
    assert_eq!(
        levels,
        [
            ("memtrace/still-reachable", "note"),
            ("memtrace/definitely-lost", "error"),
            ("memtrace/definitely-lost", "error"),
            ("memtrace/definitely-lost", "error"),
            ("memtrace/possibly-lost", "note"),
            ("memtrace/indirectly-lost", "error"),
            ("memtrace/indirectly-lost", "error"),
            ("memtrace/indirectly-lost", "error"),
            ("memtrace/indirectly-lost", "error"),
        ]
    );
    let all_levels: Vec<&str> = all["runs"][0]["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["level"].as_str().unwrap())
        .collect();
    assert_eq!(all_levels, ["error"; 9]);

    // The drop_blocks result, in full where it matters.
    let line = tag_line(LEAKS_C, "@site drop_blocks");
    let r = &results[1];
    assert_eq!(
        r["message"]["text"],
        json!(format!(
            "240 bytes in 5 blocks are definitely lost (allocated in drop_blocks ({}:{line}))",
            repo.join(LEAKS_C).display()
        ))
    );
    assert_eq!(
        r["locations"][0]["physicalLocation"],
        json!({
            "artifactLocation": { "uri": LEAKS_C, "uriBaseId": "%SRCROOT%" },
            "region": { "startLine": line },
        })
    );
    assert_eq!(
        r["properties"],
        json!({ "class": "definite", "bytes": 240, "blocks": 5, "indirectBytes": 0 })
    );
    let rules = run["tool"]["driver"]["rules"].as_array().expect("rules");
    assert_eq!(
        rules[r["ruleIndex"].as_u64().unwrap() as usize]["id"],
        r["ruleId"]
    );
    // Its stack: drop_blocks, then main at the call.
    let frames = r["stacks"][0]["frames"].as_array().expect("frames");
    let frame_at = |f: &Value| {
        (
            f["location"]["logicalLocations"][0]["fullyQualifiedName"].clone(),
            f["location"]["physicalLocation"]["region"]["startLine"].clone(),
        )
    };
    assert_eq!(frame_at(&frames[0]), (json!("drop_blocks"), json!(line)));
    assert_eq!(
        frame_at(&frames[1]),
        (json!("main"), json!(tag_line(LEAKS_C, "drop_blocks();")))
    );
}

#[test]
fn github_annotations_point_at_the_allocation_line() {
    // Run at the repository root: paths are relative to the current directory.
    let out = leaks(&["--format", "github"]);
    assert_eq!(code(&out), 1);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 9);
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("::error ")).count(),
        7
    );
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("::notice ")).count(),
        2
    );

    let line = tag_line(LEAKS_C, "@site drop_blocks");
    let call = tag_line(LEAKS_C, "drop_blocks();");
    let source = root().join(LEAKS_C);
    let expected = format!(
        "::error file={LEAKS_C},line={line},title=memtrace%3A definitely lost::\
         240 bytes in 5 blocks are definitely lost\
         %0A  at drop_blocks ({src}:{line})\
         %0A  at main ({src}:{call})%0A",
        src = source.display()
    );
    assert_eq!(
        lines[1].get(..expected.len()),
        Some(expected.as_str()),
        "{text}"
    );
    let interior = tag_line(LEAKS_C, "@site keep_interior");
    let expected = format!(
        "::notice file={LEAKS_C},line={interior},title=memtrace%3A possibly lost::\
         64 bytes in 1 block are possibly lost%0A"
    );
    assert_eq!(
        lines[4].get(..expected.len()),
        Some(expected.as_str()),
        "{text}"
    );

    // Elsewhere, --source-root makes them relative to the root given.
    let out = memtrace()
        .current_dir(&leaks_trace().dir)
        .args(["leaks", "--format", "github", "--source-root"])
        .arg(root().join("fixtures"))
        .arg(&leaks_trace().trace)
        .output()
        .expect("run memtrace");
    let text = stdout(&out);
    let prefix = format!("::error file=c/leaks.c,line={line},");
    assert!(
        text.lines().nth(1).is_some_and(|l| l.starts_with(&prefix)),
        "{text}"
    );
}
