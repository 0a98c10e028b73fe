//! Version 3's `COLUMNS` records: a thread's items field by field, each
//! field in a delta-coded column of its kind.

use super::items::{decode_items, predicted_usable, DeltaState, ItemFields, ALIGN_FLAG};
use super::{marker, quantize_latency, tag, Func, Op, ThreadItem};
use crate::codec::{put_u32_padded, put_u64_at, unzigzag, zigzag, Cursor};
use crate::error::DecodeError;

/// The columns of a `COLUMNS` record, in the order they are stored. Each
/// field of every item goes to the column of its kind, so that zstd sees
/// long runs of alike bytes (all timestamps, then all sizes, ...) instead
/// of interleaved fields: the same data compresses to about a sixth less,
/// and faster.
pub(crate) mod column {
    /// The item codes' column, one byte per item; the others follow in the
    /// order of [`NAMES`]: timestamp deltas (every item), latency codes
    /// (heap items), addresses given back (frees' `addr`, reallocs'
    /// `old_addr`), addresses handed out (allocs' and reallocs' `addr`),
    /// requested sizes, usable-size deltas, alignments (items with the align
    /// flag) and stack id deltas (allocs and reallocs).
    pub const CODE: usize = 0;
    /// The stack id deltas' column.
    pub const STACK: usize = 8;
    /// Number of columns.
    pub const COUNT: usize = 9;
    /// Column names, for error messages.
    pub const NAMES: [&str; COUNT] = [
        "code", "ts", "latency", "released", "returned", "size", "usable", "align", "stack",
    ];
}

/// Most items in one `COLUMNS` record: the writer splits larger batches.
/// Longer columns compress better (4% smaller at 32 Ki items than at 8 Ki).
pub(crate) const COLUMN_BATCH_ITEMS: usize = 1 << 15;

/// Most bytes one item adds to one column (an escaped address delta).
const MAX_ITEM_COLUMN_BYTES: usize = 11;

/// Most bytes a `COLUMNS` record of `n_items` items takes in a block, tag
/// and length included (3.3 MB for [`COLUMN_BATCH_ITEMS`]): the writer
/// checks at compile time that the largest fits in a block.
pub(crate) const fn columns_record_bound(n_items: usize) -> usize {
    COLUMNS_HEAD_MAX + n_items * column::COUNT * MAX_ITEM_COLUMN_BYTES
}

/// One column being written: a buffer with room for the largest batch,
/// and the length used so far. Writing by index into a buffer that is
/// already long enough measured faster than `Vec::push`.
#[derive(Default)]
pub(crate) struct Column {
    buf: Vec<u8>,
    len: usize,
}

impl Column {
    /// Makes room for `items` items and empties the column; false, with
    /// nothing changed, when the memory cannot be had.
    fn reserve(&mut self, items: usize) -> bool {
        let need = items * MAX_ITEM_COLUMN_BYTES;
        if self.buf.len() < need {
            if self.buf.try_reserve_exact(need - self.buf.len()).is_err() {
                return false;
            }
            // Within the capacity just reserved: no allocation.
            self.buf.resize(need, 0);
        }
        self.len = 0;
        true
    }

    #[cfg(test)]
    fn reset(&mut self, items: usize) {
        assert!(self.reserve(items));
    }

