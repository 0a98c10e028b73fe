//! `memtrace plot` on `fixtures/c/sites.c`: every chart is well-formed SVG
//! (parsed with roxmltree) whose labels, series and drawn values equal the
//! numbers `memtrace report`, `latency` and `frag` print for the same trace
//! and the fixture's known answers (fixtures/README.md); the index page
//! loads every chart in headless Chromium; `--data` writes byte for byte
//! what those commands print.

#[path = "../xtask/src/browser.rs"]
mod browser;
mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::svg::{parse_tick, value_at, Svg};
use common::*;
use serde_json::Value;

/// Series colours in order (memtrace-plot's palette).
const BLUE: &str = "#1F77B4";
const ORANGE: &str = "#FF7F0E";
const GREEN: &str = "#2CA02C";
const RED: &str = "#D62728";

/// The sites fixture recorded once, its charts, and the tools' JSON.
struct Sites {
    charts: PathBuf,
    report: Value,
    latency: Value,
    frag: Value,
}

fn sites() -> &'static Sites {
    static SITES: OnceLock<Sites> = OnceLock::new();
    SITES.get_or_init(|| {
        let dir = scratch("plot");
        let exe = compile("cc", "fixtures/c/sites.c", &["-O0", "-g", "-pthread"], &dir);
        let out = record(&dir, "sites.trace", &[exe.to_str().unwrap()]);
        assert!(out.status.success());
        let stdout = memtrace_stdout(&dir, &["plot", "sites.trace", "-o", "charts"]);
        let files: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            files,
            [
                "charts/heap.svg",
                "charts/sizes.svg",
                "charts/latency.svg",
                "charts/frag.svg",
                "charts/policies.svg",
                "charts/flame.svg",
                "charts/leaks.svg",
                "charts/index.html"
            ]
        );
        Sites {
            charts: dir.join("charts"),
            report: report_json(&dir.join("sites.trace")),
            latency: memtrace_json(&dir, &["latency", "--format", "json", "sites.trace"]),
            frag: memtrace_json(&dir, &["frag", "--format", "json", "sites.trace"]),
        }
    })
}

/// The cache charts in a directory of their own: `memtrace cache --svg` of
/// the locality fixture under cachegrind (the per-function view), and the
/// report's pairs chart (`cargo xtask report`'s four pairs, labels as
/// there) drawn by `memtrace_cache::compare` from fixed figures: its layout
/// is what the page checks below test, not the figures.
fn cache_charts() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch("plot-cache");
        let exe = compile("cc", "fixtures/c/locality.c", &["-O2", "-g"], &dir);
        let exe = exe.to_str().unwrap();
        memtrace_stdout(
            &dir,
            &[
                "cache",
                "--svg",
                "cache-functions.svg",
                "--",
                exe,
                "all",
                "2000",
            ],
        );
        let chart = memtrace_cache::compare::chart(
            "Cache misses per element, layouts in pairs: 20000 elements",
            &cache_pairs(),
        )
        .unwrap();
        let svg = memtrace_plot::bars(&chart).unwrap();
        std::fs::write(dir.join("cache.svg"), svg).unwrap();
        dir
    })
}

/// The report's pairs with figures of the size it measures.
fn cache_pairs() -> Vec<memtrace_cache::compare::Pair> {
    use memtrace_cache::compare::{MissSource, Misses, Pair, Side};
    let side = |label: &str, d1: u64, ll: u64| Side {
        label: label.into(),
        misses: Misses {
            d1,
            ll,
            source: MissSource::Simulated,
        },
        n: 20_000,
        base: Misses {
            d1: 1_500,
            ll: 1_200,
            source: MissSource::Simulated,
        },
        n_base: 2,
    };
    let pair = |name: &str, a: Side, b: Side| Pair {
        name: name.into(),
        sides: vec![a, b],
    };
    vec![
        pair(
            "list vs array",
            side("list", 361_972, 42_666),
            side("array", 14_286, 3_878),
        ),
        pair(
            "AoS vs SoA",
            side("aos", 101_782, 21_000),
            side("soa", 14_287, 3_900),
        ),
        pair(
            "scattered vs bulk",
            side("scattered", 123_456, 25_000),
            side("bulk", 14_286, 3_878),
        ),
        pair(
            "bulk_vs_single.c",
            side("single", 99_000, 30_000),
            side("bulk", 22_000, 11_000),
        ),
    ]
}

