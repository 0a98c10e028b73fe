//! What both thread-batch encodings share: the per-batch delta state, the
//! usable size they store as a difference from glibc's, and the decoder of
//! items from wherever an encoding keeps their fields.

use super::{column, dequantize_latency, marker, Func, HeapEvent, Op, ThreadItem};
use crate::error::DecodeError;

/// glibc's usable size for a request: chunks are 16-byte multiples with an
/// 8-byte header, at least 32 bytes. Stored usable sizes are deltas from it.
#[inline]
pub(super) fn predicted_usable(size: u64) -> u64 {
    (size.saturating_add(8 + 15) & !15).max(32) - 8
}

/// Set in a heap event's tag byte when an alignment follows.
pub(super) const ALIGN_FLAG: u8 = 0x80;

/// Per-batch delta state shared by the event encoder and decoder.
#[derive(Default)]
pub(super) struct DeltaState {
    pub(super) ts: u64,
    pub(super) addr: u64,
    pub(super) stack: u32,
}

/// Where a batch decoder reads each field of an item: version 2's
/// item-by-item batches read every field from one cursor, in item order;
/// version 3's columns read each from the cursor of its column.
pub(super) trait ItemFields {
    /// Where the next read of column `column` (see [`column::NAMES`])
    /// starts in the block's records, for error messages.
    fn at(&self, column: usize) -> usize;
    fn code(&mut self) -> Result<u8, DecodeError>;
    fn ts_delta(&mut self) -> Result<i64, DecodeError>;
    fn latency_code(&mut self) -> Result<u64, DecodeError>;
    /// The delta of a free's `addr` or a realloc's `old_addr`.
    fn released_delta(&mut self) -> Result<u64, DecodeError>;
    /// The delta of an alloc's or a realloc's `addr`.
    fn returned_delta(&mut self) -> Result<u64, DecodeError>;
    fn size(&mut self) -> Result<u64, DecodeError>;
    fn usable_delta(&mut self) -> Result<i64, DecodeError>;
    fn align(&mut self) -> Result<u64, DecodeError>;
    fn stack_delta(&mut self) -> Result<i64, DecodeError>;
}

/// Decodes `n` items whose fields `src` gives, in the order a version-2
/// item holds them, handing each to `push`; a heap event whose stack id is
/// not below `n_stacks` is an error.
pub(super) fn decode_items(
    src: &mut impl ItemFields,
    n: usize,
    n_stacks: u32,
    mut push: impl FnMut(ThreadItem),
) -> Result<(), DecodeError> {
    let mut st = DeltaState::default();
    for _ in 0..n {
        let code_at = src.at(column::CODE);
        let code = src.code()?;
        let ts = st.ts.wrapping_add(src.ts_delta()? as u64);
        st.ts = ts;
        let item = match code {
            marker::THREAD_START => ThreadItem::Start { ts },
            marker::THREAD_END => ThreadItem::End { ts },
            _ => {
                let has_align = code & ALIGN_FLAG != 0;
                let code = code & !ALIGN_FLAG;
                let func = Func::from_u8(code).ok_or_else(|| {
                    DecodeError::malformed_at(code_at, format!("unknown heap function tag {code}"))
                })?;
                let mut e = HeapEvent {
                    func: code,
                    ts,
                    latency: dequantize_latency(src.latency_code()?),
                    ..HeapEvent::default()
                };
                if func.op() == Op::Free {
                    e.addr = st.addr.wrapping_add(src.released_delta()?);
                    st.addr = e.addr;
                } else {
                    if func.op() == Op::Realloc {
                        e.old_addr = st.addr.wrapping_add(src.released_delta()?);
                        st.addr = e.old_addr;
                    }
                    e.addr = st.addr.wrapping_add(src.returned_delta()?);
                    st.addr = e.addr;
                    e.size = src.size()?;
                    e.usable = predicted_usable(e.size).wrapping_add(src.usable_delta()? as u64);
                    if has_align {
                        e.align = src.align()?;
                    }
                    let stack_at = src.at(column::STACK);
                    let stack = i64::from(st.stack) + src.stack_delta()?;
                    e.stack = u32::try_from(stack).map_err(|_| {
                        DecodeError::malformed_at(
                            stack_at,
                            format!("stack id {stack} out of range"),
                        )
                    })?;
                    if e.stack >= n_stacks {
                        return Err(DecodeError::malformed_at(
                            stack_at,
                            format!("event refers to unknown stack {}", e.stack),
                        ));
                    }
                    st.stack = e.stack;
                }
                ThreadItem::Heap(e)
            }
        };
        push(item);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usable_sizes_follow_glibc() {
        assert_eq!(predicted_usable(0), 24);
        assert_eq!(predicted_usable(24), 24);
        assert_eq!(predicted_usable(25), 40);
        assert_eq!(predicted_usable(4096), 4104);
    }
}
