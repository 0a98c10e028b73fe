//! Textbook cases with exact numbers.

use memtrace_frag::{
    best_policy, external_fragmentation, replay, replay_all, BuddyHeap, Config, Fit, FreeListHeap,
    Heap, Hole, PolicyKind, Request, SlabClass, SlabHeap,
};

use Request::{Alloc, Free};

fn run(heap: &mut dyn Heap, stream: &[Request]) {
    for (i, r) in stream.iter().enumerate() {
        match *r {
            Alloc { id, size } => {
                heap.alloc(id, size, i as u64);
            }
            Free { id } => assert!(heap.free(id, i as u64)),
        }
    }
}

fn hole(addr: u64, size: u64, birth: u64) -> Hole {
    Hole { addr, size, birth }
}

/// Holes of 50, 30 and 40 bytes between live blocks, then 100 bytes.
#[test]
fn holes_50_30_40_cannot_take_100() {
    let config = Config {
        align: 1,
        ..Config::default()
    };
    // 50 + 10 + 30 + 10 + 40 + 3956 = 4096: one page, no free top.
    let stream = [
        Alloc { id: 1, size: 50 },
        Alloc { id: 2, size: 10 },
        Alloc { id: 3, size: 30 },
        Alloc { id: 4, size: 10 },
        Alloc { id: 5, size: 40 },
        Alloc { id: 6, size: 3956 },
        Free { id: 1 },
        Free { id: 3 },
        Free { id: 5 },
    ];
    for fit in [Fit::First, Fit::Next, Fit::Best, Fit::Worst] {
        let mut heap = FreeListHeap::new(fit, &config);
        run(&mut heap, &stream);
        assert_eq!(
            heap.holes(),
            [hole(0, 50, 6), hole(60, 30, 7), hole(100, 40, 8)]
        );
        let free = heap.footprint() - heap.given_bytes();
        assert_eq!(free, 50 + 30 + 40);
        assert_eq!(free, 120);
        assert_eq!(heap.largest_hole(), 50);
        assert_eq!(
            external_fragmentation(heap.largest_hole(), free),
            1.0 - 50.0 / 120.0
        );
        let p = heap.alloc(7, 100, 9);
        assert!(p.grew, "{fit:?}");
        assert_eq!(p.addr, 4096);
        assert_eq!(heap.footprint(), 8192);
        // The three holes were all examined and none fitted.
        assert_eq!(p.examined, 3);
    }
}

/// Holes of 100 and 40 bytes, then 28, 72 and 40: best-fit leaves slivers
/// of 12 and 28 bytes and must grow for the 40; first-fit fits all three.
fn slivers_stream() -> Vec<Request> {
    // 100 + 4 + 40 + 3952 = 4096.
    vec![
        Alloc { id: 1, size: 100 },
        Alloc { id: 2, size: 4 },
        Alloc { id: 3, size: 40 },
        Alloc { id: 4, size: 3952 },
        Free { id: 1 },
        Free { id: 3 },
        Alloc { id: 5, size: 28 },
        Alloc { id: 6, size: 72 },
        Alloc { id: 7, size: 40 },
    ]
}

fn align4() -> Config {
    Config {
        align: 4,
        ..Config::default()
    }
}

#[test]
fn best_fit_leaves_slivers_first_fit_does_not() {
    let stream = slivers_stream();

    let mut best = FreeListHeap::new(Fit::Best, &align4());
    run(&mut best, &stream);
    // 28 went into the 40-byte hole at 104 (12 left at 132), 72 into the
    // 100-byte hole at 0 (28 left at 72), and 40 fitted nowhere.
    assert_eq!(best.holes(), [hole(72, 28, 7), hole(132, 12, 6)]);
    assert_eq!(best.footprint(), 8192);

    let mut first = FreeListHeap::new(Fit::First, &align4());
    run(&mut first, &stream);
    // 28 and 72 fill the 100-byte hole exactly, 40 the 40-byte one.
    assert_eq!(first.holes(), []);
    assert_eq!(first.footprint(), 4096);

    let b = replay(&stream, PolicyKind::BestFit, &align4());
    assert_eq!((b.n_stranded_holes, b.stranded_bytes), (2, 12 + 28));
    assert_eq!(b.peak_footprint, 8192);
    assert_eq!(b.n_growths, 2);
    let f = replay(&stream, PolicyKind::FirstFit, &align4());
    assert_eq!((f.n_stranded_holes, f.stranded_bytes), (0, 0));
    assert_eq!(f.peak_footprint, 4096);
    assert_eq!(f.n_growths, 1);
    // First-fit: 0 holes for the first allocation, then one hole each.
    assert_eq!(f.examined_avg, 6.0 / 7.0);
    // Best-fit reads the whole list: 0, 1, 1, 1, then 2, 2, 2 (fails).
    assert_eq!(b.examined_avg, 9.0 / 7.0);
}

