//! A slot's table: records in a dense vector, found through a hash index of
//! `u32` positions.
//!
//! This is `IndexMap`'s design without its per-entry cached hash and with
//! 4-byte indexes: 16 bytes a key in the vector plus about 5 bytes a bucket in
//! the index. Dense positions are what give O(1) random sampling (eviction,
//! active expiry, RANDOMKEY) and SCAN cursors that survive deletes.

use hashbrown::HashTable;
use std::hash::BuildHasher;

use super::entry::Entry;
use super::value::Hasher;

#[derive(Debug, Default)]
pub struct Table {
    index: HashTable<u32>,
    entries: Vec<Entry>,
    hasher: Hasher,
}

impl Table {
    #[inline]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    #[inline]
    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    #[inline]
    pub fn get_index_of(&self, key: &[u8]) -> Option<usize> {
        let entries = &self.entries;
        self.index
            .find(self.hash(key), |&i| entries[i as usize].key() == key)
            .map(|&i| i as usize)
    }

    pub fn get(&self, key: &[u8]) -> Option<&Entry> {
        self.get_index_of(key).map(|i| &self.entries[i])
    }

    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.get_index_of(key).is_some()
    }

    pub fn get_index(&self, i: usize) -> Option<&Entry> {
        self.entries.get(i)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Entry> {
        self.entries.iter()
    }

    /// Adds `e`, or replaces the record with its key; returns the replaced one.
    pub fn insert(&mut self, e: Entry) -> Option<Entry> {
        // one hash and one probe whether the key is new or replaced
        let h = self.hash(e.key());
        let (entries, hasher) = (&self.entries, &self.hasher);
        let slot = self.index.entry(
            h,
            |&i| entries[i as usize].key() == e.key(),
            |&i| hasher.hash_one(entries[i as usize].key()),
        );
        match slot {
            hashbrown::hash_table::Entry::Occupied(o) => {
                Some(std::mem::replace(&mut self.entries[*o.get() as usize], e))
            }
            hashbrown::hash_table::Entry::Vacant(v) => {
                // Growing by a quarter, not doubling, keeps the vector's
                // slack near 12% for a few more amortised copies.
                if self.entries.len() == self.entries.capacity() {
                    self.entries.reserve_exact((self.entries.len() / 4).max(8));
                }
                let pos = u32::try_from(self.entries.len()).expect("under 2^32 keys a slot");
                self.entries.push(e);
                v.insert(pos);
                None
            }
        }
    }

    /// Removes the record at `i`; the last record takes its place.
    pub fn swap_remove_index(&mut self, i: usize) -> Option<Entry> {
        let last = self.entries.len().checked_sub(1)?;
        if i > last {
            return None;
        }
        let h = self.hash(self.entries[i].key());
        self.index
            .find_entry(h, |&j| j as usize == i)
            .expect("indexed")
            .remove();
        if i != last {
            let h = self.hash(self.entries[last].key());
            *self
                .index
                .find_mut(h, |&j| j as usize == last)
                .expect("indexed") = i as u32;
        }
        Some(self.entries.swap_remove(i))
    }
}

impl std::ops::Index<usize> for Table {
    type Output = Entry;
    #[inline]
    fn index(&self, i: usize) -> &Entry {
        &self.entries[i]
    }
}

impl std::ops::IndexMut<usize> for Table {
    #[inline]
    fn index_mut(&mut self, i: usize) -> &mut Entry {
        &mut self.entries[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_find_replace_and_swap_remove_keep_the_index_true() {
        let mut t = Table::default();
        let key = |i: usize| format!("key:{i}").into_bytes();
        for i in 0..1000 {
            assert!(t.insert(Entry::string(&key(i), b"v", 0)).is_none());
        }
        assert!(t.insert(Entry::string(&key(7), b"new", 0)).is_some());
        assert_eq!(t.len(), 1000);
        assert_eq!(t.get(&key(7)).and_then(|e| e.str()), Some(&b"new"[..]));
        // remove every third key, from the front, so the last record moves each time
        for i in (0..1000).step_by(3) {
            let at = t.get_index_of(&key(i)).unwrap();
            assert_eq!(t.swap_remove_index(at).unwrap().key(), &key(i)[..]);
        }
        for i in 0..1000 {
            assert_eq!(t.contains_key(&key(i)), i % 3 != 0, "key {i}");
            if let Some(at) = t.get_index_of(&key(i)) {
                assert_eq!(t[at].key(), &key(i)[..]);
            }
        }
        assert!(t.swap_remove_index(t.len()).is_none());
    }
}
