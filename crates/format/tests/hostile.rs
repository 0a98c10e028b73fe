//! Traces made to hurt the reader: blocks that claim or expand to more
//! than a writer ever makes, faults that must be named by their file
//! offset, and files that grow while they are read.

use std::path::PathBuf;
use std::time::Duration;

use memtrace_format::*;

fn header() -> Header {
    Header {
        pid: 7,
        exe: "/bin/demo".into(),
        ..Header::default()
    }
}

fn alloc(ts: u64, addr: u64) -> ThreadItem {
    ThreadItem::Heap(HeapEvent {
        func: Func::Malloc as u8,
        ts,
        addr,
        size: 32,
        usable: 40,
        stack: 1,
        ..Default::default()
    })
}

/// The preamble and the header's block, as the writer makes them.
fn preamble_and_header() -> Vec<u8> {
    let mut w = Writer::new(Vec::new(), &header(), Codec::Raw).unwrap();
    std::mem::take(w.get_mut())
}

/// One block around `stored`, with a correct checksum.
fn block(codec: u8, stored: &[u8], raw_len: usize) -> Vec<u8> {
    let mut out = b"MTBK".to_vec();
    out.extend_from_slice(&[codec, 0, 0, 0]);
    out.extend_from_slice(&(stored.len() as u32).to_le_bytes());
    out.extend_from_slice(&(raw_len as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(stored).to_le_bytes());
    out.extend_from_slice(stored);
    out
}

fn read_to_end(bytes: &[u8]) -> Result<Completeness, DecodeError> {
    let mut r = Reader::new(bytes)?;
    while r.next_event()?.is_some() {}
    Ok(r.completeness().clone())
}

fn error_line(bytes: &[u8]) -> String {
    read_to_end(bytes).unwrap_err().to_string()
}

#[test]
fn a_block_claiming_more_than_the_limit_is_refused_before_decompression() {
    let mut trace = preamble_and_header();
    let at = trace.len();
    let zeros = vec![0u8; 64 << 20];
    let frame = zstd::bulk::compress(&zeros, 19).unwrap();
    trace.extend(block(1, &frame, zeros.len()));
    assert_eq!(
        error_line(&trace),
        format!(
            "trace is corrupt: block at byte {at}: block claims 67108864 bytes of records, \
             over the 16777216-byte limit"
        )
    );
}

#[test]
fn a_frame_that_expands_past_its_header_is_refused() {
    let mut trace = preamble_and_header();
    let at = trace.len();
    let zeros = vec![0u8; 1 << 20];
    // A frame that names its size is refused before it is decoded.
    let frame = zstd::bulk::compress(&zeros, 1).unwrap();
    trace.extend(block(1, &frame, 100));
    assert_eq!(
        error_line(&trace),
        format!(
            "trace is corrupt: block at byte {at}: zstd frame expands to 1048576 bytes, \
             the block header says 100"
        )
    );
    // A streamed frame does not name its size: decoding stops at the
    // header's size, the end of the buffer it is given.
    let mut trace = preamble_and_header();
    let streamed = zstd::stream::encode_all(&zeros[..], 1).unwrap();
    assert!(
        matches!(zstd::zstd_safe::get_frame_content_size(&streamed), Ok(None)),
        "the streamed frame should not name its size"
    );
    trace.extend(block(1, &streamed, 100));
    assert_eq!(
        error_line(&trace),
        format!("trace is corrupt: block at byte {at}: zstd: Destination buffer is too small")
    );
}

/// Records: a watermark, a note, then `STACK_NODES` whose node 1 has the
/// invalid `back` 0, at byte 4 of the third record (8 + 4 = byte 12 of
/// the block's records).
fn bad_records() -> Vec<u8> {
    let mut records = vec![6, 1, 5]; // WATERMARK 5
    records.extend([12, 3, 2, b'h', b'i']); // NOTE "hi"
    records.extend([4, 4, 1, 1, 0, 0x10]); // STACK_NODES first 1, n 1, back 0
    records
}

#[test]
fn a_bad_record_in_a_raw_block_names_its_file_byte() {
    let mut trace = preamble_and_header();
    let at = trace.len();
    let records = bad_records();
    trace.extend(block(0, &records, records.len()));
    assert_eq!(
        error_line(&trace),
        format!(
            "trace is corrupt: byte {} (record 3 of the block at byte {at}): \
             stack node 1 has an invalid parent",
            at + 20 + 12
        )
    );
    let DecodeError::Malformed(fault) = read_to_end(&trace).unwrap_err() else {
        panic!("not a record fault")
    };
    assert_eq!(fault.file_offset(), Some(at as u64 + 32));
    assert_eq!(fault.block_offset(), Some(at as u64));
    assert_eq!(fault.record(), Some(3));
    assert_eq!(fault.why(), "stack node 1 has an invalid parent");
}

#[test]
fn a_bad_record_in_a_zstd_block_names_its_decompressed_byte() {
    let mut trace = preamble_and_header();
    let at = trace.len();
    let records = bad_records();
    let frame = zstd::bulk::compress(&records, 1).unwrap();
    trace.extend(block(1, &frame, records.len()));
    assert_eq!(
        error_line(&trace),
        format!(
            "trace is corrupt: byte 12 of the decompressed block at byte {at} (record 3): \
             stack node 1 has an invalid parent"
        )
    );
}

#[test]
fn a_cut_record_names_where_its_length_runs_out() {
    let mut trace = preamble_and_header();
    let at = trace.len();
    // A NOTE whose length (9) runs past the block's 5 bytes.
    let records = [6, 1, 5, 12, 9];
    trace.extend(block(0, &records, records.len()));
    assert_eq!(
        error_line(&trace),
        format!(
            "trace is corrupt: byte {} (record 2 of the block at byte {at}): \
             block: length runs past the end",
            at + 20 + 4
        )
    );
}

#[test]
fn the_writer_never_makes_a_block_over_the_limit() {
    // One drain's worth of new stacks and events far over the limit, with
    // auto-sealing off as the recorder has it.
    let mut w = Writer::new(Vec::new(), &header(), Codec::Raw).unwrap();
    w.set_auto_seal(false);
    let n_nodes = 1_600_000u32;
    let nodes: Vec<(u32, u64)> = (0..n_nodes).map(|i| (i, u64::MAX - u64::from(i))).collect();
    w.stack_nodes(1, &nodes).unwrap();
    let items: Vec<ThreadItem> = (0..400_000u64)
        .map(|i| alloc(i, (i * 0x1_0000_0001) ^ 0x5555_5555_5555))
        .collect();
    w.batch(1, &items).unwrap();
    w.watermark(u64::MAX).unwrap();
    let bytes = w.finish(&Trailer::default()).unwrap();

    let mut at = 12;
    let mut n_blocks = 0;
    while at < bytes.len() {
        let word = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap()) as usize;
        let (stored, raw) = (word(at + 8), word(at + 12));
        assert!(raw <= MAX_BLOCK, "block at {at} holds {raw} bytes");
        at += 20 + stored;
        n_blocks += 1;
    }
    assert!(n_blocks >= 3, "{n_blocks} blocks");

    let mut r = Reader::new(&bytes[..]).unwrap();
    let mut n_events = 0;
    while r.next_event().unwrap().is_some() {
        n_events += 1;
    }
    assert_eq!(n_events, 400_000);
    assert_eq!(r.stacks().len(), n_nodes as usize + 1);
    assert!(matches!(r.completeness(), Completeness::Complete(_)));
}

