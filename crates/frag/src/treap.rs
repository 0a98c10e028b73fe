//! An address-ordered set of holes with the largest size of every subtree,
//! so that "the lowest-addressed hole of at least `n` bytes at or above
//! `lo`" takes O(log n) steps instead of a scan of the free list.

const NIL: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Node {
    key: u64,
    size: u64,
    max: u64,
    count: u32,
    prio: u32,
    left: u32,
    right: u32,
}

/// A treap keyed by hole address, augmented with subtree maximum size and
/// subtree node count.
pub(crate) struct Treap {
    nodes: Vec<Node>,
    spare: Vec<u32>,
    root: u32,
    rng: u64,
}

impl Treap {
    pub(crate) fn new() -> Self {
        Treap {
            nodes: Vec::new(),
            spare: Vec::new(),
            root: NIL,
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }

    fn next_prio(&mut self) -> u32 {
        // xorshift64: deterministic, so replays are reproducible.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 32) as u32
    }

    fn max_of(&self, t: u32) -> u64 {
        if t == NIL {
            0
        } else {
            self.nodes[t as usize].max
        }
    }

    fn count_of(&self, t: u32) -> u32 {
        if t == NIL {
            0
        } else {
            self.nodes[t as usize].count
        }
    }

    fn pull(&mut self, t: u32) {
        let n = self.nodes[t as usize];
        let max = n.size.max(self.max_of(n.left)).max(self.max_of(n.right));
        let count = 1 + self.count_of(n.left) + self.count_of(n.right);
        let node = &mut self.nodes[t as usize];
        node.max = max;
        node.count = count;
    }

    /// Splits `t` into keys `< key` and keys `>= key`.
    fn split(&mut self, t: u32, key: u64) -> (u32, u32) {
        if t == NIL {
            return (NIL, NIL);
        }
        let n = self.nodes[t as usize];
        if n.key < key {
            let (a, b) = self.split(n.right, key);
            self.nodes[t as usize].right = a;
            self.pull(t);
            (t, b)
        } else {
            let (a, b) = self.split(n.left, key);
            self.nodes[t as usize].left = b;
            self.pull(t);
            (a, t)
        }
    }

    fn merge(&mut self, a: u32, b: u32) -> u32 {
        if a == NIL {
            return b;
        }
        if b == NIL {
            return a;
        }
        if self.nodes[a as usize].prio > self.nodes[b as usize].prio {
            let r = self.nodes[a as usize].right;
            let m = self.merge(r, b);
            self.nodes[a as usize].right = m;
            self.pull(a);
            a
        } else {
            let l = self.nodes[b as usize].left;
            let m = self.merge(a, l);
            self.nodes[b as usize].left = m;
            self.pull(b);
            b
        }
    }

    /// Inserts a hole; `key` must not be present.
    pub(crate) fn insert(&mut self, key: u64, size: u64) {
        let node = Node {
            key,
            size,
            max: size,
            count: 1,
            prio: self.next_prio(),
            left: NIL,
            right: NIL,
        };
        let id = match self.spare.pop() {
            Some(id) => {
                self.nodes[id as usize] = node;
                id
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        let (l, r) = self.split(self.root, key);
        let l = self.merge(l, id);
        self.root = self.merge(l, r);
    }

    /// Removes the hole at `key`, if present.
    pub(crate) fn remove(&mut self, key: u64) {
        let (l, r) = self.split(self.root, key);
        let (m, r) = self.split(r, key.saturating_add(1));
        if m != NIL {
            self.spare.push(m);
        }
        self.root = self.merge(l, r);
    }

    /// The lowest key `>= lo` whose size is at least `n`.
    pub(crate) fn first_fit(&self, lo: u64, n: u64) -> Option<u64> {
        self.find(self.root, lo, n)
    }

    fn find(&self, t: u32, lo: u64, n: u64) -> Option<u64> {
        if t == NIL || self.nodes[t as usize].max < n {
            return None;
        }
        let node = self.nodes[t as usize];
        if node.key < lo {
            return self.find(node.right, lo, n);
        }
        if let Some(k) = self.find(node.left, lo, n) {
            return Some(k);
        }
        if node.size >= n {
            return Some(node.key);
        }
        self.find(node.right, lo, n)
    }

    /// How many keys are `< key`.
    pub(crate) fn count_below(&self, key: u64) -> u64 {
        let mut t = self.root;
        let mut below = 0u64;
        while t != NIL {
            let n = self.nodes[t as usize];
            if n.key < key {
                below += u64::from(self.count_of(n.left)) + 1;
                t = n.right;
            } else {
                t = n.left;
            }
        }
        below
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> u64 {
        u64::from(self.count_of(self.root))
    }

    pub(crate) fn max(&self) -> u64 {
        self.max_of(self.root)
    }
}

#[cfg(test)]
mod tests {
    use super::Treap;

    #[test]
    fn agrees_with_a_linear_scan() {
        let mut t = Treap::new();
        let mut v: Vec<(u64, u64)> = Vec::new();
        let mut x = 12345u64;
        for i in 0..2000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let key = (x >> 40) % 5000;
            let size = (x >> 20) % 300;
            if let Some(p) = v.iter().position(|&(k, _)| k == key) {
                v.remove(p);
                t.remove(key);
            } else {
                v.push((key, size));
                t.insert(key, size);
            }
            v.sort_unstable();
            let lo = (i * 7) % 5000;
            let n = (i * 13) % 300;
            let want = v.iter().find(|&&(k, s)| k >= lo && s >= n).map(|&(k, _)| k);
            assert_eq!(t.first_fit(lo, n), want);
            assert_eq!(
                t.count_below(lo),
                v.iter().filter(|&&(k, _)| k < lo).count() as u64
            );
            assert_eq!(t.len(), v.len() as u64);
            assert_eq!(t.max(), v.iter().map(|&(_, s)| s).max().unwrap_or(0));
        }
    }
}
