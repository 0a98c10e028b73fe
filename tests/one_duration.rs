//! One trace, one duration: `report`, `latency` and `frag` measure the same
//! span (the first event to the trailer, docs/trace-format.md), every time
//! they show lies inside it, and a moment two of them name is the same
//! moment. Run on `fixtures/c/locality.c all`, whose six phases and
//! 100 ms resource samples give times of every kind.

mod common;
use common::*;

use serde_json::Value;

const LOCALITY: &str = "fixtures/c/locality.c";

fn times(list: &Value, key: &str) -> Vec<u64> {
    list.as_array()
        .unwrap_or_else(|| panic!("a list: {list}"))
        .iter()
        .map(|p| p[key].as_u64().expect("a time"))
        .collect()
}

#[test]
fn report_latency_and_frag_share_one_span_and_its_times() {
    let dir = scratch("one-duration");
    let exe = compile("cc", LOCALITY, &["-O0", "-g"], &dir);
    let out = record(&dir, "l.trace", &[exe.to_str().unwrap(), "all", "20000"]);
    assert!(out.status.success());

    let report = memtrace_json(&dir, &["report", "--format", "json", "l.trace"]);
    let latency = memtrace_json(&dir, &["latency", "--format", "json", "l.trace"]);
    let frag = memtrace_json(&dir, &["frag", "--format", "json", "l.trace"]);

    let duration = num(&report["totals"], "duration_ns");
    assert!(duration > 0);
    assert_eq!(num(&latency, "wall_ns"), duration, "latency's wall time");
    let heap = &frag["real_heap"];
    assert_eq!(num(heap, "duration_ns"), duration, "frag's real heap");

    // The live peak is one moment, whoever names it.
    assert_eq!(
        num(&heap["at_peak"], "time_ns"),
        num(&report["totals"], "peak_time_ns")
    );

    let phases = times(&report["phases"], "time_ns");
    assert_eq!(phases.len(), 6, "the six phases of `all`: {phases:?}");
    let mut inside = vec![num(&report["totals"], "peak_time_ns")];
    inside.extend(phases);
    inside.extend(times(&report["rss"], "time_ns"));
    inside.extend(times(&report["timeline"], "time_ns"));
    inside.extend(times(&heap["timeline"], "time_ns"));
    inside.push(num(&heap["at_end"], "time_ns"));
    for t in &inside {
        assert!(
            *t <= duration,
            "{t} ns lies after the trace's {duration} ns"
        );
    }

    // The text says the same, in the same words.
    let text = memtrace_stdout(&dir, &["report", "l.trace"]);
    let line = text
        .lines()
        .find(|l| l.starts_with("duration: "))
        .expect("a duration line");
    let latency_text = memtrace_stdout(&dir, &["latency", "l.trace"]);
    let shown = line.trim_start_matches("duration: ");
    assert!(
        latency_text.contains(&format!("over {shown} of traced wall time")),
        "report says {shown}; latency: {latency_text}"
    );
}
