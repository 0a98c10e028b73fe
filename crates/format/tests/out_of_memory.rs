//! The writer when allocations fail: it writes what it can with the memory
//! it has, and what it cannot write is an `OutOfMemory` error that leaves
//! the stream readable.
//!
//! This test binary's global allocator refuses, on the calling thread only,
//! every allocation above a limit that the test sets: the tests run in
//! parallel threads without disturbing each other.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io;

use memtrace_format::*;

struct Limited;

thread_local! {
    /// Largest allocation this thread may make.
    static LIMIT: Cell<usize> = const { Cell::new(usize::MAX) };
}

// SAFETY: forwards to System, or returns null, which every caller of
// `alloc` and `realloc` must be ready for.
unsafe impl GlobalAlloc for Limited {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > LIMIT.with(Cell::get) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's layout, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: allocated by System with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > LIMIT.with(Cell::get) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's block and layout, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Limited = Limited;

/// Runs `f` with allocations above `limit` bytes refused on this thread.
fn with_limit<T>(limit: usize, f: impl FnOnce() -> T) -> T {
    LIMIT.with(|l| l.set(limit));
    let result = f();
    LIMIT.with(|l| l.set(usize::MAX));
    result
}

fn header() -> Header {
    Header {
        pid: 5,
        exe: "/bin/oom".into(),
        cmdline: vec!["oom".into()],
        ..Header::default()
    }
}

/// `n` allocations of thread 9 at distinct addresses and sizes.
fn items(n: u64) -> Vec<ThreadItem> {
    (0..n)
        .map(|i| {
            ThreadItem::Heap(HeapEvent {
                func: Func::Malloc as u8,
                ts: 10 + i,
                addr: 0x10_0000 + i * 4096,
                size: 16 + i % 1000,
                usable: 24 + i % 1000,
                stack: 1,
                ..HeapEvent::default()
            })
        })
        .collect()
}

/// The heap events and notes of a trace, which must be complete.
fn decode(bytes: &[u8]) -> (Vec<HeapEvent>, Vec<String>) {
    let mut r = Reader::new(bytes).unwrap();
    let mut events = Vec::new();
    while let Some(e) = r.next_event().unwrap() {
        if let Event::Heap { event, .. } = e {
            events.push(event);
        }
    }
    assert!(matches!(r.completeness(), Completeness::Complete(_)));
    (events, r.notes().to_vec())
}

/// `(stored raw, compressed)` blocks of a trace.
fn codecs(bytes: &[u8]) -> (usize, usize) {
    let (mut raw, mut zstd) = (0, 0);
    let mut at = 12;
    while at < bytes.len() {
        assert_eq!(&bytes[at..at + 4], b"MTBK");
        match bytes[at + 4] {
            0 => raw += 1,
            1 => zstd += 1,
            other => panic!("codec {other}"),
        }
        let stored = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        at += 20 + stored;
    }
    (raw, zstd)
}

fn heap(items: &[ThreadItem]) -> Vec<HeapEvent> {
    items
        .iter()
        .map(|i| match i {
            ThreadItem::Heap(e) => *e,
            other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
fn with_little_memory_batches_are_cut_small_and_blocks_stored_raw() {
    let batch = items(100_000);
    let long_note = "x".repeat(100_000);
    // The output has room enough: its growth is not what is tested.
    let out = Vec::with_capacity(4 << 20);
    let mut w = Writer::new(out, &header(), Codec::Zstd(1)).unwrap();
    w.stack_nodes(1, &[(0, 0x4000)]).unwrap();
    // 4 KiB: no zstd workspace for a big block, columns of at most 256
    // items (11 bytes per item and column), a payload of at most 4 KiB.
    let mut inspected = 0u64;
    let (batch_result, note_result) = with_limit(4096, || {
        let b = w.batch_inspect(9, &batch, |_| inspected += 1);
        let n = w.note(&long_note).map_err(|e| e.kind());
        w.watermark(u64::MAX).unwrap();
        (b.map_err(|e| e.kind()), n)
    });
    assert_eq!(batch_result, Ok(()));
    assert_eq!(inspected, 100_000);
    assert_eq!(note_result, Err(io::ErrorKind::OutOfMemory));
    w.note("after").unwrap();
    let bytes = w.finish(&Trailer::default()).unwrap();
    let (events, notes) = decode(&bytes);
    assert_eq!(events, heap(&batch));
    assert_eq!(notes, ["after"]);
    let (_, compressed) = codecs(&bytes);
    // Blocks sealed under the limit are stored raw; the header's, sealed
    // before, and the last one, after, are compressed.
    assert_eq!(compressed, 2);
}

#[test]
fn a_record_larger_than_the_block_buffer_becomes_a_block_of_its_own() {
    // 100 KB: the 1 MiB block buffer cannot be had, the 64 KiB one can;
    // an 80 KB note fits the payload but neither fits nor grows the block.
    let big = "n".repeat(80_000);
    let out = Vec::with_capacity(1 << 20);
    let bytes = with_limit(100_000, || {
        let mut w = Writer::new(out, &header(), Codec::Raw).unwrap();
        w.set_auto_seal(false);
        w.note("before").unwrap();
        w.note(&big).unwrap();
        w.note("after").unwrap();
        w.finish(&Trailer::default()).unwrap()
    });
    let (_, notes) = decode(&bytes);
    assert_eq!(notes, ["before", big.as_str(), "after"]);
    // Header; "before", sealed to make room; the note alone; "after" and the trailer.
    assert_eq!(codecs(&bytes), (4, 0));
}

#[test]
fn a_batch_that_gets_no_memory_at_all_is_refused_whole() {
    let batch = items(1000);
    let mut w = Writer::new(Vec::new(), &header(), Codec::Raw).unwrap();
    w.stack_nodes(1, &[(0, 0x4000)]).unwrap();
    let mut inspected = 0;
    // Not even 64 items' columns (704 bytes each).
    let result = with_limit(512, || w.batch_inspect(9, &batch, |_| inspected += 1));
    assert_eq!(
        result.map_err(|e| e.kind()),
        Err(io::ErrorKind::OutOfMemory)
    );
    assert_eq!(inspected, 0);
    w.batch(9, &batch[..10]).unwrap();
    w.watermark(u64::MAX).unwrap();
    let (events, _) = decode(&w.finish(&Trailer::default()).unwrap());
    assert_eq!(events, heap(&batch[..10]));
}

#[test]
fn no_writer_without_the_smallest_buffers() {
    let result = with_limit(1000, || {
        Writer::new(Vec::new(), &header(), Codec::Raw).map(drop)
    });
    assert_eq!(
        result.map_err(|e| e.kind()),
        Err(io::ErrorKind::OutOfMemory)
    );
}

#[test]
fn stack_nodes_need_no_memory_beyond_the_payload_buffer() {
    // 10,000 nodes, a chain: node i + 1's parent is node i.
    let nodes: Vec<(u32, u64)> = (0..10_000u32).map(|i| (i, 0x1000 + u64::from(i))).collect();
    let batch = items(3);
    let out = Vec::with_capacity(1 << 20);
    let mut w = Writer::new(out, &header(), Codec::Raw).unwrap();
    // No allocation above 1 KiB: the nodes go in records of the 64 KiB payload.
    let written = with_limit(1024, || w.stack_nodes(1, &nodes).map_err(|e| e.kind()));
    assert_eq!(written, Ok(()));
    let deepest = 10_000;
    let batch: Vec<ThreadItem> = batch
        .into_iter()
        .map(|i| match i {
            ThreadItem::Heap(e) => ThreadItem::Heap(HeapEvent {
                stack: deepest,
                ..e
            }),
            other => other,
        })
        .collect();
    w.batch(9, &batch).unwrap();
    w.watermark(u64::MAX).unwrap();
    let bytes = w.finish(&Trailer::default()).unwrap();
    let mut r = Reader::new(&bytes[..]).unwrap();
    while r.next_event().unwrap().is_some() {}
    let frames: Vec<u64> = r.stacks().frames(deepest).collect();
    assert_eq!(frames.len(), 10_000);
    assert_eq!((frames[0], frames[9_999]), (0x1000 + 9_999, 0x1000));
}
