//! `memtrace frag`: the policy replay and the real heap in one pass, as
//! `src/cmd/frag.rs` chains them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use memtrace_analyze::heapmap::RealHeap;
use memtrace_analyze::sink::Trace;
use memtrace_analyze::requests::Requests;
use memtrace_analyze::symbols::Symbols;
use memtrace_frag::{best_policy, Config, PolicyKind, StreamReplay};

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = memtrace_fuzz::reader(data) else {
        return;
    };
    let mut replay = StreamReplay::new(&PolicyKind::ALL, &Config::default());
    let mut requests = Requests::new();
    let mut real_heap = RealHeap::new();
    while let Ok(Some(event)) = reader.next_event() {
        requests.feed(&event, |r| replay.push(r));
        real_heap.feed(&event, reader.header().page_size);
    }
    let reports = replay.finish();
    let _ = best_policy(&reports);
    let heap = real_heap.finish_map(&Trace::of(&reader));
    let mut symbols = Symbols::new(reader.modules());
    for p in heap.pinning_at_peak.iter().chain(&heap.pinning_at_end) {
        let _ = symbols.site(reader.stacks(), p.stack).describe();
    }
    let _ = serde_json::to_string(&heap);
});