    #[inline(always)]
    fn byte(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    /// Appends `v` as an unsigned LEB128 varint. (A branch-free variant
    /// that writes eight bytes at once measured slower: most values take
    /// one or two bytes.)
    #[inline(always)]
    fn varint(&mut self, v: u64) {
        self.len = put_u64_at(&mut self.buf, self.len, v);
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// The writer's column buffers, kept between batches so that encoding
/// allocates nothing once they have grown.
#[derive(Default)]
pub(crate) struct ColumnScratch {
    cols: [Column; column::COUNT],
}

/// Most bytes of a `COLUMNS` record before its columns: the tag, the
/// 5-byte length, the thread id, the item count and the column lengths.
pub(crate) const COLUMNS_HEAD_MAX: usize = 1 + 5 + 10 * (2 + column::COUNT);

impl ColumnScratch {
    /// Makes room for a batch of `items` items; false, allocating nothing
    /// more, when the memory cannot be had (the caller tries fewer items).
    pub(crate) fn reserve(&mut self, items: usize) -> bool {
        self.cols.iter_mut().all(|c| c.reserve(items))
    }

    /// The record's bytes before the columns, for a batch of `n` items of
    /// thread `tid` just encoded by [`fill_columns`], into `out`; returns
    /// how many. The length is a 5-byte varint (non-minimal LEB128, which
    /// every reader accepts), as the writer has always written it.
    pub(crate) fn head(&self, tid: u32, n: usize, out: &mut [u8; COLUMNS_HEAD_MAX]) -> usize {
        let mut at = 6;
        at = put_u64_at(out, at, tid.into());
        at = put_u64_at(out, at, n as u64);
        for col in &self.cols {
            at = put_u64_at(out, at, col.len as u64);
        }
        let len = (at - 6 + self.cols.iter().map(|c| c.len).sum::<usize>()) as u32;
        out[0] = tag::COLUMNS;
        put_u32_padded(out, 1, len);
        at
    }

    /// The encoded columns, in record order.
    pub(crate) fn bytes(&self) -> [&[u8]; column::COUNT] {
        std::array::from_fn(|i| self.cols[i].bytes())
    }
}

/// Appends an address delta. Heap blocks are 16-byte aligned, so deltas
/// are multiples of 16 and lose their four zero bits: an even code is
/// `zigzag(delta / 16) << 1`, an odd one `zigzag(delta) << 1 | 1`, and the
/// code 1 (never needed otherwise: a zero delta is even) is followed by a
/// plain `zigzag(delta)` for deltas too large to shift.
#[inline(always)]
fn put_addr_delta(out: &mut Column, delta: u64) {
    let d = delta as i64;
    if d & 15 == 0 {
        out.varint(zigzag(d >> 4) << 1);
    } else {
        let z = zigzag(d);
        if z >> 63 == 0 {
            out.varint((z << 1) | 1);
        } else {
            out.byte(1);
            out.varint(z);
        }
    }
}

/// Reads an address delta written by [`put_addr_delta`].
#[inline(always)]
fn addr_delta(cur: &mut Cursor) -> Result<u64, DecodeError> {
    let v = cur.u64()?;
    let d = if v & 1 == 0 {
        unzigzag(v >> 1).wrapping_shl(4)
    } else if v == 1 {
        unzigzag(cur.u64()?)
    } else {
        unzigzag(v >> 1)
    };
    Ok(d as u64)
}

/// Encodes one thread's items as a `COLUMNS` payload:
/// `tid n len[COUNT] column[COUNT]`, handing each item to `inspect` first.
/// Returns false, having appended nothing, when a heap event's function
/// code is unknown.
#[cfg(test)]
#[must_use]
pub(crate) fn encode_columns(
    tid: u32,
    items: &[ThreadItem],
    scratch: &mut ColumnScratch,
    out: &mut Vec<u8>,
    inspect: &mut impl FnMut(&ThreadItem),
) -> bool {
    assert!(scratch.reserve(items.len()));
    if !fill_columns(items, scratch, inspect) {
        return false;
    }
    let mut head = [0u8; COLUMNS_HEAD_MAX];
    let n = scratch.head(tid, items.len(), &mut head);
    out.extend_from_slice(&head[6..n]);
    for col in scratch.bytes() {
        out.extend_from_slice(col);
    }
    true
}

/// Encodes items into the columns of `scratch`, which
/// [`ColumnScratch::reserve`] made room for, handing each item to `inspect`
/// first: nothing here allocates. Returns false when a heap event's
/// function code is unknown.
#[must_use]
pub(crate) fn fill_columns(
    items: &[ThreadItem],
    scratch: &mut ColumnScratch,
    inspect: &mut impl FnMut(&ThreadItem),
) -> bool {
    let [codes, ts_col, lat_col, released, returned, sizes, usables, aligns, stacks] =
        &mut scratch.cols;
    for col in [
        &mut *codes,
        &mut *ts_col,
        &mut *lat_col,
        &mut *released,
        &mut *returned,
        &mut *sizes,
        &mut *usables,
        &mut *aligns,
        &mut *stacks,
    ] {
        debug_assert!(col.buf.len() >= items.len() * MAX_ITEM_COLUMN_BYTES);
        col.len = 0;
    }
    let mut st = DeltaState::default();
    for item in items {
        inspect(item);
        match item {
            ThreadItem::Start { ts } | ThreadItem::End { ts } => {
                codes.byte(if matches!(item, ThreadItem::Start { .. }) {
                    marker::THREAD_START
                } else {
                    marker::THREAD_END
                });
                ts_col.varint(zigzag(ts.wrapping_sub(st.ts) as i64));
                st.ts = *ts;
            }
            ThreadItem::Heap(e) => {
                let Some(func) = Func::from_u8(e.func) else {
                    return false;
                };
                let op = Some(func.op());
                let has_align = e.align != 0 && op != Some(Op::Free);
                codes.byte(e.func | if has_align { ALIGN_FLAG } else { 0 });
                ts_col.varint(zigzag(e.ts.wrapping_sub(st.ts) as i64));
                st.ts = e.ts;
                lat_col.varint(quantize_latency(e.latency));
                if op == Some(Op::Free) {
                    put_addr_delta(released, e.addr.wrapping_sub(st.addr));
                    st.addr = e.addr;
                    continue;
                }
                if op == Some(Op::Realloc) {
                    put_addr_delta(released, e.old_addr.wrapping_sub(st.addr));
                    st.addr = e.old_addr;
                }
                put_addr_delta(returned, e.addr.wrapping_sub(st.addr));
                st.addr = e.addr;
                sizes.varint(e.size);
                usables.varint(zigzag(
                    e.usable.wrapping_sub(predicted_usable(e.size)) as i64
                ));
                if has_align {
                    aligns.varint(e.align);
                }
                stacks.varint(zigzag(i64::from(e.stack) - i64::from(st.stack)));
                st.stack = e.stack;
            }
        }
    }
    true
}

/// A `COLUMNS` payload split into its columns, ready to decode.
pub(crate) struct Columns<'a> {
    /// The thread id.
    pub tid: u32,
    /// Number of items.
    pub n: usize,
    cols: [Cursor<'a>; column::COUNT],
}

/// Reads a `COLUMNS` payload's head and cuts its columns apart.
pub(crate) fn decode_columns_head<'a>(cur: &mut Cursor<'a>) -> Result<Columns<'a>, DecodeError> {
    let tid = cur.u32()?;
    let n = cur.count(2)?;
    let mut lens = [0usize; column::COUNT];
    for len in &mut lens {
        *len = cur.len()?;
    }
    if lens[column::CODE] != n {
        return Err(DecodeError::malformed_at(
            cur.at(),
            format!("batch of {n} items has {} item codes", lens[column::CODE]),
        ));
    }
    let mut take = |i: usize| cur.sub(lens[i], column::NAMES[i]);
    let cols = [
        take(0)?,
        take(1)?,
        take(2)?,
        take(3)?,
        take(4)?,
        take(5)?,
        take(6)?,
        take(7)?,
        take(8)?,
    ];
    Ok(Columns { tid, n, cols })
}

/// The column cursors of a `COLUMNS` payload, read field by field.
struct ColumnCursors<'a>([Cursor<'a>; column::COUNT]);

