//! Sets. A set of integers only, up to `set-max-intset-entries` of them, is a
//! sorted array of 2-, 4- or 8-byte integers, as Redis 7.0's intset; a
//! member that is not an integer, or one member too many, makes it a hash
//! table, for good (as in Redis).
//!
//! Why: sets of ids are common, and a table costs a boxed slice, a hash and
//! an index slot per member (~60 bytes beside the digits); the array costs
//! the integer's width. It also gives Redis's reply order: an intset replies
//! in numeric order, a table in its own order (decision 0018).

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use indexmap::IndexSet;

use super::value::{Bytes, Hasher};
use crate::util::parse_i64;

/// `set-max-intset-entries`: the most members an integer array holds.
pub static MAX_INTSET_ENTRIES: AtomicUsize = AtomicUsize::new(512);

/// A set: an integer array while small and all integers, a table otherwise.
#[derive(Debug, Clone)]
pub struct Set(Repr);

#[derive(Debug, Clone)]
enum Repr {
    /// `len / width` integers, little-endian, ascending.
    Ints {
        buf: Vec<u8>,
        width: u8,
    },
    Big(Box<IndexSet<Bytes, Hasher>>),
}

impl Default for Set {
    fn default() -> Set {
        Set(Repr::Ints {
            buf: Vec::new(),
            width: 2,
        })
    }
}

/// The narrowest of Redis's intset widths that holds `n`.
fn width_of(n: i64) -> u8 {
    if i16::try_from(n).is_ok() {
        2
    } else if i32::try_from(n).is_ok() {
        4
    } else {
        8
    }
}

#[inline]
fn read(buf: &[u8], width: u8, i: usize) -> i64 {
    let w = width as usize;
    let b = &buf[i * w..i * w + w];
    match width {
        2 => i16::from_le_bytes([b[0], b[1]]) as i64,
        4 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64,
        _ => i64::from_le_bytes(b.try_into().expect("8 bytes")),
    }
}

fn write(out: &mut [u8], width: u8, n: i64) {
    match width {
        2 => out.copy_from_slice(&(n as i16).to_le_bytes()),
        4 => out.copy_from_slice(&(n as i32).to_le_bytes()),
        _ => out.copy_from_slice(&n.to_le_bytes()),
    }
}

/// Where `n` is, or where it would go.
fn search(buf: &[u8], width: u8, n: i64) -> Result<usize, usize> {
    let (mut lo, mut hi) = (0, buf.len() / width as usize);
    while lo < hi {
        let mid = (lo + hi) / 2;
        match read(buf, width, mid).cmp(&n) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => return Ok(mid),
        }
    }
    Err(lo)
}

/// A member as bytes: borrowed from a table, or an integer's digits.
#[derive(Clone, Copy)]
pub enum Member<'a> {
    Int([u8; 20], u8),
    Ref(&'a [u8]),
}

impl Member<'_> {
    fn int(n: i64) -> Member<'static> {
        let mut b = itoa::Buffer::new();
        let s = b.format(n).as_bytes();
        let mut a = [0u8; 20];
        a[..s.len()].copy_from_slice(s);
        Member::Int(a, s.len() as u8)
    }
}

impl AsRef<[u8]> for Member<'_> {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl std::ops::Deref for Member<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Member::Int(a, n) => &a[..*n as usize],
            Member::Ref(s) => s,
        }
    }
}

impl Set {
    /// An empty set for `n` members to come (a file's set): a table from
    /// the start when they are too many for an intset.
    pub fn sized(n: usize) -> Set {
        if n > MAX_INTSET_ENTRIES.load(Relaxed) {
            Set(Repr::Big(Box::new(IndexSet::with_capacity_and_hasher(
                n,
                Hasher::default(),
            ))))
        } else {
            Set::default()
        }
    }

