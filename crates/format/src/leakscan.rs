//! The exit-time reachability scan: which blocks were still live when the
//! program ended, and which pointers the recorder found to them.
//!
//! The recorder writes the scan as chunks (`LEAK_BLOCKS`, `LEAK_EDGES`) and a
//! closing `LEAK_SCAN` summary that gives the totals; a reader keeps the scan
//! only when the summary arrives (a scan cut short by a crash is never
//! mistaken for a complete one), and a summary whose counts disagree with
//! the chunks is a decode error.

use crate::codec::{put_u64, Cursor};
use crate::error::DecodeError;
use crate::record::StackId;

/// Blocks (or edges) per chunk record: keeps every record far below the
/// block-size limit, whatever the size of the heap.
pub(crate) const CHUNK: usize = 1 << 16;

/// How the scan reached a block from the roots (globals, stacks, registers,
/// thread-local storage), in the sense of valgrind's memcheck.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Reach {
    /// No chain of pointers from a root reaches the block: it is lost.
    Unreached = 0,
    /// Reached only through chains with at least one pointer into the
    /// middle of a block (an interior pointer): possibly lost.
    Interior = 1,
    /// Reached through a chain of pointers to block starts: still reachable.
    Start = 2,
}

impl Reach {
    /// Reads a reach state; an unknown one is an error at its byte.
    fn read(cur: &mut Cursor) -> Result<Reach, DecodeError> {
        let at = cur.at();
        match cur.u8()? {
            0 => Ok(Reach::Unreached),
            1 => Ok(Reach::Interior),
            2 => Ok(Reach::Start),
            v => Err(DecodeError::malformed_at(
                at,
                format!("unknown reach state {v}"),
            )),
        }
    }
}

/// One block that was live at the scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScannedBlock {
    /// Its address.
    pub addr: u64,
    /// Its requested size in bytes.
    pub size: u64,
    /// Its allocation stack.
    pub stack: StackId,
    /// How the scan reached it.
    pub reach: Reach,
}

/// The result of the exit-time scan.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeakScan {
    /// When the scan started, in ticks.
    pub ts: u64,
    /// How long the scan took, in nanoseconds.
    pub duration_ns: u64,
    /// Bytes of roots scanned (module data, stacks, registers, TLS).
    pub root_bytes: u64,
    /// Bytes of live blocks scanned.
    pub heap_bytes: u64,
    /// Threads whose stacks were scanned (the exiting one included).
    pub n_threads: u32,
    /// Threads that could not be stopped and whose stacks were not scanned.
    pub n_threads_unscanned: u32,
    /// Why the verdict cannot be trusted: a set of [`Incomplete`] bits, 0
    /// for a complete scan (and for traces written before the field
    /// existed). Bits this version does not know are kept.
    pub incomplete: u32,
    /// Ranges of memory the scan meant to read that were gone by then
    /// (unmapped, or a block freed by a call not yet recorded): skipped.
    pub n_unreadable: u64,
    /// Every block live at the scan, in address order.
    pub blocks: Vec<ScannedBlock>,
    /// Pointers between unreached blocks: `(from, to)` indices into `blocks`,
    /// sorted and without duplicates.
    pub edges: Vec<(u32, u32)>,
}

/// A reason why a scan is incomplete: its result may call a block lost
/// that is not, or reachable when it is lost. Each is one bit of
/// [`LeakScan::incomplete`]; the bits are part of the format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Incomplete {
    /// The scan ran past its time budget and stopped marking.
    TimeBudget,
    /// A stopped thread waited longer than it may and ran again before
    /// the scan's last read.
    ThreadResumed,
    /// A thread could be neither stopped nor found asleep in a system call
    /// (it blocks the scan's signal while it runs, or there were too many
    /// threads): its stack and registers were not scanned.
    ThreadNotStopped,
    /// A thread found asleep in a system call, and so not stopped, ran
    /// during the scan.
    ThreadWoke,
    /// Heap calls made while the threads were being stopped could not all
    /// be taken into account.
    CallsMissed,
    /// There were more pointers between lost blocks than room for them:
    /// the split between definitely and indirectly lost may be wrong.
    EdgesOverflow,
    /// The memory map could not be read again once the threads were
    /// stopped: mappings made just before were not scanned.
    MapsStale,
    /// Reading program memory failed in a way other than an unmapped
    /// address: what could not be read was not scanned.
    ReadFailed,
}

