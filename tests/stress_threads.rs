//! Many threads calling every allocator function while short-lived threads
//! come and go: the trace holds exactly the calls the fixture's generator
//! makes, per thread, every block freed after its allocation, no deadlock.
//! `cargo xtask stress` runs the full size (16 threads x 1M operations, 20
//! runs); this is the CI size.

mod common;

use std::time::Duration;

use common::stress::{check, expected_worker, splitmix64, StressConfig};
use common::{compile, memtrace, output_within, scratch};

#[test]
fn the_generator_is_splitmix64_and_the_first_operation_is_known() {
    // splitmix64's published outputs for seed 0.
    let mut state = 0;
    assert_eq!(splitmix64(&mut state), 0xE220_A839_7B1D_CDAF);
    assert_eq!(splitmix64(&mut state), 0x6E78_9E6A_A1B9_65F4);
    assert_eq!(splitmix64(&mut state), 0x06C4_5D18_8009_454F);
    // Worker 0 (seed 1) first draws r = 0x910a2dec89025cc1: slot 1 (empty),
    // size 1 + (r >> 8) % 2048 = 605, align 16 << 3 = 128, choice 12, so
    // 12 % 5 = 2: aligned_alloc(128, 640); the final cleanup frees it.
    let mut state = 1;
    assert_eq!(splitmix64(&mut state), 0x910A_2DEC_8902_5CC1);
    let first = expected_worker(0, 1);
    assert_eq!(first.calls, [0, 0, 1, 0, 0, 0, 1]);
    assert_eq!(first.bytes, 640);
    assert_eq!(expected_worker(3, 0).calls, [0; 7]);
}

#[test]
fn threads_stress_records_every_call_of_every_thread() {
    let config = StressConfig {
        threads: 8,
        ops: 25_000,
        churn_rounds: 10,
    };
    let dir = scratch("stress-threads");
    let exe = compile(
        "cc",
        "fixtures/c/stress_threads.c",
        &["-O2", "-g", "-pthread"],
        &dir,
    );
    let trace = dir.join("s.trace");
    let out = output_within(
        memtrace()
            .current_dir(&dir)
            .args(["run", "-q", "-o", "s.trace", "--"])
            .arg(&exe)
            .args(config.args()),
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let checked = check(&config, &stdout, &trace).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(checked.fixture_calls, config.expected_calls());
    assert!(checked.events >= checked.fixture_calls);
}
