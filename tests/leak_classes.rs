//! The leak classes of fixtures/c/leaks.c: exact bytes and blocks per class
//! and per loss record, each at its file:line, equal to what valgrind's
//! memcheck reports for the same binary.

mod common;

use common::{compile, memtrace, record, scratch, tag_line};
use serde_json::Value;

const SOURCE: &str = "fixtures/c/leaks.c";

/// class, bytes, blocks, indirect bytes, site tag, caller tag.
type MemcheckRecord = (
    &'static str,
    u64,
    u64,
    u64,
    &'static str,
    Option<&'static str>,
);

/// A loss record as compared: class, bytes, blocks, indirect bytes, site
/// line, caller line.
type Row = (String, u64, u64, u64, u64, Option<u64>);

/// memcheck's loss records for `cc -O0 -g -o leaks fixtures/c/leaks.c`,
/// from `valgrind --leak-check=full --show-leak-kinds=all ./leaks`
/// (valgrind 3.19, Debian 12), written down once:
///
/// ```text
/// 32 bytes in 1 blocks are indirectly lost         new_node <- drop_tree (root->left)
/// 32 bytes in 1 blocks are indirectly lost         new_node <- drop_tree (root->right)
/// 32 bytes in 1 blocks are indirectly lost         new_node <- drop_tree (root->left->left)
/// 40 bytes in 1 blocks are indirectly lost         drop_cycle (b)
/// 64 bytes in 1 blocks are possibly lost           keep_interior
/// 80 (40 direct, 40 indirect) bytes in 1 blocks are definitely lost   drop_cycle (a)
/// 128 (32 direct, 96 indirect) bytes in 1 blocks are definitely lost  new_node <- drop_tree (root)
/// 240 bytes in 5 blocks are definitely lost        drop_blocks
/// 300 bytes in 3 blocks are still reachable        keep_global
/// LEAK SUMMARY: definitely lost: 312 bytes in 7 blocks, indirectly lost: 136 bytes
/// in 4 blocks, possibly lost: 64 bytes in 1 blocks, still reachable: 300 bytes in 3 blocks
/// ```
///
/// Each row: class, bytes, blocks, indirect bytes, the tag of the
/// allocating line, and for new_node's records the tag of its caller's line.
const MEMCHECK: &[MemcheckRecord] = &[
    (
        "indirect",
        32,
        1,
        0,
        "@site new_node",
        Some("@call tree_left"),
    ),
    (
        "indirect",
        32,
        1,
        0,
        "@site new_node",
        Some("@call tree_right"),
    ),
    (
        "indirect",
        32,
        1,
        0,
        "@site new_node",
        Some("@call tree_left_left"),
    ),
    ("indirect", 40, 1, 0, "@site drop_cycle_b", None),
    ("possible", 64, 1, 0, "@site keep_interior", None),
    ("definite", 40, 1, 40, "@site drop_cycle_a", None),
    (
        "definite",
        32,
        1,
        96,
        "@site new_node",
        Some("@call tree_root"),
    ),
    ("definite", 240, 5, 0, "@site drop_blocks", None),
    ("reachable", 300, 3, 0, "@site keep_global", None),
];

fn leak_json() -> Value {
    let dir = scratch("leak-classes");
    let exe = compile("cc", SOURCE, &["-O0", "-g"], &dir);
    record(&dir, "leaks.trace", &[exe.to_str().unwrap()]);
    let out = memtrace()
        .current_dir(&dir)
        .args(["leaks", "--format", "json", "leaks.trace"])
        .output()
        .expect("run memtrace leaks");
    // Definitely lost blocks remain: the default --fail-on fails.
    assert_eq!(
        out.status.code(),
        Some(1),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn line_of(frame: &Value) -> u64 {
    frame["line"].as_u64().unwrap_or(0)
}

#[test]
fn classes_and_loss_records_equal_memchecks() {
    let report = leak_json();
    let totals = &report["totals"];
    let pair = |class: &str| {
        (
            totals[class]["bytes"].as_u64().unwrap(),
            totals[class]["blocks"].as_u64().unwrap(),
        )
    };
    assert_eq!(pair("definite"), (312, 7));
    assert_eq!(pair("indirect"), (136, 4));
    assert_eq!(pair("possible"), (64, 1));
    assert_eq!(pair("reachable"), (300, 3));

    let mut ours: Vec<Row> = report["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let stack = r["stack"].as_array().unwrap();
            let site = &stack[0];
            assert!(
                site["file"].as_str().unwrap().ends_with(SOURCE),
                "site outside the fixture: {site}"
            );
            let caller = (site["function"] == "new_node").then(|| line_of(&stack[1]));
            (
                r["class"].as_str().unwrap().to_string(),
                r["bytes"].as_u64().unwrap(),
                r["blocks"].as_u64().unwrap(),
                r["indirect_bytes"].as_u64().unwrap(),
                line_of(site),
                caller,
            )
        })
        .collect();
    let mut expected: Vec<Row> = MEMCHECK
        .iter()
        .map(|&(class, bytes, blocks, indirect, tag, caller)| {
            (
                class.to_string(),
                bytes,
                blocks,
                indirect,
                tag_line(SOURCE, tag),
                caller.map(|c| tag_line(SOURCE, c)),
            )
        })
        .collect();
    ours.sort();
    expected.sort();
    assert_eq!(ours, expected);
}

#[test]
fn the_two_node_cycle_is_one_leaked_cycle() {
    let report = leak_json();
    let cycles = report["cycles"].as_array().unwrap();
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    let cycle = &cycles[0];
    assert_eq!(cycle["bytes"], 80);
    let lines: Vec<u64> = cycle["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            assert_eq!(b["bytes"], 40);
            line_of(&b["site"])
        })
        .collect();
    // a is allocated first, at the lower address: the cycle starts there.
    assert_eq!(
        lines,
        vec![
            tag_line(SOURCE, "@site drop_cycle_a"),
            tag_line(SOURCE, "@site drop_cycle_b")
        ]
    );
}

#[test]
fn the_leak_chart_shows_each_class_with_its_exact_bytes_and_blocks() {
    let dir = scratch("leak-chart");
    let exe = compile("cc", SOURCE, &["-O0", "-g"], &dir);
    record(&dir, "leaks.trace", &[exe.to_str().unwrap()]);
    let out = memtrace()
        .current_dir(&dir)
        .args(["plot", "leaks.trace", "-o", "charts", "--only", "leaks"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let svg = std::fs::read_to_string(dir.join("charts/leaks.svg")).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("well-formed SVG");
    let texts: Vec<(String, String)> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| {
            let size = n.attribute("font-size").unwrap_or("").to_string();
            (n.text().unwrap_or("").trim().to_string(), size)
        })
        .collect();
    for class in [
        "definitely lost",
        "indirectly lost",
        "possibly lost",
        "still reachable",
    ] {
        assert!(
            texts.iter().any(|(t, _)| t == class),
            "no `{class}` in {texts:?}"
        );
    }
    // The bars' value labels share one font size, apart from the axis
    // ticks: bytes per class, then blocks per class, in class order.
    let value_size = &texts
        .iter()
        .find(|(t, _)| t == "312 B")
        .unwrap_or_else(|| panic!("no `312 B` in {texts:?}"))
        .1;
    let values: Vec<&str> = texts
        .iter()
        .filter(|(_, size)| size == value_size)
        .map(|(t, _)| t.as_str())
        .collect();
    assert_eq!(
        values,
        ["312 B", "136 B", "64 B", "300 B", "7", "4", "1", "3"]
    );
}
