//! The information floor of a trace: how few bytes per event any lossless
//! encoding of what the program itself chose could take.
//!
//! A trace must say, for every call, whether it allocated or freed; for an
//! allocation, its size and stack; for a free, which of the live blocks it
//! released. Where the program makes those choices at random (as
//! `bench_alloc` does, from a PRNG), their entropy is a floor that no
//! encoder beats on average, before a single timestamp, address or latency
//! is stored. Measured empirically: the entropy of the alloc/free mix, of
//! the `(size, stack)` pairs over the allocations, and `log2(live blocks)`
//! for each free (any live block could have been the one).

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use anyhow::{Context, Result};
use memtrace_format::{Event, Func, Op, Reader};

/// The floor, split by what it pays for, in bits per event.
#[derive(Debug, Clone, Copy)]
pub struct Floor {
    /// Alloc or free: the entropy of the mix.
    pub op_bits: f64,
    /// Size and stack of the allocations, spread over all events.
    pub alloc_bits: f64,
    /// Which live block each free released, spread over all events.
    pub free_bits: f64,
}

impl Floor {
    /// The whole floor in bytes per event.
    pub fn bytes_per_event(&self) -> f64 {
        (self.op_bits + self.alloc_bits + self.free_bits) / 8.0
    }
}

/// Measures the floor of the trace at `path` (malloc and free only: the
/// events of `bench_alloc`; anything else is counted as an allocation).
pub fn measure(path: &Path) -> Result<Floor> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut reader = Reader::new(BufReader::new(file))
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut pairs: HashMap<(u64, u32), u64> = HashMap::new();
    let (mut allocs, mut frees) = (0u64, 0u64);
    let mut live: u64 = 0;
    let mut free_bits = 0.0f64;
    while let Some(event) = reader.next_event()? {
        let Event::Heap { event, .. } = event else {
            continue;
        };
        if event.func().map(Func::op) == Some(Op::Free) {
            frees += 1;
            if live > 1 {
                free_bits += (live as f64).log2();
            }
            live = live.saturating_sub(1);
        } else {
            allocs += 1;
            live += 1;
            *pairs.entry((event.size, event.stack)).or_default() += 1;
        }
    }
    let events = allocs + frees;
    anyhow::ensure!(events > 0, "{} has no heap events", path.display());
    let entropy = |counts: &mut dyn Iterator<Item = u64>, total: u64| -> f64 {
        counts
            .filter(|&c| c > 0)
            .map(|c| {
                let p = c as f64 / total as f64;
                -p * p.log2()
            })
            .sum::<f64>()
    };
    let op_bits = entropy(&mut [allocs, frees].into_iter(), events);
    let alloc_bits = entropy(&mut pairs.values().copied(), allocs.max(1)) * allocs as f64;
    Ok(Floor {
        op_bits,
        alloc_bits: alloc_bits / events as f64,
        free_bits: free_bits / events as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use memtrace_format::{Codec, Header, HeapEvent, ThreadItem, Trailer, Writer};

    #[test]
    fn two_sizes_and_two_frees_take_one_and_three_quarter_bits() {
        let header = Header {
            pid: 1,
            exe: "/x".into(),
            latency_measured: true,
            ..Header::default()
        };
        let ev = |func: Func, ts, addr, size| {
            ThreadItem::Heap(HeapEvent {
                func: func as u8,
                ts,
                addr,
                size,
                stack: u32::from(func != Func::Free),
                ..Default::default()
            })
        };
        let mut w = Writer::new(Vec::new(), &header, Codec::Raw).unwrap();
        w.stack_nodes(1, &[(0, 0x1000)]).unwrap();
        w.batch(
            1,
            &[
                ev(Func::Malloc, 1, 0x100, 8),
                ev(Func::Malloc, 2, 0x200, 16),
                ev(Func::Free, 3, 0x100, 0),
                ev(Func::Free, 4, 0x200, 0),
            ],
        )
        .unwrap();
        let bytes = w.finish(&Trailer::default()).unwrap();
        let path = std::env::temp_dir().join(format!("floor-test-{}.trace", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        let floor = measure(&path);
        std::fs::remove_file(&path).unwrap();
        let floor = floor.unwrap();
        // alloc/free half and half: 1 bit; two sizes, one each: 1 bit per
        // allocation, 2 of 4 events; the first free chooses among 2 blocks
        // (1 bit), the second among 1 (0 bits).
        assert_eq!(floor.op_bits, 1.0);
        assert_eq!(floor.alloc_bits, 0.5);
        assert_eq!(floor.free_bits, 0.25);
        assert_eq!(floor.bytes_per_event(), 1.75 / 8.0);
    }
}
