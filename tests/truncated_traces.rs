//! A trace cut short or damaged reads as "truncated" or fails with one line.

mod common;
use common::*;

#[test]
fn cut_and_corrupted_traces_never_panic() {
    let dir = scratch("cut");
    let exe = compile("cc", "fixtures/c/sites.c", &["-O0", "-g", "-pthread"], &dir);
    record(&dir, "whole.trace", &[exe.to_str().unwrap()]);
    let bytes = std::fs::read(dir.join("whole.trace")).unwrap();
    let whole = report_json(&dir.join("whole.trace"));
    let whole_calls = num(&whole["totals"], "events");

    for eighth in 1..8 {
        let name = format!("cut{eighth}.trace");
        std::fs::write(dir.join(&name), &bytes[..bytes.len() * eighth / 8]).unwrap();
        let out = memtrace()
            .current_dir(&dir)
            .args(["report", "--format", "json", &name])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            Some(0) => {
                let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                assert_eq!(r["trace"]["complete"], false, "cut at {eighth}/8");
                assert!(num(&r["totals"], "events") <= whole_calls);
                let status = r["trace"]["status"].as_str().unwrap();
                assert!(
                    status.starts_with("truncated at byte") || status.starts_with("incomplete"),
                    "{status}"
                );
            }
            Some(2) => assert_eq!(stderr.lines().count(), 1, "{stderr}"),
            other => panic!("cut at {eighth}/8: exit {other:?}: {stderr}"),
        }
    }

    // Flip a byte in the middle of each eighth: an error line or a report, never a crash.
    for eighth in 1..8 {
        let mut bad = bytes.clone();
        let at = bytes.len() * eighth / 8;
        bad[at] ^= 0xa5;
        std::fs::write(dir.join("bad.trace"), &bad).unwrap();
        let out = memtrace()
            .current_dir(&dir)
            .args(["report", "bad.trace"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            Some(0) => assert!(String::from_utf8_lossy(&out.stdout).contains("trace: truncated")),
            Some(2) => {
                assert_eq!(stderr.lines().count(), 1, "{stderr}");
                assert!(
                    stderr.contains("corrupt") || stderr.contains("truncated"),
                    "{stderr}"
                );
            }
            other => panic!("flip at {at}: exit {other:?}: {stderr}"),
        }
    }
}

/// Inputs the fuzzers (`fuzz/`) made that memtrace rejects, with the line
/// each of `report`, `leaks` and `frag` gives. The fuzz builds skip block
/// checksums; these copies carry correct ones, so a normal build reaches
/// the same record decoder. `leaks` reads only the side records, so it may
/// stop at another fault of the same file.
const REJECTED: &[(&str, [&str; 3])] = &[
    (
        "second-header",
        [
            "trace is corrupt: byte 3534 of the decompressed block at byte 94 (record 11): a second header record",
            "trace is corrupt: byte 3534 of the decompressed block at byte 94 (record 11): a second header record",
            "trace is corrupt: byte 3534 of the decompressed block at byte 94 (record 11): a second header record",
        ],
    ),
    (
        // Record 9 of the raw block at 85 is a `BATCH` at bytes 777-2685;
        // `leaks` skips batches and stops at the length of record 10.
        "unknown-stack",
        [
            "trace is corrupt: byte 1639 (record 9 of the block at byte 85): event refers to unknown stack 105",
            "trace is corrupt: byte 2687 (record 10 of the block at byte 85): block: length runs past the end",
            "trace is corrupt: byte 1639 (record 9 of the block at byte 85): event refers to unknown stack 105",
        ],
    ),
    (
        "scan-counts",
        [
            "trace is corrupt: byte 13917 (record 2 of the block at byte 13882): leak scan announces 0 blocks and 1 edges, the file has 1 and 0",
            "trace is corrupt: byte 13917 (record 2 of the block at byte 13882): leak scan announces 0 blocks and 1 edges, the file has 1 and 0",
            "trace is corrupt: byte 13917 (record 2 of the block at byte 13882): leak scan announces 0 blocks and 1 edges, the file has 1 and 0",
        ],
    ),
    (
        "stack-parent",
        [
            "trace is corrupt: byte 21 of the decompressed block at byte 83 (record 2): stack node 1 has an invalid parent",
            "trace is corrupt: byte 21 of the decompressed block at byte 83 (record 2): stack node 1 has an invalid parent",
            "trace is corrupt: byte 21 of the decompressed block at byte 83 (record 2): stack node 1 has an invalid parent",
        ],
    ),
    (
        "function-tag",
        [
            "trace is corrupt: byte 1408 (record 9 of the block at byte 85): unknown heap function tag 106",
            "trace is corrupt: byte 2687 (record 10 of the block at byte 85): block: length runs past the end",
            "trace is corrupt: byte 1408 (record 9 of the block at byte 85): unknown heap function tag 106",
        ],
    ),
    (
        "reach-state",
        [
            "trace is corrupt: byte 1309 (record 1 of the block at byte 1234): unknown reach state 145",
            "trace is corrupt: byte 1309 (record 1 of the block at byte 1234): unknown reach state 145",
            "trace is corrupt: byte 1309 (record 1 of the block at byte 1234): unknown reach state 145",
        ],
    ),
];

#[test]
fn fuzzer_inputs_fail_with_one_line() {
    let dir = root().join("tests/data/fuzz-rejected");
    for (file, lines) in REJECTED {
        for (command, line) in ["report", "leaks", "frag"].iter().zip(lines) {
            let out = memtrace()
                .current_dir(&dir)
                .args([command, file])
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{command} {file}: {stderr}");
            assert_eq!(
                stderr,
                format!("memtrace: {file}: {line}\n"),
                "{command} {file}"
            );
            assert!(out.stdout.is_empty(), "{command} {file}");
        }
    }
}
