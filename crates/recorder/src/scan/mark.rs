//! Marking: from the roots, follow every word that points into a live block,
//! transitively, as valgrind's memcheck does. A block reached through
//! pointers to block starts only is [`Reach::Start`]; a chain with at least
//! one interior pointer makes it [`Reach::Interior`]; the rest stay
//! [`Reach::Unreached`].
//!
//! Every word comes through the [`MemReader`], blocks a batch at a time
//! (up to a megabyte in up to 1,024 blocks per system call). All storage is
//! allocated by [`Marker::with_capacity`], before the other threads are
//! stopped: marking and [`Marker::unreached_edges`] allocate nothing.

use std::ops::Range;

use memtrace_format::Reach;

use super::read::{MemReader, BUFFER_BYTES};
use crate::clock::monotonic_ns;
use crate::memory::try_with_capacity;

/// A block at least this large is read on its own, piece by piece.
const LARGE: u64 = BUFFER_BYTES as u64 / 4;

/// Below this many blocks to scan, they are read one at a time through
/// the reader's window (a linked list keeps one block on the stack at a
/// time: batches of one would make a system call per block). Measured on
/// `fixtures/c/many_blocks.c` (a list of 500,000 blocks): 1.7 s with
/// batches only, see the crate's README for the numbers with the window.
const NARROW: usize = 16;

/// The live blocks, sorted by address, with their marks.
pub(crate) struct Marker {
    starts: Vec<u64>,
    ends: Vec<u64>,
    pub reach: Vec<Reach>,
    work: Vec<u32>,
    lowest: u64,
    highest: u64,
    /// Bytes of blocks scanned.
    pub heap_bytes: u64,
    /// When marking must stop (`monotonic_ns`); `u64::MAX`: never.
    deadline_ns: u64,
    /// Set once the deadline passed: marking stopped there.
    pub out_of_time: bool,
    /// Addresses of recently freed blocks, sorted: a pointer to one of
    /// them inside a live block, in a module's data, is a stale one.
    stale: Vec<u64>,
    /// Whether the words read now are a module's data (see `scan_data_root`).
    in_module_data: bool,
    /// Per block: its memory is gone, so its words are not read (see
    /// [`Marker::leave_out_blocks_in`]).
    gone: Vec<bool>,
}

impl Marker {
    /// Room for `capacity` blocks; `None` when the memory cannot be had.
    pub fn with_capacity(capacity: usize) -> Option<Marker> {
        Some(Marker {
            starts: try_with_capacity(capacity)?,
            ends: try_with_capacity(capacity)?,
            reach: try_with_capacity(capacity)?,
            // Each block is pushed at most twice (unreached -> interior ->
            // start): the stack never grows while other threads are stopped.
            work: try_with_capacity(2 * capacity)?,
            lowest: u64::MAX,
            highest: 0,
            heap_bytes: 0,
            deadline_ns: u64::MAX,
            out_of_time: false,
            stale: Vec::new(),
            in_module_data: false,
            gone: try_with_capacity(capacity)?,
        })
    }

    /// Takes the blocks to mark: `(address, size)` in address order, not
    /// overlapping, all unreached. A zero-sized block counts one byte, so
    /// that a pointer to it is found. False, loading nothing, when there
    /// are more than the capacity.
    pub fn load(&mut self, blocks: impl ExactSizeIterator<Item = (u64, u64)>) -> bool {
        if blocks.len() > self.starts.capacity() {
            return false;
        }
        self.starts.clear();
        self.ends.clear();
        self.reach.clear();
        self.work.clear();
        self.gone.clear();
        for (addr, size) in blocks {
            self.starts.push(addr);
            self.ends.push(addr + size.max(1));
            self.reach.push(Reach::Unreached);
            self.gone.push(false);
        }
        self.lowest = self.starts.first().copied().unwrap_or(u64::MAX);
        self.highest = self.ends.last().copied().unwrap_or(0);
        self.heap_bytes = 0;
        true
    }

    /// Leaves out the words of every block that overlaps one of `ranges`
    /// (sorted by start, not overlapping): the recorder's own mappings. A
    /// live block never lies in the recorder's memory; one that does was
    /// freed and unmapped by a thread stopped before it could record the
    /// free, and the recorder has mapped that address since. Its words are
    /// the recorder's (ring items, the live-block table: every block's
    /// address), and read as the program's they made every block
    /// reachable (1 run in about 2,000 of `scan_churn churn`). The block
    /// itself is still marked by the pointers to it. The number left out.
    pub fn leave_out_blocks_in(&mut self, ranges: &[Range<u64>]) -> usize {
        let mut n = 0;
        for i in 0..self.starts.len() {
            let (start, end) = (self.starts[i], self.ends[i]);
            let k = ranges.partition_point(|r| r.end <= start);
            if ranges.get(k).is_some_and(|r| r.start < end) {
                self.gone[i] = true;
                n += 1;
            }
        }
        n
    }

