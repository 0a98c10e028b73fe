//! A trace's heap calls as the allocator-neutral request stream that the
//! policy replay reads: every block gets an id, a realloc becomes a free of
//! the old block and an allocation of the new one.

use memtrace_format::{DecodeError, Event, Op, Reader};
use memtrace_frag::Request;

use crate::receipts::ReceiptOrder;
use crate::sink::{EventSink, Trace};
use rustc_hash::FxHashMap;

/// The requests of a whole trace, in timestamp order (a moving realloc's
/// new block when the call ends: [`ReceiptOrder`]). Frees of blocks the
/// trace never saw allocated are left out.
pub fn from_reader<R: std::io::Read>(reader: &mut Reader<R>) -> Result<Vec<Request>, DecodeError> {
    let mut requests = Vec::new();
    let mut converter = Requests::new();
    let mut order = ReceiptOrder::new();
    while let Some(event) = order.next(reader)? {
        converter.feed(&event, |r| requests.push(r));
    }
    Ok(requests)
}

/// [`Requests`] as an [`EventSink`] (behind
/// [`crate::sink::InReceiptOrder`]): every request goes to `out`.
pub struct RequestSink<F: FnMut(Request)> {
    converter: Requests,
    out: F,
}

impl<F: FnMut(Request)> RequestSink<F> {
    /// Passes the requests to `out` as they come.
    pub fn new(out: F) -> Self {
        RequestSink {
            converter: Requests::new(),
            out,
        }
    }
}

impl<F: FnMut(Request)> EventSink for RequestSink<F> {
    fn event(&mut self, event: &Event, _: &Trace) {
        self.converter.feed(event, &mut self.out);
    }
}

/// Turns events into requests one at a time, for a caller that reads the
/// trace once for several analyses (through a [`ReceiptOrder`]).
#[derive(Debug, Default)]
pub struct Requests {
    ids: FxHashMap<u64, u64>,
    next_id: u64,
}

impl Requests {
    /// No block seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn alloc(&mut self, addr: u64, size: u64, out: &mut impl FnMut(Request)) {
        self.next_id += 1;
        if let Some(old) = self.ids.insert(addr, self.next_id) {
            // The same address handed out again: its free was not seen.
            out(Request::Free { id: old });
        }
        out(Request::Alloc {
            id: self.next_id,
            size,
        });
    }

    /// Passes the requests of `event` (none, one or two) to `out`.
    pub fn feed(&mut self, event: &Event, mut out: impl FnMut(Request)) {
        let Event::Heap { event: e, .. } = event else {
            return;
        };
        let Some(func) = e.func() else { return };
        match func.op() {
            Op::Alloc if e.addr != 0 => self.alloc(e.addr, e.size, &mut out),
            Op::Alloc => {}
            Op::Free => {
                if let Some(id) = self.ids.remove(&e.addr) {
                    out(Request::Free { id });
                }
            }
            Op::Realloc => {
                if e.addr == 0 && e.size > 0 {
                    return; // failed: the old block stays
                }
                if e.old_addr != 0 {
                    if let Some(id) = self.ids.remove(&e.old_addr) {
                        out(Request::Free { id });
                    }
                }
                if e.addr != 0 {
                    self.alloc(e.addr, e.size, &mut out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use memtrace_format::*;

    #[test]
    fn reallocs_become_a_free_and_an_allocation() {
        let header = Header {
            pid: 1,
            ..Header::default()
        };
        let mut w = Writer::new(Vec::new(), &header, Codec::Raw).unwrap();
        let ev = |func: Func, ts, addr, old_addr, size| {
            ThreadItem::Heap(HeapEvent {
                func: func as u8,
                ts,
                addr,
                old_addr,
                size,
                ..Default::default()
            })
        };
        w.batch(
            1,
            &[
                ev(Func::Malloc, 1, 0x10, 0, 8),
                ev(Func::Realloc, 2, 0x20, 0x10, 16),
                ev(Func::Free, 3, 0x99, 0, 0),
                ev(Func::Free, 4, 0x20, 0, 0),
            ],
        )
        .unwrap();
        let bytes = w.finish(&Trailer::default()).unwrap();
        let stream = from_reader(&mut Reader::new(&bytes[..]).unwrap()).unwrap();
        assert_eq!(
            stream,
            vec![
                Request::Alloc { id: 1, size: 8 },
                Request::Free { id: 1 },
                Request::Alloc { id: 2, size: 16 },
                Request::Free { id: 2 },
            ]
        );
    }
}
