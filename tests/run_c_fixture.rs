//! `memtrace run` on the C fixture `fixtures/c/sites.c`, whose answers are
//! known exactly (see fixtures/README.md).

mod common;
use common::*;

const SOURCE: &str = "fixtures/c/sites.c";

/// (function, calls, bytes, frees, unfreed blocks, unfreed bytes, bytes at peak)
const EXPECTED: &[(&str, u64, u64, u64, u64, u64, u64)] = &[
    ("alloc_small", 100, 2400, 100, 0, 0, 2400),
    ("alloc_big", 10, 40960, 5, 5, 20480, 40960),
    ("alloc_zeroed", 20, 2560, 20, 0, 0, 2560),
    ("grow_buffer", 4, 960, 4, 0, 0, 0),
    ("thread_worker", 200, 8000, 200, 0, 0, 0),
    ("leak_one", 1, 1000, 0, 1, 1000, 0),
];

#[test]
fn every_site_has_its_exact_counts_and_source_line() {
    let dir = scratch("c-sites");
    let exe = compile("cc", SOURCE, &["-O0", "-g", "-pthread"], &dir);
    let out = record(&dir, "sites.trace", &[exe.to_str().unwrap()]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "sites done\n");
    let report = report_json(&dir.join("sites.trace"));

    assert_eq!(report["trace"]["complete"], true);
    assert_eq!(num(&report["totals"], "peak_bytes"), 45920);
    // RSS is sampled beside the heap (at least once, at the end), and the
    // process's resident memory holds at least the heap left at exit.
    let rss = report["rss"].as_array().expect("rss samples");
    assert!(!rss.is_empty());
    let last = rss.last().unwrap();
    assert!(num(last, "rss_bytes") > num(&report["totals"], "unfreed_bytes"));
    assert!(num(last, "cpu_ns") > 0);
    for &(function, calls, bytes, frees, unfreed_blocks, unfreed_bytes, peak) in EXPECTED {
        let s = site(&report, function);
        assert_eq!(num(s, "allocations"), calls, "{function} calls");
        assert_eq!(num(s, "bytes_allocated"), bytes, "{function} bytes");
        assert_eq!(num(s, "frees"), frees, "{function} frees");
        assert_eq!(
            num(s, "unfreed_blocks"),
            unfreed_blocks,
            "{function} unfreed blocks"
        );
        assert_eq!(
            num(s, "unfreed_bytes"),
            unfreed_bytes,
            "{function} unfreed bytes"
        );
        assert_eq!(num(s, "peak_bytes"), peak, "{function} bytes at peak");
        assert_eq!(num(s, "stacks"), 1, "{function}: one stack");
        let line = tag_line(SOURCE, &format!("@site {function} "));
        assert!(
            s["file"].as_str().unwrap().ends_with(SOURCE),
            "{function} file {}",
            s["file"]
        );
        assert_eq!(num(s, "line"), line, "{function} line");
        // The stack's first frame is the site itself.
        assert_eq!(s["stack"][0]["function"], function);
        assert_eq!(num(&s["stack"][0], "line"), line);
    }
    // Sites called from main: the next frame is main at the calling line.
    for (function, call_line) in [("alloc_small", 110), ("alloc_big", 111), ("leak_one", 117)] {
        let s = site(&report, function);
        assert_eq!(s["stack"][1]["function"], "main");
        assert_eq!(
            num(&s["stack"][1], "line"),
            call_line,
            "main calls {function}"
        );
    }
    // The thread site runs on 4 threads, entered from start_thread.
    let worker = site(&report, "thread_worker");
    assert_eq!(worker["stack"][1]["function"], "start_thread");

    // Every byte allocated is either freed or unfreed at exit.
    let sites = report["sites"].as_array().unwrap();
    let allocated: u64 = sites.iter().map(|s| num(s, "bytes_allocated")).sum();
    let freed: u64 = sites.iter().map(|s| num(s, "bytes_freed")).sum();
    assert_eq!(allocated - freed, num(&report["totals"], "unfreed_bytes"));
    // Threads: main and the 4 workers.
    assert_eq!(num(&report["totals"], "threads"), 5);
    assert_eq!(report["totals"]["calls_by_function"]["realloc"], 4);
}

#[test]
fn the_summary_names_the_top_sites() {
    let dir = scratch("c-summary");
    let exe = compile("cc", SOURCE, &["-O0", "-g", "-pthread"], &dir);
    let out = memtrace()
        .current_dir(&dir)
        .args(["run", "-o", "s.trace", "--"])
        .arg(&exe)
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines[0].starts_with("memtrace: "), "{stderr}");
    assert!(lines[0].contains("peak heap 44.84 KiB"), "{stderr}");
    let line = tag_line(SOURCE, "@site alloc_big ");
    assert_eq!(
        lines[1],
        format!(
            "memtrace:   40.00 KiB in 10 calls at alloc_big ({}:{line})",
            root().join(SOURCE).display()
        )
    );
    assert_eq!(
        *lines.last().unwrap(),
        format!(
            "memtrace: trace written to {}",
            dir.join("s.trace").display()
        )
    );
}

/// The codec byte of every block of a trace file.
fn block_codecs(trace: &std::path::Path) -> Vec<u8> {
    let bytes = std::fs::read(trace).unwrap();
    let mut codecs = Vec::new();
    let mut at = 12;
    while at + 20 <= bytes.len() {
        assert_eq!(&bytes[at..at + 4], b"MTBK");
        codecs.push(bytes[at + 4]);
        at += 20 + u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
    }
    assert_eq!(at, bytes.len());
    codecs
}

/// A program that allocates slowly leaves the writer time to compress every
/// block (zstd, codec 1) but the header's, which the recorder always stores
/// raw (it writes it before `main`, and zstd's context must not be made in
/// the program's heap then); `MEMTRACE_COMPRESSION=0` stores them all raw
/// (codec 0); both traces give the same report.
#[test]
fn a_slow_program_gets_every_block_compressed() {
    let dir = scratch("c-sites-codecs");
    let exe = compile("cc", SOURCE, &["-O0", "-g", "-pthread"], &dir);
    let out = record(&dir, "paced.trace", &[exe.to_str().unwrap()]);
    assert!(out.status.success());
    let raw = memtrace()
        .current_dir(&dir)
        .env("MEMTRACE_COMPRESSION", "0")
        .args(["run", "-q", "-o", "raw.trace", "--"])
        .arg(&exe)
        .output()
        .unwrap();
    assert!(raw.status.success());
    let paced = block_codecs(&dir.join("paced.trace"));
    let stored = block_codecs(&dir.join("raw.trace"));
    assert!(
        paced.len() >= 2 && paced[0] == 0 && paced[1..].iter().all(|&c| c == 1),
        "{paced:?}"
    );
    assert!(
        stored.len() >= 2 && stored.iter().all(|&c| c == 0),
        "{stored:?}"
    );
    let a = report_json(&dir.join("paced.trace"));
    let b = report_json(&dir.join("raw.trace"));
    for key in [
        "allocations",
        "frees",
        "bytes_allocated",
        "peak_bytes",
        "unfreed_bytes",
    ] {
        assert_eq!(num(&a["totals"], key), num(&b["totals"], key), "{key}");
    }
    assert_eq!(num(&a["totals"], "bytes_allocated"), 57032);
}
