//! Version 2's `BATCH` records: a thread's items one after another, every
//! field of an item in a row. The writer now writes [`super::columns`];
//! these still read.

#[cfg(test)]
use super::items::DeltaState;
use super::items::{decode_items, ItemFields};
#[cfg(test)]
use super::items::{predicted_usable, ALIGN_FLAG};
use super::ThreadItem;
#[cfg(test)]
use super::{marker, quantize_latency, Func, Op};
use crate::codec::Cursor;
#[cfg(test)]
use crate::codec::{put_u64, put_u64_at, zigzag};
use crate::error::DecodeError;

/// One event's bytes, built on the stack before they join the payload: no
/// capacity check per byte.
#[cfg(test)]
struct EventBytes {
    buf: [u8; 96],
    len: usize,
}

#[cfg(test)]
impl EventBytes {
    #[inline(always)]
    fn new() -> Self {
        EventBytes {
            buf: [0; 96],
            len: 0,
        }
    }

    #[inline(always)]
    fn byte(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    #[inline(always)]
    fn u64(&mut self, v: u64) {
        self.len = put_u64_at(&mut self.buf, self.len, v);
    }

    #[inline(always)]
    fn i64(&mut self, v: i64) {
        self.u64(zigzag(v));
    }
}

/// Encodes one thread's items as a version-2 `BATCH` payload (item after
/// item). The writer now writes [`encode_columns`]; this stays to test that
/// older traces still read.
#[cfg(test)]
pub(crate) fn encode_batch(tid: u32, items: &[ThreadItem], out: &mut Vec<u8>) {
    put_u64(out, tid.into());
    put_u64(out, items.len() as u64);
    out.reserve(items.len() * 16);
    let mut st = DeltaState::default();
    for item in items {
        let mut b = EventBytes::new();
        match item {
            ThreadItem::Start { ts } | ThreadItem::End { ts } => {
                b.byte(if matches!(item, ThreadItem::Start { .. }) {
                    marker::THREAD_START
                } else {
                    marker::THREAD_END
                });
                b.i64(ts.wrapping_sub(st.ts) as i64);
                st.ts = *ts;
            }
            ThreadItem::Heap(e) => {
                let op = Func::from_u8(e.func).map(Func::op);
                let has_align = e.align != 0 && op != Some(Op::Free);
                b.byte(e.func | if has_align { ALIGN_FLAG } else { 0 });
                b.i64(e.ts.wrapping_sub(st.ts) as i64);
                st.ts = e.ts;
                b.u64(quantize_latency(e.latency));
                if op == Some(Op::Free) {
                    b.i64(e.addr.wrapping_sub(st.addr) as i64);
                    st.addr = e.addr;
                } else {
                    if op == Some(Op::Realloc) {
                        b.i64(e.old_addr.wrapping_sub(st.addr) as i64);
                        st.addr = e.old_addr;
                    }
                    b.i64(e.addr.wrapping_sub(st.addr) as i64);
                    st.addr = e.addr;
                    b.u64(e.size);
                    b.i64(e.usable.wrapping_sub(predicted_usable(e.size)) as i64);
                    if has_align {
                        b.u64(e.align);
                    }
                    b.i64(i64::from(e.stack) - i64::from(st.stack));
                    st.stack = e.stack;
                }
            }
        }
        out.extend_from_slice(&b.buf[..b.len]);
    }
}

/// Decodes a batch payload into `items`; returns the thread id.
pub(crate) fn decode_batch_head(cur: &mut Cursor) -> Result<(u32, usize), DecodeError> {
    let tid = cur.u32()?;
    let n = cur.count(2)?;
    Ok((tid, n))
}

impl ItemFields for Cursor<'_> {
    fn at(&self, _column: usize) -> usize {
        Cursor::at(self)
    }
    fn code(&mut self) -> Result<u8, DecodeError> {
        self.u8()
    }
    fn ts_delta(&mut self) -> Result<i64, DecodeError> {
        self.i64()
    }
    fn latency_code(&mut self) -> Result<u64, DecodeError> {
        self.u64()
    }
    fn released_delta(&mut self) -> Result<u64, DecodeError> {
        Ok(self.i64()? as u64)
    }
    fn returned_delta(&mut self) -> Result<u64, DecodeError> {
        Ok(self.i64()? as u64)
    }
    fn size(&mut self) -> Result<u64, DecodeError> {
        self.u64()
    }
    fn usable_delta(&mut self) -> Result<i64, DecodeError> {
        self.i64()
    }
    fn align(&mut self) -> Result<u64, DecodeError> {
        self.u64()
    }
    fn stack_delta(&mut self) -> Result<i64, DecodeError> {
        self.i64()
    }
}

/// Decodes the `n` items of a batch (after [`decode_batch_head`]), handing
/// each to `push`; a heap event whose stack id is not below `n_stacks` is an
/// error.
pub(crate) fn decode_batch_items(
    cur: &mut Cursor,
    n: usize,
    n_stacks: u32,
    push: impl FnMut(ThreadItem),
) -> Result<(), DecodeError> {
    decode_items(cur, n, n_stacks, push)
}
