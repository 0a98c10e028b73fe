//! `/proc/vmstat` in the layouts of three kernel generations: the reclaim
//! counters are read from one split of the pages, never two.

use memtrace_swap::{vmstat, Sample};

fn parsed(text: &str) -> Sample {
    let mut sample = Sample::default();
    vmstat::parse_into(text, &mut sample);
    sample
}

/// Linux 6.18, captured on the development VM whose jobs run in memory
/// cgroups with limits: the reclaimer split stays at 0 (cgroup reclaim is
/// left out of it), the anon+file split counts every scan.
#[test]
fn linux_6_18_reads_the_anon_file_split() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/vmstat-6.18"
    ))
    .unwrap();
    let s = parsed(&text);
    // pgscan_anon 2972679 + pgscan_file 6072625; kswapd, direct,
    // khugepaged and proactive are all 0 in the file.
    assert_eq!(s.sys_pgscan, 2_972_679 + 6_072_625);
    // pgsteal_anon 979468 + pgsteal_file 3124132.
    assert_eq!(s.sys_pgsteal, 979_468 + 3_124_132);
    assert_eq!((s.sys_pswpin, s.sys_pswpout), (880_762, 990_331));
    assert_eq!(s.sys_pgmajfault, 127_344);
    assert_eq!(
        (s.sys_refault_anon, s.sys_refault_file),
        (880_762, 6_195_877)
    );
}

/// Both splits non-zero, as on a machine with global reclaim: anon+file
/// only, not the sum of both splits.
#[test]
fn the_two_splits_are_never_added() {
    let text = "\
pgsteal_kswapd 700
pgsteal_direct 200
pgsteal_khugepaged 100
pgsteal_proactive 0
pgscan_kswapd 1400
pgscan_direct 400
pgscan_khugepaged 200
pgscan_proactive 0
pgscan_direct_throttle 9
pgscan_anon 500
pgscan_file 1600
pgsteal_anon 250
pgsteal_file 800
";
    let s = parsed(text);
    assert_eq!((s.sys_pgscan, s.sys_pgsteal), (2100, 1050));
}

/// The layout of Linux 4.8 to 5.7 (these names, in this order; an excerpt,
/// values chosen): no anon/file split, one counter per reclaimer.
#[test]
fn linux_4_x_sums_kswapd_and_direct() {
    let text = "\
pswpin 12
pswpout 34
pgmajfault 56
pgsteal_kswapd 5000
pgsteal_direct 300
pgscan_kswapd 9000
pgscan_direct 700
pgscan_direct_throttle 4
pginodesteal 0
slabs_scanned 123
";
    let s = parsed(text);
    // The throttle count is events, not pages.
    assert_eq!((s.sys_pgscan, s.sys_pgsteal), (9700, 5300));
    assert_eq!(
        (s.sys_pswpin, s.sys_pswpout, s.sys_pgmajfault),
        (12, 34, 56)
    );
    // No workingset_refault_anon/_file before 5.9.
    assert_eq!((s.sys_refault_anon, s.sys_refault_file), (0, 0));
}

/// The layout of Linux 3.x to 4.7: one counter per reclaimer and zone.
#[test]
fn linux_3_x_sums_every_zone() {
    let text = "\
pgsteal_kswapd_dma 1
pgsteal_kswapd_dma32 20
pgsteal_kswapd_normal 300
pgsteal_kswapd_movable 0
pgsteal_direct_dma 0
pgsteal_direct_dma32 4
pgsteal_direct_normal 50
pgsteal_direct_movable 0
pgscan_kswapd_dma 2
pgscan_kswapd_dma32 40
pgscan_kswapd_normal 600
pgscan_kswapd_movable 0
pgscan_direct_dma 0
pgscan_direct_dma32 8
pgscan_direct_normal 100
pgscan_direct_movable 0
pgscan_direct_throttle 7
";
    let s = parsed(text);
    assert_eq!((s.sys_pgscan, s.sys_pgsteal), (750, 375));
}

#[test]
fn missing_and_malformed_lines_read_as_zero() {
    let s = parsed("pswpin\npswpout x\npgscan_anon 5\n\n");
    assert_eq!((s.sys_pswpin, s.sys_pswpout, s.sys_pgscan), (0, 0, 5));
}
