//! Inputs the fuzzers (`fuzz/`) found that broke an analysis, each with the
//! exact outcome it has now. The files are what libFuzzer wrote (its builds
//! skip block checksums); `with_checksums` makes them decode here the same
//! way.

use memtrace_analyze::flame::{self, Measure};
use memtrace_analyze::replay::HeapReplay;
use memtrace_analyze::report;
use memtrace_analyze::symbols::Symbols;
use memtrace_format::{with_checksums, Reader};

fn input(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/fuzz/{name}", env!("CARGO_MANIFEST_DIR"));
    with_checksums(&std::fs::read(path).unwrap())
}

/// Nanoseconds of `u64::MAX` ticks in this trace's clock.
fn saturated_ns(bytes: &[u8]) -> u64 {
    let mut reader = Reader::new(bytes).unwrap();
    while reader.next_event().unwrap().is_some() {}
    reader.clock().duration_ns(u64::MAX)
}

/// Latencies near `u64::MAX` ticks overflowed the per-function sum
/// (report.rs, "attempt to add with overflow"): the sum now saturates.
#[test]
fn huge_latencies_saturate_in_the_report() {
    for (name, events, allocations) in [
        ("report-latency-overflow", 35, 25),
        ("report-latency-overflow-2", 364, 238),
    ] {
        let bytes = input(name);
        let r = report::from_reader(Reader::new(bytes.as_slice()).unwrap()).unwrap();
        assert_eq!(r.totals.events, events, "{name}");
        assert_eq!(r.totals.allocations, allocations, "{name}");
        assert_eq!(r.totals.allocator_ns, saturated_ns(&bytes), "{name}");
    }
}

/// Stacks that fold to the same line had their latencies summed without
/// bound (flame.rs, "attempt to add with overflow").
#[test]
fn huge_latencies_saturate_in_the_flame_graph() {
    let bytes = input("flamegraph-sum-overflow");
    let mut reader = Reader::new(bytes.as_slice()).unwrap();
    let replay = HeapReplay::from_reader(&mut reader, 0).unwrap();
    // Without the trace's modules every frame is `??` (its modules' frames
    // would be `module+0xOFFSET`, all different), so stacks of one depth
    // fold to one line and their latencies are summed.
    let mut symbols = Symbols::new(&[]);
    let stacks = flame::folded_stacks(
        &replay,
        reader.stacks(),
        &mut symbols,
        reader.clock(),
        Measure::Latency,
    );
    assert_eq!(
        stacks,
        [
            ("??;??;??;??;??".to_string(), u64::MAX),
            ("??;??;??;??;??;??;??;??;??;??".to_string(), 528),
        ]
    );
}
