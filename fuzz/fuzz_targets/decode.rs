//! The trace decoder: every event to the end, then the side records (the
//! leak scan, the trailer); and a second pass that skips the events.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = memtrace_fuzz::reader(data) else {
        return;
    };
    loop {
        match reader.next_event() {
            Ok(Some(event)) => {
                let _ = event.ts();
            }
            Ok(None) | Err(_) => break,
        }
    }
    let _ = reader.completeness();
    if let Some(scan) = reader.leak_scan() {
        let _ = format!("{scan:?}");
    }
    let _ = reader.stacks().len();
    if let Ok(mut skipping) = memtrace_fuzz::reader(data) {
        let _ = skipping.skip_to_end();
        let _ = skipping.leak_scan();
    }
});
