//! Events in the order a heap replay must apply them: the block a moving
//! realloc receives arrives when the call ends, not when it starts.
//!
//! A realloc is stamped when it starts (docs/trace-format.md section 6.6).
//! It releases its old block at once, but receives the new one at some
//! moment before it returns, and meanwhile other threads may free that
//! block's previous occupant, or allocate and free it again, with later
//! timestamps. [`ReceiptOrder`] splits such a realloc in two: the event
//! itself, as a realloc that only releases (`addr` and `size` 0), and a
//! realloc that only receives (`old_addr` 0), passed on once the stream
//! reaches an event stamped after `ts + latency`, or the same thread's next
//! heap event, or its end. Reallocs that keep their block, fail, or were
//! recorded without latency pass unchanged.

use std::collections::VecDeque;
use std::io::Read;

use memtrace_format::{DecodeError, Event, HeapEvent, Op, Reader};

/// Most receipts kept waiting; a real trace has a handful at a time (one
/// per thread at most in a realloc, and each settles by the thread's next call).
const MAX_PENDING: usize = 4096;

/// A received block waiting for its call's end.
#[derive(Debug, Clone, Copy)]
struct Pending {
    due: u64,
    tid: u32,
    event: HeapEvent,
}

/// The blocks received by moving reallocs whose calls may not have ended:
/// what [`ReceiptOrder`] and `HeapReplay` hold back.
#[derive(Debug, Clone, Default)]
pub(crate) struct Receipts {
    pending: Vec<Pending>,
}

impl Receipts {
    /// Whether `e` is a realloc that moves its block, with a latency that
    /// says when the call ended.
    pub fn is_moving(e: &HeapEvent) -> bool {
        e.func().map(|f| f.op()) == Some(Op::Realloc)
            && e.addr != 0
            && e.addr != e.old_addr
            && e.latency > 0
    }

    /// Holds back the block the moving realloc `e` of thread `tid` received:
    /// the same event with `old_addr` 0, due at `ts + latency`.
    pub fn hold(&mut self, tid: u32, e: &HeapEvent) {
        self.pending.push(Pending {
            due: e.ts.saturating_add(e.latency),
            tid,
            event: HeapEvent { old_addr: 0, ..*e },
        });
    }

    /// The receipts that have arrived by thread `tid`'s event stamped `ts`
    /// (those due before it, and the thread's own: its call has returned),
    /// in the order of their calls' ends. Past [`MAX_PENDING`] (only a
    /// damaged or hostile trace has that many slow reallocs at once) all of
    /// them, rather than scan them at every event.
    pub fn arrived(&mut self, tid: u32, ts: u64) -> Vec<(u32, HeapEvent)> {
        if self.pending.is_empty() {
            return Vec::new();
        }
        let all = self.pending.len() > MAX_PENDING;
        self.take(|p| all || p.due < ts || p.tid == tid)
    }

    /// Every receipt still held, at the end of the trace.
    pub fn all(&mut self) -> Vec<(u32, HeapEvent)> {
        self.take(|_| true)
    }

    fn take(&mut self, due: impl Fn(&Pending) -> bool) -> Vec<(u32, HeapEvent)> {
        let mut arrived: Vec<Pending> = Vec::new();
        self.pending.retain(|p| {
            let now = due(p);
            if now {
                arrived.push(*p);
            }
            !now
        });
        arrived.sort_by_key(|p| p.due);
        arrived.into_iter().map(|p| (p.tid, p.event)).collect()
    }
}

/// Reorders a reader's events as the module explains.
#[derive(Debug, Default)]
pub struct ReceiptOrder {
    receipts: Receipts,
    ready: VecDeque<Event>,
}

impl ReceiptOrder {
    /// Nothing read yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next event to apply, or `None` at the end of the trace.
    pub fn next<R: Read>(&mut self, reader: &mut Reader<R>) -> Result<Option<Event>, DecodeError> {
        while self.ready.is_empty() {
            match reader.next_event()? {
                Some(event) => self.push(event),
                None => {
                    self.end();
                    break;
                }
            }
        }
        Ok(self.pop())
    }

    /// The next event to apply of those pushed so far, if one is ready.
    pub fn pop(&mut self) -> Option<Event> {
        self.ready.pop_front()
    }

