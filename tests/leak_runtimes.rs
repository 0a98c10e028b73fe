//! Real leaks in each runtime are caught, in the right class and with the
//! right stack (issue #19): C++ `new[]` without `delete[]`, a Rust `Rc`
//! cycle (named as a cycle) and a `mem::forget`ten `Vec`, and a block
//! Python got from `ctypes.CDLL(None).malloc` and dropped. Every figure is
//! also what valgrind's memcheck reports for the same program (checked by
//! hand: `valgrind --leak-check=full PROGRAM`, valgrind 3.19): C++ 100 bytes
//! in 1 block definitely lost; Rust 4,192 bytes in 2 blocks definitely and
//! 96 in 1 indirectly lost; Python 777 bytes in 1 block definitely lost.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{compile, memtrace, output_within, scratch, skip, tag_line};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(120);

/// Runs `program` under `memtrace run --check-leaks` and returns its JSON
/// leak report and exit status.
fn check(dir: &Path, program: &[&str]) -> (Value, Option<i32>) {
    let out = output_within(
        memtrace()
            .current_dir(dir)
            .args([
                "run",
                "-q",
                "-o",
                "t.trace",
                "--check-leaks",
                "--format",
                "json",
            ])
            .args(["--leaks-output", "leaks.json", "--"])
            .args(program),
        LIMIT,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let text = std::fs::read_to_string(dir.join("leaks.json"))
        .unwrap_or_else(|e| panic!("{program:?}: no leak report ({e}); stderr: {stderr}"));
    let json = serde_json::from_str(&text).expect("leak JSON");
    (json, out.status.code())
}

fn pair(v: &Value) -> (u64, u64) {
    (
        v["bytes"].as_u64().expect("bytes"),
        v["blocks"].as_u64().expect("blocks"),
    )
}

fn totals(report: &Value) -> [(u64, u64); 3] {
    ["definite", "indirect", "possible"].map(|class| pair(&report["totals"][class]))
}

/// The unsuppressed records of `class`.
fn records<'a>(report: &'a Value, class: &str) -> Vec<&'a Value> {
    report["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["class"] == class && r["suppressed_by"].is_null())
        .collect()
}

/// `(function, file name, line)` of a frame.
fn place(frame: &Value) -> (String, String, u64) {
    let file = frame["file"].as_str().unwrap_or("");
    let name = Path::new(file)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    (
        frame["function"].as_str().unwrap_or("").to_string(),
        name,
        frame["line"].as_u64().unwrap_or(0),
    )
}

#[test]
fn cpp_new_without_delete_is_definitely_lost_at_its_line() {
    let dir = scratch("leak-runtime-cpp");
    let exe = compile("g++", "fixtures/cpp/new_leak.cpp", &["-O0", "-g"], &dir);
    let (report, status) = check(&dir, &[exe.to_str().unwrap()]);
    assert_eq!(status, Some(1), "the check fails: {report}");
    assert_eq!(totals(&report), [(100, 1), (0, 0), (0, 0)]);
    let lost = records(&report, "definite");
    assert_eq!(lost.len(), 1);
    let line = tag_line("fixtures/cpp/new_leak.cpp", "@site cpp_new_leak");
    assert_eq!(
        place(&lost[0]["site"]),
        ("make_table".to_string(), "new_leak.cpp".to_string(), line)
    );
    assert_eq!(place(&lost[0]["stack"][1]).0, "main");
}

#[test]
fn a_rust_rc_cycle_and_a_forgotten_vec_are_lost_and_the_cycle_named() {
    if std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .is_err()
    {
        skip("rust leaks", "rustc is not on PATH");
        return;
    }
    let source = "fixtures/rust/standalone/rust_leaks.rs";
    let dir = scratch("leak-runtime-rust");
    let exe = compile("rustc", source, &["-O", "-g"], &dir);
    let (report, status) = check(&dir, &[exe.to_str().unwrap()]);
    assert_eq!(status, Some(1), "the check fails: {report}");
    assert_eq!(totals(&report), [(4192, 2), (96, 1), (0, 0)]);

    let forget_line = tag_line(source, "@site rust_forget");
    let a_line = tag_line(source, "@site rust_cycle_a");
    let b_line = tag_line(source, "@site rust_cycle_b");
    let mut definite: Vec<(u64, (String, String, u64))> = records(&report, "definite")
        .iter()
        .map(|r| (r["bytes"].as_u64().unwrap(), place(&r["site"])))
        .collect();
    definite.sort();
    let file = "rust_leaks.rs".to_string();
    // One block of the cycle is called definitely lost, the other
    // indirectly (memcheck does the same); which one depends on the scan's
    // order, so both are allowed for the cycle's definite record.
    assert_eq!(definite.len(), 2, "{definite:?}");
    assert_eq!(
        definite[1],
        (
            4096,
            (
                "rust_leaks::forget_vec".to_string(),
                file.clone(),
                forget_line
            )
        )
    );
    assert_eq!(definite[0].0, 96);
    assert_eq!(definite[0].1 .0, "rust_leaks::make_cycle");
    let cycle_lines = [a_line, b_line];
    assert!(cycle_lines.contains(&definite[0].1 .2), "{definite:?}");

    let cycles = report["cycles"].as_array().expect("cycles");
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    assert_eq!(cycles[0]["bytes"], 192);
    let mut lines: Vec<(u64, u64)> = cycles[0]["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["bytes"].as_u64().unwrap(),
                b["site"]["line"].as_u64().unwrap(),
            )
        })
        .collect();
    lines.sort();
    let mut expected = vec![(96, a_line), (96, b_line)];
    expected.sort();
    assert_eq!(lines, expected);
}

#[test]
fn a_block_python_got_from_ctypes_malloc_and_dropped_is_definitely_lost() {
    let python = Path::new("/usr/bin/python3");
    if !python.is_file() {
        skip("ctypes leak", "/usr/bin/python3 is missing");
        return;
    }
    let dir = scratch("leak-runtime-ctypes");
    std::fs::write(
        dir.join("ct.py"),
        "import ctypes\n\
         libc = ctypes.CDLL(None)\n\
         libc.malloc.restype = ctypes.c_void_p\n\
         libc.malloc.argtypes = [ctypes.c_size_t]\n\
         p = libc.malloc(777)\n\
         p = None\n\
         print('ctypes 777')\n",
    )
    .unwrap();
    let (report, status) = check(&dir, &["/usr/bin/python3", "ct.py"]);
    assert_eq!(status, Some(1), "the check fails: {report}");
    assert_eq!(pair(&report["totals"]["definite"]), (777, 1));
    assert_eq!(pair(&report["totals"]["indirect"]), (0, 0));
    let lost = records(&report, "definite");
    assert_eq!(lost.len(), 1);
    // Called through libffi (whose frames, without debug info, are kept and
    // named from its `.dynsym`) from the interpreter's evaluation of the
    // script.
    let functions: Vec<String> = lost[0]["stack"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| place(f).0)
        .collect();
    let at = |name: &str| functions.iter().position(|f| f == name);
    assert!(
        at("ffi_call").is_some() && at("ffi_call") < at("PyEval_EvalCode"),
        "{functions:?}"
    );
}
