//! The test API of the tracking allocator under the parallel test harness:
//! exact counts per scope, the leak message with file:line, and scopes of
//! concurrent threads that do not see each other's allocations.

use std::alloc::System;
use std::hint::black_box;
use std::sync::{mpsc, Barrier};

use memtrace_recorder::{
    assert_no_leaks, heap_stats, is_installed, stats, HeapStats, LeakScope, Tracking,
};

#[global_allocator]
static ALLOC: Tracking<System> = Tracking::untraced(System);

/// The line of this file that ends with `tag`.
fn tag_line(tag: &str) -> u32 {
    let hits: Vec<usize> = include_str!("scope.rs")
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim_end().ends_with(tag))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(hits.len(), 1, "{tag}");
    hits[0] as u32
}

/// 1000 bytes in one block, and 3 blocks of 24 bytes, never freed.
#[inline(never)]
fn leak_some() {
    std::mem::forget(black_box(vec![0u64; 125])); // @leak vec
    for i in 0..3u8 {
        black_box(Box::leak(Box::new([i; 24]))); // @leak boxes
    }
}

/// Allocates and frees: a 400-byte Vec and an 8-byte Box.
#[inline(never)]
fn allocate_and_free() -> u64 {
    let v: Vec<u32> = (0..100).collect();
    let b = Box::new(7u64);
    v.iter().map(|&x| u64::from(x)).sum::<u64>() + *b
}

#[test]
fn a_leaking_scope_names_each_block_its_size_and_its_line() {
    let scope = LeakScope::new();
    leak_some();
    let leaks = scope.finish().expect_err("the scope leaked");
    assert_eq!((leaks.blocks(), leaks.bytes()), (4, 1072));
    assert_eq!(
        leaks.stats,
        HeapStats {
            blocks_allocated: 4,
            bytes_allocated: 1072,
            blocks_freed: 0,
            bytes_freed: 0,
            peak_bytes: 1072,
        }
    );
    let message = leaks.to_string();
    let lines: Vec<&str> = message.lines().collect();
    assert_eq!(
        lines[0], "1072 bytes in 4 blocks allocated in the scope were not freed",
        "{message}"
    );
    // Largest group first, each with the line that allocated it.
    let expected = [
        ("1000 bytes in 1 block allocated", "@leak vec"),
        ("72 bytes in 3 blocks allocated", "@leak boxes"),
    ];
    for (headline, tag) in expected {
        let at = lines
            .iter()
            .position(|l| *l == headline)
            .unwrap_or_else(|| panic!("no `{headline}` in:\n{message}"));
        let frame = lines[at + 1];
        let suffix = format!("crates/recorder/tests/scope.rs:{})", tag_line(tag));
        assert!(
            frame.starts_with("    at scope::leak_some (/") && frame.ends_with(&suffix),
            "{frame} (expected scope::leak_some at {suffix})\n{message}"
        );
    }
    assert_eq!(lines.iter().filter(|l| !l.starts_with("    ")).count(), 3);
}

#[test]
fn assert_no_leaks_panics_with_the_message() {
    let panic = std::panic::catch_unwind(|| assert_no_leaks(leak_some)).expect_err("it leaked");
    let message = panic.downcast_ref::<String>().expect("a formatted message");
    assert!(
        message.starts_with("1072 bytes in 4 blocks allocated in the scope were not freed\n"),
        "{message}"
    );
    let line = tag_line("@leak vec");
    assert!(
        message.contains(&format!("crates/recorder/tests/scope.rs:{line})\n")),
        "{message}"
    );
}

#[test]
fn a_clean_scope_passes_with_exact_statistics() {
    let sum = assert_no_leaks(allocate_and_free);
    assert_eq!(sum, 4957);
    let (_, stats) = heap_stats(allocate_and_free);
    assert_eq!(
        stats,
        HeapStats {
            blocks_allocated: 2,
            bytes_allocated: 408,
            blocks_freed: 2,
            bytes_freed: 408,
            peak_bytes: 408,
        }
    );
}

#[test]
fn realloc_resizes_a_block_and_the_peak_follows() {
    let (_, stats) = heap_stats(|| {
        let mut v: Vec<u8> = Vec::with_capacity(100);
        v.extend_from_slice(&[1; 100]);
        v.push(2); // grows to 200 bytes: +100
        v.shrink_to_fit(); // shrinks to 101 bytes: -99
        black_box(v);
    });
    assert_eq!(
        stats,
        HeapStats {
            blocks_allocated: 1,
            bytes_allocated: 200,
            blocks_freed: 1,
            bytes_freed: 200,
            peak_bytes: 200,
        }
    );
}

