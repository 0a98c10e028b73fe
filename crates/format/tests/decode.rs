//! Round trips, merging by timestamp, and hostile input.

use memtrace_format::*;

fn header() -> Header {
    Header {
        pid: 100,
        ppid: 1,
        exe: "/usr/bin/demo".into(),
        cmdline: vec!["demo".into(), "--flag".into()],
        start_unix_ns: 1_700_000_000_000_000_000,
        ticks: TickSource::Tsc,
        latency_measured: true,
        ..Header::default()
    }
}

fn alloc(ts: u64, addr: u64, size: u64, stack: u32) -> HeapEvent {
    HeapEvent {
        func: Func::Malloc as u8,
        ts,
        latency: 30,
        addr,
        size,
        usable: size + 8,
        stack,
        ..Default::default()
    }
}

fn free(ts: u64, addr: u64) -> HeapEvent {
    HeapEvent {
        func: Func::Free as u8,
        ts,
        latency: 12,
        addr,
        ..Default::default()
    }
}

/// Two threads whose batches are written out of timestamp order, split by a
/// watermark, plus side records; `n` events per thread per batch.
fn sample_trace(codec: Codec, n: u64) -> Vec<u8> {
    let mut w = Writer::new(Vec::new(), &header(), codec).unwrap();
    w.set_block_target(512);
    w.clock_sync(ClockSync {
        ticks: 1000,
        mono_ns: 0,
    })
    .unwrap();
    let module = Module {
        path: "/usr/bin/demo".into(),
        build_id: Some(vec![0xab, 0xcd]),
        load_bias: 0x5555_0000_0000,
        segments: vec![Segment {
            vaddr: 0,
            memsz: 0x2000,
            flags: 5,
        }],
    };
    w.module_loaded(0, &module).unwrap();
    w.stack_nodes(1, &[(0, 0x5555_0000_1000), (1, 0x5555_0000_1100)])
        .unwrap();
    for round in 0..2u64 {
        let base = round * 10_000;
        // Thread 2 is drained first although its events are later.
        let t2: Vec<ThreadItem> = (0..n)
            .map(|i| {
                ThreadItem::Heap(alloc(
                    base + 2 * i + 1,
                    0x9000_0000 + (base + i) * 64,
                    32,
                    2,
                ))
            })
            .collect();
        let t1: Vec<ThreadItem> = (0..n)
            .map(|i| ThreadItem::Heap(alloc(base + 2 * i, 0x7000_0000 + (base + i) * 48, 16, 1)))
            .collect();
        w.batch(2, &t2).unwrap();
        w.batch(1, &t1).unwrap();
        w.phase(&Phase {
            ts: base + 5,
            tid: 1,
            name: format!("round {round}"),
            counters: vec![("faults".into(), 3)],
        })
        .unwrap();
        w.watermark(base + 2 * n + 1).unwrap();
    }
    w.batch(
        1,
        &[
            ThreadItem::Heap(free(30_000, 0x7000_0000)),
            ThreadItem::End { ts: 30_001 },
        ],
    )
    .unwrap();
    w.clock_sync(ClockSync {
        ticks: 31_000,
        mono_ns: 15_000,
    })
    .unwrap();
    w.finish(&Trailer {
        ts: 31_000,
        n_events: 4 * n + 1,
        n_stack_nodes: 3,
        n_threads: 2,
        n_dropped: 0,
    })
    .unwrap()
}

fn read_all(bytes: &[u8]) -> Result<(Vec<Event>, Completeness), DecodeError> {
    let mut r = Reader::new(bytes)?;
    let mut events = Vec::new();
    while let Some(e) = r.next_event()? {
        events.push(e);
    }
    Ok((events, r.completeness().clone()))
}

