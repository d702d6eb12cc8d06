//! A slot's table: records in a dense vector, found through a hash index of
//! `u32` positions.
//!
//! This is `IndexMap`'s design without its per-entry cached hash and with
//! 4-byte indexes: 16 bytes a key in the vector plus about 5 bytes a bucket in
//! the index. Dense positions are what give O(1) random sampling (eviction,
//! active expiry, RANDOMKEY) and SCAN cursors that survive deletes.

use hashbrown::HashTable;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::entry::Entry;
use super::value::Hasher;
use kvfleet_rdb::Encoder;

#[derive(Debug, Default)]
pub struct Table {
    index: HashTable<u32>,
    entries: Vec<Entry>,
    hasher: Hasher,
    snap: Snap,
}

/// Positions a snapshot saves as one unit: the most a writer serialises
/// before its first change to a part of a table the snapshot has not reached
/// (≈128 small records, a few µs).
pub const SEGMENT: usize = 128;

/// Bumped (with every slot locked) when a snapshot starts. One keyspace per process.
static EPOCH: AtomicU64 = AtomicU64::new(0);

/// The snapshot that started last.
pub fn snapshot_epoch() -> u64 {
    EPOCH.load(Relaxed)
}

/// Starts a snapshot; the caller holds every slot's lock.
pub fn bump_snapshot_epoch() -> u64 {
    EPOCH.fetch_add(1, Relaxed) + 1
}

/// A table's part in the snapshot in progress (docs/decisions/0005). The
/// snapshot sees every table as it was at the epoch bump: before the first
/// change to a segment it has not visited, the writer saves that segment's
/// records (`pre`), and the snapshot serialises untouched segments itself.
/// Entries only move by swap-remove (both positions are saved first) and
/// appends (past the snapshot's length), so an unsaved segment still holds
/// exactly what it held at the bump.
#[derive(Debug)]
struct Snap {
    /// The snapshot this state belongs to.
    epoch: u64,
    /// The snapshot is past this table (or none is running).
    visited: bool,
    /// Records at the bump.
    len: usize,
    /// Segments already serialised (into `pre`, or by the snapshot itself).
    saved: Vec<u64>,
    /// Pre-images saved by writers, waiting for the snapshot to take them.
    pre: Encoder,
}

impl Default for Snap {
    fn default() -> Snap {
        Snap {
            epoch: 0,
            visited: true,
            len: 0,
            saved: Vec::new(),
            pre: Encoder::new(),
        }
    }
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

    /// Before changing position `i` (or the table's length at `i`): saves its
    /// segment for a snapshot that has not reached it. One load and compare
    /// when no snapshot runs.
    #[inline]
    fn cow(&mut self, i: usize) {
        if !self.snapshot_idle() {
            self.cow_slow(i);
        }
    }

    #[inline]
    fn snapshot_idle(&self) -> bool {
        self.snap.visited && self.snap.epoch == EPOCH.load(Relaxed)
    }

    #[cold]
    fn cow_slow(&mut self, i: usize) {
        self.snap_begin();
        if !self.snap.visited && i < self.snap.len {
            let seg = i / SEGMENT;
            if !self.is_saved(seg) {
                let mut pre = std::mem::take(&mut self.snap.pre);
                self.save_segment(seg, &mut pre);
                self.snap.pre = pre;
            }
        }
    }

    /// Joins the latest snapshot if this table has not yet: its length now
    /// is its length at the bump (every change since would have joined).
    fn snap_begin(&mut self) {
        let e = EPOCH.load(Relaxed);
        if self.snap.epoch != e {
            self.snap.epoch = e;
            self.snap.visited = false;
            self.snap.len = self.entries.len();
            self.snap.saved.clear();
            self.snap
                .saved
                .resize(self.snap.len.div_ceil(SEGMENT).div_ceil(64), 0);
            self.snap.pre.buf.clear();
        }
    }

    fn is_saved(&self, seg: usize) -> bool {
        self.snap.saved[seg / 64] & (1 << (seg % 64)) != 0
    }

    fn save_segment(&mut self, seg: usize, out: &mut Encoder) {
        self.snap.saved[seg / 64] |= 1 << (seg % 64);
        let end = ((seg + 1) * SEGMENT).min(self.snap.len);
        for e in &self.entries[seg * SEGMENT..end] {
            crate::persist::codec::encode_record(out, e);
        }
    }

    /// The snapshot's visit to segment `seg`: appends the writers' saved
    /// pre-images and, unless saved already, the segment itself to `out`.
    /// Returns whether segments remain.
    pub fn snapshot_step(&mut self, seg: usize, out: &mut Encoder) -> bool {
        self.snap_begin();
        if self.snap.visited {
            return false;
        }
        out.buf.append(&mut self.snap.pre.buf);
        let segs = self.snap.len.div_ceil(SEGMENT);
        if seg < segs && !self.is_saved(seg) {
            self.save_segment(seg, out);
        }
        if seg + 1 >= segs {
            self.snapshot_done();
            return false;
        }
        true
    }

