//! Hashes. A small one lives in one buffer, field/value pairs in insertion
//! order, as Redis keeps it in a listpack; past `hash-max-listpack-entries`
//! pairs or a field or value longer than `hash-max-listpack-value` bytes it
//! becomes a hash map, and stays so (as in Redis).
//!
//! Why: most hashes are small (an object's attributes, a session), and a map
//! costs two boxed slices, a hash and an index slot per pair (~90 bytes
//! beside the data). The buffer costs two bytes per pair, and a lookup is one
//! linear scan of contiguous memory (decision 0017).

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use indexmap::IndexMap;

use super::value::{Bytes, Hasher};

/// `hash-max-listpack-entries`: the most pairs a packed hash holds.
pub static MAX_PACKED_ENTRIES: AtomicUsize = AtomicUsize::new(512);
/// `hash-max-listpack-value`: the longest field or value a packed hash holds.
pub static MAX_PACKED_VALUE: AtomicUsize = AtomicUsize::new(64);

/// The longest field or value a packed hash takes (its length is one byte).
fn max_packed_value() -> usize {
    MAX_PACKED_VALUE.load(Relaxed).min(u8::MAX as usize)
}

/// A hash: packed while small, a map once big.
#[derive(Debug, Clone)]
pub struct Hash(Repr);

#[derive(Debug, Clone)]
enum Repr {
    /// `[field len u8][field][value len u8][value]` per pair, `n` pairs.
    Packed { buf: Vec<u8>, n: u32 },
    /// Boxed, so a packed hash is 32 bytes, not the map's ~80.
    Big(Box<IndexMap<Bytes, Bytes, Hasher>>),
}

impl Default for Hash {
    fn default() -> Hash {
        Hash(Repr::Packed {
            buf: Vec::new(),
            n: 0,
        })
    }
}

/// The pair starting at `off`: field, value and the offset past it.
#[inline]
fn pair_at(buf: &[u8], off: usize) -> (&[u8], &[u8], usize) {
    let fl = buf[off] as usize;
    let f = &buf[off + 1..off + 1 + fl];
    let vo = off + 1 + fl;
    let vl = buf[vo] as usize;
    (f, &buf[vo + 1..vo + 1 + vl], vo + 1 + vl)
}

/// The offset of `field`'s pair and of its value's length byte.
#[inline]
fn locate(buf: &[u8], field: &[u8]) -> Option<(usize, usize)> {
    let (n, last) = (field.len(), field.last().copied());
    let mut off = 0;
    while off < buf.len() {
        let fl = buf[off] as usize;
        let vo = off + 1 + fl;
        // fields often share a prefix and a length (`user:1042`): the last
        // byte rules most out at once
        if fl == n && (n == 0 || Some(buf[vo - 1]) == last) && &buf[off + 1..vo] == field {
            return Some((off, vo));
        }
        off = vo + 1 + buf[vo] as usize;
    }
    None
}

impl Hash {
    /// The form Redis gives a hash it builds whole (a loaded value): packed
    /// only if `len` pairs, the longest field or value `longest` bytes, fit.
    pub fn sized(len: usize, longest: usize) -> Hash {
        if len <= MAX_PACKED_ENTRIES.load(Relaxed) && longest <= max_packed_value() {
            return Hash::default();
        }
        Hash(Repr::Big(Box::new(IndexMap::with_capacity_and_hasher(
            len,
            Hasher::default(),
        ))))
    }

    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Packed { n, .. } => *n as usize,
            Repr::Big(m) => m.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether it is in the packed form (`OBJECT ENCODING` says listpack).
    pub fn is_packed(&self) -> bool {
        matches!(self.0, Repr::Packed { .. })
    }

    pub fn get(&self, field: &[u8]) -> Option<&[u8]> {
        match &self.0 {
            Repr::Packed { buf, .. } => {
                let (_, vo) = locate(buf, field)?;
                let vl = buf[vo] as usize;
                Some(&buf[vo + 1..vo + 1 + vl])
            }
            Repr::Big(m) => m.get(field).map(|v| &v[..]),
        }
    }

    pub fn contains(&self, field: &[u8]) -> bool {
        self.get(field).is_some()
    }

    /// Sets `field` to `value`; true if the field is new. An existing field
    /// keeps its place, as in Redis's listpack.
    pub fn set(&mut self, field: &[u8], value: &[u8]) -> bool {
        if let Repr::Packed { buf, n } = &mut self.0 {
            let max = max_packed_value();
            if value.len() <= max {
                if let Some((_, vo)) = locate(buf, field) {
                    let vl = buf[vo] as usize;
                    if vl == value.len() {
                        buf[vo + 1..vo + 1 + vl].copy_from_slice(value);
                    } else {
                        buf[vo] = value.len() as u8;
                        buf.splice(vo + 1..vo + 1 + vl, value.iter().copied());
                    }
                    return false;
                }
                if field.len() <= max && (*n as usize) < MAX_PACKED_ENTRIES.load(Relaxed) {
                    let need = 2 + field.len() + value.len();
                    if buf.capacity() - buf.len() < need {
                        // grow by an eighth, not double: most hashes stay small
                        buf.reserve_exact(need.max(buf.len() / 8));
                    }
                    buf.push(field.len() as u8);
                    buf.extend_from_slice(field);
                    buf.push(value.len() as u8);
                    buf.extend_from_slice(value);
                    *n += 1;
                    return true;
                }
            }
            self.unpack();
        }
        let Repr::Big(m) = &mut self.0 else {
            unreachable!("unpacked above")
        };
        match m.get_mut(field) {
            Some(v) if v.len() == value.len() => {
                v.copy_from_slice(value);
                false
            }
            Some(v) => {
                *v = value.into();
                false
            }
            None => {
                m.insert(field.into(), value.into());
                true
            }
        }
    }

