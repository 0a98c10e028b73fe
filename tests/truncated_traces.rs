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