impl Incomplete {
    /// Every reason, in bit order.
    pub const ALL: [Incomplete; 8] = [
        Incomplete::TimeBudget,
        Incomplete::ThreadResumed,
        Incomplete::ThreadNotStopped,
        Incomplete::ThreadWoke,
        Incomplete::CallsMissed,
        Incomplete::EdgesOverflow,
        Incomplete::MapsStale,
        Incomplete::ReadFailed,
    ];

    /// Its bit in [`LeakScan::incomplete`].
    pub fn bit(self) -> u32 {
        1 << Incomplete::ALL
            .iter()
            .position(|&r| r == self)
            .unwrap_or(31)
    }

    /// A stable name: `time-budget`, `thread-resumed`, ...
    pub fn code(self) -> &'static str {
        match self {
            Incomplete::TimeBudget => "time-budget",
            Incomplete::ThreadResumed => "thread-resumed",
            Incomplete::ThreadNotStopped => "thread-not-stopped",
            Incomplete::ThreadWoke => "thread-woke",
            Incomplete::CallsMissed => "calls-missed",
            Incomplete::EdgesOverflow => "edges-overflow",
            Incomplete::MapsStale => "maps-stale",
            Incomplete::ReadFailed => "read-failed",
        }
    }
}

impl LeakScan {
    /// True when nothing makes the verdict doubtful.
    pub fn is_complete(&self) -> bool {
        self.incomplete == 0
    }

    /// The reasons set in [`LeakScan::incomplete`] that this version knows.
    pub fn incomplete_reasons(&self) -> Vec<Incomplete> {
        Incomplete::ALL
            .into_iter()
            .filter(|r| self.incomplete & r.bit() != 0)
            .collect()
    }

    /// Bits of [`LeakScan::incomplete`] from a later version.
    pub fn unknown_incomplete_bits(&self) -> u32 {
        let known = Incomplete::ALL.iter().fold(0, |a, r| a | r.bit());
        self.incomplete & !known
    }

    pub(crate) fn encode_blocks(first: usize, blocks: &[ScannedBlock], out: &mut Vec<u8>) {
        put_u64(out, first as u64);
        put_u64(out, blocks.len() as u64);
        let mut prev = 0u64;
        for b in blocks {
            put_u64(out, b.addr.wrapping_sub(prev));
            prev = b.addr;
            put_u64(out, b.size);
            put_u64(out, b.stack.into());
            out.push(b.reach as u8);
        }
    }

    pub(crate) fn decode_blocks(
        cur: &mut Cursor,
        into: &mut Vec<ScannedBlock>,
    ) -> Result<(), DecodeError> {
        let first = cur.u64()?;
        if first != into.len() as u64 {
            return Err(DecodeError::malformed(format!(
                "leak-scan blocks start at {first}, expected {}",
                into.len()
            )));
        }
        let n = cur.count(4)?;
        let mut prev = 0u64;
        for _ in 0..n {
            let addr = prev.wrapping_add(cur.u64()?);
            prev = addr;
            into.push(ScannedBlock {
                addr,
                size: cur.u64()?,
                stack: cur.u32()?,
                reach: Reach::read(cur)?,
            });
        }
        Ok(())
    }

    pub(crate) fn encode_edges(edges: &[(u32, u32)], out: &mut Vec<u8>) {
        put_u64(out, edges.len() as u64);
        let mut prev = 0u32;
        for &(from, to) in edges {
            put_u64(out, from.wrapping_sub(prev).into());
            prev = from;
            put_u64(out, to.into());
        }
    }

    pub(crate) fn decode_edges(
        cur: &mut Cursor,
        into: &mut Vec<(u32, u32)>,
    ) -> Result<(), DecodeError> {
        let n = cur.count(2)?;
        let mut prev = 0u32;
        for _ in 0..n {
            let from = prev.wrapping_add(cur.u32()?);
            prev = from;
            into.push((from, cur.u32()?));
        }
        Ok(())
    }

