//! A map from request ids to per-block state: a vector for small ids (the
//! replay hands the models dense slot numbers), a hash map for the rest.

use rustc_hash::FxHashMap;

/// Ids below this live in the vector.
const DENSE: u64 = 1 << 20;

/// Per-id values.
pub(crate) struct IdMap<V: Copy> {
    dense: Vec<Option<V>>,
    sparse: FxHashMap<u64, V>,
}

impl<V: Copy> IdMap<V> {
    pub(crate) fn new() -> Self {
        IdMap {
            dense: Vec::new(),
            sparse: FxHashMap::default(),
        }
    }

    /// Sets `id`'s value; returns the old one.
    pub(crate) fn insert(&mut self, id: u64, v: V) -> Option<V> {
        if id < DENSE {
            let i = id as usize;
            if i >= self.dense.len() {
                self.dense.resize(i + 1, None);
            }
            self.dense[i].replace(v)
        } else {
            self.sparse.insert(id, v)
        }
    }

    /// Takes `id`'s value out.
    pub(crate) fn remove(&mut self, id: u64) -> Option<V> {
        if id < DENSE {
            self.dense.get_mut(id as usize).and_then(Option::take)
        } else {
            self.sparse.remove(&id)
        }
    }
}
