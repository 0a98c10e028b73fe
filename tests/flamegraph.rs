//! `memtrace flamegraph`: the folded stacks of `fixtures/c/sites.c` carry the
//! known per-site numbers (fixtures/README.md), read back unchanged, and the
//! SVG's frame titles show the exact counts and shares.

mod common;
use common::*;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The sites fixture, recorded once for all tests of this file.
fn sites_trace() -> &'static Path {
    static TRACE: OnceLock<PathBuf> = OnceLock::new();
    TRACE.get_or_init(|| {
        let dir = scratch("flamegraph");
        let exe = compile("cc", "fixtures/c/sites.c", &["-O0", "-g", "-pthread"], &dir);
        let out = record(&dir, "sites.trace", &[exe.to_str().unwrap()]);
        assert!(out.status.success());
        dir.join("sites.trace")
    })
}

/// Runs `memtrace flamegraph TRACE ARGS...`, expecting success; its stdout.
fn flamegraph(args: &[&str]) -> String {
    let trace = sites_trace();
    let mut all = vec!["flamegraph", trace.to_str().expect("UTF-8 path")];
    all.extend_from_slice(args);
    memtrace_stdout(Path::new("."), &all)
}

/// Folded lines as (stack, value), in order; every line must end in a
/// number, and none is empty.
fn parse(text: &str) -> Vec<(String, u64)> {
    assert!(
        !text.lines().any(|l| l.trim().is_empty()),
        "an empty line in {text:?}"
    );
    memtrace_analyze::flame::parse_folded(text).unwrap_or_else(|e| panic!("{e} in {text:?}"))
}

/// Sums values per leaf (innermost) function.
fn by_leaf(stacks: &[(String, u64)]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (stack, value) in stacks {
        let leaf = stack.rsplit(';').next().unwrap();
        *out.entry(leaf.to_string()).or_default() += value;
    }
    out
}

fn assert_leaves(by: &str, expected: &[(&str, u64)]) {
    let stacks = parse(&flamegraph(&["--collapsed", "--by", by]));
    let leaves = by_leaf(&stacks);
    for &(function, value) in expected {
        assert_eq!(
            leaves.get(function).copied(),
            Some(value),
            "--by {by}, leaf {function}; all leaves: {leaves:?}"
        );
    }
}

const FUNCTIONS: [&str; 6] = [
    "alloc_small",
    "alloc_big",
    "alloc_zeroed",
    "grow_buffer",
    "thread_worker",
    "leak_one",
];

#[test]
fn folded_bytes_and_calls_per_leaf_are_the_known_answers() {
    let bytes = [2400, 40960, 2560, 960, 8000, 1000];
    let calls = [100, 10, 20, 4, 200, 1];
    let zip =
        |values: [u64; 6]| -> Vec<(&str, u64)> { FUNCTIONS.into_iter().zip(values).collect() };
    assert_leaves("bytes", &zip(bytes));
    assert_leaves("calls", &zip(calls));
    assert_leaves("leaked", &[("alloc_big", 20480), ("leak_one", 1000)]);
    // Freed sites are not in the leak graph at all.
    let leaked = by_leaf(&parse(&flamegraph(&["--collapsed", "--by", "leaked"])));
    for f in [
        "alloc_small",
        "alloc_zeroed",
        "grow_buffer",
        "thread_worker",
    ] {
        assert!(!leaked.contains_key(f), "{f} in {leaked:?}");
    }
    assert_leaves(
        "peak",
        &[
            ("alloc_small", 2400),
            ("alloc_big", 40960),
            ("alloc_zeroed", 2560),
        ],
    );
}

#[test]
fn stacks_run_from_main_to_the_call_site() {
    let stacks = parse(&flamegraph(&["--by", "bytes"]));
    let (stack, _) = stacks
        .iter()
        .find(|(s, _)| s.ends_with(";alloc_big"))
        .expect("an alloc_big stack");
    assert!(stack.contains("main;alloc_big"), "{stack}");
    // The allocator's own frames are dropped from the leaf end.
    for (stack, _) in &stacks {
        let leaf = stack.rsplit(';').next().unwrap();
        assert!(!["malloc", "calloc", "realloc"].contains(&leaf), "{stack}");
    }
    // Latency: every allocation stack took some time.
    let latency = by_leaf(&parse(&flamegraph(&["--collapsed", "--by", "latency"])));
    for f in FUNCTIONS {
        assert!(latency.get(f).is_some_and(|&ns| ns > 0), "{f}: {latency:?}");
    }
}