fn chart(name: &str) -> Svg {
    Svg::read(&sites().charts.join(format!("{name}.svg")))
}

/// Asserts that `value` lies within one pixel (`per_px`) of `expected`.
fn assert_near(value: f64, expected: f64, per_px: f64, what: &str) {
    assert!(
        (value - expected).abs() <= per_px,
        "{what}: drawn at {value}, expected {expected} (one pixel = {per_px})"
    );
}

#[test]
fn the_heap_chart_marks_the_exact_peak() {
    let s = sites();
    let svg = chart("heap");
    let peak = num(&s.report["totals"], "peak_bytes");
    assert_eq!(peak, 45920, "the fixture's peak");
    svg.text("Live heap over time: sites");
    svg.text("live heap (KiB)");
    svg.text("heap calls per ms");
    let x_desc = svg.texts_starting("time since the trace's start (");
    assert_eq!(x_desc.len(), 1, "{:?}", svg.strings());

    // The peak's label gives the report's exact number.
    let label = svg.texts_starting("peak ");
    assert_eq!(label.len(), 1);
    let expected = format!("peak {:.2} KiB ({peak} B) at ", peak as f64 / 1024.0);
    assert!(
        label[0].content.starts_with(&expected),
        "{:?} does not start with {expected:?}",
        label[0].content
    );
    // ... and the dot sits at that height on the KiB axis.
    assert_eq!(svg.circles.len(), 1);
    let axes = svg.y_axes();
    assert_eq!(axes.len(), 2, "two panels: {axes:?}");
    let (kib, per_px) = value_at(&axes[0], svg.circles[0].cy);
    assert_near(kib * 1024.0, peak as f64, per_px * 1024.0, "peak dot");
}

#[test]
fn the_size_histogram_draws_the_reported_counts() {
    let s = sites();
    let svg = chart("sizes");
    svg.text("Allocation sizes: sites");
    svg.text("allocations");
    let buckets = s.report["size_histogram"].as_array().unwrap();
    let counts: Vec<u64> = buckets.iter().map(|b| num(b, "count")).collect();
    let bars = svg.bars(BLUE);
    assert_eq!(bars.len(), counts.len(), "one bar per non-empty bucket");
    let axis = &svg.y_axes()[0];
    for (bar, &count) in bars.iter().zip(&counts) {
        let (value, per_px) = value_at(axis, bar.y);
        assert_near(value, count as f64, per_px, "bar height");
        // The exact count is written above the bar.
        let above: Vec<&str> = svg
            .texts
            .iter()
            .filter(|t| (t.x - bar.center_x()).abs() <= 1.0 && t.y < bar.y && t.y > bar.y - 10.0)
            .map(|t| t.content.as_str())
            .collect();
        assert_eq!(above, [count.to_string()], "label above the {count} bar");
    }
    // The fixture's own sizes: 100 x malloc(24) in [16, 32), 200 x
    // malloc(40) in [32, 64) (the threads), 10 x malloc(4096) in [4096, 8192).
    for (label, count) in [("16 B", 100), ("32 B", 200), ("4 KiB", 10)] {
        let x = svg.text(label).x;
        let bar = bars
            .iter()
            .find(|b| (b.center_x() - x).abs() <= 1.0)
            .unwrap_or_else(|| panic!("no bar under {label}"));
        let (value, per_px) = value_at(axis, bar.y);
        assert_near(value, f64::from(count), per_px, label);
    }
}