    /// Redis's intset bytes (`[width u32][count u32][integers]`, little-endian),
    /// the body of an RDB `SET_INTSET`; `None` for a table.
    pub fn intset_blob(&self) -> Option<Vec<u8>> {
        let Repr::Ints { buf, width } = &self.0 else {
            return None;
        };
        let mut b = Vec::with_capacity(8 + buf.len());
        b.extend_from_slice(&(*width as u32).to_le_bytes());
        b.extend_from_slice(&((buf.len() / *width as usize) as u32).to_le_bytes());
        b.extend_from_slice(buf);
        Some(b)
    }

    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Ints { buf, width } => buf.len() / *width as usize,
            Repr::Big(s) => s.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this is the integer array (`OBJECT ENCODING` intset).
    pub fn is_intset(&self) -> bool {
        matches!(self.0, Repr::Ints { .. })
    }

    pub fn contains(&self, m: &[u8]) -> bool {
        match &self.0 {
            Repr::Ints { buf, width } => parse_i64(m)
                .is_some_and(|n| width_of(n) <= *width && search(buf, *width, n).is_ok()),
            Repr::Big(s) => s.contains(m),
        }
    }

    /// Adds `m`; false if it was there.
    pub fn insert(&mut self, m: &[u8]) -> bool {
        if let Repr::Ints { buf, width } = &mut self.0 {
            if let Some(n) = parse_i64(m) {
                let w = width_of(n);
                if w <= *width {
                    let at = match search(buf, *width, n) {
                        Ok(_) => return false,
                        Err(at) => at,
                    };
                    if buf.len() / (*width as usize) < MAX_INTSET_ENTRIES.load(Relaxed) {
                        let ww = *width as usize;
                        // grown by exactly one member: the array's size is its cost
                        buf.reserve_exact(ww);
                        buf.splice(at * ww..at * ww, std::iter::repeat_n(0, ww));
                        write(&mut buf[at * ww..at * ww + ww], *width, n);
                        return true;
                    }
                } else if buf.len() / (*width as usize) < MAX_INTSET_ENTRIES.load(Relaxed) {
                    // a wider integer: every member takes the new width (it
                    // is the smallest or the largest, so it goes at an end)
                    let old = std::mem::take(buf);
                    let count = old.len() / *width as usize;
                    let mut nb = vec![0; (count + 1) * w as usize];
                    let shift = usize::from(n < 0);
                    for i in 0..count {
                        let v = read(&old, *width, i);
                        let o = (i + shift) * w as usize;
                        write(&mut nb[o..o + w as usize], w, v);
                    }
                    let o = if n < 0 { 0 } else { count * w as usize };
                    write(&mut nb[o..o + w as usize], w, n);
                    *buf = nb;
                    *width = w;
                    return true;
                }
            }
            self.make_table();
        }
        match &mut self.0 {
            Repr::Big(s) => s.insert(m.into()),
            Repr::Ints { .. } => unreachable!("converted above"),
        }
    }

    /// The hash table form, for good.
    fn make_table(&mut self) {
        if let Repr::Ints { buf, width } = &self.0 {
            let n = buf.len() / *width as usize;
            let mut s = IndexSet::with_capacity_and_hasher(n + 1, Hasher::default());
            for i in 0..n {
                s.insert(Bytes::from(&*Member::int(read(buf, *width, i))));
            }
            self.0 = Repr::Big(Box::new(s));
        }
    }

    /// Removes `m`; false if it was not there.
    pub fn remove(&mut self, m: &[u8]) -> bool {
        match &mut self.0 {
            Repr::Ints { buf, width } => {
                let Some(n) = parse_i64(m) else {
                    return false;
                };
                match search(buf, *width, n) {
                    Ok(i) if width_of(n) <= *width => {
                        let w = *width as usize;
                        buf.drain(i * w..i * w + w);
                        true
                    }
                    _ => false,
                }
            }
            Repr::Big(s) => s.swap_remove(m),
        }
    }

