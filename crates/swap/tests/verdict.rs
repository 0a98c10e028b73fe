//! The verdict rules on built intervals (each rule at its threshold) and on
//! timelines recorded from real runs (`fixtures/swap/`, described in
//! `fixtures/swap/README.md`), with the exact state of every interval.

use memtrace_swap::timeline::{intervals, read_csv};
use memtrace_swap::{classify, Interval, Sample, State, Summary, Thresholds};

use State::{Ok as O, Reclaiming as R, Swapping as S, Thrashing as T};

/// A 100 ms interval with these counts (rates are ten times them) and
/// milliseconds of PSI "some" stall (percent is ten times them), for a tree
/// with 4 KiB in swap.
fn interval(majflt: u64, refault: u64, swapped_out: u64, stall_ms: u64) -> Interval {
    let a = Sample {
        psi_some_us: Some(0),
        cg_refault: Some(0),
        cg_limit_hits: Some(0),
        ..Sample::default()
    };
    let b = Sample {
        t_ms: 100,
        majflt,
        swap_kib: 4,
        sys_pswpout: swapped_out,
        psi_some_us: Some(stall_ms * 1000),
        cg_refault: Some(refault),
        cg_limit_hits: Some(0),
        ..Sample::default()
    };
    Interval::between(&a, &b)
}

fn states(intervals: &[Interval]) -> Vec<State> {
    classify(intervals, &Thresholds::default())
}

/// Expands run lengths: `[(O, 2), (T, 1)]` is `[O, O, T]`.
fn runs(runs: &[(State, usize)]) -> Vec<State> {
    runs.iter()
        .flat_map(|&(s, n)| std::iter::repeat_n(s, n))
        .collect()
}

#[test]
fn thrashing_needs_refaults_and_waiting_over_the_whole_window() {
    // At the defaults: 1000 refaults/s with 200 major faults/s, three intervals.
    let at_threshold = interval(20, 100, 0, 0);
    assert_eq!(at_threshold.majflt_per_s, 200.0);
    assert_eq!(at_threshold.refault_per_s, 1000.0);
    assert_eq!(states(&[at_threshold; 4]), [O, O, T, T]);
    // One fault per 100 ms short of the threshold: never thrashing.
    assert_eq!(states(&[interval(19, 100, 0, 0); 3]), [O, O, O]);
    // One refault short.
    assert_eq!(states(&[interval(20, 99, 0, 0); 3]), [O, O, O]);
    // Refaults with 10 % pressure instead of major faults.
    assert_eq!(states(&[interval(0, 100, 0, 10); 3]), [R, R, T]);
    assert_eq!(states(&[interval(0, 100, 0, 9); 3]), [R, R, R]);
    // Major faults and pressure without refaults: first reads, not thrashing.
    assert_eq!(states(&[interval(500, 0, 0, 50); 3]), [R, R, R]);
    // The window averages: faults in one interval, pressure in another.
    let waves = [
        interval(60, 300, 0, 0),
        interval(0, 0, 0, 30),
        interval(0, 0, 0, 0),
        interval(60, 300, 0, 0),
        interval(0, 0, 0, 0),
        interval(0, 0, 0, 0),
        interval(0, 0, 0, 0),
    ];
    assert_eq!(states(&waves), [O, R, T, T, T, T, O]);
}

#[test]
fn swapping_needs_swap_traffic_and_pages_of_the_tree_in_swap() {
    assert_eq!(states(&[interval(0, 0, 26, 0)]), [S]);
    assert_eq!(states(&[interval(0, 0, 25, 0)]), [O]);
    let mut not_ours = interval(0, 0, 1000, 0);
    not_ours.swap_kib = 0;
    assert_eq!(states(&[not_ours]), [O]);
    // Thrashing outranks swapping.
    assert_eq!(states(&[interval(20, 100, 1000, 0); 3]), [S, S, T]);
}

#[test]
fn reclaiming_is_a_limit_hit_or_pressure() {
    assert_eq!(states(&[interval(0, 0, 0, 5)]), [R]);
    assert_eq!(states(&[interval(0, 0, 0, 4)]), [O]);
    let mut hit = interval(0, 0, 0, 0);
    hit.limit_hits = 1;
    assert_eq!(states(&[hit]), [R]);
}