    /// Marking stops at `deadline_ns` (of `monotonic_ns`).
    pub fn set_deadline(&mut self, deadline_ns: u64) {
        self.deadline_ns = deadline_ns;
    }

    /// True, and from then on always, once the deadline has passed.
    fn past_deadline(&mut self) -> bool {
        if !self.out_of_time && monotonic_ns() >= self.deadline_ns {
            self.out_of_time = true;
            self.work.clear();
        }
        self.out_of_time
    }

    /// The block that holds `word`, and whether `word` is its start.
    #[inline]
    pub fn find(&self, word: u64) -> Option<(u32, bool)> {
        if word < self.lowest || word >= self.highest {
            return None;
        }
        let i = self.starts.partition_point(|&s| s <= word).checked_sub(1)?;
        (word < self.ends[i]).then_some((i as u32, word == self.starts[i]))
    }

    /// The address of block `i`.
    pub fn start_of(&self, i: u32) -> u64 {
        self.starts[i as usize]
    }

    /// The first part of `range` outside every block and its 16-byte
    /// chunk header (glibc's `prev_size` and `size` words): call again with
    /// the rest of the range from its end for the next.
    pub fn first_gap(&self, range: Range<u64>) -> Option<Range<u64>> {
        let mut at = range.start;
        let first = self.ends.partition_point(|&e| e <= range.start);
        for i in first..self.starts.len() {
            let chunk = self.starts[i].saturating_sub(16);
            if chunk >= range.end {
                break;
            }
            if chunk > at {
                return Some(at..chunk);
            }
            at = at.max(self.ends[i]);
        }
        (at < range.end).then_some(at..range.end)
    }

    /// Takes `freed` (sorted addresses of recently freed blocks) for stale
    /// pointers in modules' data (see [`Marker::scan_data_root`]).
    pub fn ignore_stale(&mut self, freed: Vec<u64>) {
        self.stale = freed;
    }

    /// As [`Marker::scan_root`], for a module's writable data (`.data`,
    /// `.bss`): a word there equal to the address of a recently freed
    /// block that now falls inside a live block, not at its start, is a
    /// pointer the program kept after the free (a global array of freed
    /// blocks), whose memory the newer block took over; it is not
    /// followed. memcheck does not reuse memory this soon
    /// (`live::RECENT_FREE_BYTES`), so under it such a pointer never
    /// reaches a newer block either. Only here: in a thread's control block
    /// and in heap objects, pointers 16 bytes into a block are the norm
    /// (glibc's DTV, CPython's GC header) and may equal an old block's
    /// address by chance.
    pub fn scan_data_root(&mut self, rd: &mut MemReader, range: Range<u64>) {
        if self.past_deadline() {
            return;
        }
        self.in_module_data = true;
        rd.read_range(range, |_, words| {
            for &w in words {
                self.reached(w, true);
            }
        });
        self.in_module_data = false;
        self.propagate(rd);
    }

    #[inline]
    fn reached(&mut self, word: u64, from_start_chain: bool) {
        let Some((i, is_start)) = self.find(word) else {
            return;
        };
        if self.in_module_data && !is_start && self.stale.binary_search(&word).is_ok() {
            return;
        }
        let reach = if from_start_chain && is_start {
            Reach::Start
        } else {
            Reach::Interior
        };
        if reach > self.reach[i as usize] {
            self.reach[i as usize] = reach;
            self.work.push(i);
        }
    }

    /// Marks from one root range (8-byte aligned), then everything
    /// reachable from it.
    pub fn scan_root(&mut self, rd: &mut MemReader, range: Range<u64>) {
        if self.past_deadline() {
            return;
        }
        rd.read_range(range, |_, words| {
            for &w in words {
                self.reached(w, true);
            }
        });
        self.propagate(rd);
    }