#[test]
fn the_latency_chart_has_each_function_with_its_calls_on_a_log_scale() {
    let s = sites();
    let svg = chart("latency");
    svg.text("Time inside the allocator: sites");
    svg.text("calls, log scale");
    let functions: Vec<&Value> = s.latency["functions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| num(f, "calls") > 0)
        .collect();
    // The fixture's calls per function (fixtures/README.md, plus glibc's 4 DTV callocs).
    let mut calls: Vec<(String, u64)> = functions
        .iter()
        .map(|f| (f["function"].as_str().unwrap().to_string(), num(f, "calls")))
        .collect();
    calls.sort();
    assert_eq!(
        calls,
        [
            ("calloc".to_string(), 24),
            ("free".to_string(), 326),
            ("malloc".to_string(), 311),
            ("realloc".to_string(), 4)
        ]
    );
    // Log axis: ticks 1, 10, 100, ...; a bar's top is log10(count).
    let axis: Vec<(f64, f64)> = svg.y_axes()[0]
        .iter()
        .map(|&(v, y)| (v.log10(), y))
        .collect();
    for (f, color) in functions.iter().zip([BLUE, ORANGE, GREEN, RED]) {
        let name = f["function"].as_str().unwrap();
        svg.text(&format!("{name} ({} calls)", num(f, "calls")));
        let counts: Vec<u64> = f["histogram"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| num(b, "count"))
            .collect();
        let bars = svg.bars(color);
        assert_eq!(bars.len(), counts.len(), "{name}: one bar per bucket");
        for (bar, &count) in bars.iter().zip(&counts) {
            let (log, per_px) = value_at(&axis, bar.y);
            assert_near(log, (count as f64).log10(), per_px, name);
        }
    }
}

#[test]
fn the_real_heap_chart_states_the_heap_at_the_peak() {
    let s = sites();
    let svg = chart("frag");
    let heap = &s.frag["real_heap"];
    assert_eq!(heap["measured"], true);
    let p = &heap["at_peak"];
    assert_eq!(num(p, "live_bytes"), 45920, "the fixture's peak");
    // The subtitle (wrapped over lines) gives the frag JSON's numbers exactly.
    let all = svg.strings().join(" ");
    let expected = format!(
        "at the live peak: {} B live in a {} B heap, {} {} of {} B, largest {} B, external fragmentation {:.1}%",
        num(p, "live_bytes"),
        num(p, "extent_bytes"),
        num(p, "n_holes"),
        if num(p, "n_holes") == 1 { "hole" } else { "holes" },
        num(p, "free_in_holes"),
        num(p, "largest_hole"),
        p["external"].as_f64().unwrap() * 100.0
    );
    assert!(all.contains(&expected), "{expected:?} not in {all:?}");
    // The live bytes' line (the second series, orange) reaches that peak.
    let live = svg
        .polylines
        .iter()
        .find(|l| l.stroke == "#FF7F0E")
        .expect("the live bytes' line");
    let top = live
        .points
        .iter()
        .map(|p| p.1)
        .fold(f64::INFINITY, f64::min);
    let (kib, per_px) = value_at(&svg.y_axes()[0], top);
    assert_near(
        kib * 1024.0,
        num(p, "live_bytes") as f64,
        per_px * 1024.0,
        "the live line's top",
    );
    for name in [
        "Real heap fragmentation over the run: sites",
        "heap extent ([heap])",
        "live (whole program)",
        "free in holes",
        "free above the last block",
        "bytes (KiB)",
        "external fragmentation (%)",
    ] {
        svg.text(name);
    }
    // Time on the x axis, like the live heap's chart, over the whole
    // trace: its last tick lies at or past the trace's duration (the frag
    // JSON's, which is the report's), and within twice it.
    let x_desc = svg.texts_starting("time since the trace's start (");
    assert_eq!(x_desc.len(), 1, "{:?}", svg.strings());
    let unit_ns = match x_desc[0].content.rsplit('(').next() {
        Some("ns)") => 1.0,
        Some("us)") => 1e3,
        Some("ms)") => 1e6,
        Some("s)") => 1e9,
        other => panic!("unknown time unit {other:?}"),
    };
    let last_tick = svg
        .texts
        .iter()
        .filter(|t| t.anchor == "middle" && !t.rotated)
        .filter_map(|t| parse_tick(&t.content))
        .fold(0.0, f64::max)
        * unit_ns;
    let end_ns = heap["duration_ns"].as_f64().unwrap();
    assert_eq!(end_ns, s.report["totals"]["duration_ns"].as_f64().unwrap());
    assert!(heap["at_end"]["time_ns"].as_f64().unwrap() <= end_ns);
    assert!(
        end_ns <= last_tick && last_tick <= 2.0 * end_ns,
        "last x tick {last_tick} ns for a run of {end_ns} ns"
    );
}

#[test]
fn the_policy_chart_draws_each_replayed_footprint() {
    let s = sites();
    let svg = chart("policies");
    svg.text("Allocator policies replayed: sites");
    svg.text("bytes (KiB)");
    let policies = s.frag["policies"].as_array().unwrap();
    assert_eq!(policies.len(), 8);
    let names = [
        "first-fit",
        "next-fit",
        "best-fit",
        "worst-fit",
        "buddy",
        "slab",
        "compact",
        "semispace",
    ];
    let xs: Vec<f64> = names.iter().map(|n| svg.text(n).x).collect();
    assert!(xs.windows(2).all(|w| w[0] < w[1]), "policies left to right");
    let axis = &svg.y_axes()[0];
    let footprints = svg.bars(BLUE);
    let live = svg.bars(ORANGE);
    assert_eq!((footprints.len(), live.len()), (8, 8));
    for (i, p) in policies.iter().enumerate() {
        let (kib, per_px) = value_at(axis, footprints[i].y);
        assert_near(
            kib * 1024.0,
            num(p, "peak_footprint") as f64,
            per_px * 1024.0,
            names[i],
        );
        // The replay sees the fixture's live peak under every policy.
        assert_eq!(num(p, "peak_live"), 45920);
        let (kib, per_px) = value_at(axis, live[i].y);
        assert_near(kib * 1024.0, 45920.0, per_px * 1024.0, names[i]);
    }
}

#[test]
fn the_flame_graph_shows_the_bytes_of_each_site() {
    let path = sites().charts.join("flame.svg");
    let text = std::fs::read_to_string(&path).unwrap();
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc =
        roxmltree::Document::parse_with_options(&text, options).expect("well-formed flame graph");
    let titles: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("title"))
        .filter_map(|n| n.text())
        .collect();
    // fixtures/README.md: alloc_big 40960 B, thread_worker 8000 B.
    for site in ["alloc_big (40,960 bytes", "thread_worker (8,000 bytes"] {
        assert!(
            titles.iter().any(|t| t.starts_with(site)),
            "{site} not among {titles:?}"
        );
    }
}

