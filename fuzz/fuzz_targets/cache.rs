//! `memtrace cache`'s trace readers: phase deltas and allocation scatter.
#![no_main]

use libfuzzer_sys::fuzz_target;
use memtrace_cache::phases::PhaseCollector;
use memtrace_cache::scatter::ScatterReplay;

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = memtrace_fuzz::reader(data) else {
        return;
    };
    let mut phases = PhaseCollector::default();
    let mut scatter = ScatterReplay::default();
    while let Ok(Some(event)) = reader.next_event() {
        phases.apply(&event);
        scatter.apply(&event);
    }
    for p in phases.finish() {
        let _ = p.delta("rss");
    }
    for s in scatter.finish() {
        let _ = (s.line_ratio(), s.page_ratio(), s.is_scattered());
    }
});