    /// The snapshot is past this table (finished, or abandoned): stop saving.
    pub fn snapshot_done(&mut self) {
        self.snap_begin();
        self.snap.visited = true;
        self.snap.saved = Vec::new();
        self.snap.pre = Encoder::new();
    }

    /// Bytes of pre-images waiting (what a snapshot costs in memory).
    pub fn snapshot_pending_bytes(&self) -> usize {
        self.snap.pre.buf.len()
    }

    /// The record at `i` for a read-only command: its access stamp may change,
    /// which no snapshot records, so no copy-on-write (reads during a save
    /// neither serialise nor hold memory). Callers must not change the value.
    #[inline]
    pub fn for_read(&mut self, i: usize) -> &mut Entry {
        &mut self.entries[i]
    }

    /// Drops every record (saving them first for a running snapshot).
    pub fn clear(&mut self) {
        let mut i = 0;
        while i < self.entries.len() {
            self.cow(i);
            i += SEGMENT;
        }
        self.entries = Vec::new();
        self.index = HashTable::new();
    }

    /// Adds `e`, or replaces the record with its key; returns the replaced one.
    pub fn insert(&mut self, e: Entry) -> Option<Entry> {
        self.insert_at(e).1
    }

    /// `insert`, also telling the record's position.
    pub fn insert_at(&mut self, e: Entry) -> (usize, Option<Entry>) {
        if !self.snapshot_idle() {
            let pos = self.get_index_of(e.key()).unwrap_or(self.entries.len());
            self.cow_slow(pos);
        }
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
                let pos = *o.get() as usize;
                (pos, Some(std::mem::replace(&mut self.entries[pos], e)))
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
                (pos as usize, None)
            }
        }
    }

    /// Removes the record at `i`; the last record takes its place.
    pub fn swap_remove_index(&mut self, i: usize) -> Option<Entry> {
        let last = self.entries.len().checked_sub(1)?;
        if i > last {
            return None;
        }
        self.cow(i);
        self.cow(last);
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
        self.cow(i);
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

    /// What a snapshot of `t` taken now and visited with `during` run
    /// between its steps contains, as `key -> value`.
    fn snapshot_of(
        t: &mut Table,
        mut during: impl FnMut(&mut Table, usize),
    ) -> std::collections::BTreeMap<Vec<u8>, Vec<u8>> {
        bump_snapshot_epoch();
        let mut enc = Encoder::new();
        enc.header();
        let mut seg = 0;
        loop {
            during(t, seg);
            if !t.snapshot_step(seg, &mut enc) {
                break;
            }
            seg += 1;
        }
        let mut w = kvfleet_rdb::write::FileWriter::new(Vec::new());
        w.write(&enc.buf).unwrap();
        let file = w.finish().unwrap();
        let mut l = kvfleet_rdb::Loader::new(&file[..]).unwrap();
        let mut out = std::collections::BTreeMap::new();
        while let Some(item) = l.next_item().unwrap() {
            if let kvfleet_rdb::Item::Record(r) = item {
                let kvfleet_rdb::Value::Str(v) = r.value else {
                    panic!("strings only")
                };
                assert!(out.insert(r.key, v).is_none(), "a key saved twice");
            }
        }
        out
    }

    #[test]
    fn a_snapshot_sees_the_table_as_at_its_start_whatever_writers_do_meanwhile() {
        let key = |i: usize| format!("k:{i}").into_bytes();
        let mut t = Table::default();
        let n = 10 * SEGMENT + 17;
        for i in 0..n {
            t.insert(Entry::string(&key(i), b"old", 0));
        }
        let want: std::collections::BTreeMap<_, _> =
            (0..n).map(|i| (key(i), b"old".to_vec())).collect();
        // between every step: overwrite, delete (swap-removes move records
        // across segments), insert new keys, and change values in place
        let mut round = 0;
        let got = snapshot_of(&mut t, |t, seg| {
            round += 1;
            let victim = (seg * 7919 + round) % t.len();
            t.swap_remove_index(victim);
            let i = (seg * 31 + 5) % n;
            t.insert(Entry::string(&key(i), b"new", 0));
            t.insert(Entry::string(
                format!("fresh:{round}").as_bytes(),
                b"new",
                0,
            ));
            let j = (seg * 131 + 3) % t.len();
            t[j].set_str(b"new");
        });
        assert_eq!(got, want);
        // no snapshot running: writes save nothing
        t.insert(Entry::string(b"after", b"x", 0));
        assert_eq!(t.snapshot_pending_bytes(), 0);
        // a cleared table still hands the snapshot its old records
        let before: std::collections::BTreeMap<_, _> = t
            .iter()
            .map(|e| (e.key().to_vec(), e.str().unwrap().to_vec()))
            .collect();
        let got = snapshot_of(&mut t, |t, seg| {
            if seg == 0 {
                t.clear();
            }
        });
        assert_eq!(got, before);
        assert!(t.is_empty());
    }
}
