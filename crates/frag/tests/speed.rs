//! Replay speed on a synthetic stream: 1,000,000 requests in a release
//! build (`cargo test --release -p memtrace-frag --test speed -- --nocapture`),
//! 100,000 in a debug build. Prints the time per policy.

use std::time::Instant;

use memtrace_frag::{replay, Config, PolicyKind, Request};

/// Mostly small blocks with some large ones; about 20,000 live at a time,
/// freed in random order.
fn stream(n: usize) -> Vec<Request> {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut rand = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut live: Vec<u64> = Vec::new();
    let mut out = Vec::with_capacity(n);
    let mut next_id = 0;
    while out.len() < n {
        let r = rand();
        if live.len() < 20_000 && (live.len() < 10_000 || r % 2 == 0) || live.is_empty() {
            let size = match r % 100 {
                0 => 4096 + (r >> 8) % 200_000,
                1..=9 => 512 + (r >> 8) % 3584,
                _ => 1 + (r >> 8) % 512,
            };
            out.push(Request::Alloc { id: next_id, size });
            live.push(next_id);
            next_id += 1;
        } else {
            let i = (r >> 16) as usize % live.len();
            out.push(Request::Free {
                id: live.swap_remove(i),
            });
        }
    }
    out
}

#[test]
fn replay_speed() {
    let n = if cfg!(debug_assertions) {
        100_000
    } else {
        1_000_000
    };
    let s = stream(n);
    for policy in PolicyKind::ALL {
        let t = Instant::now();
        let r = replay(&s, policy, &Config::default());
        println!(
            "{n} requests, {:<9} {:>7.3} s: peak {:>10} bytes, {:.2} examined",
            policy.name(),
            t.elapsed().as_secs_f64(),
            r.peak_footprint,
            r.examined_avg
        );
        assert!(r.peak_footprint >= r.peak_live);
    }
}
