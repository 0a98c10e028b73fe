//! Temporary allocations by memtrace's rule and by heaptrack's, on
//! `fixtures/c/temporaries.c`, whose counts are known (fixtures/README.md).

mod common;
use common::*;

const SOURCE: &str = "fixtures/c/temporaries.c";

#[test]
fn both_rules_count_exactly_in_the_text_and_json_reports() {
    let dir = scratch("c-temporaries");
    let exe = compile("cc", SOURCE, &["-O0", "-g"], &dir);
    let out = record(&dir, "temporaries.trace", &[exe.to_str().unwrap()]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "temporaries done\n");
    let trace = dir.join("temporaries.trace");
    let report = report_json(&trace);
    assert_eq!(report["trace"]["complete"], true);
    let totals = &report["totals"];
    // memtrace: 1000 pairs + 200 second blocks of `crossed` + 300 frees
    // after a realloc. heaptrack: 1000 pairs + 2 x 300 in `regrown`.
    assert_eq!(num(totals, "temporary"), 1500);
    assert_eq!(num(totals, "temporary_heaptrack"), 1600);
    // Per site (one per line), memtrace's rule; a block's free counts at
    // the site that allocated it.
    for (tag, temporary) in [
        ("pair", 1000),
        ("crossed_first", 0),
        ("crossed_second", 200),
        ("regrown_malloc", 0),
        ("regrown_realloc", 300),
    ] {
        let line = tag_line(SOURCE, &format!("@site {tag} "));
        let sites: Vec<&serde_json::Value> = report["sites"]
            .as_array()
            .expect("sites")
            .iter()
            .filter(|s| s["line"].as_u64() == Some(line))
            .collect();
        assert_eq!(sites.len(), 1, "{tag}: one site at line {line}");
        assert_eq!(num(sites[0], "temporary"), temporary, "{tag}");
    }

    let text = memtrace_stdout(&dir, &["report", trace.to_str().unwrap()]);
    for line in [
        "temporary allocations: 1500 (freed by their thread before it allocated again)\n",
        "temporary allocations, heaptrack's rule: 1600 (freed right after an allocation of the same size and stack)\n",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
}
