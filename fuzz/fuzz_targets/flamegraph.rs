//! `memtrace flamegraph`: a trace folded by every measure, as the command
//! folds it (`flame::from_reader`), and the folded lines read back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use memtrace_analyze::flame::{self, Measure};

fuzz_target!(|data: &[u8]| {
    for measure in [
        Measure::Bytes,
        Measure::Calls,
        Measure::Peak,
        Measure::Leaked,
        Measure::Latency,
    ] {
        let Ok(mut reader) = memtrace_fuzz::reader(data) else {
            return;
        };
        let Ok(folded) = flame::from_reader(&mut reader, measure) else {
            return;
        };
        let parsed = flame::parse_folded(&folded.text).expect("folded lines read back");
        assert_eq!(parsed.is_empty(), folded.empty);
    }
});