#[test]
fn thresholds_change_the_verdict() {
    let one_interval = Thresholds {
        thrash_intervals: 1,
        ..Thresholds::default()
    };
    assert_eq!(classify(&[interval(20, 100, 0, 0)], &one_interval), [T]);
    let more_swap = Thresholds {
        swap_pages_per_s: 10_000.0,
        ..Thresholds::default()
    };
    assert_eq!(classify(&[interval(0, 0, 26, 0)], &more_swap), [O]);
}

fn recorded(name: &str) -> Vec<Sample> {
    let path = format!("{}/../../fixtures/swap/{name}", env!("CARGO_MANIFEST_DIR"));
    read_csv(&std::fs::read_to_string(&path).expect("read fixture")).expect("parse fixture")
}

/// The states of a recorded timeline, re-judged at the default thresholds.
fn judged(name: &str) -> (Vec<Sample>, Vec<Interval>, Vec<State>) {
    let samples = recorded(name);
    let intervals = intervals(&samples);
    let states = states(&intervals);
    (samples, intervals, states)
}

#[test]
fn recorded_anonymous_thrashing_under_a_64_mib_limit() {
    let (samples, intervals, states) = judged("anon-256m-in-64m.csv");
    assert_eq!(samples.len(), 103);
    // 0.1 s: the walker touches its first 64 MiB. Then the first pass
    // pushes 192 MiB out to swap (swapping, 2.0 s). From 2.15 s the second
    // pass reads them back: 1000-3000 major faults/s, 10-30k swap-ins
    // (refaults)/s, averaged over 3 intervals: thrashing. At 6.35 s the
    // walker is stalled in reclaim for 0.4 s without a fault (50 %
    // pressure: reclaiming), one quiet interval, then thrashing again until
    // it ends; the swapping and reclaiming intervals inside are windows
    // where the walker only wrote pages out.
    let expected = runs(&[
        (O, 1),
        (S, 20),
        (T, 42),
        (R, 4),
        (O, 1),
        (T, 16),
        (S, 1),
        (T, 15),
        (R, 1),
        (T, 1),
    ]);
    assert_eq!(states, expected);
    // The first interval that reads pages back at 1000/s is the first
    // thrashing one: its window also holds the trickle of swap-ins before it.
    let first_swapin = intervals.iter().position(|i| i.swapin_per_s >= 1000.0);
    assert_eq!(first_swapin, Some(21));
    assert_eq!(states[20], S);
    assert_eq!(states[21], T);

    let summary = Summary::build(&samples, &intervals, &states);
    assert_eq!(summary.worst_state, T);
    assert_eq!(summary.worst_state_since_ms, Some(2150));
    let first = &samples[0];
    let last = &samples[samples.len() - 1];
    assert_eq!(summary.swapout_pages, last.sys_pswpout - first.sys_pswpout);
    assert_eq!(summary.majflt, last.majflt - first.majflt);
    assert_eq!(
        summary.peak_swap_kib,
        samples.iter().map(|s| s.swap_kib).max().unwrap()
    );
    assert_eq!(summary.ms_in_state.iter().sum::<u64>(), summary.duration_ms);
}

#[test]
fn recorded_page_cache_thrashing_without_swap() {
    let (samples, intervals, states) = judged("file-256m-in-64m-noswap.csv");
    // The first pass reads the 256 MiB file (pressure while the cgroup
    // fills: reclaiming); from 0.66 s every page read is a refault of a
    // page evicted a moment before, 30-200k/s, with 8-40 % pressure:
    // thrashing once the 3-interval average of pressure reaches 10 %, and
    // briefly reclaiming where it dips below.
    let expected = runs(&[(O, 2), (R, 2), (O, 2), (R, 2), (T, 4), (R, 2), (T, 19)]);
    assert_eq!(states, expected);
    let summary = Summary::build(&samples, &intervals, &states);
    assert_eq!(summary.peak_swap_kib, 0);
    assert_eq!(summary.swapout_pages, 0);
    let refaults = samples.last().unwrap().cg_refault.unwrap() - samples[0].cg_refault.unwrap();
    assert_eq!(summary.refaults, refaults);
}

#[test]
fn recorded_control_that_fits_stays_ok() {
    let (samples, intervals, states) = judged("control-32m-in-64m.csv");
    assert_eq!(states, [O; 10]);
    let summary = Summary::build(&samples, &intervals, &states);
    assert_eq!(summary.majflt, 0);
    assert_eq!(summary.limit_hits, 0);
    assert_eq!(summary.ms_in_state[O as usize], summary.duration_ms);
}