#[test]
fn events_come_back_merged_in_timestamp_order() {
    for codec in [Codec::Raw, Codec::Zstd(3)] {
        let bytes = sample_trace(codec, 100);
        let (events, end) = read_all(&bytes).unwrap();
        let heap: Vec<_> = events
            .iter()
            .filter(|e| matches!(e, Event::Heap { .. }))
            .collect();
        assert_eq!(heap.len(), 401);
        let ts: Vec<u64> = events.iter().map(Event::ts).collect();
        let mut sorted = ts.clone();
        sorted.sort();
        assert_eq!(ts, sorted, "events are not in timestamp order");
        // The first heap event is thread 1's at ts 0, the second thread 2's at ts 1.
        assert_eq!(
            heap[0],
            &Event::Heap {
                tid: 1,
                event: alloc(0, 0x7000_0000, 16, 1)
            }
        );
        assert_eq!(
            heap[1],
            &Event::Heap {
                tid: 2,
                event: alloc(1, 0x9000_0000, 32, 2)
            }
        );
        let phases: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                Event::Phase(p) => Some((p.ts, p.name.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            phases,
            vec![(5, "round 0".to_string()), (10_005, "round 1".to_string())]
        );
        assert_eq!(
            events.last(),
            Some(&Event::ThreadEnd { tid: 1, ts: 30_001 })
        );
        match end {
            Completeness::Complete(t) => assert_eq!(t.n_events, 401),
            other => panic!("expected a complete trace, got {other:?}"),
        }
    }
}

#[test]
fn tables_and_clock_are_decoded() {
    let bytes = sample_trace(Codec::Zstd(1), 10);
    let mut r = Reader::new(&bytes[..]).unwrap();
    assert_eq!(r.header(), &header());
    while r.next_event().unwrap().is_some() {}
    assert_eq!(r.modules().len(), 1);
    assert_eq!(r.modules()[0].build_id, Some(vec![0xab, 0xcd]));
    assert!(r.modules()[0].contains(0x5555_0000_1fff));
    assert!(!r.modules()[0].contains(0x5555_0000_2000));
    let frames: Vec<u64> = r.stacks().frames(2).collect();
    assert_eq!(frames, vec![0x5555_0000_1100, 0x5555_0000_1000]);
    assert_eq!(r.clock().ns_per_tick(), 0.5);
    assert_eq!(r.clock().to_ns(3000), 1000);
}

#[test]
fn a_trace_cut_anywhere_reads_as_truncated_or_errs_without_panicking() {
    let bytes = sample_trace(Codec::Zstd(3), 200);
    let full = read_all(&bytes).unwrap().0.len();
    for cut in 0..bytes.len() {
        match read_all(&bytes[..cut]) {
            Ok((events, end)) => {
                assert!(events.len() <= full);
                assert!(
                    matches!(end, Completeness::Truncated(_) | Completeness::NoTrailer),
                    "cut at {cut}: {end:?}"
                );
            }
            Err(e) => assert!(
                matches!(e, DecodeError::Truncated { .. } | DecodeError::NotATrace),
                "cut at {cut}: unexpected error {e}"
            ),
        }
    }
}

#[test]
fn eighths_of_a_trace_keep_a_growing_prefix() {
    let bytes = sample_trace(Codec::Raw, 200);
    let mut last = 0;
    for eighth in 1..8 {
        let cut = bytes.len() * eighth / 8;
        let (events, end) = read_all(&bytes[..cut]).unwrap();
        assert!(matches!(
            end,
            Completeness::Truncated(_) | Completeness::NoTrailer
        ));
        assert!(events.len() >= last, "prefix shrank at {eighth}/8");
        last = events.len();
    }
    assert!(last > 0);
}

#[test]
fn flipped_bytes_give_errors_not_panics() {
    let bytes = sample_trace(Codec::Zstd(3), 50);
    for i in 12..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x55;
        // Every byte after the preamble is covered by a block header or a
        // checksum: a flip is an error, or (a length made larger) a cut file.
        if let Ok((_, end)) = read_all(&bad) {
            assert!(
                matches!(end, Completeness::Truncated(_)),
                "flip at {i} went unnoticed: {end:?}"
            );
        }
    }
}

#[test]
fn garbage_is_not_a_trace() {
    assert!(matches!(
        Reader::new(&b"hello world, not a trace"[..]),
        Err(DecodeError::NotATrace)
    ));
    assert!(matches!(Reader::new(&b""[..]), Err(DecodeError::NotATrace)));
}

