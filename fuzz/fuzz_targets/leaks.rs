//! `memtrace leaks`: the scan's classes, cycles, records and suppressions.
#![no_main]

use libfuzzer_sys::fuzz_target;
use memtrace_analyze::leaks::{self, TextOptions};
use memtrace_leaks::Suppressions;

fuzz_target!(|data: &[u8]| {
    let Ok(reader) = memtrace_fuzz::reader(data) else {
        return;
    };
    if let Ok(r) = leaks::from_reader(reader, &Suppressions::builtin()) {
        let _ = leaks::render_text(
            &r,
            TextOptions {
                frames: 12,
                show: [true; 4],
            },
        );
        let _ = serde_json::to_string(&r);
    }
});