    /// Marks from the C library's writable data, where glibc's malloc keeps
    /// its main arena: the top chunk, the bins and the last remainder are
    /// addresses of chunk headers, and a chunk's header lies in the last
    /// word of the block before it when that block's size is 1 to 8 bytes
    /// above a multiple of 16. Such a word is the allocator's, not a pointer
    /// of the program into that block, and is skipped: taken for one, it
    /// would make a lost block "possibly lost" whenever the chunk after it
    /// happens to be free.
    pub fn scan_allocator_root(&mut self, rd: &mut MemReader, range: Range<u64>) {
        if self.past_deadline() {
            return;
        }
        rd.read_range(range, |_, words| {
            for &w in words {
                if !self.is_next_chunk_header(w) {
                    self.reached(w, true);
                }
            }
        });
        self.propagate(rd);
    }

    /// True when `word` is where glibc puts the header of the chunk that
    /// follows a block, inside that block.
    pub fn is_next_chunk_header(&self, word: u64) -> bool {
        match self.find(word) {
            Some((i, false)) => {
                let start = self.starts[i as usize];
                let size = self.ends[i as usize] - start;
                word - start == next_chunk_offset(size)
            }
            _ => false,
        }
    }

    /// Marks from values held outside memory (saved registers).
    pub fn scan_values(&mut self, rd: &mut MemReader, values: &[u64]) {
        if self.past_deadline() {
            return;
        }
        for &v in values {
            self.reached(v, true);
        }
        self.propagate(rd);
    }

    /// Follows the pointers of the blocks on the work stack until it is
    /// empty, reading a batch of blocks per call. A block is scanned with
    /// the mark it has when its words arrive: one upgraded meanwhile was
    /// pushed again and is scanned again, so the marks reach the same
    /// fixed point as block-by-block marking.
    fn propagate(&mut self, rd: &mut MemReader) {
        while !self.work.is_empty() {
            if self.past_deadline() {
                return;
            }
            if self.work.len() < NARROW {
                let Some(i) = self.work.pop() else {
                    return;
                };
                let range = self.words_of(i as usize);
                let len = range.end - range.start;
                self.heap_bytes += len;
                if len < LARGE {
                    rd.read_near(range.start, len, |words| {
                        let start_chain = self.reach[i as usize] == Reach::Start;
                        for &w in words {
                            self.reached(w, start_chain);
                        }
                    });
                } else {
                    rd.read_range(range, |_, words| {
                        let start_chain = self.reach[i as usize] == Reach::Start;
                        for &w in words {
                            self.reached(w, start_chain);
                        }
                    });
                }
                continue;
            }
            rd.clear();
            while let Some(&i) = self.work.last() {
                let range = self.words_of(i as usize);
                let len = range.end - range.start;
                if len >= LARGE {
                    // A large block is read alone, through the reader's
                    // buffer: only with no batch pending, which that read
                    // would drop. Else the batch is read first and the
                    // large block comes next time round.
                    if rd.batch_is_empty() {
                        self.work.pop();
                        self.heap_bytes += len;
                        rd.read_range(range, |_, words| {
                            let start_chain = self.reach[i as usize] == Reach::Start;
                            for &w in words {
                                self.reached(w, start_chain);
                            }
                        });
                    }
                    break;
                }
                if !rd.push(i, range.start, len) {
                    break;
                }
                self.work.pop();
                self.heap_bytes += len;
            }
            rd.read(|i, words| {
                let start_chain = self.reach[i as usize] == Reach::Start;
                for &w in words {
                    self.reached(w, start_chain);
                }
            });
        }
    }

    /// The 8-byte words a block's requested size covers; none for a block
    /// whose memory is gone.
    fn words_of(&self, i: usize) -> Range<u64> {
        let start = self.starts[i];
        if self.gone[i] {
            return start..start;
        }
        let end = start + ((self.ends[i] - start) & !7);
        start..end
    }

    /// Fills `edges` (cleared first, never grown) with the pointers from
    /// each unreached block to unreached blocks (itself included), sorted,
    /// without duplicates. False when they did not all fit: those found
    /// until then are kept.
    pub fn unreached_edges(&mut self, rd: &mut MemReader, edges: &mut Vec<(u32, u32)>) -> bool {
        edges.clear();
        let mut complete = true;
        let n = self.starts.len();
        let mut i = 0;
        while i < n && complete {
            if self.past_deadline() {
                return complete;
            }
            rd.clear();
            let mut large = None;
            while i < n {
                if self.reach[i] != Reach::Unreached {
                    i += 1;
                    continue;
                }
                let range = self.words_of(i);
                let len = range.end - range.start;
                if len >= LARGE {
                    self.heap_bytes += len;
                    large = Some(i);
                    i += 1;
                    break;
                }
                if !rd.push(i as u32, range.start, len) {
                    break;
                }
                self.heap_bytes += len;
                i += 1;
            }
            let this = &*self;
            rd.read(|from, words| complete &= this.edges_from(from, words, edges));
            if let Some(j) = large {
                rd.read_range(this.words_of(j), |_, words| {
                    complete &= this.edges_from(j as u32, words, edges);
                });
            }
        }
        complete
    }

