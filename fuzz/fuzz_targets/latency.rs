//! `memtrace latency`: percentiles, stalls, sites and advice.
#![no_main]

use libfuzzer_sys::fuzz_target;
use memtrace_analyze::latency::{self, Config};

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = memtrace_fuzz::reader(data) else {
        return;
    };
    if let Ok(r) = latency::from_reader(&mut reader, Config::default()) {
        let _ = latency::render_text(&r, 8);
        let _ = serde_json::to_string(&r);
    }
});
