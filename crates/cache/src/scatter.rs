//! Allocation scatter: how spread out each allocation stack's live blocks are.
//!
//! For every stack, at the moment its live bytes peak: the distinct 64-byte
//! cache lines and 4 KiB pages its live blocks' requested bytes touch, against
//! the minimum they would need if packed end to end; and the mean address
//! distance between consecutive allocations from the stack. A stack with many
//! blocks and more than [`SCATTER_RATIO`] times the minimum cache lines is
//! *scattered*: walking its objects loads lines that hold mostly other data.
//!
//! Blocks larger than [`SMALL_BLOCK`] bytes are counted arithmetically (their
//! span), smaller ones through per-line and per-page reference counts, so a
//! line shared by two small blocks of the stack counts once. Lines shared
//! between a large and a small block count twice (an overestimate of at most
//! two lines per large block).

use std::collections::HashMap;

use memtrace_format::{Event, HeapEvent, Op, StackId};

/// Cache line size assumed, in bytes.
pub const LINE: u64 = 64;
/// Page size assumed, in bytes.
pub const PAGE: u64 = 4096;
/// Blocks up to this size are tracked line by line.
pub const SMALL_BLOCK: u64 = 4096;
/// Lines per packed line above which a stack is called scattered.
pub const SCATTER_RATIO: f64 = 2.0;
/// Fewest live blocks at the peak for a stack to be called scattered.
pub const MIN_SCATTERED_BLOCKS: u64 = 16;

/// The scatter of one allocation stack.
#[derive(Debug, Clone, PartialEq)]
pub struct StackScatter {
    /// The stack.
    pub stack: StackId,
    /// Allocations from it (reallocs included).
    pub n_allocs: u64,
    /// Live blocks at its peak.
    pub peak_blocks: u64,
    /// Live requested bytes at its peak.
    pub peak_bytes: u64,
    /// Distinct cache lines those blocks touch.
    pub lines: u64,
    /// Lines they would need if packed: `ceil(peak_bytes / LINE)`.
    pub min_lines: u64,
    /// Distinct pages they touch.
    pub pages: u64,
    /// Pages they would need if packed.
    pub min_pages: u64,
    /// Mean `|addr[i] - addr[i-1]|` over consecutive allocations from the
    /// stack; `None` with fewer than two.
    pub mean_distance: Option<f64>,
}

impl StackScatter {
    /// Lines touched per line needed (1.0: packed).
    pub fn line_ratio(&self) -> f64 {
        if self.min_lines == 0 {
            1.0
        } else {
            self.lines as f64 / self.min_lines as f64
        }
    }

    /// Pages touched per page needed.
    pub fn page_ratio(&self) -> f64 {
        if self.min_pages == 0 {
            1.0
        } else {
            self.pages as f64 / self.min_pages as f64
        }
    }

    /// Many blocks, and well over the packed number of cache lines.
    pub fn is_scattered(&self) -> bool {
        self.peak_blocks >= MIN_SCATTERED_BLOCKS && self.line_ratio() > SCATTER_RATIO
    }
}

#[derive(Debug, Default)]
struct StackState {
    n_allocs: u64,
    live_blocks: u64,
    live_bytes: u64,
    small_lines: HashMap<u64, u32>,
    small_pages: HashMap<u64, u32>,
    large_lines: u64,
    large_pages: u64,
    last_addr: Option<u64>,
    distance_sum: u128,
    n_distances: u64,
    peak: Option<(u64, u64, u64, u64)>, // blocks, bytes, lines, pages
}

impl StackState {
    fn lines(&self) -> u64 {
        self.small_lines.len() as u64 + self.large_lines
    }

    fn pages(&self) -> u64 {
        self.small_pages.len() as u64 + self.large_pages
    }

    fn add(&mut self, addr: u64, size: u64) {
        self.n_allocs += 1;
        if let Some(last) = self.last_addr {
            self.distance_sum += u128::from(addr.abs_diff(last));
            self.n_distances += 1;
        }
        self.last_addr = Some(addr);
        self.live_blocks += 1;
        self.live_bytes += size;
        if size > SMALL_BLOCK {
            self.large_lines += span(addr, size, LINE);
            self.large_pages += span(addr, size, PAGE);
        } else {
            for unit in units(addr, size, LINE) {
                *self.small_lines.entry(unit).or_default() += 1;
            }
            for unit in units(addr, size, PAGE) {
                *self.small_pages.entry(unit).or_default() += 1;
            }
        }
        if self
            .peak
            .is_none_or(|(_, bytes, _, _)| self.live_bytes > bytes)
        {
            self.peak = Some((
                self.live_blocks,
                self.live_bytes,
                self.lines(),
                self.pages(),
            ));
        }
    }

    fn remove(&mut self, addr: u64, size: u64) {
        self.live_blocks -= 1;
        self.live_bytes -= size;
        if size > SMALL_BLOCK {
            self.large_lines -= span(addr, size, LINE);
            self.large_pages -= span(addr, size, PAGE);
        } else {
            release(&mut self.small_lines, units(addr, size, LINE));
            release(&mut self.small_pages, units(addr, size, PAGE));
        }
    }
}

fn release(counts: &mut HashMap<u64, u32>, units: std::ops::RangeInclusive<u64>) {
    for unit in units {
        if let Some(n) = counts.get_mut(&unit) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&unit);
            }
        }
    }
}