/// The index page as XML: its `<img>` sources and `<code>` commands.
/// Every text of every chart reads at 12 px or more on the index page,
/// which shows an image at most 968 px wide (a 1000 px body less its
/// padding): a font's size in the SVG, times the page's scale.
#[test]
fn every_chart_reads_at_12_px_or_more_on_the_page() {
    let mut checked = Vec::new();
    let entries = std::fs::read_dir(&sites().charts)
        .unwrap()
        .chain(std::fs::read_dir(cache_charts()).unwrap());
    for entry in entries {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "svg") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let width: f64 = text
            .split_once(" width=\"")
            .and_then(|(_, rest)| rest.split('"').next())
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("{}: no width", path.display()));
        let scale = (968.0 / width).min(1.0);
        // plotters writes font-size="N", inferno font-size:N in its styles.
        let sizes: Vec<f64> = text
            .split("font-size")
            .skip(1)
            .filter_map(|rest| {
                let rest = rest.trim_start_matches(['=', ':', '"']);
                let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
                rest[..end].parse().ok()
            })
            .collect();
        assert!(!sizes.is_empty(), "{}: no font size", path.display());
        let smallest = sizes.iter().copied().fold(f64::INFINITY, f64::min) * scale;
        assert!(
            smallest >= 12.0,
            "{}: text of {smallest:.1} px on the page",
            path.display()
        );
        checked.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    checked.sort();
    assert_eq!(
        checked,
        [
            "cache-functions.svg",
            "cache.svg",
            "flame.svg",
            "frag.svg",
            "heap.svg",
            "latency.svg",
            "leaks.svg",
            "policies.svg",
            "sizes.svg"
        ]
    );
}

