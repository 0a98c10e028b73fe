//! The holes of a free-list heap in address order: a B+ tree whose inner
//! nodes keep, per child, the smallest address, the largest hole and the
//! number of holes below it.
//!
//! That answers what the free-list policies ask in a few node visits each:
//! the lowest-addressed hole of at least `n` bytes at or above an address
//! (with its rank, the number of holes an address-ordered list walk would
//! pass first), the hole just below an address (for coalescing), and the
//! largest hole. A hole that shrinks from its low end or grows without
//! passing a neighbour is changed in place ([`HoleTree::update`]), which is
//! the common case of splitting and coalescing. Nodes are merged only when
//! empty: the tree never has more nodes than it once had holes, and stays
//! as deep as the largest hole count required.

/// Entries per node. 32 keeps an insertion's shift and a node's scan
/// within a few cache lines.
const B: usize = 32;

/// One hole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Address.
    pub addr: u64,
    /// Bytes.
    pub size: u64,
    /// The request after which the hole got this size.
    pub birth: u64,
}

#[derive(Clone)]
struct Leaf {
    n: usize,
    addr: [u64; B],
    size: [u64; B],
    birth: [u64; B],
}

#[derive(Clone)]
struct Inner {
    n: usize,
    child: [u32; B],
    /// Smallest address in the child.
    lo: [u64; B],
    /// Largest hole in the child.
    max: [u64; B],
    /// Holes in the child.
    count: [u64; B],
}

/// What a child reports to its parent after a change.
#[derive(Clone, Copy)]
struct Summary {
    lo: u64,
    max: u64,
    count: u64,
}

/// The hole index. Addresses are unique.
pub(crate) struct HoleTree {
    leaves: Vec<Leaf>,
    inners: Vec<Inner>,
    free_leaves: Vec<u32>,
    free_inners: Vec<u32>,
    /// Root node; a leaf when `height == 0`.
    root: u32,
    height: u32,
    len: u64,
}

impl Leaf {
    fn empty() -> Leaf {
        Leaf {
            n: 0,
            addr: [0; B],
            size: [0; B],
            birth: [0; B],
        }
    }

    /// The first position whose address is `>= addr`.
    fn lower_bound(&self, addr: u64) -> usize {
        self.addr[..self.n].partition_point(|&a| a < addr)
    }

    fn summary(&self) -> Summary {
        Summary {
            lo: self.addr[0],
            max: self.size[..self.n].iter().copied().max().unwrap_or(0),
            count: self.n as u64,
        }
    }

    fn insert_at(&mut self, i: usize, e: Entry) {
        let n = self.n;
        self.addr.copy_within(i..n, i + 1);
        self.size.copy_within(i..n, i + 1);
        self.birth.copy_within(i..n, i + 1);
        self.addr[i] = e.addr;
        self.size[i] = e.size;
        self.birth[i] = e.birth;
        self.n += 1;
    }

    fn remove_at(&mut self, i: usize) {
        let n = self.n;
        self.addr.copy_within(i + 1..n, i);
        self.size.copy_within(i + 1..n, i);
        self.birth.copy_within(i + 1..n, i);
        self.n -= 1;
    }
}

impl Inner {
    fn empty() -> Inner {
        Inner {
            n: 0,
            child: [0; B],
            lo: [0; B],
            max: [0; B],
            count: [0; B],
        }
    }

    /// The child that holds `addr` if anything does: the last one whose
    /// smallest address is `<= addr` (the first when there is none).
    fn route(&self, addr: u64) -> usize {
        self.lo[..self.n]
            .partition_point(|&lo| lo <= addr)
            .saturating_sub(1)
    }

    fn summary(&self) -> Summary {
        Summary {
            lo: self.lo[0],
            max: self.max[..self.n].iter().copied().max().unwrap_or(0),
            count: self.count[..self.n].iter().sum(),
        }
    }

    fn set(&mut self, i: usize, s: Summary) {
        self.lo[i] = s.lo;
        self.max[i] = s.max;
        self.count[i] = s.count;
    }

    fn insert_at(&mut self, i: usize, child: u32, s: Summary) {
        let n = self.n;
        self.child.copy_within(i..n, i + 1);
        self.lo.copy_within(i..n, i + 1);
        self.max.copy_within(i..n, i + 1);
        self.count.copy_within(i..n, i + 1);
        self.child[i] = child;
        self.set(i, s);
        self.n += 1;
    }

    fn remove_at(&mut self, i: usize) {
        let n = self.n;
        self.child.copy_within(i + 1..n, i);
        self.lo.copy_within(i + 1..n, i);
        self.max.copy_within(i + 1..n, i);
        self.count.copy_within(i + 1..n, i);
        self.n -= 1;
    }
}