impl ItemFields for ColumnCursors<'_> {
    fn at(&self, column: usize) -> usize {
        self.0[column].at()
    }
    fn code(&mut self) -> Result<u8, DecodeError> {
        self.0[0].u8()
    }
    fn ts_delta(&mut self) -> Result<i64, DecodeError> {
        self.0[1].i64()
    }
    fn latency_code(&mut self) -> Result<u64, DecodeError> {
        self.0[2].u64()
    }
    fn released_delta(&mut self) -> Result<u64, DecodeError> {
        addr_delta(&mut self.0[3])
    }
    fn returned_delta(&mut self) -> Result<u64, DecodeError> {
        addr_delta(&mut self.0[4])
    }
    fn size(&mut self) -> Result<u64, DecodeError> {
        self.0[5].u64()
    }
    fn usable_delta(&mut self) -> Result<i64, DecodeError> {
        self.0[6].i64()
    }
    fn align(&mut self) -> Result<u64, DecodeError> {
        self.0[7].u64()
    }
    fn stack_delta(&mut self) -> Result<i64, DecodeError> {
        self.0[8].i64()
    }
}

/// Decodes the items of a `COLUMNS` payload, handing each to `push`; a heap
/// event whose stack id is not below `n_stacks`, or a column with bytes
/// left over, is an error.
pub(crate) fn decode_columns_items(
    columns: Columns,
    n_stacks: u32,
    push: impl FnMut(ThreadItem),
) -> Result<(), DecodeError> {
    let Columns { n, cols, .. } = columns;
    let mut cols = ColumnCursors(cols);
    decode_items(&mut cols, n, n_stacks, push)?;
    for (i, col) in cols.0.iter().enumerate() {
        if !col.is_empty() {
            return Err(DecodeError::malformed_at(
                col.at(),
                format!(
                    "batch column {} has bytes after its last item",
                    column::NAMES[i]
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::put_u64;
    use crate::record::batch::encode_batch;
    use crate::record::{decode_batch_head, decode_batch_items, HeapEvent};

    /// Items that reach every corner of both batch encodings.
    fn corner_items() -> Vec<ThreadItem> {
        let heap = |func: Func, ts, addr, old_addr, size, usable, align, stack| {
            ThreadItem::Heap(HeapEvent {
                func: func as u8,
                ts,
                latency: 31,
                addr,
                old_addr,
                size,
                usable,
                align,
                stack,
            })
        };
        vec![
            ThreadItem::Start { ts: 1000 },
            heap(Func::Malloc, 1010, 0x5555_0000_0010, 0, 24, 24, 0, 3),
            // A misaligned address, then one so far away that its delta
            // cannot be shifted, then back to a 16-byte multiple.
            heap(Func::Malloc, 1020, 0x5555_0000_0013, 0, 1, 24, 0, 1),
            heap(Func::Calloc, 1030, u64::MAX - 6, 0, u64::MAX, 0, 0, 2),
            heap(Func::Free, 1040, 0x5555_0000_0010, 0, 0, 0, 0, 0),
            heap(Func::PosixMemalign, 1050, 0x7000, 0, 100, 104, 4096, 2),
            heap(
                Func::Realloc,
                1045,
                0x8000_0000_0000_0000,
                0x7000,
                200,
                200,
                0,
                0,
            ),
            heap(Func::Realloc, 1060, 0, 0x8000_0000_0000_0000, 0, 0, 0, 0),
            heap(Func::Malloc, 1070, 0, 0, 1 << 40, 0, 0, 3),
            ThreadItem::End { ts: 999 },
        ]
    }

    fn decode_both_ways(items: &[ThreadItem]) -> (Vec<ThreadItem>, Vec<ThreadItem>) {
        let mut v2 = Vec::new();
        encode_batch(7, items, &mut v2);
        let mut cur = Cursor::new(&v2, "batch");
        let (tid, n) = decode_batch_head(&mut cur).unwrap();
        assert_eq!((tid, n), (7, items.len()));
        let mut from_v2 = Vec::new();
        decode_batch_items(&mut cur, n, 4, |i| from_v2.push(i)).unwrap();

        let mut v3 = Vec::new();
        assert!(encode_columns(
            7,
            items,
            &mut ColumnScratch::default(),
            &mut v3,
            &mut |_| {}
        ));
        let columns = decode_columns_head(&mut Cursor::new(&v3, "columns")).unwrap();
        assert_eq!((columns.tid, columns.n), (7, items.len()));
        let mut from_v3 = Vec::new();
        decode_columns_items(columns, 4, |i| from_v3.push(i)).unwrap();
        (from_v2, from_v3)
    }

    #[test]
    fn columns_and_item_batches_decode_to_the_same_items() {
        let items = corner_items();
        let (from_v2, from_v3) = decode_both_ways(&items);
        // Latency 31 is below 32, so exact; everything else is exact too.
        assert_eq!(from_v3, items);
        assert_eq!(from_v2, items);
    }

    #[test]
    fn column_varints_match_leb128() {
        let mut values = vec![
            0u64,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::MAX,
            1 << 56,
            (1 << 56) - 1,
        ];
        values.extend((0..64).map(|b| 1u64 << b));
        values.extend((1..64).map(|b| (1u64 << b) - 1));
        let mut col = Column::default();
        col.reset(values.len());
        let mut expected = Vec::new();
        for &v in &values {
            col.varint(v);
            put_u64(&mut expected, v);
        }
        assert_eq!(col.bytes(), &expected[..]);
    }

    #[test]
    fn addresses_take_four_bits_less_when_aligned() {
        for delta in [
            0u64,
            16,
            0u64.wrapping_sub(16),
            0x10_0000,
            3,
            u64::MAX,
            1 << 63,
        ] {
            let mut out = Column::default();
            out.reset(1);
            put_addr_delta(&mut out, delta);
            let mut cur = Cursor::new(out.bytes(), "t");
            assert_eq!(addr_delta(&mut cur).unwrap(), delta, "{delta:#x}");
            assert!(cur.is_empty());
        }
        let mut out = Column::default();
        out.reset(1);
        put_addr_delta(&mut out, 496); // 31 × 16: one byte, where zigzag(496) needs two
        assert_eq!(out.bytes(), [124]);
    }

    #[test]
    fn a_column_with_bytes_left_over_is_malformed() {
        let items = corner_items();
        let mut scratch = ColumnScratch::default();
        let mut out = Vec::new();
        assert!(encode_columns(
            7,
            &items,
            &mut scratch,
            &mut out,
            &mut |_| {}
        ));
        // Re-encode with one extra byte in the stack column (the last one).
        let mut grown = Vec::new();
        put_u64(&mut grown, 7);
        put_u64(&mut grown, items.len() as u64);
        for (i, col) in scratch.cols.iter().enumerate() {
            put_u64(
                &mut grown,
                col.len as u64 + u64::from(i == column::COUNT - 1),
            );
        }
        for col in &scratch.cols {
            grown.extend_from_slice(col.bytes());
        }
        grown.push(0);
        let columns = decode_columns_head(&mut Cursor::new(&grown, "columns")).unwrap();
        let err = decode_columns_items(columns, 4, |_| {}).unwrap_err();
        // The position is that of the extra byte, the payload's last.
        assert_eq!(
            err.to_string(),
            format!(
                "trace is corrupt: byte {} of a block's records: \
                 batch column stack has bytes after its last item",
                grown.len() - 1
            )
        );
    }

    #[test]
    fn a_code_column_shorter_than_the_count_is_malformed() {
        let mut out = Vec::new();
        put_u64(&mut out, 7);
        put_u64(&mut out, 2);
        for len in [1u64, 2, 0, 0, 0, 0, 0, 0, 0] {
            put_u64(&mut out, len);
        }
        out.extend_from_slice(&[marker::THREAD_START, 2, 2]);
        let err = decode_columns_head(&mut Cursor::new(&out, "columns"))
            .err()
            .unwrap();
        // After `tid`, `n` and the nine lengths: byte 11.
        assert_eq!(
            err.to_string(),
            "trace is corrupt: byte 11 of a block's records: batch of 2 items has 1 item codes"
        );
    }
}
