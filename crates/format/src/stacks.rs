//! The interned stack table: a trie of return addresses.

use crate::record::StackId;

/// Every distinct stack, stored once as a trie: a node is a return address
/// and its parent (the caller's frame). Node 0 is the empty stack.
#[derive(Debug, Clone)]
pub struct StackTable {
    nodes: Vec<(StackId, u64)>,
}

impl Default for StackTable {
    fn default() -> Self {
        Self::new()
    }
}

impl StackTable {
    /// A table holding only the empty stack.
    pub fn new() -> Self {
        StackTable {
            nodes: vec![(0, 0)],
        }
    }

    /// Number of nodes, the root included.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when only the root exists.
    pub fn is_empty(&self) -> bool {
        self.nodes.len() == 1
    }

    /// Appends a node; its id is the previous length.
    pub fn push(&mut self, parent: StackId, address: u64) -> StackId {
        self.nodes.push((parent, address));
        (self.nodes.len() - 1) as StackId
    }

    /// The node's parent and return address, if the id exists.
    pub fn node(&self, id: StackId) -> Option<(StackId, u64)> {
        self.nodes.get(id as usize).copied()
    }

    /// The return addresses of a stack, innermost first.
    pub fn frames(&self, id: StackId) -> Frames<'_> {
        Frames { table: self, id }
    }
}

/// Iterator over a stack's return addresses, innermost first.
pub struct Frames<'a> {
    table: &'a StackTable,
    id: StackId,
}

impl Iterator for Frames<'_> {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        if self.id == 0 {
            return None;
        }
        let (parent, addr) = self.table.node(self.id)?;
        // Parents always have smaller ids, so this terminates.
        self.id = if parent < self.id { parent } else { 0 };
        Some(addr)
    }
}
