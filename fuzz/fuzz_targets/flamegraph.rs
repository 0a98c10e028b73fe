//! `memtrace flamegraph`: the replay folded by every measure.
#![no_main]

use libfuzzer_sys::fuzz_target;
use memtrace_analyze::flame::{self, Measure};
use memtrace_analyze::replay::HeapReplay;
use memtrace_analyze::symbols::Symbols;

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = memtrace_fuzz::reader(data) else {
        return;
    };
    let Ok(replay) = HeapReplay::from_reader(&mut reader, 0) else {
        return;
    };
    let mut symbols = Symbols::new(reader.modules());
    for measure in [
        Measure::Bytes,
        Measure::Calls,
        Measure::Peak,
        Measure::Leaked,
        Measure::Latency,
    ] {
        let stacks = flame::folded_stacks(
            &replay,
            reader.stacks(),
            &mut symbols,
            reader.clock(),
            measure,
        );
        let text = flame::render_folded(&stacks);
        let _ = flame::parse_folded(&text);
    }
});