/// The script of the overlap check: in every inline SVG, the boxes the
/// browser laid out for its texts and dots on the page (rotation
/// included; shrunk by a pixel, so that touching is not overlapping); each
/// pair of texts, or text and dot, that still intersect is written into
/// `#overlaps`.
const OVERLAP_SCRIPT: &str = "window.addEventListener('load',function(){\
var found=[];var svgs=document.querySelectorAll('svg');\
for(var k=0;k<svgs.length;k++){var s=svgs[k];var name=s.getAttribute('data-chart');\
var items=[];var ts=s.querySelectorAll('text');\
for(var i=0;i<ts.length;i++){var t=ts[i];if(!t.textContent.trim())continue;\
var b=t.getBoundingClientRect();items.push([t.textContent.trim(),b]);}\
var cs=s.querySelectorAll('circle');for(var i=0;i<cs.length;i++){items.push(['(dot)',cs[i].getBoundingClientRect()]);}\
for(var i=0;i<items.length;i++){for(var j=i+1;j<items.length;j++){var a=items[i][1],c=items[j][1];\
if(a.x+1<c.x+c.width-1&&c.x+1<a.x+a.width-1&&a.y+1<c.y+c.height-1&&c.y+1<a.y+a.height-1){\
found.push(name+': '+items[i][0]+' / '+items[j][0]);}}}}\
var e=document.getElementById('overlaps');e.setAttribute('data-found',found.join(' | '));\
e.setAttribute('data-done','1');});";

/// In headless Chromium, no text of a `memtrace-plot` chart overlaps
/// another or a dot (the peak marker). The flame graph is inferno's, laid
/// out by its own script, and left out.
#[test]
fn no_label_overlaps_another_or_the_peak_marker_in_chromium() {
    let Some(chromium) = browser::find_chromium() else {
        common::skip("label overlaps", "chromium is not installed");
        return;
    };
    let dir = &sites().charts;
    let charts = ["heap", "sizes", "latency", "frag", "policies", "leaks"]
        .map(|name| (dir.as_path(), name))
        .into_iter()
        .chain([
            (cache_charts(), "cache"),
            (cache_charts(), "cache-functions"),
        ]);
    let mut page = String::from("<!DOCTYPE html><html><body>");
    for (dir, name) in charts {
        let svg = std::fs::read_to_string(dir.join(format!("{name}.svg"))).unwrap();
        let start = svg.find("<svg").expect("an svg element");
        page.push_str(&svg[start..].replacen("<svg", &format!("<svg data-chart=\"{name}\""), 1));
    }
    // A control that must be found: two labels drawn on one spot.
    page.push_str(
        "<svg data-chart=\"control\" width=\"200\" height=\"50\">\
         <text x=\"10\" y=\"30\" font-size=\"14\">first label</text>\
         <text x=\"20\" y=\"32\" font-size=\"14\">second label</text></svg>",
    );
    page.push_str("<p id=\"overlaps\" data-found=\"\" data-done=\"\"></p><script>");
    page.push_str(OVERLAP_SCRIPT);
    page.push_str("</script></body></html>");
    let file = dir.join("overlaps.html");
    std::fs::write(&file, page).unwrap();
    let dom = browser::rendered_dom(&chromium, &file, (1000, 800)).expect("chromium");
    assert_eq!(
        browser::dom_attribute(&dom, "overlaps", "data-done").as_deref(),
        Some("1"),
        "the check did not run"
    );
    let found = browser::dom_attribute(&dom, "overlaps", "data-found").unwrap_or_default();
    assert_eq!(
        found, "control: first label / second label",
        "overlapping labels"
    );
}

fn index_page(dir: &Path) -> (Vec<String>, Vec<String>) {
    let text = std::fs::read_to_string(dir.join("index.html")).unwrap();
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(&text, options).expect("well-formed page");
    let collect = |tag: &str, f: &dyn Fn(roxmltree::Node) -> Option<String>| -> Vec<String> {
        doc.descendants()
            .filter(|n| n.has_tag_name(tag))
            .filter_map(f)
            .collect()
    };
    (
        collect("img", &|n| n.attribute("src").map(str::to_string)),
        collect("code", &|n| n.text().map(str::to_string)),
    )
}

