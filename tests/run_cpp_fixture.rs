//! `memtrace run` on the C++ fixture: `new`/`delete`, `new[]`, a growing
//! `std::vector`, two threads.

mod common;
use common::*;

const SOURCE: &str = "fixtures/cpp/vector.cpp";

#[test]
fn new_delete_and_vector_growth_are_counted_exactly() {
    let dir = scratch("cpp");
    let exe = compile("g++", SOURCE, &["-O0", "-g", "-pthread"], &dir);
    let out = record(&dir, "vector.trace", &[exe.to_str().unwrap()]);
    assert!(out.status.success());
    let report = report_json(&dir.join("vector.trace"));
    assert_eq!(report["trace"]["complete"], true);

    // (function, calls, bytes, frees, bytes at peak)
    let expected = [
        ("make_nodes", 30, 960, 30, 640),
        ("make_array", 1, 400, 1, 0),
        ("grow_vector", 8, 2040, 8, 0),
        ("thread_site", 50, 3200, 50, 3200),
    ];
    for (function, calls, bytes, frees, peak) in expected {
        let s = site(&report, function);
        assert_eq!(num(s, "allocations"), calls, "{function} calls");
        assert_eq!(num(s, "bytes_allocated"), bytes, "{function} bytes");
        assert_eq!(num(s, "frees"), frees, "{function} frees");
        assert_eq!(num(s, "unfreed_bytes"), 0, "{function} unfreed");
        assert_eq!(num(s, "peak_bytes"), peak, "{function} at peak");
        assert!(s["file"].as_str().unwrap().ends_with(SOURCE));
        let line = tag_line(SOURCE, &format!("@site {function} "));
        assert_eq!(num(s, "line"), line, "{function} line");
    }
    // operator new is the frame below the site for `new Node`.
    let nodes = site(&report, "make_nodes");
    let names: Vec<&str> = nodes["stack"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["function"].as_str().unwrap_or("??"))
        .collect();
    let new_at = names
        .iter()
        .position(|n| n.starts_with("operator new"))
        .expect("operator new frame");
    assert_eq!(names[new_at + 1], "make_nodes", "stack: {names:?}");
}
