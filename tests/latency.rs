//! `memtrace latency`: the same data allocated one block at a time or in
//! bulk, and a program whose time goes to the allocator
//! (fixtures/c/bulk_vs_single.c, fixtures/c/alloc_heavy.c). Counts are
//! asserted exactly, times only by their order.

mod common;
use common::*;

use std::path::Path;

use serde_json::Value;

const BULK_VS_SINGLE: &str = "fixtures/c/bulk_vs_single.c";
const ALLOC_HEAVY: &str = "fixtures/c/alloc_heavy.c";

fn latency_json(dir: &Path, trace: &str, extra: &[&str]) -> Value {
    let mut args = vec!["latency", "--format", "json", "--top", "1000"];
    args.extend_from_slice(extra);
    args.push(trace);
    memtrace_json(dir, &args)
}

/// The entry of `list` at line `line` of `source`.
fn at_line<'a>(list: &'a Value, source: &str, line: u64) -> &'a Value {
    let file = source.rsplit('/').next().unwrap();
    let hits: Vec<&Value> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            s["line"].as_u64() == Some(line)
                && s["file"].as_str().is_some_and(|f| f.ends_with(file))
        })
        .collect();
    assert_eq!(hits.len(), 1, "one entry at {file}:{line} in {list}");
    hits[0]
}

#[test]
fn bulk_allocation_costs_fewer_calls_and_fewer_stalls() {
    let dir = scratch("latency-bulk");
    let exe = compile("cc", BULK_VS_SINGLE, &["-O0", "-g"], &dir);
    let exe = exe.to_str().unwrap();
    for mode in ["single", "bulk"] {
        let out = record(&dir, &format!("{mode}.trace"), &[exe, mode, "100000"]);
        assert!(out.status.success());
    }
    let single_line = tag_line(BULK_VS_SINGLE, "@site single_alloc");
    let bulk_line = tag_line(BULK_VS_SINGLE, "@site bulk_alloc");

    // With a threshold of 0 every call is a stall: exact counts.
    let single = latency_json(&dir, "single.trace", &["--stall-us", "0"]);
    let bulk = latency_json(&dir, "bulk.trace", &["--stall-us", "0"]);
    let s = at_line(&single["top_sites"], BULK_VS_SINGLE, single_line);
    let b = at_line(&bulk["top_sites"], BULK_VS_SINGLE, bulk_line);
    assert_eq!(
        (num(s, "allocations"), num(s, "frees"), num(s, "calls")),
        (100_000, 100_000, 200_000)
    );
    assert_eq!(
        (num(b, "allocations"), num(b, "frees"), num(b, "calls")),
        (1, 1, 2)
    );
    assert_eq!((num(s, "min_size"), num(s, "max_size")), (32, 32));
    assert_eq!(num(b, "bytes_requested"), 3_200_000);
    assert_eq!(num(s, "stalls"), 200_000);
    assert_eq!(num(b, "stalls"), 2);
    let ss = at_line(&single["stalls"]["sites"], BULK_VS_SINGLE, single_line);
    assert_eq!(ss["by_function"]["malloc"], 100_000);
    assert_eq!(ss["by_function"]["free"], 100_000);

    // Times are not compared (they belong to the machine): each run's
    // allocator time is its functions' times added up.
    for r in [&single, &bulk] {
        check_allocator_time_is_the_functions_time(r);
    }
    let mallocs = |r: &Value| {
        let f = r["functions"].as_array().unwrap();
        let m = f.iter().find(|f| f["function"] == "malloc").unwrap();
        num(m, "calls")
    };
    assert!(mallocs(&single) >= 100_000);
    assert!(mallocs(&bulk) < 100);

    // The advice names the one-by-one site (many small blocks, none
    // temporary), with the time it cost, and says nothing of the bulk run.
    let advice = single["advice"].as_array().unwrap();
    assert_eq!(advice.len(), 1, "{advice:?}");
    assert_eq!(advice[0]["kind"], "bulk");
    assert_eq!(advice[0]["line"], single_line);
    assert_eq!(advice[0]["allocator_ns"], s["allocator_ns"]);
    assert!(bulk["advice"].as_array().unwrap().is_empty());

    // CPU time and faults come from the recorder's last resource sample;
    // what the trace does not hold (faults per stall) is said, not guessed.
    let cpu = num(&single, "cpu_ns");
    assert!(cpu > 0);
    // Allocator time is wall-clock time: no share of CPU time is given.
    assert!(single.get("allocator_cpu_share").is_none());
    // 100,000 blocks of 32 bytes touch at least 3.2 MB: hundreds of pages.
    assert!(single["page_faults"][0].as_u64().unwrap() > 100);
    assert!(single["stalls"]["page_faults"].is_null());
    let text = memtrace()
        .current_dir(&dir)
        .args(["latency", "single.trace"])
        .output()
        .unwrap();
    assert!(text.status.success());
    let text = String::from_utf8(text.stdout).unwrap();
    let faults = single["page_faults"][0].as_u64().unwrap();
    assert!(
        text.contains(&format!("page faults: {faults} minor")),
        "{text}"
    );
    assert!(text.contains("allocate them in bulk"), "{text}");
}

