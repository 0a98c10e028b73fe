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
    /// Every block live at the scan, in address order.
    pub blocks: Vec<ScannedBlock>,
    /// Pointers between unreached blocks: `(from, to)` indices into `blocks`,
    /// sorted and without duplicates.
    pub edges: Vec<(u32, u32)>,
}

impl LeakScan {
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
        let scan = LeakScan {
            ts: cur.u64()?,
            duration_ns: cur.u64()?,
            root_bytes: cur.u64()?,
            heap_bytes: cur.u64()?,
            n_threads: cur.u32()?,
            n_threads_unscanned: cur.u32()?,
            blocks,
            edges,
        };
        let n_blocks = cur.u64()?;
        let n_edges = cur.u64()?;
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