#[test]
fn blocks_from_before_the_scope_are_not_the_scopes() {
    let mut before: Vec<u8> = Vec::with_capacity(8);
    let old = Box::new(1u32);
    let (_, stats) = heap_stats(|| {
        drop(old);
        before.extend_from_slice(&[0; 64]); // a realloc of an older block
    });
    assert_eq!(stats, HeapStats::default());
    assert_no_leaks(|| before.extend_from_slice(&[0; 1000]));
}

#[test]
fn nested_scopes_each_count_what_happened_while_they_were_open() {
    let outer = LeakScope::new();
    let a = Box::new([0u8; 10]);
    let inner = LeakScope::new();
    let b = Box::new([0u8; 20]);
    drop(a);
    let inner_stats = inner.stats();
    let leaks = inner.finish().expect_err("b is still live");
    assert_eq!((leaks.blocks(), leaks.bytes()), (1, 20));
    // A block of the outer scope freed inside the inner one is not the inner's.
    assert_eq!(
        inner_stats,
        HeapStats {
            blocks_allocated: 1,
            bytes_allocated: 20,
            blocks_freed: 0,
            bytes_freed: 0,
            peak_bytes: 20,
        }
    );
    drop(b);
    let stats = outer.finish().expect("everything freed");
    assert_eq!(
        stats,
        HeapStats {
            blocks_allocated: 2,
            bytes_allocated: 30,
            blocks_freed: 2,
            bytes_freed: 30,
            peak_bytes: 30,
        }
    );
}

#[test]
fn concurrent_scopes_see_only_their_own_threads_allocations() {
    // Both scopes are open at once; each thread allocates its own pattern;
    // a block of the first is freed by the second, which counts it as the
    // first scope's free, not as anything of its own. (The barriers keep
    // the channel from blocking: a blocked receiver registers a waker,
    // memory that std keeps for the thread.)
    let barrier = &Barrier::new(2);
    let (send, receive) = mpsc::sync_channel::<Box<[u8; 333]>>(1);
    std::thread::scope(|s| {
        let first = s.spawn(move || {
            let scope = LeakScope::new();
            barrier.wait();
            let kept: Vec<Box<[u8; 100]>> = (0..10).map(|i| Box::new([i; 100])).collect();
            send.send(Box::new([1; 333])).unwrap();
            barrier.wait(); // sent: the other thread receives without waiting
            barrier.wait(); // the other thread has freed the 333 bytes
            drop(kept);
            scope
                .finish()
                .expect("freed, one block by the other thread")
        });
        let second = s.spawn(move || {
            let scope = LeakScope::new();
            barrier.wait();
            let mine: Vec<u64> = vec![5; 7];
            barrier.wait();
            drop(receive.try_recv().expect("sent before the barrier"));
            barrier.wait();
            black_box(mine);
            scope.finish().expect("freed")
        });
        let first = first.join().unwrap();
        let second = second.join().unwrap();
        assert_eq!(
            first,
            HeapStats {
                blocks_allocated: 12, // 10 boxes, the Vec of their pointers, the sent box
                bytes_allocated: 10 * 100 + 80 + 333,
                blocks_freed: 12,
                bytes_freed: 10 * 100 + 80 + 333,
                peak_bytes: 10 * 100 + 80 + 333,
            }
        );
        assert_eq!(
            second,
            HeapStats {
                blocks_allocated: 1,
                bytes_allocated: 56,
                blocks_freed: 1,
                bytes_freed: 56,
                peak_bytes: 56,
            }
        );
    });
}

#[test]
fn many_parallel_scopes_count_exactly() {
    // Eight threads at once, each with its own size: any leak of one
    // thread's allocations into another's scope changes the counts.
    std::thread::scope(|s| {
        let handles: Vec<_> = (1..=8u64)
            .map(|k| {
                s.spawn(move || {
                    heap_stats(|| {
                        for _ in 0..1000 {
                            black_box(Vec::<u8>::with_capacity(k as usize * 8));
                        }
                    })
                    .1
                })
            })
            .collect();
        for (k, h) in (1..=8u64).zip(handles) {
            let bytes = 1000 * k * 8;
            assert_eq!(
                h.join().unwrap(),
                HeapStats {
                    blocks_allocated: 1000,
                    bytes_allocated: bytes,
                    blocks_freed: 1000,
                    bytes_freed: bytes,
                    peak_bytes: k * 8,
                },
                "thread {k}"
            );
        }
    });
}

#[test]
fn tracking_is_installed_here_and_the_counters_count() {
    assert!(is_installed());
    // On a thread of its own too: the answer is the process's.
    assert!(std::thread::spawn(is_installed).join().unwrap());
    let before = stats();
    let v = black_box(vec![0u8; 1 << 20]);
    let after = stats();
    // Tests in parallel threads allocate too: at least this block.
    assert!(after.n_allocs > before.n_allocs);
    assert!(after.total_bytes - before.total_bytes >= 1 << 20);
    assert!(after.peak_bytes >= 1 << 20);
    drop(v);
}