/// The result of a change below a node.
enum Change {
    /// The child is now summarized by this.
    Updated(Summary),
    /// The child split: its new summary and a new right sibling.
    Split(Summary, u32, Summary),
    /// The child is empty and was freed.
    Emptied,
}

impl HoleTree {
    pub(crate) fn new() -> Self {
        HoleTree {
            leaves: vec![Leaf::empty()],
            inners: Vec::new(),
            free_leaves: Vec::new(),
            free_inners: Vec::new(),
            root: 0,
            height: 0,
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The largest hole (0 when there is none).
    pub(crate) fn max(&self) -> u64 {
        if self.height == 0 {
            self.leaves[self.root as usize].summary().max
        } else {
            self.inners[self.root as usize].summary().max
        }
    }

    fn new_leaf(&mut self) -> u32 {
        match self.free_leaves.pop() {
            Some(i) => {
                self.leaves[i as usize].n = 0;
                i
            }
            None => {
                self.leaves.push(Leaf::empty());
                (self.leaves.len() - 1) as u32
            }
        }
    }

    fn new_inner(&mut self) -> u32 {
        match self.free_inners.pop() {
            Some(i) => {
                self.inners[i as usize].n = 0;
                i
            }
            None => {
                self.inners.push(Inner::empty());
                (self.inners.len() - 1) as u32
            }
        }
    }

    /// The hole at `addr`.
    pub(crate) fn get(&self, addr: u64) -> Option<Entry> {
        let mut node = self.root;
        for _ in 0..self.height {
            let inner = &self.inners[node as usize];
            node = inner.child[inner.route(addr)];
        }
        let leaf = &self.leaves[node as usize];
        let i = leaf.lower_bound(addr);
        (i < leaf.n && leaf.addr[i] == addr).then(|| Entry {
            addr,
            size: leaf.size[i],
            birth: leaf.birth[i],
        })
    }

    /// The hole with the largest address `< addr`.
    pub(crate) fn below(&self, addr: u64) -> Option<Entry> {
        let mut node = self.root;
        for _ in 0..self.height {
            let inner = &self.inners[node as usize];
            // Children whose smallest address is below `addr` hold such a
            // hole; the last of them holds the largest.
            let i = inner.lo[..inner.n].partition_point(|&lo| lo < addr);
            if i == 0 {
                return None;
            }
            node = inner.child[i - 1];
        }
        let leaf = &self.leaves[node as usize];
        let i = leaf.lower_bound(addr);
        (i > 0).then(|| Entry {
            addr: leaf.addr[i - 1],
            size: leaf.size[i - 1],
            birth: leaf.birth[i - 1],
        })
    }

    /// How many holes lie below `addr`.
    pub(crate) fn rank(&self, addr: u64) -> u64 {
        let mut node = self.root;
        let mut below = 0;
        for _ in 0..self.height {
            let inner = &self.inners[node as usize];
            let i = inner.lo[..inner.n].partition_point(|&lo| lo < addr);
            if i == 0 {
                return below;
            }
            below += inner.count[..i - 1].iter().sum::<u64>();
            node = inner.child[i - 1];
        }
        below + self.leaves[node as usize].lower_bound(addr) as u64
    }

    /// The lowest-addressed hole at or above `from` with at least `need`
    /// bytes, and how many holes lie below it.
    pub(crate) fn first_fit(&self, from: u64, need: u64) -> Option<(Entry, u64)> {
        self.find(self.root, self.height, from, need)
    }

    fn find(&self, node: u32, height: u32, from: u64, need: u64) -> Option<(Entry, u64)> {
        if height == 0 {
            let leaf = &self.leaves[node as usize];
            let start = leaf.lower_bound(from);
            return (start..leaf.n).find(|&i| leaf.size[i] >= need).map(|i| {
                let e = Entry {
                    addr: leaf.addr[i],
                    size: leaf.size[i],
                    birth: leaf.birth[i],
                };
                (e, i as u64)
            });
        }
        let inner = &self.inners[node as usize];
        let start = inner.route(from);
        let mut skipped: u64 = inner.count[..start].iter().sum();
        for i in start..inner.n {
            // Only the first child can hold holes below `from`, so only it
            // can have a large enough hole and still come back empty.
            if inner.max[i] >= need {
                if let Some((e, r)) = self.find(inner.child[i], height - 1, from, need) {
                    return Some((e, skipped + r));
                }
            }
            skipped += inner.count[i];
        }
        None
    }

    /// Inserts a hole; its address must not be present.
    pub(crate) fn insert(&mut self, e: Entry) {
        self.len += 1;
        match self.insert_in(self.root, self.height, e) {
            Change::Split(left, right, rs) => {
                let root = self.new_inner();
                let old = self.root;
                let r = &mut self.inners[root as usize];
                r.insert_at(0, old, left);
                r.insert_at(1, right, rs);
                self.root = root;
                self.height += 1;
            }
            Change::Updated(_) | Change::Emptied => {}
        }
    }

    fn insert_in(&mut self, node: u32, height: u32, e: Entry) -> Change {
        if height == 0 {
            let leaf = &mut self.leaves[node as usize];
            let i = leaf.lower_bound(e.addr);
            debug_assert!(i == leaf.n || leaf.addr[i] != e.addr, "duplicate hole");
            if leaf.n < B {
                leaf.insert_at(i, e);
                return Change::Updated(leaf.summary());
            }
            // Full: move the upper half to a new right sibling.
            let right = self.new_leaf();
            let (l, r) = two(&mut self.leaves, node as usize, right as usize);
            let half = B / 2;
            r.n = B - half;
            r.addr[..B - half].copy_from_slice(&l.addr[half..]);
            r.size[..B - half].copy_from_slice(&l.size[half..]);
            r.birth[..B - half].copy_from_slice(&l.birth[half..]);
            l.n = half;
            if i <= half {
                l.insert_at(i, e);
            } else {
                r.insert_at(i - half, e);
            }
            return Change::Split(l.summary(), right, r.summary());
        }
        let i = self.inners[node as usize].route(e.addr);
        let child = self.inners[node as usize].child[i];
        match self.insert_in(child, height - 1, e) {
            Change::Updated(s) => {
                let inner = &mut self.inners[node as usize];
                inner.set(i, s);
                Change::Updated(inner.summary())
            }
            Change::Split(ls, right, rs) => {
                let inner = &mut self.inners[node as usize];
                inner.set(i, ls);
                if inner.n < B {
                    inner.insert_at(i + 1, right, rs);
                    return Change::Updated(inner.summary());
                }
                let sibling = self.new_inner();
                let (l, r) = two(&mut self.inners, node as usize, sibling as usize);
                let half = B / 2;
                r.n = B - half;
                r.child[..B - half].copy_from_slice(&l.child[half..]);
                r.lo[..B - half].copy_from_slice(&l.lo[half..]);
                r.max[..B - half].copy_from_slice(&l.max[half..]);
                r.count[..B - half].copy_from_slice(&l.count[half..]);
                l.n = half;
                if i < half {
                    l.insert_at(i + 1, right, rs);
                } else {
                    r.insert_at(i + 1 - half, right, rs);
                }
                Change::Split(l.summary(), sibling, r.summary())
            }
            Change::Emptied => unreachable!("an insertion empties nothing"),
        }
    }

    /// Removes the hole at `addr`; returns it.
    pub(crate) fn remove(&mut self, addr: u64) -> Option<Entry> {
        let mut removed = None;
        if let Change::Emptied = self.remove_in(self.root, self.height, addr, &mut removed) {
            // The emptied root freed itself: start again from an empty leaf.
            self.root = self.new_leaf();
            self.height = 0;
        }
        self.shrink_root();
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    /// A root with a single child gives way to that child.
    fn shrink_root(&mut self) {
        while self.height > 0 && self.inners[self.root as usize].n == 1 {
            let old = self.root;
            self.root = self.inners[old as usize].child[0];
            self.free_inners.push(old);
            self.height -= 1;
        }
    }

    fn remove_in(
        &mut self,
        node: u32,
        height: u32,
        addr: u64,
        removed: &mut Option<Entry>,
    ) -> Change {
        if height == 0 {
            let leaf = &mut self.leaves[node as usize];
            let i = leaf.lower_bound(addr);
            if i < leaf.n && leaf.addr[i] == addr {
                *removed = Some(Entry {
                    addr,
                    size: leaf.size[i],
                    birth: leaf.birth[i],
                });
                leaf.remove_at(i);
            }
            if leaf.n == 0 {
                self.free_leaves.push(node);
                return Change::Emptied;
            }
            return Change::Updated(leaf.summary());
        }
        let i = self.inners[node as usize].route(addr);
        let child = self.inners[node as usize].child[i];
        let change = self.remove_in(child, height - 1, addr, removed);
        let inner = &mut self.inners[node as usize];
        match change {
            Change::Updated(s) => inner.set(i, s),
            Change::Emptied => inner.remove_at(i),
            Change::Split(..) => unreachable!("a removal splits nothing"),
        }
        if inner.n == 0 {
            self.free_inners.push(node);
            return Change::Emptied;
        }
        Change::Updated(inner.summary())
    }

    /// Replaces the hole at `addr` by `e`, which must sort in the same place
    /// (no other hole between `addr` and `e.addr`).
    pub(crate) fn update(&mut self, addr: u64, e: Entry) {
        self.update_in(self.root, self.height, addr, e);
    }

    fn update_in(&mut self, node: u32, height: u32, addr: u64, e: Entry) -> Summary {
        if height == 0 {
            let leaf = &mut self.leaves[node as usize];
            let i = leaf.lower_bound(addr);
            debug_assert!(i < leaf.n && leaf.addr[i] == addr, "updated hole exists");
            leaf.addr[i] = e.addr;
            leaf.size[i] = e.size;
            leaf.birth[i] = e.birth;
            return leaf.summary();
        }
        let i = self.inners[node as usize].route(addr);
        let child = self.inners[node as usize].child[i];
        let s = self.update_in(child, height - 1, addr, e);
        let inner = &mut self.inners[node as usize];
        inner.set(i, s);
        inner.summary()
    }

    /// Every hole in address order.
    pub(crate) fn entries(&self) -> Vec<Entry> {
        let mut out = Vec::with_capacity(self.len as usize);
        self.collect(self.root, self.height, &mut out);
        out
    }

    fn collect(&self, node: u32, height: u32, out: &mut Vec<Entry>) {
        if height == 0 {
            let leaf = &self.leaves[node as usize];
            out.extend((0..leaf.n).map(|i| Entry {
                addr: leaf.addr[i],
                size: leaf.size[i],
                birth: leaf.birth[i],
            }));
            return;
        }
        let inner = &self.inners[node as usize];
        for i in 0..inner.n {
            self.collect(inner.child[i], height - 1, out);
        }
    }
}

/// Two distinct elements of a slice, mutably.
fn two<T>(v: &mut [T], a: usize, b: usize) -> (&mut T, &mut T) {
    debug_assert_ne!(a, b);
    if a < b {
        let (x, y) = v.split_at_mut(b);
        (&mut x[a], &mut y[0])
    } else {
        let (x, y) = v.split_at_mut(a);
        (&mut y[0], &mut x[b])
    }
}

#[cfg(test)]
mod tests {
    use super::{Entry, HoleTree};

    fn e(addr: u64, size: u64) -> Entry {
        Entry {
            addr,
            size,
            birth: addr ^ size,
        }
    }

    /// Random inserts, removals and in-place updates against a sorted
    /// vector, with every query checked after each step; large enough for
    /// three levels and for nodes to empty and go.
    #[test]
    fn agrees_with_a_sorted_vector() {
        let mut t = HoleTree::new();
        let mut v: Vec<Entry> = Vec::new();
        let mut x = 12345u64;
        let mut rand = move || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            x >> 33
        };
        for step in 0..60_000u64 {
            // Grow to about 3000 holes, shrink to a few, grow again.
            let phase = (step / 15_000) % 2 == 0;
            let key = rand() % 8000 * 2;
            let size = rand() % 400;
            let pos = v.partition_point(|h| h.addr < key);
            let present = pos < v.len() && v[pos].addr == key;
            match (present, rand() % 4) {
                (true, 0) => {
                    // Move within the gap to the neighbours, resize.
                    let lo = if pos > 0 { v[pos - 1].addr + 1 } else { 0 };
                    let hi = v.get(pos + 1).map_or(key + 10, |h| h.addr - 1);
                    let to = lo + rand() % (hi - lo + 1);
                    let new = e(to, size);
                    t.update(key, new);
                    v[pos] = new;
                }
                (true, _) if !phase || rand() % 3 == 0 => {
                    assert_eq!(t.remove(key), Some(v.remove(pos)));
                }
                (true, _) => {}
                (false, _) if phase || rand() % 3 == 0 => {
                    t.insert(e(key, size));
                    v.insert(pos, e(key, size));
                }
                (false, _) => assert_eq!(t.remove(key), None),
            }
            let q = rand() % 16_100;
            let need = rand() % 420;
            let want = v
                .iter()
                .enumerate()
                .find(|(_, h)| h.addr >= q && h.size >= need)
                .map(|(i, h)| (*h, i as u64));
            assert_eq!(t.first_fit(q, need), want, "step {step}");
            assert_eq!(t.rank(q), v.partition_point(|h| h.addr < q) as u64);
            assert_eq!(
                t.below(q),
                v.iter().rev().find(|h| h.addr < q).copied(),
                "step {step}"
            );
            assert_eq!(t.get(q), v.iter().find(|h| h.addr == q).copied());
            assert_eq!(t.len(), v.len() as u64);
            assert_eq!(t.max(), v.iter().map(|h| h.size).max().unwrap_or(0));
            if step % 1000 == 0 {
                assert_eq!(t.entries(), v);
            }
        }
    }
}