#[test]
fn realloc_and_free_fields_round_trip() {
    let mut w = Writer::new(Vec::new(), &header(), Codec::Raw).unwrap();
    w.stack_nodes(1, &[(0, 0x10)]).unwrap();
    let re = HeapEvent {
        func: Func::Realloc as u8,
        ts: 7,
        latency: 15,
        addr: 0x1000,
        old_addr: 0x2000,
        size: 100,
        usable: 104,
        align: 0,
        stack: 1,
    };
    let aligned = HeapEvent {
        func: Func::PosixMemalign as u8,
        ts: 8,
        align: 64,
        addr: 0x40,
        size: 10,
        usable: 56,
        stack: 1,
        ..Default::default()
    };
    let items = [
        ThreadItem::Start { ts: 1 },
        ThreadItem::Heap(re),
        ThreadItem::Heap(aligned),
        ThreadItem::Heap(free(9, 0x1000)),
    ];
    w.batch(5, &items).unwrap();
    let bytes = w.finish(&Trailer::default()).unwrap();
    let (events, _) = read_all(&bytes).unwrap();
    assert_eq!(
        events,
        vec![
            Event::ThreadStart { tid: 5, ts: 1 },
            Event::Heap { tid: 5, event: re },
            Event::Heap {
                tid: 5,
                event: aligned
            },
            Event::Heap {
                tid: 5,
                event: free(9, 0x1000)
            },
        ]
    );
}

/// A heap event with an unknown function code is refused, and nothing of its
/// batch is written, whether the batch fits one record or spans several.
#[test]
fn a_batch_with_an_unknown_function_code_writes_nothing() {
    let mut w = Writer::new(Vec::new(), &header(), Codec::Raw).unwrap();
    w.stack_nodes(1, &[(0, 0x1000)]).unwrap();
    w.batch(7, &[ThreadItem::Heap(alloc(10, 0x5000, 24, 1))])
        .unwrap();
    let bad = HeapEvent {
        func: 99,
        ..alloc(20, 0x6000, 8, 1)
    };
    for len in [3usize, 40_000] {
        let mut items: Vec<ThreadItem> = (0..len as u64)
            .map(|i| ThreadItem::Heap(alloc(30 + i, 0x7000 + 16 * i, 8, 1)))
            .collect();
        items[len - 2] = ThreadItem::Heap(bad);
        let err = w.batch(7, &items).unwrap_err();
        assert_eq!(err.to_string(), "a heap event has an unknown function code");
    }
    let bytes = w.finish(&Trailer::default()).unwrap();
    let mut r = Reader::new(&bytes[..]).unwrap();
    let mut events = Vec::new();
    while let Some(e) = r.next_event().unwrap() {
        events.push(e);
    }
    assert_eq!(
        events,
        vec![Event::Heap {
            tid: 7,
            event: alloc(10, 0x5000, 24, 1)
        }]
    );
}

/// `batch_inspect` shows every item once, in order, and writes what `batch` writes.
#[test]
fn batch_inspect_sees_each_item_in_order() {
    let items: Vec<ThreadItem> = (0..70_000u64)
        .map(|i| ThreadItem::Heap(alloc(10 + i, 0x5000 + 16 * i, 8 + i % 100, 1)))
        .collect();
    let mut seen = Vec::new();
    let mut inspected = Writer::new(Vec::new(), &header(), Codec::Raw).unwrap();
    inspected.stack_nodes(1, &[(0, 0x1000)]).unwrap();
    inspected
        .batch_inspect(3, &items, |item| seen.push(*item))
        .unwrap();
    let mut plain = Writer::new(Vec::new(), &header(), Codec::Raw).unwrap();
    plain.stack_nodes(1, &[(0, 0x1000)]).unwrap();
    plain.batch(3, &items).unwrap();
    assert_eq!(seen, items);
    assert_eq!(
        inspected.finish(&Trailer::default()).unwrap(),
        plain.finish(&Trailer::default()).unwrap()
    );
}
