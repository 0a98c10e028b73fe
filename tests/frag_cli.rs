//! `memtrace frag`: the policy replay of a real program's trace is
//! consistent, and the system view prints the kernel's indices.

mod common;
use common::*;

#[test]
fn replaying_python3_gives_a_consistent_table() {
    let dir = scratch("frag");
    let out = record(
        &dir,
        "py.trace",
        &[
            "python3",
            "-c",
            "print(sum(len(str(i)) for i in range(30000)))",
        ],
    );
    assert!(out.status.success());
    let report = report_json(&dir.join("py.trace"));
    let out = memtrace()
        .current_dir(&dir)
        .args(["frag", "--format", "json", "--align", "1", "py.trace"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let frag: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let policies = frag["policies"].as_array().unwrap();
    assert_eq!(policies.len(), 8);
    for p in policies {
        let name = p["policy"].as_str().unwrap();
        // The replay sees the same live heap as the report.
        assert_eq!(
            num(p, "peak_live"),
            num(&report["totals"], "peak_bytes"),
            "{name}"
        );
        assert!(num(p, "peak_footprint") >= num(p, "peak_live"), "{name}");
        if [
            "FirstFit",
            "NextFit",
            "BestFit",
            "WorstFit",
            "Compact",
            "Semispace",
        ]
        .contains(&name)
        {
            // Byte-exact blocks: nothing is wasted inside them.
            assert_eq!(num(p, "internal_at_peak"), 0, "{name}");
        }
    }
    let compact = policies.iter().find(|p| p["policy"] == "Compact").unwrap();
    let semispace = policies
        .iter()
        .find(|p| p["policy"] == "Semispace")
        .unwrap();
    assert_eq!(
        num(semispace, "peak_footprint"),
        2 * num(compact, "peak_footprint")
    );
    assert!(frag["best"]["why"]
        .as_str()
        .unwrap()
        .contains("lowest peak footprint"));
}

#[test]
fn the_system_view_reads_captured_files() {
    let data = root().join("crates/frag/tests/data");
    let out = memtrace()
        .args(["frag", "--system", "--buddyinfo"])
        .arg(data.join("buddyinfo.small"))
        .arg("--slabinfo")
        .arg(data.join("slabinfo.small"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    // 4, 2, 1, 0 free blocks of orders 0-3: 12 free pages; indices by hand in
    // crates/frag/tests/system.rs.
    assert!(text.contains("12 free pages"), "{text}");
    assert!(
        text.contains("      3            0     1.000          0.643"),
        "{text}"
    );
}

#[test]
fn unknown_policies_and_missing_traces_are_one_line_errors() {
    let dir = scratch("frag-errors");
    let out = memtrace()
        .current_dir(&dir)
        .args(["frag", "--simulate", "bogus", "x.trace"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1);
    assert!(stderr.contains("unknown policy \"bogus\""), "{stderr}");
    let out = memtrace()
        .current_dir(&dir)
        .args(["frag"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
