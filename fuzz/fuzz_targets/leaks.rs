//! `memtrace leaks`: the scan's classes, cycles, records and suppressions,
//! and every output format (text, JSON, SARIF, GitHub annotations).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use memtrace_analyze::leaks::{self, TextOptions};
use memtrace_leaks::ci::{self, CiOptions};
use memtrace_leaks::{LeakClass, Suppressions};

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
        let incomplete = leaks::incomplete_reason(&r.scan);
        // A root that does not exist: no path is resolved on this machine.
        let options = CiOptions {
            fail_on: &[LeakClass::Definite, LeakClass::Indirect],
            root: Path::new("/nonexistent-fuzz-root"),
            tool_version: "0.0.0",
        };
        let findings = r.findings();
        let _ = serde_json::to_string(&ci::sarif(&findings, incomplete.as_deref(), &options));
        let _ = ci::github(&findings, incomplete.as_deref(), &options);
    }
});
