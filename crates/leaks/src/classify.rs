//! Blocks to classes, as memcheck assigns them.

use memtrace_format::{LeakScan, Reach};
use serde::Serialize;

/// A live block's class at exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LeakClass {
    /// No pointer to it from the roots or from a block counted before it.
    Definite,
    /// Reached only from lost blocks.
    Indirect,
    /// Reached only through interior pointers.
    Possible,
    /// Reached through pointers to block starts.
    Reachable,
}

impl LeakClass {
    /// Every class, worst first.
    pub const ALL: [LeakClass; 4] = [
        LeakClass::Definite,
        LeakClass::Indirect,
        LeakClass::Possible,
        LeakClass::Reachable,
    ];

    /// The words memcheck uses: "definitely lost", ...
    pub fn phrase(self) -> &'static str {
        match self {
            LeakClass::Definite => "definitely lost",
            LeakClass::Indirect => "indirectly lost",
            LeakClass::Possible => "possibly lost",
            LeakClass::Reachable => "still reachable",
        }
    }

    /// The short name used on the command line and in JSON: "definite", ...
    pub fn name(self) -> &'static str {
        match self {
            LeakClass::Definite => "definite",
            LeakClass::Indirect => "indirect",
            LeakClass::Possible => "possible",
            LeakClass::Reachable => "reachable",
        }
    }

    /// Parses a short name (also accepts the plural and memcheck's words).
    pub fn parse(s: &str) -> Option<LeakClass> {
        match s.trim() {
            "definite" | "definitely" | "definitely-lost" => Some(LeakClass::Definite),
            "indirect" | "indirectly" | "indirectly-lost" => Some(LeakClass::Indirect),
            "possible" | "possibly" | "possibly-lost" => Some(LeakClass::Possible),
            "reachable" | "still-reachable" => Some(LeakClass::Reachable),
            _ => None,
        }
    }

    /// True for the two lost classes.
    pub fn is_lost(self) -> bool {
        matches!(self, LeakClass::Definite | LeakClass::Indirect)
    }
}

/// The class of every block of `scan`, by index.
///
/// Reached blocks take their class from the scan. Among the unreached ones,
/// memcheck's rule: in address order, each block not yet classified leads a
/// *clique*: every unreached block it reaches (directly or through others)
/// is indirectly lost, including earlier leaders; the leaders left at the
/// end are definitely lost. In a cycle this makes the lowest-addressed block
/// definitely lost and the rest indirectly lost, as memcheck reports it.
pub fn classify(scan: &LeakScan) -> Vec<LeakClass> {
    let n = scan.blocks.len();
    let mut class: Vec<LeakClass> = scan
        .blocks
        .iter()
        .map(|b| match b.reach {
            Reach::Start => LeakClass::Reachable,
            Reach::Interior => LeakClass::Possible,
            Reach::Unreached => LeakClass::Definite,
        })
        .collect();
    let succ = successors(n, &scan.edges);
    let mut stack = Vec::new();
    for leader in 0..n {
        if class[leader] != LeakClass::Definite {
            continue;
        }
        stack.push(leader);
        while let Some(i) = stack.pop() {
            for &j in &succ[i] {
                let j = j as usize;
                if j != leader && class[j] == LeakClass::Definite {
                    class[j] = LeakClass::Indirect;
                    stack.push(j);
                }
            }
        }
    }
    class
}

/// Adjacency lists of `edges` over `n` blocks.
pub(crate) fn successors(n: usize, edges: &[(u32, u32)]) -> Vec<Vec<u32>> {
    let mut succ = vec![Vec::new(); n];
    for &(from, to) in edges {
        if (from as usize) < n && (to as usize) < n {
            succ[from as usize].push(to);
        }
    }
    succ
}

#[cfg(test)]
mod tests {
    use super::*;
    use memtrace_format::ScannedBlock;

    fn scan(reach: &[Reach], edges: &[(u32, u32)]) -> LeakScan {
        LeakScan {
            blocks: reach
                .iter()
                .enumerate()
                .map(|(i, &reach)| ScannedBlock {
                    addr: 0x1000 + 64 * i as u64,
                    size: 32,
                    stack: 1,
                    reach,
                })
                .collect(),
            edges: edges.to_vec(),
            ..Default::default()
        }
    }

    use LeakClass::*;
    use Reach::*;

    #[test]
    fn a_tree_whose_root_sits_above_its_children_keeps_the_root_definite() {
        // Blocks 0 and 1 are children of 2 (the highest address); 1 -> 0.
        let s = scan(
            &[Unreached, Unreached, Unreached],
            &[(2, 0), (2, 1), (1, 0)],
        );
        assert_eq!(classify(&s), vec![Indirect, Indirect, Definite]);
    }

    #[test]
    fn in_a_cycle_the_lowest_block_is_definite() {
        let s = scan(
            &[Unreached, Unreached, Unreached],
            &[(0, 1), (1, 2), (2, 0)],
        );
        assert_eq!(classify(&s), vec![Definite, Indirect, Indirect]);
    }

    #[test]
    fn reached_blocks_keep_the_scan_class() {
        let s = scan(&[Start, Interior, Unreached], &[]);
        assert_eq!(classify(&s), vec![Reachable, Possible, Definite]);
    }
}
