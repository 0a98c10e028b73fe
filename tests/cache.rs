//! `memtrace cache` end to end, on the locality fixture (`fixtures/c/locality.c`).
//!
//! Numbers were measured on the development VM (no PMU, valgrind 3.19,
//! gcc -O1); each assertion says what it expects and why.

mod common;

use std::path::{Path, PathBuf};

use common::{compile, memtrace_json, scratch, tag_line};
use serde_json::Value;

const FIXTURE: &str = "fixtures/c/locality.c";

fn build(dir: &Path) -> PathBuf {
    compile("gcc", FIXTURE, &["-O1", "-g"], dir)
}

/// `memtrace cache --format json ARGS -- locality MODE N` in `dir`.
fn cache_json(dir: &Path, options: &[&str], program: &Path, mode: &str, n: u64) -> Value {
    let program = program.to_str().expect("UTF-8 path");
    let n = n.to_string();
    let mut args = vec!["cache", "--format", "json"];
    args.extend_from_slice(options);
    args.extend_from_slice(&["--", program, mode, &n]);
    memtrace_json(dir, &args)
}

fn event<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["counters"]["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no event {name} in {report}"))
}

/// The value of a measured event, or `None` with its reason checked.
fn measured(report: &Value, name: &str) -> Option<u64> {
    let e = event(report, name);
    match e["status"].as_str() {
        Some("measured") => Some(e["value"].as_u64().expect("value")),
        Some("unsupported") | Some("not_counted") => {
            assert!(
                e.get("value").is_none(),
                "an unmeasured event has no value: {e}"
            );
            assert!(!e["reason"].as_str().expect("reason").is_empty());
            None
        }
        other => panic!("bad status {other:?} in {e}"),
    }
}

/// The value of a phase's perf counter `name`, or `None` with its reason
/// checked.
fn phase_perf(phase: &Value, name: &str) -> Option<u64> {
    let e = phase["perf"]
        .as_array()
        .expect("perf")
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no perf event {name} in {phase}"));
    match e["status"].as_str() {
        Some("measured") => Some(e["value"].as_u64().expect("value")),
        Some("unsupported") | Some("not_counted") => {
            assert!(e.get("value").is_none(), "{e}");
            assert!(!e["reason"].as_str().expect("reason").is_empty());
            None
        }
        other => panic!("bad status {other:?} in {e}"),
    }
}

/// The minor faults of `locality pages N`, counted by `memtrace cache`.
fn page_faults(dir: &Path, program: &Path, n: u64) -> (Value, u64) {
    let report = cache_json(dir, &["--no-simulate"], program, "pages", n);
    let faults = measured(&report, "minor-faults").expect("minor faults are a software event");
    (report, faults)
}

#[test]
fn unsupported_counters_are_explained_and_page_faults_are_counted() {
    let dir = scratch("cache-pages");
    let program = build(&dir);
    let (report, big) = page_faults(&dir, &program, 10_000);
    let (_, small) = page_faults(&dir, &program, 100);
    // Touching one byte of each of N fresh anonymous pages faults exactly once
    // per page; the rest (exec, the loader, libc: 50-60 faults here) is the
    // same in both runs. So the difference is 9900 up to a few pages of noise,
    // and each run is N plus a start-up cost under 200.
    assert!(
        (9_895..=9_905).contains(&(big - small)),
        "{big} - {small} faults"
    );
    assert!(
        (10_000..10_200).contains(&big),
        "{big} faults for 10000 pages"
    );
    assert!((100..300).contains(&small), "{small} faults for 100 pages");
    assert_eq!(measured(&report, "major-faults"), Some(0));
    assert!(measured(&report, "task-clock-ns").expect("task clock") > 0);
    assert!(measured(&report, "context-switches").is_some());
    // Every hardware event is either measured or says why not, and without a
    // PMU the reason names it.
    for e in report["counters"]["events"].as_array().unwrap() {
        if e["source"] == "hardware" && e["status"] == "unsupported" {
            let reason = e["reason"].as_str().unwrap();
            assert!(
                reason.starts_with("ENOENT")
                    || reason.starts_with("EOPNOTSUPP")
                    || reason.starts_with("EACCES")
                    || reason.starts_with("ENODEV"),
                "{reason}"
            );
            if reason.starts_with("ENOENT") || reason.starts_with("EOPNOTSUPP") {
                assert!(reason.contains("no PMU"), "{reason}");
            }
        }
    }
    assert!(report["counters"]["perf_event_paranoid"].is_i64());
}