#[test]
fn the_index_page_shows_every_chart_with_its_command() {
    let dir = &sites().charts;
    let (images, commands) = index_page(dir);
    let names = [
        "heap", "sizes", "latency", "frag", "policies", "flame", "leaks",
    ];
    let expected: Vec<String> = names.iter().map(|n| format!("{n}.svg")).collect();
    assert_eq!(images, expected);
    for img in &images {
        assert!(dir.join(img).is_file(), "{img} is missing");
    }
    let expected: Vec<String> = names
        .iter()
        .map(|n| format!("memtrace plot sites.trace --only {n}"))
        .collect();
    assert_eq!(commands, expected);
}

#[test]
fn the_index_page_loads_every_chart_in_headless_chromium() {
    let Some(chromium) = browser::find_chromium() else {
        common::skip(
            "the_index_page_loads_every_chart_in_headless_chromium",
            "chromium is not installed (apt-get install chromium; .ci/run installs it)",
        );
        return;
    };
    let dir = &sites().charts;
    let shot = dir.join("index.png");
    let check = browser::check_page(&chromium, &dir.join("index.html"), &shot, (1100, 1400))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        check,
        browser::PageCheck {
            loaded: 7,
            broken: vec![]
        }
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "the screenshot is a PNG"
    );
}

#[test]
fn a_trace_without_latencies_gets_a_placeholder_that_says_why() {
    let dir = scratch("plot-no-timing");
    let exe = compile("cc", "fixtures/c/sites.c", &["-O0", "-g", "-pthread"], &dir);
    let out = memtrace()
        .current_dir(&dir)
        .env("MEMTRACE_TIMING", "0")
        .args(["run", "-q", "-o", "t.trace", "--"])
        .arg(&exe)
        .output()
        .unwrap();
    assert!(out.status.success());
    memtrace_stdout(&dir, &["plot", "t.trace", "--only", "latency,heap"]);
    // The default directory: the trace's name with `.charts`.
    let svg = Svg::read(&dir.join("t.charts/latency.svg"));
    assert_eq!(
        svg.strings(),
        [
            "Time inside the allocator",
            "skipped: the trace has no allocator latencies (MEMTRACE_TIMING=0)"
        ]
    );
    let (images, _) = index_page(&dir.join("t.charts"));
    assert_eq!(images, ["latency.svg", "heap.svg"]);
}

#[test]
fn a_missing_trace_is_one_error_line_and_no_directory() {
    let dir = scratch("plot-missing");
    let out = memtrace()
        .current_dir(&dir)
        .args(["plot", "nothing.trace", "-o", "charts"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("memtrace: nothing.trace: "), "{stderr}");
    assert!(!dir.join("charts").exists());
}

#[test]
fn the_data_files_are_byte_for_byte_what_report_latency_and_frag_print() {
    let dir = sites().charts.parent().expect("the scratch directory");
    let args = [
        "plot",
        "sites.trace",
        "-o",
        "data-charts",
        "--only",
        "heap",
        "--data",
        "data",
    ];
    let stdout = memtrace_stdout(dir, &args);
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "data-charts/heap.svg",
            "data-charts/index.html",
            "data/sites.txt",
            "data/sites.json",
            "data/sites.latency.json",
            "data/sites.frag.json"
        ]
    );
    for (file, command) in [
        ("sites.txt", &["report", "sites.trace"][..]),
        ("sites.json", &["report", "--format", "json", "sites.trace"]),
        (
            "sites.latency.json",
            &["latency", "--format", "json", "sites.trace"],
        ),
        (
            "sites.frag.json",
            &["frag", "--format", "json", "sites.trace"],
        ),
    ] {
        let written = std::fs::read(dir.join("data").join(file)).expect("a data file");
        let printed = memtrace_stdout(dir, command);
        assert!(
            written == printed.as_bytes(),
            "data/{file} is not what `memtrace {}` prints",
            command.join(" ")
        );
    }
}
