//! Replay speed of every allocator model on a synthetic stream of 1,000,000
//! requests (mostly small blocks, some large, about 20,000 live at a time,
//! freed in random order): `cargo bench -p memtrace-frag`.

use criterion::{criterion_group, criterion_main, Criterion};
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

fn bench_replay(c: &mut Criterion) {
    let s = stream(1_000_000);
    let mut group = c.benchmark_group("replay 1M requests");
    group.sample_size(10);
    for policy in PolicyKind::ALL {
        group.bench_function(policy.name(), |b| {
            b.iter(|| replay(&s, policy, &Config::default()))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_replay);
criterion_main!(benches);