#[test]
fn text_output_lists_unsupported_counters_with_reasons() {
    let dir = scratch("cache-text");
    let program = build(&dir);
    let out = common::memtrace()
        .current_dir(&dir)
        .args(["cache", "--no-simulate", "--"])
        .arg(&program)
        .args(["pages", "1000"])
        .output()
        .expect("run memtrace");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    // The program's own output (the sum: 1000 pages of 1) comes first.
    assert_eq!(text.lines().next(), Some("1000"));
    let line = |name: &str| {
        text.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("no {name} line in\n{text}"))
            .to_string()
    };
    let faults: u64 = line("minor-faults")
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert!((1_000..1_200).contains(&faults), "{faults}");
    let cycles = line("cycles");
    let fields: Vec<&str> = cycles.split_whitespace().collect();
    assert_eq!(fields[0], "hw");
    // Either a number, or "unsupported" and the reason: never a bare zero.
    if fields[2] == "unsupported" {
        assert!(fields.len() > 3, "{cycles}");
    } else {
        assert!(fields[2].parse::<u64>().unwrap() > 0, "{cycles}");
    }
}

fn scatter_site<'a>(report: &'a Value, tag: &str) -> &'a Value {
    let line = tag_line(FIXTURE, tag);
    let suffix = format!("locality.c:{line})");
    let sites: Vec<&Value> = report["scatter"]
        .as_array()
        .expect("scatter")
        .iter()
        .filter(|s| s["site"].as_str().unwrap().ends_with(&suffix))
        .collect();
    assert_eq!(
        sites.len(),
        1,
        "one site at {suffix} in {}",
        report["scatter"]
    );
    sites[0]
}