#[test]
fn collapsed_output_reads_back_to_the_same_stacks() {
    let text = flamegraph(&["--collapsed", "--by", "bytes"]);
    let stacks = parse(&text);
    // Rendering what was read gives the same text: same (stack, value) multiset.
    let rendered: String = stacks.iter().map(|(s, v)| format!("{s} {v}\n")).collect();
    assert_eq!(rendered, text);
    // One line per distinct stack.
    let distinct: BTreeMap<&str, u64> = stacks.iter().map(|(s, v)| (s.as_str(), *v)).collect();
    assert_eq!(distinct.len(), stacks.len());

    // `-o FILE --collapsed` writes the same lines.
    let dir = scratch("flamegraph-folded");
    let file = dir.join("sites.folded");
    flamegraph(&["--collapsed", "--by", "bytes", "-o", file.to_str().unwrap()]);
    let written = std::fs::read_to_string(&file).unwrap();
    let mut a = parse(&written);
    let mut b = stacks.clone();
    a.sort();
    b.sort();
    assert_eq!(a, b);

    // inferno reads the file back: its SVG has the same frames as ours.
    let ours = dir.join("ours.svg");
    flamegraph(&["--by", "bytes", "-o", ours.to_str().unwrap()]);
    let mut options = inferno::flamegraph::Options::default();
    options.count_name = "bytes".into();
    let mut theirs = Vec::new();
    inferno::flamegraph::from_reader(&mut options, written.as_bytes(), &mut theirs).unwrap();
    let theirs = String::from_utf8(theirs).unwrap();
    assert_eq!(
        frame_titles(&std::fs::read_to_string(&ours).unwrap()),
        frame_titles(&theirs)
    );
}

/// Parses an SVG with a real XML parser (inferno's SVG has a DOCTYPE).
fn parse_svg(svg: &str) -> roxmltree::Document<'_> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    roxmltree::Document::parse_with_options(svg, options).expect("the SVG is well-formed XML")
}

/// The `<title>` of every frame (`<g>` element) of a flame graph SVG, sorted.
fn frame_titles(svg: &str) -> Vec<String> {
    let doc = parse_svg(svg);
    let mut titles: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("g"))
        .filter_map(|g| {
            g.children()
                .find(|c| c.has_tag_name("title"))
                .and_then(|t| t.text())
                .map(str::to_string)
        })
        .collect();
    titles.sort();
    titles
}

/// `n` with thousands separators, as inferno writes counts: 40960 -> "40,960".
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[test]
fn svg_frame_titles_show_exact_bytes_and_shares() {
    assert_eq!(thousands(40960), "40,960");
    assert_eq!(thousands(960), "960");
    assert_eq!(thousands(1234567), "1,234,567");

    let total: u64 = parse(&flamegraph(&["--collapsed", "--by", "bytes"]))
        .iter()
        .map(|(_, v)| v)
        .sum();
    let dir = scratch("flamegraph-svg");
    let svg_path = dir.join("sites.svg");
    let stdout = flamegraph(&["--by", "bytes", "-o", svg_path.to_str().unwrap()]);
    assert!(stdout.is_empty());
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    let doc = parse_svg(&svg);
    let titles = frame_titles(&svg);

    let heading = doc
        .descendants()
        .find(|n| n.attribute("id") == Some("title"))
        .and_then(|n| n.text())
        .expect("a title text");
    assert_eq!(heading, "memtrace: bytes allocated by stack (sites)");
    assert!(
        titles.contains(&format!("all ({} bytes, 100%)", thousands(total))),
        "{titles:?}"
    );

    for (function, bytes) in FUNCTIONS
        .into_iter()
        .zip([2400, 40960, 2560, 960, 8000, 1000])
    {
        let expected = format!(
            "{function} ({} bytes, {:.2}%)",
            thousands(bytes),
            100.0 * bytes as f64 / total as f64
        );
        let frames: Vec<&String> = titles
            .iter()
            .filter(|t| t.starts_with(&format!("{function} (")))
            .collect();
        assert_eq!(frames, [&expected], "frames of {function}");
    }
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let dir = scratch("flamegraph-bad");
    let not_a_trace = dir.join("not-a-trace");
    std::fs::write(&not_a_trace, "hello").unwrap();
    for args in [&["--by", "bytes"][..], &["--by", "nonsense"]] {
        let out = memtrace()
            .arg("flamegraph")
            .arg(&not_a_trace)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        if args[1] == "bytes" {
            assert_eq!(stderr.lines().count(), 1, "{stderr}");
            assert!(stderr.starts_with("memtrace: "), "{stderr}");
        }
    }
}
