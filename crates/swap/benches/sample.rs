//! The monitor's own cost: one sample of a process tree (a shell with two
//! children, in this machine's memory cgroup), the interval and its verdict.
//! Criterion times it; the CPU time per sample (user + system, from
//! `getrusage`) is printed after it, since the target is CPU time below 1 ms.

use std::process::{Child, Command};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use memtrace_swap::{Classifier, Interval, Sampler, Thresholds};
use nix::sys::resource::{getrusage, UsageWho};

/// `sh` with two `sleep` children: a tree of three.
fn tree() -> Child {
    let child = Command::new("sh")
        .args(["-c", "sleep 60 & sleep 60 & wait"])
        .spawn()
        .expect("start sh");
    std::thread::sleep(Duration::from_millis(200));
    child
}

fn cpu_us() -> u64 {
    let usage = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let us = |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64;
    us(usage.user_time()) + us(usage.system_time())
}

fn bench_sample(c: &mut Criterion) {
    let mut child = tree();
    let mut sampler = Sampler::attach(child.id() as i32).expect("attach");
    let mut classifier = Classifier::new(Thresholds::default());
    let mut last = sampler.sample();
    assert_eq!(last.n_procs, 3, "the tree is sh and two sleeps");
    let mut one_tick = || {
        let sample = sampler.sample();
        let state = classifier.push(&Interval::between(&last, &sample));
        last = sample;
        state
    };
    c.bench_function("sample + verdict (tree of 3)", |b| b.iter(&mut one_tick));

    let n = 2000;
    let before = cpu_us();
    for _ in 0..n {
        one_tick();
    }
    let per_sample = (cpu_us() - before) as f64 / n as f64;
    println!("monitor CPU time per sample: {per_sample:.1} us (user + system, {n} samples)");
    let _ = child.kill();
    let _ = child.wait();
}

criterion_group!(benches, bench_sample);
criterion_main!(benches);
