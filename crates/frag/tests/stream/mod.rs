//! The synthetic request stream that tests/synthetic_stream.rs checks and
//! benches/replay.rs times, with what the generator knows about it.
// Each user reads only part of it (the bench ignores `Expected`).
#![allow(dead_code)]

use memtrace_frag::Request;

/// What the generator knows about its stream.
#[derive(Debug, Default)]
pub struct Expected {
    pub allocs: u64,
    pub frees: u64,
    pub peak_live: u64,
}

/// Mostly small blocks with some large ones; about 20,000 live at a time,
/// freed in random order.
pub fn stream(n: usize) -> (Vec<Request>, Expected) {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut rand = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut live: Vec<(u64, u64)> = Vec::new();
    let mut out = Vec::with_capacity(n);
    let mut next_id = 0;
    let mut expected = Expected::default();
    let mut live_bytes = 0u64;
    while out.len() < n {
        let r = rand();
        if live.len() < 20_000 && (live.len() < 10_000 || r % 2 == 0) || live.is_empty() {
            let size = match r % 100 {
                0 => 4096 + (r >> 8) % 200_000,
                1..=9 => 512 + (r >> 8) % 3584,
                _ => 1 + (r >> 8) % 512,
            };
            out.push(Request::Alloc { id: next_id, size });
            live.push((next_id, size));
            next_id += 1;
            expected.allocs += 1;
            live_bytes += size;
            expected.peak_live = expected.peak_live.max(live_bytes);
        } else {
            let i = (r >> 16) as usize % live.len();
            let (id, size) = live.swap_remove(i);
            out.push(Request::Free { id });
            expected.frees += 1;
            live_bytes -= size;
        }
    }
    (out, expected)
}