#[test]
fn fallbacks_rank_the_linked_list_far_worse_than_the_array() {
    let dir = scratch("cache-fallbacks");
    let program = build(&dir);
    const N: u64 = 20_000;
    let list = cache_json(
        &dir,
        &["--simulate", "--record", "list.trace", "--svg", "list.svg"],
        &program,
        "list",
        N,
    );
    let array = cache_json(
        &dir,
        &["--simulate", "--record", "array.trace"],
        &program,
        "array",
        N,
    );
    let sim = |r: &Value, key: &str| r["simulated"]["total"][key].as_u64().expect(key);
    assert_eq!(list["simulated"]["source"], "simulated (cachegrind)");
    // Measured: D1 361,972 vs 14,286 (25x); LL 42,666 vs 3,878 (11x). The
    // list walks N nodes 272 bytes apart in shuffled order, 4 times, each a
    // new line; the array walks N/8 lines 4 times. Asserted with a margin
    // of about 2.
    let (d1_list, d1_array) = (sim(&list, "d1_misses"), sim(&array, "d1_misses"));
    let (ll_list, ll_array) = (sim(&list, "ll_misses"), sim(&array, "ll_misses"));
    assert!(d1_list > 12 * d1_array, "D1 {d1_list} vs {d1_array}");
    assert!(ll_list > 5 * ll_array, "LL {ll_list} vs {ll_array}");
    // The traversal functions themselves: every list step misses D1 in the
    // model (4 passes x N nodes), the array's N/8 lines per pass at most.
    let function = |r: &Value, name: &str| -> u64 {
        r["simulated"]["functions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["function"] == name)
            .unwrap_or_else(|| panic!("no {name}"))["d1_misses"]
            .as_u64()
            .unwrap()
    };
    assert!(function(&list, "traverse_list") >= 4 * N * 9 / 10);
    assert!(function(&array, "traverse_array") <= 4 * N / 8 + 64);
    // The chart is labelled as simulated and has the traversal's bars, the
    // program's own functions left of glibc's.
    let svg = std::fs::read_to_string(dir.join("list.svg")).expect("the chart");
    assert_eq!(svg.matches("Source: simulated (cachegrind)").count(), 1);
    let at = |label: &str| {
        let found: Vec<_> = svg.match_indices(&format!("\n{label}\n")).collect();
        assert_eq!(found.len(), 1, "{label}");
        found[0].0
    };
    assert!(at("traverse_list") < at("_int_malloc"));
    assert!(at("linked_list") < at("_int_malloc"));

    // Scatter: each 16-byte node sits alone in its 64-byte line (a 224-byte
    // label between nodes), so N nodes touch N lines where N/4 would do:
    // ratio 4, and consecutive nodes are 16 + 8 + 8 (node chunk) + 240 (label
    // chunk) = 272 bytes apart. The array is one block: packed.
    let node = scatter_site(&list, "@site list_node");
    assert_eq!(node["peak_blocks"], N);
    assert_eq!(node["peak_bytes"], 16 * N);
    assert_eq!(node["lines"], N);
    assert_eq!(node["min_lines"], N / 4);
    assert_eq!(node["mean_distance"], 272.0);
    assert_eq!(node["scattered"], true);
    let values = scatter_site(&array, "@site array_values");
    assert_eq!(values["peak_blocks"], 1);
    assert_eq!(values["min_lines"], 8 * N / 64);
    assert!(values["lines"].as_u64().unwrap() <= 8 * N / 64 + 1);
    assert_eq!(values["scattered"], false);
}

#[test]
fn phases_are_counted_end_to_end() {
    let dir = scratch("cache-phases");
    let program = build(&dir);
    let report = cache_json(
        &dir,
        &["--no-simulate", "--record", "pages.trace"],
        &program,
        "pages",
        10_000,
    );
    let phases = report["phases"].as_array().expect("phases");
    assert_eq!(phases.len(), 1);
    assert_eq!(phases[0]["name"], "pages");
    // The phase holds the mmap, the 10000 writes and the munmap: 10000
    // faults of the program's own. The recorder's perf counters count the
    // marking thread only: exactly 10,000 in every run measured. getrusage
    // counts the whole process, its writer thread too: 10,026 to 10,028.
    let perf_faults = phase_perf(&phases[0], "minor-faults").expect("a software event");
    assert!((10_000..10_005).contains(&perf_faults), "{perf_faults}");
    let faults = phases[0]["counters"]["minor-faults"].as_u64().unwrap();
    assert!((10_000..10_100).contains(&faults), "{faults}");
    assert!(phases[0]["counters"]["major-faults"].is_u64());
    // Every counter the recorder was asked for is in the phase, measured or
    // with the reason it is not.
    let names: Vec<&str> = phases[0]["perf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    let whole_run: Vec<&str> = report["counters"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, whole_run);
    for name in names {
        let whole = measured(&report, name).is_some();
        assert_eq!(phase_perf(&phases[0], name).is_some(), whole, "{name}");
    }

    let report = cache_json(
        &dir,
        &["--no-simulate", "--record", "all.trace"],
        &program,
        "all",
        2_000,
    );
    let names: Vec<&str> = report["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["list", "array", "aos", "soa", "scattered", "bulk"]);
    for p in report["phases"].as_array().unwrap() {
        for counter in [
            "minor-faults",
            "major-faults",
            "voluntary-switches",
            "involuntary-switches",
        ] {
            assert!(p["counters"][counter].is_u64(), "{counter} in {p}");
        }
    }
    // The same trace read back on its own gives the same phases.
    let again = memtrace_json(&dir, &["cache", "--format", "json", "--trace", "all.trace"]);
    assert_eq!(again["phases"], report["phases"]);
    assert!(again["counters"].is_null());
}

/// A program that never ends its last phase: the recorder ends it at exit,
/// so every counter is read at the phase's end, none left unread.
#[test]
fn the_last_phase_is_closed_at_exit() {
    let dir = scratch("cache-open-phase");
    let program = build(&dir);
    let program = program.to_str().expect("UTF-8 path");
    let args = [
        "cache",
        "--format",
        "json",
        "--no-simulate",
        "--record",
        "open.trace",
        "--",
        program,
        "pages",
        "10000",
        "open",
    ];
    let report = memtrace_json(&dir, &args);
    let phases = report["phases"].as_array().expect("phases");
    assert_eq!(phases.len(), 1, "{phases:?}");
    assert_eq!(phases[0]["name"], "pages");
    // The phase now also holds the printf and the exit up to the recorder's
    // atexit handler: the 10,000 faults of the pages and a few of its own.
    let perf_faults = phase_perf(&phases[0], "minor-faults").expect("a software event");
    assert!((10_000..10_050).contains(&perf_faults), "{perf_faults}");
    // Every getrusage counter is read at the end too, not only the faults
    // of the last resource sample.
    for counter in [
        "minor-faults",
        "major-faults",
        "voluntary-switches",
        "involuntary-switches",
    ] {
        assert!(
            phases[0]["counters"][counter].is_u64(),
            "{counter} in {}",
            phases[0]
        );
    }
    // Every perf counter is measured or refused at opening (no PMU here),
    // never "not read at the phase's end".
    for e in phases[0]["perf"].as_array().unwrap() {
        let reason = e["reason"].as_str().unwrap_or("");
        assert!(!reason.contains("phase's end"), "{e}");
    }
}

#[test]
fn hardware_counters_where_a_pmu_exists() {
    let dir = scratch("cache-hw");
    let program = build(&dir);
    const N: u64 = 200_000;
    let report = cache_json(&dir, &["--no-simulate"], &program, "array", N);
    let (cycles, instructions) = (
        measured(&report, "cycles"),
        measured(&report, "instructions"),
    );
    let (Some(cycles), Some(instructions)) = (cycles, instructions) else {
        // No PMU (a VM): the other branch, checked by `measured`: each
        // counter is reported unavailable with its reason, never as 0.
        eprintln!(
            "no hardware counters here; checked that they are reported unavailable: \
             cycles: {}; instructions: {}",
            event(&report, "cycles")["reason"],
            event(&report, "instructions")["reason"]
        );
        return;
    };
    // Filling N values and summing them 4 times takes at least 2N
    // instructions even vectorised (N/2 per pass), and the whole program
    // stays under 100 instructions per value.
    assert!((2 * N..100 * N).contains(&instructions), "{instructions}");
    let ipc = instructions as f64 / cycles as f64;
    assert!((0.05..8.0).contains(&ipc), "IPC {ipc}");
    let derived = report["counters"]["derived"].as_array().unwrap();
    assert!(derived.iter().any(|d| d["name"] == "IPC"));
    println!("hardware: {cycles} cycles, {instructions} instructions, IPC {ipc:.2}");
}

#[test]
fn hardware_counters_per_phase_where_a_pmu_exists() {
    let dir = scratch("cache-hw-phases");
    let program = build(&dir);
    const N: u64 = 200_000;
    let report = cache_json(
        &dir,
        &["--no-simulate", "--record", "hw.trace"],
        &program,
        "all",
        N,
    );
    let phases = report["phases"].as_array().expect("phases");
    let phase = |name: &str| {
        phases
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no phase {name}"))
    };
    let (list, array) = (phase("list"), phase("array"));
    const MISSES: &str = "L1-dcache-load-misses";
    let (Some(list_misses), Some(array_misses)) =
        (phase_perf(list, MISSES), phase_perf(array, MISSES))
    else {
        let why = list["perf"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == MISSES)
            .map(|e| e["reason"].clone());
        // No PMU: `phase_perf` checked that every phase reports the
        // counter unavailable with its reason.
        eprintln!(
            "no hardware counters here; checked that each phase reports them unavailable: \
             {MISSES}: {why:?}"
        );
        return;
    };
    // The list phase visits N nodes 256 bytes apart in random order, 4
    // times: every visit misses L1 (48 KiB at most on x86 today), so at
    // least 2N misses even if half were caught by prefetching. The array
    // phase reads N u64 in order 4 times: at most one miss per 8 values.
    assert!(list_misses >= 2 * N, "list: {list_misses}");
    assert!(
        list_misses >= 3 * array_misses,
        "list {list_misses} vs array {array_misses}"
    );
    // Each phase's instructions are part of the whole run's.
    let total: u64 = phases
        .iter()
        .filter_map(|p| phase_perf(p, "instructions"))
        .sum();
    if let Some(whole) = measured(&report, "instructions") {
        // Both are scaled estimates when multiplexed: allow 10%.
        assert!(total <= whole + whole / 10, "phases {total} vs run {whole}");
    }
    println!(
        "hardware per phase: {MISSES} list {list_misses}, array {array_misses} ({:.1}x)",
        list_misses as f64 / array_misses.max(1) as f64
    );
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let dir = scratch("cache-errors");
    for args in [
        vec!["cache"],
        vec!["cache", "--trace", "missing.trace"],
        vec!["cache", "--trace", "missing.trace", "--", "true"],
        vec!["cache", "--", "/no/such/program"],
    ] {
        let out = common::memtrace()
            .current_dir(&dir)
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("memtrace: "), "{err}");
    }
}

#[test]
fn fallbacks_rank_the_other_layouts() {
    let dir = scratch("cache-layouts");
    let program = build(&dir);
    const N: u64 = 2_000;
    // Scattered 16-byte values, one per line (a 224-byte filler between
    // them), against the same values in one block: as for the linked list.
    let scattered = cache_json(
        &dir,
        &["--no-simulate", "--record", "scattered.trace"],
        &program,
        "scattered",
        N,
    );
    let value = scatter_site(&scattered, "@site scattered_value");
    assert_eq!(
        (value["lines"].as_u64(), value["min_lines"].as_u64()),
        (Some(N), Some(N / 4))
    );
    assert_eq!(value["mean_distance"], 272.0);
    assert_eq!(value["scattered"], true);
    let bulk = cache_json(
        &dir,
        &["--no-simulate", "--record", "bulk.trace"],
        &program,
        "bulk",
        N,
    );
    let values = scatter_site(&bulk, "@site bulk_values");
    assert_eq!(values["peak_blocks"], 1);
    assert!(values["lines"].as_u64().unwrap() <= 8 * N / 64 + 1);
    assert_eq!(values["scattered"], false);

    // Array of structs reads one 64-byte line per value, struct of arrays
    // one per 8 values. Measured at N = 20000: D1 41,776 vs 6,778 (6x).
    let aos = cache_json(&dir, &["--simulate"], &program, "aos", 20_000);
    let soa = cache_json(&dir, &["--simulate"], &program, "soa", 20_000);
    let d1 = |r: &Value| r["simulated"]["total"]["d1_misses"].as_u64().unwrap();
    assert!(d1(&aos) > 4 * d1(&soa), "{} vs {}", d1(&aos), d1(&soa));
}