/// `allocator_ns` is the sum of `functions[].total_ns`, up to the rounding
/// of each function's clock ticks to whole nanoseconds (under 1 ns each).
fn check_allocator_time_is_the_functions_time(r: &Value) {
    let functions = r["functions"].as_array().expect("functions");
    let sum: u64 = functions.iter().map(|f| num(f, "total_ns")).sum();
    let total = num(r, "allocator_ns");
    assert!(
        total.abs_diff(sum) <= functions.len() as u64,
        "allocator_ns {total} vs the functions' {sum}"
    );
}

/// How large the share is belongs to the CPU and glibc (`cargo xtask bench`
/// compares it with a run without memtrace); what holds on every machine is
/// how the run's time splits and how the tables are ordered.
#[test]
fn an_allocation_heavy_programs_time_splits_into_allocator_and_outside() {
    let dir = scratch("latency-heavy");
    let exe = compile("cc", ALLOC_HEAVY, &["-O0", "-g"], &dir);
    let out = record(&dir, "heavy.trace", &[exe.to_str().unwrap(), "5000"]);
    assert!(out.status.success());
    let r = latency_json(&dir, "heavy.trace", &[]);
    let calloc_line = tag_line(ALLOC_HEAVY, "@site heavy_calloc");
    let malloc_line = tag_line(ALLOC_HEAVY, "@site heavy_malloc");
    let c = at_line(&r["top_sites"], ALLOC_HEAVY, calloc_line);
    let m = at_line(&r["top_sites"], ALLOC_HEAVY, malloc_line);
    assert_eq!((num(c, "allocations"), num(c, "frees")), (5000, 5000));
    assert_eq!((num(m, "allocations"), num(m, "frees")), (5000, 5000));
    // One thread: its life lies inside the run, and its calls are
    // disjoint parts of its life.
    let (wall, threads) = (num(&r, "wall_ns"), num(&r, "thread_ns"));
    let inside = num(&r, "allocator_ns");
    assert!(threads <= wall, "{r}");
    assert!(inside <= threads, "{r}");
    assert_eq!(inside + num(&r, "outside_allocator_ns"), threads);
    assert_eq!(
        r["allocator_share"].as_f64().unwrap(),
        inside as f64 / threads as f64
    );
    check_allocator_time_is_the_functions_time(&r);
    // Every calloc and malloc and free of the 5000 rounds, each function
    // once, most time first.
    let functions = r["functions"].as_array().unwrap();
    let calls: Vec<(&str, u64)> = functions
        .iter()
        .map(|f| (f["function"].as_str().unwrap(), num(f, "calls")))
        .collect();
    let mut sorted = calls.clone();
    sorted.sort_by_key(|&(name, _)| name);
    assert_eq!(
        sorted,
        [("calloc", 5000), ("free", 10_000), ("malloc", 5000)]
    );
    let times: Vec<u64> = functions.iter().map(|f| num(f, "total_ns")).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    // The two sites' times are their share of the same total.
    assert!(num(c, "allocator_ns") + num(m, "allocator_ns") <= inside);
}