#[test]
fn a_record_larger_than_a_block_is_refused_by_the_writer() {
    let mut w = Writer::new(Vec::new(), &header(), Codec::Raw).unwrap();
    let err = w.note(&"x".repeat(MAX_BLOCK)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    // The writer goes on.
    w.note("fine").unwrap();
    let bytes = w.finish(&Trailer::default()).unwrap();
    let mut r = Reader::new(&bytes[..]).unwrap();
    while r.next_event().unwrap().is_some() {}
    assert_eq!(r.notes(), ["fine"]);
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("memtrace-format-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("t.trace")
}

/// A writer into a file at `path` that has written the header, one stack
/// and a first batch of 3 events up to a watermark, flushed.
fn first_part(path: &std::path::Path) -> Writer<std::fs::File> {
    let file = std::fs::File::create(path).unwrap();
    let mut w = Writer::new(file, &header(), Codec::Zstd(1)).unwrap();
    w.stack_nodes(1, &[(0, 0x10)]).unwrap();
    w.batch(1, &[alloc(1, 0x100), alloc(2, 0x200), alloc(3, 0x300)])
        .unwrap();
    w.watermark(4).unwrap();
    w.flush().unwrap();
    w
}

/// Writes 2 more events and, with `trailer`, the trailer.
fn second_part(mut w: Writer<std::fs::File>, trailer: bool) {
    w.batch(1, &[alloc(5, 0x500), alloc(6, 0x600)]).unwrap();
    w.watermark(7).unwrap();
    if trailer {
        w.finish(&Trailer::default()).unwrap();
    } else {
        w.flush().unwrap();
    }
}

fn count_events(r: &mut TraceReader) -> usize {
    let mut n = 0;
    while r.next_event().unwrap().is_some() {
        n += 1;
    }
    n
}

#[test]
fn a_reader_stops_at_the_length_the_file_had_when_opened() {
    let path = scratch("as-opened");
    let w = first_part(&path);
    let first_len = std::fs::metadata(&path).unwrap().len();
    let mut early = Reader::open(&path, Extent::AsOpened).unwrap();
    second_part(w, true);
    assert_eq!(count_events(&mut early), 3);
    assert_eq!(early.completeness(), &Completeness::NoTrailer);
    assert_eq!(early.file_position(), first_len);

    let mut late = Reader::open(&path, Extent::AsOpened).unwrap();
    assert_eq!(count_events(&mut late), 5);
    assert!(matches!(late.completeness(), Completeness::Complete(_)));

    let mut again = Reader::open(&path, Extent::Bytes(first_len)).unwrap();
    assert_eq!(count_events(&mut again), 3);
    assert_eq!(again.completeness(), &Completeness::NoTrailer);
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

#[test]
fn a_follower_reads_on_until_the_trailer() {
    let path = scratch("follow");
    let w = first_part(&path);
    let (tx, rx) = std::sync::mpsc::channel();
    let reader_path = path.clone();
    let reader = std::thread::spawn(move || {
        // An idle time far above any wait here: only a hang reaches it.
        let idle = Duration::from_secs(120);
        let mut r = Reader::open(&reader_path, Extent::Follow { idle }).unwrap();
        let mut n = 0;
        while r.next_event().unwrap().is_some() {
            n += 1;
            tx.send(n).unwrap();
        }
        (n, r.completeness().clone())
    });
    // The follower has delivered the first part, so it is at the end of
    // what was written (or about to be): then the rest comes.
    for expected in 1..=3 {
        assert_eq!(rx.recv().unwrap(), expected);
    }
    second_part(w, true);
    let (n, end) = reader.join().unwrap();
    assert_eq!(n, 5);
    assert!(matches!(end, Completeness::Complete(_)), "{end:?}");
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

#[test]
fn a_follower_gives_up_when_the_file_stops_growing() {
    let path = scratch("follow-idle");
    let w = first_part(&path);
    second_part(w, false);
    let idle = Duration::from_millis(100);
    let mut r = Reader::open(&path, Extent::Follow { idle }).unwrap();
    assert_eq!(count_events(&mut r), 5);
    assert_eq!(r.completeness(), &Completeness::NoTrailer);
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

#[test]
fn nothing_after_the_trailer_is_read() {
    let mut w = Writer::new(Vec::new(), &header(), Codec::Raw).unwrap();
    w.stack_nodes(1, &[(0, 0x10)]).unwrap();
    w.batch(1, &[alloc(1, 0x100)]).unwrap();
    let mut bytes = w.finish(&Trailer::default()).unwrap();
    bytes.extend_from_slice(b"garbage after the end");
    let mut r = Reader::new(&bytes[..]).unwrap();
    let mut n = 0;
    while r.next_event().unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 1);
    assert!(matches!(r.completeness(), Completeness::Complete(_)));
}

#[test]
fn a_file_may_decode_to_64_mib_and_256_times_its_size() {
    // Blocks of exactly the limit, each of a few hundred bytes: the fifth
    // passes 64 MiB + 256 times the bytes read so far.
    let mut trace = preamble_and_header();
    let header_block = (trace.len() - 12) as u64;
    let zeros = vec![0u8; MAX_BLOCK];
    let frame = zstd::bulk::compress(&zeros, 19).unwrap();
    let one = block(1, &frame, zeros.len());
    for _ in 0..20 {
        trace.extend(&one);
    }
    let fifth = 12 + header_block + 4 * one.len() as u64;
    let raw = 5 * MAX_BLOCK as u64 + (header_block - 20);
    let stored = header_block + 5 * one.len() as u64;
    assert!(raw > (64 << 20) + 256 * stored);
    assert_eq!(
        error_line(&trace),
        format!(
            "trace is corrupt: block at byte {fifth}: the blocks up to this one decode to \
             {raw} bytes from {stored} in the file, over the decompression budget of \
             67108864 bytes and 256 per byte in the file"
        )
    );
}

#[test]
fn notes_past_a_mebibyte_are_left_out() {
    let mut w = Writer::new(Vec::new(), &header(), Codec::Raw).unwrap();
    let long = "n".repeat(600_000);
    for _ in 0..3 {
        w.note(&long).unwrap();
    }
    w.note("short").unwrap();
    let bytes = w.finish(&Trailer::default()).unwrap();
    let mut r = Reader::new(&bytes[..]).unwrap();
    while r.next_event().unwrap().is_some() {}
    assert_eq!(
        r.notes(),
        [
            long.clone(),
            "further notes left out: they pass 1048576 bytes".to_string()
        ]
    );
}
