//! `memtrace report`: the replay, the report and both renderings.
#![no_main]

use libfuzzer_sys::fuzz_target;
use memtrace_analyze::report::{self, TextOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(reader) = memtrace_fuzz::reader(data) else {
        return;
    };
    if let Ok(r) = report::from_reader(reader) {
        let _ = report::render_text(&r, TextOptions::default());
        let _ = report::render_summary(&r, 10);
        let _ = serde_json::to_string(&r);
    }
});
