//! Loss records: the blocks of one class allocated at one stack, as memcheck
//! groups them, and the totals per class.

use std::collections::HashMap;

use memtrace_format::{LeakScan, StackId};
use serde::Serialize;

use crate::classify::{successors, LeakClass};

/// Blocks of one class from one allocation stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LossRecord {
    /// Their class.
    pub class: LeakClass,
    /// Their allocation stack.
    pub stack: StackId,
    /// Number of blocks.
    pub n_blocks: u64,
    /// Their requested bytes.
    pub bytes: u64,
    /// For definitely lost blocks: bytes of the indirectly lost blocks that
    /// only they reach (memcheck's "80 (40 direct, 40 indirect) bytes").
    pub indirect_bytes: u64,
    /// Index of one block of the record (the lowest address).
    pub first_block: u32,
}

/// Bytes and blocks of one class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Totals {
    /// Definitely lost: (bytes, blocks).
    pub definite: (u64, u64),
    /// Indirectly lost.
    pub indirect: (u64, u64),
    /// Possibly lost.
    pub possible: (u64, u64),
    /// Still reachable.
    pub reachable: (u64, u64),
}

impl Totals {
    /// (bytes, blocks) of `class`.
    pub fn of(&self, class: LeakClass) -> (u64, u64) {
        match class {
            LeakClass::Definite => self.definite,
            LeakClass::Indirect => self.indirect,
            LeakClass::Possible => self.possible,
            LeakClass::Reachable => self.reachable,
        }
    }

    fn add(&mut self, class: LeakClass, bytes: u64) {
        let t = match class {
            LeakClass::Definite => &mut self.definite,
            LeakClass::Indirect => &mut self.indirect,
            LeakClass::Possible => &mut self.possible,
            LeakClass::Reachable => &mut self.reachable,
        };
        t.0 += bytes;
        t.1 += 1;
    }
}

/// Totals per class over the blocks `keep` accepts.
pub fn totals(scan: &LeakScan, classes: &[LeakClass], keep: &dyn Fn(usize) -> bool) -> Totals {
    let mut t = Totals::default();
    for (i, (b, &c)) in scan.blocks.iter().zip(classes).enumerate() {
        if keep(i) {
            t.add(c, b.size);
        }
    }
    t
}

/// Loss records, largest first (total bytes with the indirect ones, then
/// class, then stack): the order a reader wants, worst news on top.
pub fn loss_records(scan: &LeakScan, classes: &[LeakClass]) -> Vec<LossRecord> {
    let indirect = indirect_bytes_per_leader(scan, classes);
    let mut groups: HashMap<(LeakClass, StackId), LossRecord> = HashMap::new();
    for (i, (b, &class)) in scan.blocks.iter().zip(classes).enumerate() {
        let r = groups.entry((class, b.stack)).or_insert(LossRecord {
            class,
            stack: b.stack,
            n_blocks: 0,
            bytes: 0,
            indirect_bytes: 0,
            first_block: i as u32,
        });
        r.n_blocks += 1;
        r.bytes += b.size;
        r.indirect_bytes += indirect[i];
    }
    let mut records: Vec<LossRecord> = groups.into_values().collect();
    records.sort_by(|a, b| {
        (b.bytes + b.indirect_bytes)
            .cmp(&(a.bytes + a.indirect_bytes))
            .then(a.class.cmp(&b.class))
            .then(a.stack.cmp(&b.stack))
    });
    records
}

/// For each definitely lost block, the bytes of the indirectly lost blocks
/// that it reaches and that no earlier definite block claimed.
fn indirect_bytes_per_leader(scan: &LeakScan, classes: &[LeakClass]) -> Vec<u64> {
    let n = scan.blocks.len();
    let succ = successors(n, &scan.edges);
    let mut claimed = vec![false; n];
    let mut out = vec![0u64; n];
    let mut stack = Vec::new();
    for leader in 0..n {
        if classes[leader] != LeakClass::Definite {
            continue;
        }
        stack.push(leader);
        while let Some(i) = stack.pop() {
            for &j in &succ[i] {
                let j = j as usize;
                if classes[j] == LeakClass::Indirect && !claimed[j] {
                    claimed[j] = true;
                    out[leader] += scan.blocks[j].size;
                    stack.push(j);
                }
            }
        }
    }
    out
}