#[test]
fn best_policy_names_first_fit_with_numbers() {
    let reports = replay_all(&slivers_stream(), &align4());
    assert_eq!(reports.len(), 8);
    let (policy, why) = best_policy(&reports).unwrap();
    // First-fit and next-fit both peak at 4096 and examine 6/7 blocks per
    // allocation: a tie, named as one; worst-fit peaks at 4096 too but
    // examines 8/7; best-fit needs 8192 (9/7 examined).
    assert_eq!(policy, PolicyKind::FirstFit);
    assert!(
        why.starts_with(
            "first-fit and next-fit tie: the lowest peak footprint, 4096 bytes, each examining \
             0.86 free blocks per allocation; worst-fit peaks at 4096 bytes too, examining 1.14; \
             next is best-fit with 8192 bytes, examining 1.29"
        ),
        "{why}"
    );
    // Compact: 100 + 4 + 40 + 3952 live at once.
    assert!(
        why.ends_with("the compacting lower bound is 4096 bytes (1.00x)"),
        "{why}"
    );
}

#[test]
fn buddy_33_bytes_min_16_takes_64() {
    let config = Config::default();
    assert_eq!(config.buddy_min_order, 4);
    let heap = BuddyHeap::new(&config);
    assert_eq!(heap.block_size(33), 64);
    assert_eq!(heap.block_size(1), 16);
    assert_eq!(heap.block_size(16), 16);
    assert_eq!(heap.block_size(17), 32);
    let r = replay(&[Alloc { id: 1, size: 33 }], PolicyKind::Buddy, &config);
    assert_eq!(r.internal_at_peak, 64 - 33);
    assert_eq!(r.internal_at_peak, 31);
    assert_eq!(r.peak_footprint, 4096);
    // 4096 split down to 64: free blocks of 64, 128, ..., 2048 remain.
    assert_eq!(r.free_at_peak, 4096 - 64);
    assert_eq!(r.largest_hole_at_peak, 2048);
    assert_eq!(r.external_at_peak, 1.0 - 2048.0 / 4032.0);
}

#[test]
fn buddy_merges_back_to_one_page() {
    let mut heap = BuddyHeap::new(&Config::default());
    let stream: Vec<Request> = (0..4)
        .map(|id| Alloc { id, size: 1024 })
        .chain((0..4).map(|id| Free { id }))
        .collect();
    run(&mut heap, &stream);
    assert_eq!(heap.largest_hole(), 4096);
    assert_eq!(heap.holes(), []);
    // A request over a page grows by one block of its own size, aligned:
    // 4096 of padding at 4096 merges with the free page at 0 into 8192 at
    // 0, the new 8192 at 8192 merges with that into 16384 at 0, which is
    // split again for the request.
    let p = heap.alloc(9, 5000, 8);
    assert!(p.grew);
    assert_eq!((p.addr, p.given), (0, 8192));
    assert_eq!(heap.footprint(), 16384);
    // The other half is free at the top, so it is not a hole.
    assert_eq!(heap.largest_hole(), 8192);
    assert_eq!(heap.holes(), []);
}