    /// Appends the edges from block `from` that `words` (all of it, or a
    /// piece) holds, sorted and unique; false when they did not fit.
    fn edges_from(&self, from: u32, words: &[u64], edges: &mut Vec<(u32, u32)>) -> bool {
        let first = edges
            .iter()
            .rposition(|&(f, _)| f != from)
            .map_or(0, |k| k + 1);
        for &w in words {
            let Some((j, _)) = self.find(w) else {
                continue;
            };
            if self.reach[j as usize] != Reach::Unreached {
                continue;
            }
            if edges.len() == edges.capacity() {
                sort_and_dedup_tail(edges, first);
                if edges.len() == edges.capacity() {
                    return false;
                }
            }
            edges.push((from, j));
        }
        sort_and_dedup_tail(edges, first);
        true
    }
}

/// Sorts `v[from..]` and drops its duplicates, in place.
fn sort_and_dedup_tail(v: &mut Vec<(u32, u32)>, from: usize) {
    let tail = &mut v[from..];
    tail.sort_unstable();
    let mut kept = 0;
    for k in 0..tail.len() {
        if k == 0 || tail[k] != tail[kept - 1] {
            tail[kept] = tail[k];
            kept += 1;
        }
    }
    v.truncate(from + kept);
}

/// Offset from the start of a block of `size` bytes that glibc's malloc
/// returned to the header of the chunk after it: the block starts 16 bytes
/// into its chunk, whose size is the request plus an 8-byte header, rounded
/// up to 16, at least 32 (`request2size` on 64-bit glibc).
fn next_chunk_offset(size: u64) -> u64 {
    (size + 8).next_multiple_of(16).max(32) - 16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker(blocks: &[(u64, u64)]) -> Marker {
        let mut m = Marker::with_capacity(blocks.len()).unwrap();
        assert!(m.load(blocks.iter().copied()));
        m
    }

    fn edges(m: &mut Marker, rd: &mut MemReader, capacity: usize) -> (bool, Vec<(u32, u32)>) {
        let mut e = Vec::with_capacity(capacity);
        let complete = m.unreached_edges(rd, &mut e);
        assert_eq!(e.capacity(), capacity, "never grown");
        (complete, e)
    }

    #[test]
    fn a_pointer_in_module_data_to_a_freed_block_inside_a_newer_one_is_stale() {
        // A 64-byte block took over the chunks of two freed 24-byte blocks
        // at base + 16 and base + 48. The block's words are buf[2..10];
        // the "module data", buf[10..12].
        let mut buf = vec![0u64; 12];
        let base = buf.as_ptr() as u64;
        let data = base + 80..base + 96;
        let rd = &mut MemReader::new().unwrap();
        buf[10] = base + 48;
        let mut m = marker(&[(base + 16, 64)]);
        m.ignore_stale(vec![base + 16, base + 48]);
        m.scan_data_root(rd, data.clone());
        assert_eq!(m.reach, vec![Reach::Unreached]);
        // The same word elsewhere (a stack, the heap) is followed.
        m.scan_root(rd, data.clone());
        assert_eq!(m.reach, vec![Reach::Interior]);
        // Another interior pointer in the data makes it possibly lost.
        let mut m = marker(&[(base + 16, 64)]);
        m.ignore_stale(vec![base + 48]);
        buf[11] = base + 40;
        m.scan_data_root(rd, data.clone());
        assert_eq!(m.reach, vec![Reach::Interior]);
        // A pointer to its start, stale or not, reaches it.
        let mut m = marker(&[(base + 16, 64)]);
        m.ignore_stale(vec![base + 16]);
        buf[11] = base + 16;
        m.scan_data_root(rd, data);
        assert_eq!(m.reach, vec![Reach::Start]);
        std::hint::black_box(&mut buf);
    }

    /// Blocks laid out in a local buffer, pointing at each other.
    #[test]
    fn start_interior_and_unreached_chains_are_told_apart() {
        // Five 32-byte blocks in one buffer: 0 -> 1 (start), 1 -> 2 (interior),
        // 3 <-> 4 (a cycle nobody points to).
        let mut buf = vec![0u64; 20];
        let base = buf.as_ptr() as u64;
        let block = |i: u64| base + 32 * i;
        buf[0] = block(1);
        buf[4] = block(2) + 8;
        buf[12] = block(4);
        buf[16] = block(3);
        let blocks: Vec<(u64, u64)> = (0..5u32).map(|i| (block(u64::from(i)), 32)).collect();
        let mut m = marker(&blocks);
        let rd = &mut MemReader::new().unwrap();
        let root = [block(0)];
        m.scan_values(rd, &root);
        assert_eq!(
            m.reach,
            vec![
                Reach::Start,
                Reach::Start,
                Reach::Interior,
                Reach::Unreached,
                Reach::Unreached
            ]
        );
        assert_eq!(edges(&mut m, rd, 8), (true, vec![(3, 4), (4, 3)]));
        assert_eq!(edges(&mut m, rd, 1), (false, vec![(3, 4)]));
        std::hint::black_box(&mut buf);
    }

    #[test]
    fn the_arenas_pointer_to_the_next_chunk_header_is_not_the_programs() {
        // A 1000-byte block lives in a 1008-byte chunk: the next chunk's
        // header is at offset 992, inside the block; a 24-byte block's
        // (32-byte chunk) is at offset 16. A 992-byte block ends before it.
        assert_eq!(next_chunk_offset(1000), 992);
        assert_eq!(next_chunk_offset(24), 16);
        assert_eq!(next_chunk_offset(992), 992);
        assert_eq!(next_chunk_offset(0), 16);
        let mut buf = vec![0u64; 8];
        let base = buf.as_ptr() as u64;
        let mut m = marker(&[(base, 24), (base + 32, 24)]);
        let rd = &mut MemReader::new().unwrap();
        buf[0] = base + 16; // the arena's "top", say
        buf[1] = base + 32 + 8; // a real interior pointer
        m.scan_allocator_root(rd, base..base + 16);
        assert_eq!(m.reach, vec![Reach::Unreached, Reach::Interior]);
        // The same word anywhere else is a pointer of the program.
        m.scan_values(rd, &[base + 16]);
        assert_eq!(m.reach, vec![Reach::Interior, Reach::Interior]);
        std::hint::black_box(&mut buf);
    }

    #[test]
    fn a_start_pointer_found_later_upgrades_an_interior_block() {
        let mut buf = vec![0u64; 8];
        let base = buf.as_ptr() as u64;
        buf[0] = base + 32; // block 0 points at block 1's start
        let mut m = marker(&[(base, 32), (base + 32, 32)]);
        let rd = &mut MemReader::new().unwrap();
        m.scan_values(rd, &[base + 40]); // interior pointer to block 1
        assert_eq!(m.reach, vec![Reach::Unreached, Reach::Interior]);
        m.scan_values(rd, &[base]);
        assert_eq!(m.reach, vec![Reach::Start, Reach::Start]);
        std::hint::black_box(&mut buf);
    }

    #[test]
    fn a_block_freed_and_unmapped_meanwhile_is_skipped_not_a_signal() {
        // A "block" in memory that cannot be read by the time it is
        // scanned. The address stays reserved (PROT_NONE) so that a test
        // running beside this one cannot map something readable there.
        // SAFETY: a fresh anonymous mapping that nothing may touch; only
        // its address is used, and it is unmapped below.
        let gone = unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(p, libc::MAP_FAILED);
            p as u64
        };
        let mut m = marker(&[(gone, 64)]);
        let rd = &mut MemReader::new().unwrap();
        m.scan_values(rd, &[gone]);
        assert_eq!(m.reach, vec![Reach::Start]);
        assert_eq!(rd.n_unreadable, 1);
        // SAFETY: the mapping made above, which nothing else uses.
        unsafe { libc::munmap(gone as *mut libc::c_void, 4096) };
    }

    #[test]
    fn a_block_whose_memory_is_the_recorders_now_is_not_read() {
        // Block 0's memory holds pointers to blocks 1 and 2; once it is
        // declared the recorder's, only the pointer to it counts.
        let mut buf = vec![0u64; 12];
        let base = buf.as_ptr() as u64;
        buf[0] = base + 32;
        buf[1] = base + 64;
        let blocks = [(base, 32), (base + 32, 32), (base + 64, 32)];
        let rd = &mut MemReader::new().unwrap();
        let mut m = marker(&blocks);
        m.scan_values(rd, &[base]);
        assert_eq!(m.reach, vec![Reach::Start; 3]);
        let mut m = marker(&blocks);
        let own = [base - 4096..base + 8, base + 1000..base + 2000];
        assert_eq!(m.leave_out_blocks_in(&own), 1);
        m.scan_values(rd, &[base]);
        assert_eq!(
            m.reach,
            vec![Reach::Start, Reach::Unreached, Reach::Unreached]
        );
        let (complete, e) = edges(&mut m, rd, 8);
        assert!(complete);
        assert_eq!(e, vec![]);
        // Ranges beside the blocks leave them alone.
        let mut m = marker(&blocks);
        assert_eq!(
            m.leave_out_blocks_in(&[base - 64..base, base + 96..base + 128]),
            0
        );
        std::hint::black_box(&mut buf);
    }

    #[test]
    fn marking_past_the_deadline_stops() {
        let mut buf = vec![0u64; 8];
        let base = buf.as_ptr() as u64;
        buf[0] = base + 32;
        let mut m = marker(&[(base, 32), (base + 32, 32)]);
        let rd = &mut MemReader::new().unwrap();
        m.set_deadline(0);
        m.scan_values(rd, &[base]);
        assert!(m.out_of_time);
        assert_eq!(m.reach, vec![Reach::Unreached, Reach::Unreached]);
        std::hint::black_box(&mut buf);
    }

    #[test]
    fn many_blocks_are_marked_in_batches_like_one_by_one() {
        // A chain of 5,000 blocks, each pointing at the next one's start,
        // and every tenth also into the middle of the one after: more
        // blocks than one call reads.
        let n = 5000;
        let mut buf = vec![0u64; 4 * n];
        let base = buf.as_ptr() as u64;
        for i in 0..n - 1 {
            buf[4 * i] = base + 32 * (i as u64 + 1);
        }
        for i in (0..n - 2).step_by(10) {
            buf[4 * i + 1] = base + 32 * (i as u64 + 2) + 8;
        }
        let blocks: Vec<(u64, u64)> = (0..n as u64).map(|i| (base + 32 * i, 32)).collect();
        let mut m = marker(&blocks);
        let rd = &mut MemReader::new().unwrap();
        m.scan_values(rd, &[base]);
        assert!(m.reach.iter().all(|&r| r == Reach::Start));
        assert_eq!(rd.n_unreadable, 0);
        std::hint::black_box(&mut buf);
    }

    #[test]
    fn blocks_batched_before_a_large_one_are_all_scanned() {
        // Work stack, bottom to top: the large block, then 16 small ones
        // (enough for a batch), each holding the only pointer to a block
        // of its own. The batch loop takes the small ones first and meets
        // the large one with the batch full of them: both must be read.
        const SMALL: u64 = 16;
        let large_words = (LARGE / 8) as usize;
        let mut buf = vec![0u64; 4 * 2 * SMALL as usize + large_words];
        let base = buf.as_ptr() as u64;
        let holder = |k: u64| base + 32 * k;
        let held = |k: u64| base + 32 * (SMALL + k);
        for k in 0..SMALL {
            buf[(4 * k) as usize] = held(k);
        }
        let large = base + 64 * SMALL;
        let mut blocks: Vec<(u64, u64)> = (0..2 * SMALL).map(|k| (base + 32 * k, 32)).collect();
        blocks.push((large, LARGE));
        let mut m = marker(&blocks);
        let rd = &mut MemReader::new().unwrap();
        let mut roots = vec![large];
        roots.extend((0..SMALL).map(holder));
        m.scan_values(rd, &roots);
        assert_eq!(m.reach, vec![Reach::Start; blocks.len()]);
        assert_eq!(rd.n_unreadable, 0);
        std::hint::black_box(&mut buf);
    }

    #[test]
    fn gaps_leave_out_blocks_and_their_chunk_headers() {
        // Chunks: 0x1000 (block 0x1010..0x1030), 0x1030 (0x1040..0x1050)
        // and 0x1070 (0x1080..0x1090).
        let m = marker(&[(0x1010, 0x20), (0x1040, 0x10), (0x1080, 0x10)]);
        let mut gaps = Vec::new();
        let mut range = 0x1000..0x1100;
        while let Some(g) = m.first_gap(range.clone()) {
            range.start = g.end;
            gaps.push(g);
        }
        assert_eq!(gaps, vec![0x1050..0x1070, 0x1090..0x1100]);
    }
}