    pub(crate) fn encode_summary(&self, out: &mut Vec<u8>) {
        for v in [
            self.ts,
            self.duration_ns,
            self.root_bytes,
            self.heap_bytes,
            self.n_threads.into(),
            self.n_threads_unscanned.into(),
            self.blocks.len() as u64,
            self.edges.len() as u64,
            self.incomplete.into(),
            self.n_unreadable,
        ] {
            put_u64(out, v);
        }
    }

    /// Completes a scan from its summary record and the chunks read before it.
    pub(crate) fn decode_summary(
        cur: &mut Cursor,
        blocks: Vec<ScannedBlock>,
        edges: Vec<(u32, u32)>,
    ) -> Result<LeakScan, DecodeError> {
        let mut scan = LeakScan {
            ts: cur.u64()?,
            duration_ns: cur.u64()?,
            root_bytes: cur.u64()?,
            heap_bytes: cur.u64()?,
            n_threads: cur.u32()?,
            n_threads_unscanned: cur.u32()?,
            incomplete: 0,
            n_unreadable: 0,
            blocks,
            edges,
        };
        let n_blocks = cur.u64()?;
        let n_edges = cur.u64()?;
        // Appended later: a scan written before they existed is complete.
        if !cur.is_empty() {
            scan.incomplete = cur.u32()?;
        }
        if !cur.is_empty() {
            scan.n_unreadable = cur.u64()?;
        }
        if n_blocks != scan.blocks.len() as u64 || n_edges != scan.edges.len() as u64 {
            return Err(DecodeError::malformed(format!(
                "leak scan announces {n_blocks} blocks and {n_edges} edges, the file has {} and {}",
                scan.blocks.len(),
                scan.edges.len()
            )));
        }
        let n = scan.blocks.len() as u32;
        if let Some(&(from, to)) = scan.edges.iter().find(|&&(f, t)| f >= n || t >= n) {
            return Err(DecodeError::malformed(format!(
                "leak-scan edge {from} -> {to} names a block past {n}"
            )));
        }
        Ok(scan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(scan: &LeakScan) -> Vec<u8> {
        let mut out = Vec::new();
        scan.encode_summary(&mut out);
        out
    }

    #[test]
    fn a_summary_without_the_appended_fields_reads_as_complete() {
        let scan = LeakScan {
            ts: 5,
            n_threads: 2,
            incomplete: Incomplete::TimeBudget.bit(),
            n_unreadable: 7,
            ..LeakScan::default()
        };
        let full = summary(&scan);
        let decoded =
            LeakScan::decode_summary(&mut Cursor::new(&full, "t"), Vec::new(), Vec::new()).unwrap();
        assert_eq!(decoded, scan);
        assert!(!decoded.is_complete());
        assert_eq!(decoded.incomplete_reasons(), vec![Incomplete::TimeBudget]);
        // The layout before `incomplete` and `n_unreadable`: eight fields,
        // one byte each here.
        let old = &full[..8];
        let decoded =
            LeakScan::decode_summary(&mut Cursor::new(old, "t"), Vec::new(), Vec::new()).unwrap();
        assert!(decoded.is_complete());
        assert_eq!(decoded.n_unreadable, 0);
        assert_eq!(decoded.n_threads, 2);
    }

    #[test]
    fn reasons_have_distinct_bits_and_unknown_bits_are_kept() {
        let all = Incomplete::ALL.iter().fold(0u32, |a, r| {
            assert_eq!(a & r.bit(), 0);
            a | r.bit()
        });
        assert_eq!(all, 0xff);
        let scan = LeakScan {
            incomplete: 0x100 | Incomplete::ThreadWoke.bit(),
            ..LeakScan::default()
        };
        assert_eq!(scan.incomplete_reasons(), vec![Incomplete::ThreadWoke]);
        assert_eq!(scan.unknown_incomplete_bits(), 0x100);
    }
}