#[test]
fn slab_of_96_byte_objects() {
    let class = SlabClass::new(96, 4096);
    // 4096 / 96 = 42 objects (4032 bytes), 64 bytes left: one page.
    assert_eq!(class.order, 0);
    assert_eq!(class.objects, 42);
    assert_eq!(class.waste, 4096 - 42 * 96);
    assert_eq!(class.waste, 64);
    // kmalloc-192: 21 objects, 64 bytes left; kmalloc-131072: 32 pages.
    assert_eq!(SlabClass::new(192, 4096).objects, 21);
    assert_eq!(SlabClass::new(131072, 4096).order, 5);

    let heap = SlabHeap::new(&Config::default());
    assert_eq!(heap.classes()[2], class);

    let full: Vec<Request> = (0..42).map(|id| Alloc { id, size: 96 }).collect();
    let r = replay(&full, PolicyKind::Slab, &Config::default());
    assert_eq!(r.peak_footprint, 4096);
    assert_eq!(r.internal_at_peak, 64);
    let mut more = full.clone();
    more.push(Alloc { id: 42, size: 90 });
    let r = replay(&more, PolicyKind::Slab, &Config::default());
    assert_eq!(r.peak_footprint, 8192);
    // Two slab tails and 6 bytes of the last object.
    assert_eq!(r.internal_at_peak, 64 + 64 + 6);
    // The second slab has 41 free objects of 96 bytes.
    assert_eq!(r.free_at_peak, 41 * 96);
    assert_eq!(r.n_growths, 2);
}

#[test]
fn the_peak_figures_are_all_taken_at_the_live_peak() {
    // A full slab of 42 objects of 96 bytes is the live peak (4032 bytes);
    // 41 are freed, then a 2000-byte request opens a page of its own: the
    // footprint peaks later, at 8192, with far less live.
    let mut stream: Vec<Request> = (0..42).map(|id| Alloc { id, size: 96 }).collect();
    stream.extend((1..42).map(|id| Free { id }));
    stream.push(Alloc { id: 42, size: 2000 });
    let r = replay(&stream, PolicyKind::Slab, &Config::default());
    assert_eq!(
        r.peak_footprint, 8192,
        "the largest footprint, at any moment"
    );
    // At the live peak: the one slab, full but for its 64-byte tail.
    assert_eq!(
        (
            r.peak_live,
            r.footprint_at_peak,
            r.internal_at_peak,
            r.free_at_peak,
            r.largest_hole_at_peak
        ),
        (42 * 96, 4096, 64, 0, 0)
    );
    assert_eq!(r.external_at_peak, 0.0);
}

#[test]
fn slab_sends_large_requests_to_pages() {
    let r = replay(
        &[Alloc {
            id: 1,
            size: 131073,
        }],
        PolicyKind::Slab,
        &Config::default(),
    );
    // 131073 bytes round up to 33 pages.
    assert_eq!(r.peak_footprint, 33 * 4096);
    assert_eq!(r.internal_at_peak, 33 * 4096 - 131073);
}

#[test]
fn compact_and_semispace_reference_rows() {
    let stream = [
        Alloc { id: 1, size: 100 },
        Alloc { id: 2, size: 50 },
        Free { id: 1 },
        Alloc { id: 3, size: 10 },
    ];
    // Aligned to 16: 112, 64 and 16 bytes.
    let c = replay(&stream, PolicyKind::Compact, &Config::default());
    assert_eq!(c.peak_footprint, 112 + 64);
    assert_eq!(c.internal_at_peak, 12 + 14);
    assert_eq!(c.external_at_peak, 0.0);
    assert_eq!(c.external_avg, 0.0);
    let s = replay(&stream, PolicyKind::Semispace, &Config::default());
    assert_eq!(s.peak_footprint, 2 * (112 + 64));
    assert_eq!(s.external_avg, 0.0);
    assert_eq!(s.examined_avg, 0.0);
}

#[test]
fn unmatched_requests_are_counted_not_fatal() {
    let stream = [
        Free { id: 7 },
        Alloc { id: 1, size: 8 },
        Alloc { id: 1, size: 8 },
        Free { id: 1 },
    ];
    for policy in PolicyKind::ALL {
        let r = replay(&stream, policy, &Config::default());
        assert_eq!(
            (r.n_allocs, r.n_frees, r.n_ignored),
            (1, 1, 2),
            "{policy:?}"
        );
    }
}
