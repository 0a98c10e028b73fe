//! Replay speed of every allocator model on a synthetic stream of 1,000,000
//! requests (mostly small blocks, some large, about 20,000 live at a time,
//! freed in random order): `cargo bench -p memtrace-frag`.

use criterion::{criterion_group, criterion_main, Criterion};
use memtrace_frag::{replay, Config, PolicyKind};

#[path = "../tests/stream/mod.rs"]
mod stream;

fn bench_replay(c: &mut Criterion) {
    let (s, _) = stream::stream(1_000_000);
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