    /// The member at `i` (in iteration order).
    pub fn get_index(&self, i: usize) -> Member<'_> {
        match &self.0 {
            Repr::Ints { buf, width } => Member::int(read(buf, *width, i)),
            Repr::Big(s) => Member::Ref(&s[i]),
        }
    }

    /// Removes and returns the member at `i` (SPOP's random pick).
    pub fn remove_index(&mut self, i: usize) -> Bytes {
        match &mut self.0 {
            Repr::Ints { buf, width } => {
                let m = Bytes::from(&*Member::int(read(buf, *width, i)));
                let w = *width as usize;
                buf.drain(i * w..i * w + w);
                m
            }
            Repr::Big(s) => s.swap_remove_index(i).expect("index in range"),
        }
    }

    /// Members in Redis's order for this encoding: numeric for an intset.
    pub fn iter(&self) -> impl Iterator<Item = Member<'_>> + Clone + '_ {
        (0..self.len()).map(move |i| self.get_index(i))
    }

    /// Heap bytes besides the set's own struct (MEMORY USAGE).
    pub fn heap_bytes(&self) -> usize {
        match &self.0 {
            Repr::Ints { buf, .. } => buf.capacity(),
            Repr::Big(s) => 64 + s.iter().map(|e| e.len() + 32).sum::<usize>(),
        }
    }
}

/// Built as Redis builds set algebra results: an intset while it can be.
impl<'a> FromIterator<Member<'a>> for Set {
    fn from_iter<I: IntoIterator<Item = Member<'a>>>(it: I) -> Set {
        let mut s = Set::default();
        for m in it {
            s.insert(&m);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn members(s: &Set) -> Vec<Vec<u8>> {
        s.iter().map(|m| m.to_vec()).collect()
    }

    #[test]
    fn integers_stay_sorted_and_widen_at_either_end() {
        let mut s = Set::default();
        for m in ["5", "-3", "40000", "7", "-9000000000", "5"] {
            s.insert(m.as_bytes());
        }
        assert!(s.is_intset());
        assert_eq!(s.len(), 5);
        let want: Vec<&[u8]> = vec![b"-9000000000", b"-3", b"5", b"7", b"40000"];
        assert_eq!(members(&s), want);
        assert!(s.contains(b"40000") && !s.contains(b"40001") && !s.contains(b"05"));
        assert!(s.remove(b"-3") && !s.remove(b"-3"));
        assert_eq!(s.len(), 4);
        for m in [i64::MIN, i64::MAX] {
            s.insert(m.to_string().as_bytes());
        }
        assert_eq!(&*s.get_index(0), i64::MIN.to_string().as_bytes());
        assert_eq!(&*s.get_index(5), i64::MAX.to_string().as_bytes());
    }

    #[test]
    fn a_non_integer_or_one_too_many_makes_a_table_for_good() {
        let mut s = Set::default();
        s.insert(b"1");
        s.insert(b"x");
        assert!(!s.is_intset());
        s.remove(b"x");
        s.insert(b"2");
        assert!(!s.is_intset(), "a table stays a table");
        let mut s = Set::default();
        let max = MAX_INTSET_ENTRIES.load(Relaxed);
        for i in 0..max {
            s.insert(i.to_string().as_bytes());
        }
        assert!(s.is_intset());
        s.insert(b"-1");
        assert!(!s.is_intset());
        assert_eq!(s.len(), max + 1);
        assert!(s.contains(b"-1") && s.contains(b"0"));
    }

    #[test]
    fn random_operations_agree_with_a_model() {
        let mut rng = fastrand::Rng::with_seed(0x2545F4914F6CDD1D);
        let mut next = |n: u64| rng.u64(..n);
        let mut s = Set::default();
        let mut model = BTreeSet::new();
        for _ in 0..20000 {
            let v: i64 = match next(4) {
                0 => next(100) as i64 - 50,
                1 => next(200000) as i64 - 100000,
                2 => next(1 << 40) as i64 - (1 << 39),
                _ => next(10) as i64,
            };
            let m = v.to_string();
            if next(3) == 0 {
                assert_eq!(s.remove(m.as_bytes()), model.remove(&v));
            } else {
                assert_eq!(s.insert(m.as_bytes()), model.insert(v));
            }
            assert_eq!(s.len(), model.len());
        }
        assert!(s.len() <= MAX_INTSET_ENTRIES.load(Relaxed) || !s.is_intset());
        let mut got: Vec<i64> = s.iter().map(|m| parse_i64(&m).unwrap()).collect();
        if !s.is_intset() {
            got.sort_unstable();
        }
        assert_eq!(got, model.into_iter().collect::<Vec<_>>());
    }
}
