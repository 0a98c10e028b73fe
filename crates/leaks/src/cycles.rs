//! Leaked cycles: strongly connected components of the points-to graph
//! among lost blocks.

use memtrace_format::LeakScan;
use serde::Serialize;

use crate::classify::{successors, LeakClass};

/// A group of lost blocks that point at each other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cycle {
    /// Block indices in the order of one cycle through them, starting at the
    /// lowest address (`a -> b -> ... -> a`); blocks of the component that
    /// this one cycle does not pass through follow, in address order.
    pub blocks: Vec<u32>,
    /// Requested bytes of all its blocks.
    pub bytes: u64,
}

/// Every leaked cycle, largest first (by bytes, then by lowest address).
pub fn leaked_cycles(scan: &LeakScan, classes: &[LeakClass]) -> Vec<Cycle> {
    let n = scan.blocks.len();
    let lost = |i: usize| classes.get(i).is_some_and(|c| c.is_lost());
    let edges: Vec<(u32, u32)> = scan
        .edges
        .iter()
        .copied()
        .filter(|&(a, b)| lost(a as usize) && lost(b as usize))
        .collect();
    let succ = successors(n, &edges);
    let mut cycles: Vec<Cycle> = components(&succ, &lost)
        .into_iter()
        .filter(|c| c.len() > 1 || succ[c[0] as usize].contains(&c[0]))
        .map(|mut members| {
            members.sort_unstable();
            let order = cycle_order(&succ, &members);
            let bytes = members.iter().map(|&i| scan.blocks[i as usize].size).sum();
            Cycle {
                blocks: order,
                bytes,
            }
        })
        .collect();
    cycles.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.blocks[0].cmp(&b.blocks[0])));
    cycles
}

/// Tarjan's strongly connected components of the `include`d nodes,
/// iterative so that a long leaked list cannot overflow the stack.
fn components(succ: &[Vec<u32>], include: &dyn Fn(usize) -> bool) -> Vec<Vec<u32>> {
    const UNSEEN: u32 = u32::MAX;
    let n = succ.len();
    let mut index = vec![UNSEEN; n];
    let mut low = vec![0u32; n];
    let mut on_stack = vec![false; n];
    let mut stack: Vec<u32> = Vec::new();
    let mut out = Vec::new();
    let mut next = 0u32;
    // (node, position in its successor list)
    let mut call: Vec<(u32, usize)> = Vec::new();
    for root in 0..n {
        if index[root] != UNSEEN || !include(root) {
            continue;
        }
        call.push((root as u32, 0));
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root as u32);
        on_stack[root] = true;
        while let Some(&mut (v, ref mut pos)) = call.last_mut() {
            let v = v as usize;
            if let Some(&w) = succ[v].get(*pos) {
                *pos += 1;
                let w = w as usize;
                if !include(w) {
                    continue;
                }
                if index[w] == UNSEEN {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w as u32);
                    on_stack[w] = true;
                    call.push((w as u32, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            call.pop();
            if let Some(&(parent, _)) = call.last() {
                let p = parent as usize;
                low[p] = low[p].min(low[v]);
            }
            if low[v] == index[v] {
                let mut component = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w as usize] = false;
                    component.push(w);
                    if w as usize == v {
                        break;
                    }
                }
                out.push(component);
            }
        }
    }
    out
}

/// One cycle through the sorted `members`, from the first back to it
/// (breadth-first, so the cycle is a shortest one), then the members it
/// misses.
fn cycle_order(succ: &[Vec<u32>], members: &[u32]) -> Vec<u32> {
    let start = members[0];
    let inside = |x: u32| members.binary_search(&x).is_ok();
    let mut parent: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    let mut last = None;
    'search: while let Some(v) = queue.pop_front() {
        for &w in &succ[v as usize] {
            if !inside(w) {
                continue;
            }
            if w == start {
                last = Some(v);
                break 'search;
            }
            if let std::collections::hash_map::Entry::Vacant(e) = parent.entry(w) {
                e.insert(v);
                queue.push_back(w);
            }
        }
    }
    let mut path = Vec::new();
    let mut v = last.unwrap_or(start);
    while v != start {
        path.push(v);
        v = parent[&v];
    }
    path.push(start);
    path.reverse();
    let on_path: std::collections::HashSet<u32> = path.iter().copied().collect();
    let rest: Vec<u32> = members
        .iter()
        .copied()
        .filter(|m| !on_path.contains(m))
        .collect();
    path.extend(rest);
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use memtrace_format::{Reach, ScannedBlock};

    fn scan(n: usize, edges: &[(u32, u32)]) -> LeakScan {
        LeakScan {
            blocks: (0..n)
                .map(|i| ScannedBlock {
                    addr: 0x1000 + 64 * i as u64,
                    size: 10 * (i as u64 + 1),
                    stack: 1,
                    reach: Reach::Unreached,
                })
                .collect(),
            edges: edges.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn a_chain_is_not_a_cycle_but_a_loop_and_a_self_reference_are() {
        // 0 -> 1 -> 2 -> 1 (a 2-cycle reached from 0), 3 -> 3, 4 -> 5.
        let s = scan(6, &[(0, 1), (1, 2), (2, 1), (3, 3), (4, 5)]);
        let classes = crate::classify(&s);
        let cycles = leaked_cycles(&s, &classes);
        assert_eq!(
            cycles,
            vec![
                Cycle {
                    blocks: vec![1, 2],
                    bytes: 50
                },
                Cycle {
                    blocks: vec![3],
                    bytes: 40
                },
            ]
        );
    }

    #[test]
    fn the_cycle_is_walked_in_pointer_order() {
        // 0 -> 2 -> 1 -> 0
        let s = scan(3, &[(0, 2), (2, 1), (1, 0)]);
        let classes = crate::classify(&s);
        assert_eq!(leaked_cycles(&s, &classes)[0].blocks, vec![0, 2, 1]);
    }

    #[test]
    fn a_hundred_thousand_block_ring_does_not_overflow_the_stack() {
        let n = 100_000u32;
        let edges: Vec<(u32, u32)> = (0..n).map(|i| (i, (i + 1) % n)).collect();
        let s = scan(n as usize, &edges);
        let classes = crate::classify(&s);
        let cycles = leaked_cycles(&s, &classes);
        assert_eq!(cycles.len(), 1);
        assert_eq!(cycles[0].blocks.len(), n as usize);
    }
}