/// The `unit`-sized units that `[addr, addr + size)` touches (one for size 0).
fn units(addr: u64, size: u64, unit: u64) -> std::ops::RangeInclusive<u64> {
    addr / unit..=(addr + size.max(1) - 1) / unit
}

fn span(addr: u64, size: u64, unit: u64) -> u64 {
    let r = units(addr, size, unit);
    r.end() - r.start() + 1
}

/// Replays heap events and measures each stack's scatter.
#[derive(Debug, Default)]
pub struct ScatterReplay {
    stacks: HashMap<StackId, StackState>,
    live: HashMap<u64, (StackId, u64)>,
}

impl ScatterReplay {
    /// Looks at one event; all but heap events are ignored.
    pub fn apply(&mut self, event: &Event) {
        if let Event::Heap { event, .. } = event {
            self.heap(event);
        }
    }

    fn heap(&mut self, e: &HeapEvent) {
        let Some(func) = e.func() else { return };
        match func.op() {
            Op::Alloc => {
                if e.addr != 0 {
                    self.allocate(e);
                }
            }
            Op::Free => self.release(e.addr),
            Op::Realloc => {
                if e.addr == 0 && e.size > 0 {
                    return; // Failed: the old block is untouched.
                }
                if e.old_addr != 0 {
                    self.release(e.old_addr);
                }
                if e.addr != 0 {
                    self.allocate(e);
                }
            }
        }
    }

    fn allocate(&mut self, e: &HeapEvent) {
        // A block the trace never saw freed (a missed free) is replaced.
        self.release(e.addr);
        self.live.insert(e.addr, (e.stack, e.size));
        self.stacks.entry(e.stack).or_default().add(e.addr, e.size);
    }

    fn release(&mut self, addr: u64) {
        if let Some((stack, size)) = self.live.remove(&addr) {
            if let Some(state) = self.stacks.get_mut(&stack) {
                state.remove(addr, size);
            }
        }
    }

    /// Every stack's scatter, most excess cache lines first.
    pub fn finish(self) -> Vec<StackScatter> {
        let mut out: Vec<StackScatter> = self
            .stacks
            .into_iter()
            .filter_map(|(stack, s)| {
                let (peak_blocks, peak_bytes, lines, pages) = s.peak?;
                Some(StackScatter {
                    stack,
                    n_allocs: s.n_allocs,
                    peak_blocks,
                    peak_bytes,
                    lines,
                    min_lines: peak_bytes.div_ceil(LINE),
                    pages,
                    min_pages: peak_bytes.div_ceil(PAGE),
                    mean_distance: (s.n_distances > 0)
                        .then(|| s.distance_sum as f64 / s.n_distances as f64),
                })
            })
            .collect();
        out.sort_by(|a, b| {
            let excess = |s: &StackScatter| s.lines.saturating_sub(s.min_lines);
            excess(b).cmp(&excess(a)).then(a.stack.cmp(&b.stack))
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use memtrace_format::Func;

    fn alloc(stack: StackId, addr: u64, size: u64) -> Event {
        Event::Heap {
            tid: 1,
            event: HeapEvent {
                func: Func::Malloc as u8,
                addr,
                size,
                stack,
                ..Default::default()
            },
        }
    }

    fn free(addr: u64) -> Event {
        Event::Heap {
            tid: 1,
            event: HeapEvent {
                func: Func::Free as u8,
                addr,
                ..Default::default()
            },
        }
    }

    #[test]
    fn spread_nodes_touch_one_line_each_packed_blocks_share() {
        let mut r = ScatterReplay::default();
        // Stack 1: 32 blocks of 16 bytes, 272 bytes apart: one line each.
        // Stack 2: 32 blocks of 16 bytes back to back: 4 per line.
        for i in 0..32 {
            r.apply(&alloc(1, 0x10000 + i * 272, 16));
            r.apply(&alloc(2, 0x80000 + i * 16, 16));
        }
        r.apply(&free(0x10000));
        let out = r.finish();
        let s1 = out.iter().find(|s| s.stack == 1).unwrap();
        assert_eq!((s1.peak_blocks, s1.peak_bytes), (32, 512));
        assert_eq!((s1.lines, s1.min_lines), (32, 8));
        assert_eq!(s1.line_ratio(), 4.0);
        assert_eq!(s1.mean_distance, Some(272.0));
        assert!(s1.is_scattered());
        assert_eq!((s1.pages, s1.min_pages), (3, 1));
        let s2 = out.iter().find(|s| s.stack == 2).unwrap();
        assert_eq!((s2.lines, s2.min_lines), (8, 8));
        assert_eq!(s2.mean_distance, Some(16.0));
        assert!(!s2.is_scattered());
        assert_eq!(out[0].stack, 1);
    }

    #[test]
    fn large_blocks_count_their_span() {
        let mut r = ScatterReplay::default();
        r.apply(&alloc(7, 0x1010, 10_000));
        let out = r.finish();
        // 0x1010 .. 0x1010 + 10000 spans lines 64..=220 and pages 1..=3.
        assert_eq!((out[0].lines, out[0].min_lines), (157, 157));
        assert_eq!((out[0].pages, out[0].min_pages), (3, 3));
        assert_eq!(out[0].mean_distance, None);
    }
}