    /// The reader's stream has ended: every block still held is ready.
    pub fn end(&mut self) {
        let rest = self.receipts.all();
        self.make_ready(rest);
    }

    /// Takes the reader's next event (for a caller that reads the trace
    /// itself; [`ReceiptOrder::pop`] gives what is ready).
    pub fn push(&mut self, event: Event) {
        let Event::Heap { tid, event: e } = event else {
            self.ready.push_back(event);
            return;
        };
        let arrived = self.receipts.arrived(tid, e.ts);
        self.make_ready(arrived);
        if !Receipts::is_moving(&e) {
            self.ready.push_back(Event::Heap { tid, event: e });
            return;
        }
        self.receipts.hold(tid, &e);
        if e.old_addr != 0 {
            let release = HeapEvent {
                addr: 0,
                size: 0,
                ..e
            };
            self.ready.push_back(Event::Heap {
                tid,
                event: release,
            });
        }
    }

    fn make_ready(&mut self, receipts: Vec<(u32, HeapEvent)>) {
        self.ready.extend(
            receipts
                .into_iter()
                .map(|(tid, event)| Event::Heap { tid, event }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use memtrace_format::{
        dequantize_latency, quantize_latency, Codec, Func, Header, ThreadItem, Trailer, Writer,
    };

    /// An event as it reads back: latency on the stored scale, no stack on frees.
    fn ev(func: Func, ts: u64, latency: u64, addr: u64, old_addr: u64, size: u64) -> HeapEvent {
        HeapEvent {
            func: func as u8,
            ts,
            latency: dequantize_latency(quantize_latency(latency)),
            addr,
            old_addr,
            size,
            usable: size,
            stack: u32::from(func != Func::Free),
            ..Default::default()
        }
    }

    /// Thread 2's realloc runs from 20 to 120 and receives 0xa0, which
    /// thread 1 frees, allocates and frees again meanwhile.
    #[test]
    fn a_moving_realloc_receives_its_block_when_the_call_ends() {
        let header = Header {
            pid: 1,
            exe: "/x".into(),
            latency_measured: true,
            ..Header::default()
        };
        let mut w = Writer::new(Vec::new(), &header, Codec::Raw).unwrap();
        w.stack_nodes(1, &[(0, 0x1000)]).unwrap();
        let t1 = [
            ev(Func::Malloc, 10, 5, 0xa0, 0, 64),
            ev(Func::Free, 50, 5, 0xa0, 0, 0),
            ev(Func::Malloc, 60, 5, 0xa0, 0, 16),
            ev(Func::Free, 70, 5, 0xa0, 0, 0),
            ev(Func::Malloc, 200, 5, 0xc0, 0, 8),
        ];
        let t2 = [
            ev(Func::Malloc, 12, 5, 0xb0, 0, 32),
            ev(Func::Realloc, 20, 100, 0xa0, 0xb0, 48),
            ev(Func::Realloc, 300, 0, 0xd0, 0xa0, 8), // no latency: unchanged
        ];
        let items = |evs: &[HeapEvent]| -> Vec<ThreadItem> {
            evs.iter().map(|&e| ThreadItem::Heap(e)).collect()
        };
        w.batch(1, &items(&t1)).unwrap();
        w.batch(2, &items(&t2)).unwrap();
        let bytes = w.finish(&Trailer::default()).unwrap();
        let mut reader = Reader::new(&bytes[..]).unwrap();
        let mut order = ReceiptOrder::new();
        let mut got = Vec::new();
        while let Some(event) = order.next(&mut reader).unwrap() {
            if let Event::Heap { tid, event } = event {
                got.push((tid, event));
            }
        }
        let release = HeapEvent {
            addr: 0,
            size: 0,
            ..t2[1]
        };
        let receive = HeapEvent {
            old_addr: 0,
            ..t2[1]
        };
        assert_eq!(
            got,
            vec![
                (1, t1[0]),
                (2, t2[0]),
                (2, release),
                (1, t1[1]),
                (1, t1[2]),
                (1, t1[3]),
                (2, receive),
                (1, t1[4]),
                (2, t2[2]),
            ]
        );
    }
}
