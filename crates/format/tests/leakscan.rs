//! The leak scan and resource samples: round trips, chunking, cut files.

use memtrace_format::*;

fn header() -> Header {
    Header {
        pid: 7,
        ppid: 1,
        exe: "/bin/demo".into(),
        cmdline: vec!["demo".into()],
        latency_measured: true,
        ..Header::default()
    }
}

/// `n` blocks 48 bytes apart, reach cycling through the three states, and
/// an edge from every unreached block to the next unreached one.
fn scan(n: u32) -> LeakScan {
    let reach = [Reach::Unreached, Reach::Interior, Reach::Start];
    let blocks: Vec<ScannedBlock> = (0..n)
        .map(|i| ScannedBlock {
            addr: 0x5000_0000 + 48 * u64::from(i),
            size: 40 + u64::from(i % 7),
            stack: i % 5,
            reach: reach[(i % 3) as usize],
        })
        .collect();
    let edges = (0..n.saturating_sub(3))
        .step_by(3)
        .map(|i| (i, i + 3))
        .collect();
    LeakScan {
        ts: 99,
        duration_ns: 1234,
        root_bytes: 8192,
        heap_bytes: 40 * u64::from(n),
        n_threads: 2,
        n_threads_unscanned: 1,
        incomplete: Incomplete::ThreadWoke.bit() | Incomplete::EdgesOverflow.bit(),
        n_unreadable: 3,
        blocks,
        edges,
    }
}

fn write(scan: &LeakScan, sample: &ResourceSample) -> Vec<u8> {
    let mut w = Writer::new(Vec::new(), &header(), Codec::Zstd(1)).unwrap();
    w.resources(sample).unwrap();
    w.leak_scan(scan).unwrap();
    w.finish(&Trailer::default()).unwrap()
}

fn sample() -> ResourceSample {
    ResourceSample {
        ts: 5,
        rss_bytes: 3 << 20,
        user_ns: 1_000_000,
        system_ns: 250_000,
        minor_faults: 812,
        major_faults: 3,
    }
}

#[test]
fn a_scan_larger_than_one_chunk_round_trips() {
    // 200,000 blocks: four chunk records of blocks, two of edges.
    let original = scan(200_000);
    let bytes = write(&original, &sample());
    let mut r = Reader::new(&bytes[..]).unwrap();
    let mut events = Vec::new();
    while let Some(e) = r.next_event().unwrap() {
        events.push(e);
    }
    assert_eq!(events, vec![Event::Resources(sample())]);
    assert_eq!(r.leak_scan(), Some(&original));
}

#[test]
fn skipping_events_still_finds_the_scan() {
    let original = scan(1000);
    let bytes = write(&original, &sample());
    let mut r = Reader::new(&bytes[..]).unwrap();
    r.skip_to_end().unwrap();
    assert_eq!(r.leak_scan(), Some(&original));
    assert!(matches!(r.completeness(), Completeness::Complete(_)));
    assert_eq!(r.next_event().unwrap(), None);
}

#[test]
fn a_scan_cut_before_its_summary_is_absent_not_partial() {
    let original = scan(200_000);
    let bytes = write(&original, &sample());
    // Cut in the middle: the summary (last record) is gone.
    let cut = &bytes[..bytes.len() / 2];
    let mut r = Reader::new(cut).unwrap();
    r.skip_to_end().unwrap();
    assert_eq!(r.leak_scan(), None);
    assert!(matches!(r.completeness(), Completeness::Truncated(_)));
}

/// The recorder writes without auto-sealing; a scan of hundreds of
/// thousands of blocks still spreads over blocks near the target size
/// (before, the whole scan went into one block, and a few million live
/// blocks passed the 64 MiB limit that makes readers refuse the file).
#[test]
fn a_large_scan_is_sealed_in_blocks_near_the_target_size() {
    let big = scan(400_000);
    let mut w = Writer::new(Vec::new(), &header(), Codec::Raw).unwrap();
    w.set_auto_seal(false);
    w.leak_scan(&big).unwrap();
    let bytes = w.finish(&Trailer::default()).unwrap();
    let mut raw_lens = Vec::new();
    let mut at = 12;
    while at + 20 <= bytes.len() {
        assert_eq!(&bytes[at..at + 4], b"MTBK");
        let stored = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        raw_lens.push(stored);
        at += 20 + stored;
    }
    assert_eq!(at, bytes.len());
    // The header's block, then the scan's: each at most the 1 MiB target
    // plus one chunk record (65,536 blocks of a few bytes each).
    assert!(raw_lens.len() >= 4, "{raw_lens:?}");
    assert!(raw_lens.iter().all(|&n| n < 2 << 20), "{raw_lens:?}");
    let mut r = Reader::new(&bytes[..]).unwrap();
    r.skip_to_end().unwrap();
    assert_eq!(r.leak_scan(), Some(&big));
}