    /// Removes `field`; true if it was there. The packed form keeps the
    /// others' order, as Redis's listpack does.
    pub fn remove(&mut self, field: &[u8]) -> bool {
        match &mut self.0 {
            Repr::Packed { buf, n } => {
                let Some((off, vo)) = locate(buf, field) else {
                    return false;
                };
                let end = vo + 1 + buf[vo] as usize;
                buf.drain(off..end);
                *n -= 1;
                true
            }
            Repr::Big(m) => m.swap_remove(field).is_some(),
        }
    }

    /// The pairs: insertion order while packed, the map's order once big.
    pub fn iter(&self) -> Iter<'_> {
        match &self.0 {
            Repr::Packed { buf, .. } => Iter::Packed { buf, off: 0 },
            Repr::Big(m) => Iter::Big(m.iter()),
        }
    }

    /// The `i`th pair in `iter`'s order (a walk while packed).
    pub fn get_index(&self, i: usize) -> Option<(&[u8], &[u8])> {
        match &self.0 {
            Repr::Packed { .. } => self.iter().nth(i),
            Repr::Big(m) => m.get_index(i).map(|(f, v)| (&f[..], &v[..])),
        }
    }

    /// Bytes held beside the struct itself (`MEMORY USAGE`).
    pub fn heap_bytes(&self) -> usize {
        match &self.0 {
            Repr::Packed { buf, .. } => buf.capacity(),
            Repr::Big(m) => {
                size_of::<IndexMap<Bytes, Bytes, Hasher>>()
                    + m.capacity() * 48
                    + m.iter().map(|(f, v)| f.len() + v.len()).sum::<usize>()
            }
        }
    }

    fn unpack(&mut self) {
        let mut m = IndexMap::with_capacity_and_hasher(self.len() + 1, Hasher::default());
        for (f, v) in self.iter() {
            m.insert(f.into(), v.into());
        }
        self.0 = Repr::Big(Box::new(m));
    }
}

pub enum Iter<'a> {
    Packed { buf: &'a [u8], off: usize },
    Big(indexmap::map::Iter<'a, Bytes, Bytes>),
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Packed { buf, off } => {
                if *off >= buf.len() {
                    return None;
                }
                let (f, v, next) = pair_at(buf, *off);
                *off = next;
                Some((f, v))
            }
            Iter::Big(it) => it.next().map(|(f, v)| (&f[..], &v[..])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same operations on a hash and on a model that keeps insertion
    /// order and removes in place.
    fn check(h: &Hash, model: &[(Vec<u8>, Vec<u8>)]) {
        assert_eq!(h.len(), model.len());
        for (f, v) in model {
            assert_eq!(h.get(f), Some(&v[..]));
        }
        if h.is_packed() {
            let got: Vec<_> = h.iter().map(|(f, v)| (f.to_vec(), v.to_vec())).collect();
            assert_eq!(got, model);
            for (i, p) in model.iter().enumerate() {
                let (f, v) = h.get_index(i).unwrap();
                assert_eq!((f, v), (&p.0[..], &p.1[..]));
            }
        } else {
            let mut got: Vec<_> = h.iter().map(|(f, v)| (f.to_vec(), v.to_vec())).collect();
            let mut want = model.to_vec();
            got.sort();
            want.sort();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn packed_keeps_insertion_order_through_updates_and_removes() {
        let mut h = Hash::default();
        let mut model: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..3000 {
            let f = format!("f{}", rng.usize(..40)).into_bytes();
            if rng.u8(..4) == 0 {
                let had = model.iter().position(|p| p.0 == f);
                assert_eq!(h.remove(&f), had.is_some());
                if let Some(i) = had {
                    model.remove(i);
                }
            } else {
                let v = vec![b'v'; rng.usize(..20)];
                let new = h.set(&f, &v);
                match model.iter_mut().find(|p| p.0 == f) {
                    Some(p) => {
                        assert!(!new);
                        p.1 = v;
                    }
                    None => {
                        assert!(new);
                        model.push((f, v));
                    }
                }
            }
            assert!(h.is_packed());
            check(&h, &model);
        }
        assert!(!h.contains(b"nosuch"));
        assert_eq!(h.get(b"nosuch"), None);
    }

    #[test]
    fn a_packed_hash_is_small() {
        assert!(size_of::<Hash>() <= 32, "{}", size_of::<Hash>());
    }

    #[test]
    fn converts_past_either_limit_and_stays_converted() {
        let mut h = Hash::default();
        let mut model = Vec::new();
        for i in 0..512 {
            let f = format!("f{i}").into_bytes();
            h.set(&f, b"v");
            model.push((f, b"v".to_vec()));
        }
        assert!(h.is_packed());
        h.set(b"f512", b"v");
        model.push((b"f512".to_vec(), b"v".to_vec()));
        assert!(!h.is_packed());
        check(&h, &model);
        for (f, _) in model.drain(1..) {
            assert!(h.remove(&f));
        }
        assert!(!h.is_packed(), "never packed again");
        check(&h, &model);

        let mut v = Hash::default();
        v.set(b"a", &[b'x'; 64]);
        assert!(v.is_packed());
        // a longer value, as a new field or as an update, converts
        v.set(b"a", &[b'y'; 65]);
        assert!(!v.is_packed());
        assert_eq!(v.get(b"a"), Some(&[b'y'; 65][..]));
        let mut f = Hash::default();
        f.set(&[b'k'; 65], b"1");
        assert!(!f.is_packed());
        assert!(Hash::sized(512, 64).is_packed());
        assert!(!Hash::sized(513, 1).is_packed());
        assert!(!Hash::sized(3, 65).is_packed());
    }
}
