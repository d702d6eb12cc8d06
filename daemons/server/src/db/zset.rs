//! Sorted sets. A small one lives in one buffer, entries in (score,
//! member) order, as Redis keeps it in a listpack; past
//! `zset-max-listpack-entries` entries or a member longer than
//! `zset-max-listpack-value` bytes it becomes a member → score map plus a
//! (score, member) B-tree, and stays so (as in Redis).
//!
//! Why: most sorted sets are small (geo sets, per-user leaderboards), and
//! the two-structure form costs ~130 bytes and two allocations per member
//! plus a B-tree walk that chases a pointer per comparison. The buffer costs
//! the member plus 10 bytes, and a lookup is one linear scan of contiguous
//! memory (decision 0016).

use std::ops::Bound;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use wabi_tree::OSBTreeSet;
use wabi_tree::osbtree_set;

use indexmap::IndexMap;

use super::value::{Bytes, Hasher};

/// `zset-max-listpack-entries`: the most entries a packed set holds.
pub static MAX_PACKED_ENTRIES: AtomicUsize = AtomicUsize::new(128);
/// `zset-max-listpack-value`: the longest member a packed set holds.
pub static MAX_PACKED_VALUE: AtomicUsize = AtomicUsize::new(64);

/// The longest member a packed set takes (its length is one byte).
fn max_packed_member() -> usize {
    MAX_PACKED_VALUE.load(Relaxed).min(u8::MAX as usize)
}

/// A score with a total order (NaN never enters a sorted set).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score(pub f64);
impl Eq for Score {}
impl PartialOrd for Score {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Score {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        // -0.0 and 0.0 are the same score in Redis
        let (a, b) = (
            if self.0 == 0.0 { 0.0 } else { self.0 },
            if o.0 == 0.0 { 0.0 } else { o.0 },
        );
        a.total_cmp(&b)
    }
}

/// Entries of `b`'s order between two bounds (none when they cross).
fn count_between(b: &Big, lo: Bound<(Score, Bytes)>, hi: Bound<(Score, Bytes)>) -> usize {
    use Bound::{Excluded, Included};
    let crossed = match (&lo, &hi) {
        (Included(l), Included(h)) => l > h,
        (Included(l) | Excluded(l), Included(h) | Excluded(h)) => l >= h,
        _ => false,
    };
    if crossed {
        0
    } else {
        b.order.range((lo, hi)).len()
    }
}

/// Sorted set: packed while small, a map plus an ordered set once big. The
/// ordered set counts its subtrees, so a rank (ZRANK, ZRANGE by index) is
/// found in O(log n), as Redis's skiplist spans find it.
#[derive(Debug, Clone)]
pub struct ZSet(Repr);

#[derive(Debug, Clone)]
enum Repr {
    Packed(Packed),
    Big(Box<Big>),
}

#[derive(Debug, Clone, Default)]
struct Big {
    scores: IndexMap<Bytes, f64, Hasher>,
    /// Counted B-tree: ranks are O(log n) (ZRANK, ZRANGE by index).
    order: OSBTreeSet<(Score, Bytes)>,
}

impl Default for ZSet {
    fn default() -> ZSet {
        ZSet(Repr::Packed(Packed::default()))
    }
}

impl ZSet {
    /// The form Redis gives a set it builds whole (a stored result, a
    /// loaded value): packed only if `len` members, the longest `longest`
    /// bytes, fit. A big one keeps -0 scores, as Redis's skiplist does.
    pub fn sized(len: usize, longest: usize) -> ZSet {
        if len <= MAX_PACKED_ENTRIES.load(Relaxed) && longest <= max_packed_member() {
            return ZSet::default();
        }
        let mut b = Big::default();
        b.scores.reserve(len);
        ZSet(Repr::Big(Box::new(b)))
    }

    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Packed(p) => p.n as usize,
            Repr::Big(b) => b.scores.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether it is in the packed form (`OBJECT ENCODING` says listpack).
    pub fn is_packed(&self) -> bool {
        matches!(self.0, Repr::Packed(_))
    }

    /// Inserts or updates; returns the previous score.
    pub fn insert(&mut self, member: &[u8], score: f64) -> Option<f64> {
        if let Repr::Packed(p) = &mut self.0 {
            // Redis's listpack keeps -0 as 0; its skiplist keeps the sign
            let score = if score == 0.0 { 0.0 } else { score };
            let (found, at) = p.locate(member, score);
            if let Some((off, prev)) = found {
                p.set(off, at, member, score, prev);
                return Some(prev);
            }
            if (p.n as usize) < MAX_PACKED_ENTRIES.load(Relaxed)
                && member.len() <= max_packed_member()
            {
                p.put(at, member, score);
                return None;
            }
            self.unpack();
        }
        let Repr::Big(b) = &mut self.0 else {
            unreachable!("unpacked above")
        };
        b.insert(member, score)
    }

    pub fn remove(&mut self, member: &[u8]) -> Option<f64> {
        match &mut self.0 {
            Repr::Packed(p) => p.remove(member),
            Repr::Big(b) => {
                let s = b.scores.swap_remove(member)?;
                b.order.remove(&(Score(s), Bytes::from(member)));
                Some(s)
            }
        }
    }

    pub fn score(&self, member: &[u8]) -> Option<f64> {
        match &self.0 {
            Repr::Packed(p) => p.score(member),
            Repr::Big(b) => b.scores.get(member).copied(),
        }
    }

    /// 0-based rank in ascending order.
    pub fn rank(&self, member: &[u8]) -> Option<usize> {
        match &self.0 {
            Repr::Packed(p) => p.iter().position(|(m, _)| m == member),
            Repr::Big(b) => {
                let s = b.scores.get(member)?;
                let key = (Score(*s), Bytes::from(member));
                b.order.rank_of(&key)
            }
        }
    }

    /// In (score, member) order, both ways.
    pub fn iter(&self) -> Iter<'_> {
        match &self.0 {
            Repr::Packed(p) => Iter::Packed(p.iter()),
            Repr::Big(b) => Iter::Big(b.order.iter()),
        }
    }

    /// From the first member scored `min` or more, ascending.
    pub fn from_score(&self, min: f64) -> Iter<'_> {
        match &self.0 {
            Repr::Packed(p) => {
                let mut it = p.iter();
                it.skip_below(min);
                Iter::Packed(it)
            }
            Repr::Big(b) => {
                let lo = (Score(min), Bytes::default());
                Iter::BigRange(b.order.range((Bound::Included(lo), Bound::Unbounded)))
            }
        }
    }

    /// The members scored `max` or less, ascending (ZREVRANGEBYSCORE walks
    /// it from the back: O(log n) to its first member on a big set).
    pub fn up_to_score(&self, max: f64) -> Iter<'_> {
        match &self.0 {
            Repr::Packed(p) => Iter::Packed(p.iter()),
            Repr::Big(b) if max == f64::INFINITY => Iter::Big(b.order.iter()),
            Repr::Big(b) => {
                let hi = (Score(max.next_up()), Bytes::default());
                Iter::BigRange(b.order.range((Bound::Unbounded, Bound::Excluded(hi))))
            }
        }
    }

    /// Ascending from the first member `min` or more by bytes, on a big set
    /// whose members all have one score — the premise of lex ranges, under
    /// which the (score, member) order is the members' order: O(log n) to
    /// start. `None` for a packed set or mixed scores (walk from an end).
    pub fn from_member(&self, min: &[u8]) -> Option<Iter<'_>> {
        let (b, s) = self.one_score()?;
        let lo = (s, Bytes::from(min));
        Some(Iter::BigRange(
            b.order.range((Bound::Included(lo), Bound::Unbounded)),
        ))
    }

    /// The members `max` or less by bytes, ascending (ZREVRANGEBYLEX walks
    /// it from the back); `None` as for [`ZSet::from_member`].
    pub fn up_to_member(&self, max: &[u8]) -> Option<Iter<'_>> {
        let (b, s) = self.one_score()?;
        let hi = (s, Bytes::from(max));
        Some(Iter::BigRange(
            b.order.range((Bound::Unbounded, Bound::Included(hi))),
        ))
    }

    /// How many members score from `min` to `max`, each bound exclusive
    /// or not: O(log n) on a big set (the tree counts its subtrees), as
    /// Redis counts by rank; `None` for a packed set (walk it).
    pub fn count_scores(&self, min: (f64, bool), max: (f64, bool)) -> Option<usize> {
        let Repr::Big(b) = &self.0 else {
            return None;
        };
        // (score, "") sorts before every member of that score
        let key = |v: f64| (Score(v), Bytes::default());
        let lo = match min {
            (v, true) if v == f64::INFINITY => return Some(0),
            (v, true) => Bound::Included(key(v.next_up())),
            (v, false) => Bound::Included(key(v)),
        };
        let hi = match max {
            (v, false) if v == f64::INFINITY => Bound::Unbounded,
            (v, false) => Bound::Excluded(key(v.next_up())),
            (v, true) => Bound::Excluded(key(v)),
        };
        Some(count_between(b, lo, hi))
    }

    /// How many members lie between two member bounds, on a big one-score
    /// set (lex ranges' premise, see [`ZSet::from_member`]): O(log n).
    pub fn count_members(&self, min: Bound<&[u8]>, max: Bound<&[u8]>) -> Option<usize> {
        let (b, s) = self.one_score()?;
        let key = |m: Bound<&[u8]>| m.map(|m| (s, Bytes::from(m)));
        Some(count_between(b, key(min), key(max)))
    }

    /// A big set's one score, if its first and last members (so all) share it.
    fn one_score(&self) -> Option<(&Big, Score)> {
        let Repr::Big(b) = &self.0 else {
            return None;
        };
        let (first, last) = (b.order.first()?, b.order.last()?);
        (first.0 == last.0).then_some((b, first.0))
    }

    /// Ascending from rank `i` (descending from it with `.rev()` is not
    /// this: see [`ZSet::down_from`]). O(log n) to start on a big set.
    pub fn from_rank(&self, i: usize) -> Iter<'_> {
        match &self.0 {
            Repr::Packed(p) => {
                let mut it = p.iter();
                for _ in 0..i {
                    it.next();
                }
                Iter::Packed(it)
            }
            Repr::Big(b) => match b.order.get_by_rank(i) {
                Some(k) => Iter::BigRange(b.order.range(k..)),
                None => Iter::Empty,
            },
        }
    }

    /// Descending from rank `i` of the descending order (ZREVRANGE's index).
    pub fn down_from(&self, i: usize) -> std::iter::Rev<Iter<'_>> {
        match &self.0 {
            Repr::Packed(p) => {
                let mut it = p.iter();
                for _ in 0..i {
                    it.next_back();
                }
                Iter::Packed(it).rev()
            }
            Repr::Big(b) => {
                let n = b.order.len();
                match n.checked_sub(i + 1).and_then(|r| b.order.get_by_rank(r)) {
                    Some(k) => Iter::BigRange(b.order.range(..=k)).rev(),
                    None => Iter::Empty.rev(),
                }
            }
        }
    }

    /// The `i`th member in no particular order but a stable one while the set
    /// is unchanged (ZRANDMEMBER, ZSCAN cursors). O(1) big, O(i) packed.
    pub fn get_index(&self, i: usize) -> Option<(&[u8], f64)> {
        match &self.0 {
            Repr::Packed(p) => p.iter().nth(i),
            Repr::Big(b) => b.scores.get_index(i).map(|(m, s)| (&m[..], *s)),
        }
    }

    /// Bytes held, for `MEMORY USAGE`.
    pub fn heap_bytes(&self) -> usize {
        match &self.0 {
            Repr::Packed(p) => p.buf.capacity(),
            Repr::Big(b) => {
                // map bucket + index, B-tree entry, and the two member copies
                b.scores
                    .iter()
                    .map(|(m, _)| 2 * m.len() + 72)
                    .sum::<usize>()
            }
        }
    }

    fn unpack(&mut self) {
        let Repr::Packed(p) = &self.0 else { return };
        let mut b = Big::default();
        b.scores.reserve(p.n as usize + 1);
        for (m, s) in p.iter() {
            b.insert(m, s);
        }
        self.0 = Repr::Big(Box::new(b));
    }
}

impl Big {
    fn insert(&mut self, member: &[u8], score: f64) -> Option<f64> {
        if let Some(old) = self.scores.get_mut(member) {
            let prev = *old;
            if prev != score {
                let m: Bytes = member.into();
                self.order.remove(&(Score(prev), m.clone()));
                self.order.insert((Score(score), m));
                *old = score;
            }
            return Some(prev);
        }
        let m: Bytes = member.into();
        self.scores.insert(m.clone(), score);
        self.order.insert((Score(score), m));
        None
    }
}

/// Entries back to back, each `[len: u8][member][score: f64 LE][len: u8]`:
/// the trailing length lets iteration run backwards.
#[derive(Debug, Clone, Default)]
struct Packed {
    buf: Vec<u8>,
    n: u32,
}

/// An entry's size around a member of `len` bytes.
const fn entry_size(len: usize) -> usize {
    len + 10
}

impl Packed {
    fn iter(&self) -> PackedIter<'_> {
        PackedIter {
            buf: &self.buf,
            front: 0,
            back: self.buf.len(),
        }
    }

    fn find(&self, member: &[u8]) -> Option<usize> {
        let mut off = 0;
        while off < self.buf.len() {
            let len = self.buf[off] as usize;
            if len == member.len() && &self.buf[off + 1..off + 1 + len] == member {
                return Some(off);
            }
            off += entry_size(len);
        }
        None
    }

    fn score_at(&self, off: usize) -> f64 {
        let at = off + 1 + self.buf[off] as usize;
        f64::from_le_bytes(self.buf[at..at + 8].try_into().expect("8 bytes"))
    }

    fn score(&self, member: &[u8]) -> Option<f64> {
        self.find(member).map(|off| self.score_at(off))
    }

    /// One pass: where `member` is (offset, score), and where an entry
    /// (`score`, `member`) goes in order (before any entry greater than it).
    fn locate(&self, member: &[u8], score: f64) -> (Option<(usize, f64)>, usize) {
        let (mut found, mut at) = (None, None);
        let mut off = 0;
        while off < self.buf.len() {
            let len = self.buf[off] as usize;
            let m = &self.buf[off + 1..off + 1 + len];
            let s = self.score_at(off);
            if found.is_none() && m == member {
                found = Some((off, s));
            }
            if at.is_none() && (Score(s), m) > (Score(score), member) {
                at = Some(off);
            }
            if found.is_some() && at.is_some() {
                break;
            }
            off += entry_size(len);
        }
        (found, at.unwrap_or(self.buf.len()))
    }

    /// Writes a new entry at `at` (an entry boundary).
    fn put(&mut self, at: usize, member: &[u8], score: f64) {
        let size = entry_size(member.len());
        let old = self.buf.len();
        if self.buf.capacity() < old + size {
            // grow by an eighth, not double: sets stay small and many
            self.buf.reserve_exact(size.max(old / 8));
        }
        self.buf.resize(old + size, 0);
        self.buf.copy_within(at..old, at + size);
        let e = &mut self.buf[at..at + size];
        e[0] = member.len() as u8;
        e[1..1 + member.len()].copy_from_slice(member);
        e[1 + member.len()..size - 1].copy_from_slice(&score.to_le_bytes());
        e[size - 1] = member.len() as u8;
        self.n += 1;
    }

    /// Gives the member at `off` (scored `prev`) the score `score`; `at` is
    /// where `locate` placed the new (score, member) with the old entry in.
    fn set(&mut self, off: usize, at: usize, member: &[u8], score: f64, prev: f64) {
        if prev == score {
            return;
        }
        let size = entry_size(member.len());
        // the entry stays where it is when nothing lies between the two places
        if at == off || at == off + size {
            let s = off + 1 + member.len();
            self.buf[s..s + 8].copy_from_slice(&score.to_le_bytes());
            return;
        }
        self.buf.drain(off..off + size);
        self.n -= 1;
        self.put(if at > off { at - size } else { at }, member, score);
    }

    fn remove(&mut self, member: &[u8]) -> Option<f64> {
        let off = self.find(member)?;
        let s = self.score_at(off);
        self.buf.drain(off..off + entry_size(member.len()));
        self.n -= 1;
        if self.buf.capacity() > 2 * self.buf.len() + 64 {
            self.buf.shrink_to(self.buf.len() + self.buf.len() / 8);
        }
        Some(s)
    }
}

pub struct PackedIter<'a> {
    buf: &'a [u8],
    front: usize,
    back: usize,
}

impl<'a> PackedIter<'a> {
    /// Moves the front past every entry scored below `min`.
    fn skip_below(&mut self, min: f64) {
        while self.front < self.back {
            let len = self.buf[self.front] as usize;
            let at = self.front + 1 + len;
            let s = f64::from_le_bytes(self.buf[at..at + 8].try_into().expect("8 bytes"));
            if Score(s) >= Score(min) {
                return;
            }
            self.front += entry_size(len);
        }
    }

    fn entry(&self, off: usize) -> (&'a [u8], f64) {
        let len = self.buf[off] as usize;
        let at = off + 1 + len;
        let s = f64::from_le_bytes(self.buf[at..at + 8].try_into().expect("8 bytes"));
        (&self.buf[off + 1..at], s)
    }
}

impl<'a> Iterator for PackedIter<'a> {
    type Item = (&'a [u8], f64);

    fn next(&mut self) -> Option<Self::Item> {
        if self.front >= self.back {
            return None;
        }
        let e = self.entry(self.front);
        self.front += entry_size(e.0.len());
        Some(e)
    }
}

impl DoubleEndedIterator for PackedIter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.front >= self.back {
            return None;
        }
        let len = self.buf[self.back - 1] as usize;
        self.back -= entry_size(len);
        Some(self.entry(self.back))
    }
}

/// Members with their scores in order, from either form.
pub enum Iter<'a> {
    Packed(PackedIter<'a>),
    Big(osbtree_set::Iter<'a, (Score, Bytes)>),
    BigRange(osbtree_set::Range<'a, (Score, Bytes)>),
    Empty,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a [u8], f64);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Packed(it) => it.next(),
            Iter::Big(it) => it.next().map(|(s, m)| (&m[..], s.0)),
            Iter::BigRange(it) => it.next().map(|(s, m)| (&m[..], s.0)),
            Iter::Empty => None,
        }
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Packed(it) => it.next_back(),
            Iter::Big(it) => it.next_back().map(|(s, m)| (&m[..], s.0)),
            Iter::BigRange(it) => it.next_back().map(|(s, m)| (&m[..], s.0)),
            Iter::Empty => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// The reference: what the set must hold, as member → score.
    fn check(z: &ZSet, model: &BTreeMap<Vec<u8>, f64>) {
        assert_eq!(z.len(), model.len());
        let mut want: Vec<(Score, Vec<u8>)> =
            model.iter().map(|(m, s)| (Score(*s), m.clone())).collect();
        want.sort();
        let got: Vec<(Score, Vec<u8>)> = z.iter().map(|(m, s)| (Score(s), m.to_vec())).collect();
        assert_eq!(got, want);
        let back: Vec<(Score, Vec<u8>)> = z
            .iter()
            .rev()
            .map(|(m, s)| (Score(s), m.to_vec()))
            .collect();
        assert_eq!(back, want.iter().rev().cloned().collect::<Vec<_>>());
        // a score bound starts where a walk from the top would
        for max in [
            f64::NEG_INFINITY,
            -1.5,
            -0.0,
            0.0,
            0.5,
            3.0,
            1e9,
            f64::INFINITY,
        ] {
            let got: Vec<(Score, Vec<u8>)> = z
                .up_to_score(max)
                .rev()
                .filter(|(_, s)| Score(*s) <= Score(max))
                .map(|(m, s)| (Score(s), m.to_vec()))
                .collect();
            let want_le: Vec<_> = want
                .iter()
                .rev()
                .filter(|(s, _)| *s <= Score(max))
                .cloned()
                .collect();
            assert_eq!(got, want_le, "up to {max}");
        }
        // counts by rank equal a count of the walk, every bound both ways
        let bounds = [f64::NEG_INFINITY, -3.0, -0.0, 0.0, 1.5, 2.5, f64::INFINITY];
        for (&lo, &hi) in bounds
            .iter()
            .flat_map(|a| bounds.iter().map(move |b| (a, b)))
        {
            for (lx, hx) in [(false, false), (true, false), (false, true), (true, true)] {
                let inside = |s: &Score| {
                    (if lx { *s > Score(lo) } else { *s >= Score(lo) })
                        && (if hx { *s < Score(hi) } else { *s <= Score(hi) })
                };
                let want_n = want.iter().filter(|(s, _)| inside(s)).count();
                if let Some(n) = z.count_scores((lo, lx), (hi, hx)) {
                    assert_eq!(n, want_n, "count ({lo}, {lx}) .. ({hi}, {hx})");
                } else {
                    assert!(z.is_packed());
                }
            }
        }
        // ranges by index start where a walk from the end would
        let n = want.len();
        for i in [0, 1, n / 3, n / 2, n.saturating_sub(1), n, n + 1] {
            let up: Vec<(Score, Vec<u8>)> = z
                .from_rank(i)
                .map(|(m, s)| (Score(s), m.to_vec()))
                .collect();
            assert_eq!(
                up,
                want.iter().skip(i).cloned().collect::<Vec<_>>(),
                "from rank {i}"
            );
            let down: Vec<(Score, Vec<u8>)> = z
                .down_from(i)
                .map(|(m, s)| (Score(s), m.to_vec()))
                .collect();
            let want_down: Vec<_> = want.iter().rev().skip(i).cloned().collect();
            assert_eq!(down, want_down, "down from {i}");
        }
        for (i, (s, m)) in want.iter().enumerate() {
            assert_eq!(z.score(m), Some(s.0));
            assert_eq!(z.rank(m), Some(i));
        }
    }

    #[test]
    fn random_operations_match_a_model_in_both_forms() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..50 {
            let (mut z, mut model) = (ZSet::default(), BTreeMap::new());
            for _ in 0..400 {
                // few distinct scores: ties order by member, as in Redis
                let m = format!("m{}", rng.u32(..200)).into_bytes();
                let s = [-0.0, 0.0, 1.5, -3.0, f64::INFINITY][rng.usize(..5)] + rng.u8(..3) as f64;
                if rng.u8(..4) == 0 {
                    assert_eq!(z.remove(&m), model.remove(&m));
                } else {
                    let s = if s == 0.0 { 0.0 } else { s };
                    assert_eq!(z.insert(&m, s), model.insert(m.clone(), s));
                }
            }
            check(&z, &model);
            assert!(!z.is_packed() || z.len() <= 128);
        }
    }

    #[test]
    fn a_set_unpacks_past_the_limits_and_stays_unpacked() {
        let mut z = ZSet::default();
        for i in 0..128 {
            z.insert(format!("{i:03}").as_bytes(), i as f64);
        }
        assert!(z.is_packed());
        z.insert(b"one more", 0.5);
        assert!(!z.is_packed());
        assert_eq!(z.rank(b"one more"), Some(1));
        for i in 0..100 {
            z.remove(format!("{i:03}").as_bytes());
        }
        assert!(!z.is_packed(), "Redis does not convert back either");

        let mut z = ZSet::default();
        z.insert(b"a", 1.0);
        z.insert(&[b'x'; 64], 2.0);
        assert!(z.is_packed());
        z.insert(&[b'x'; 65], 3.0);
        assert!(!z.is_packed());
        assert_eq!(
            z.iter().map(|(_, s)| s).collect::<Vec<_>>(),
            [1.0, 2.0, 3.0]
        );
    }

    #[test]
    fn updates_move_entries_and_range_starts_at_the_score() {
        let mut z = ZSet::default();
        for (m, s) in [(&b"a"[..], 1.0), (b"b", 2.0), (b"c", 3.0), (b"d", 4.0)] {
            z.insert(m, s);
        }
        // in place, to the front, to the back, across one neighbour
        assert_eq!(z.insert(b"b", 2.5), Some(2.0));
        assert_eq!(z.insert(b"d", 0.0), Some(4.0));
        assert_eq!(z.insert(b"a", 9.0), Some(1.0));
        assert_eq!(z.insert(b"c", 2.0), Some(3.0));
        let order: Vec<_> = z.iter().map(|(m, s)| (m.to_vec(), s)).collect();
        assert_eq!(
            order,
            [
                (b"d".to_vec(), 0.0),
                (b"c".to_vec(), 2.0),
                (b"b".to_vec(), 2.5),
                (b"a".to_vec(), 9.0)
            ]
        );
        assert_eq!(z.from_score(2.2).next(), Some((&b"b"[..], 2.5)));
        assert_eq!(z.from_score(-0.0).next(), Some((&b"d"[..], 0.0)));
        assert_eq!(z.from_score(10.0).next(), None);
        assert_eq!(z.get_index(3), Some((&b"a"[..], 9.0)));
    }

    fn bs(b: &[u8], incl: bool) -> Bound<&[u8]> {
        if incl {
            Bound::Included(b)
        } else {
            Bound::Excluded(b)
        }
    }

    #[test]
    fn lex_bounds_start_in_place_only_on_a_big_one_score_set() {
        let mut z = ZSet::default();
        let members: Vec<Vec<u8>> = (0..300)
            .map(|i| format!("k{:04}", i * 3).into_bytes())
            .collect();
        for m in &members {
            z.insert(m, 0.0);
        }
        // one -0 among the zeros is still one score
        z.insert(b"k0001", -0.0);
        let mut all: Vec<Vec<u8>> = z.iter().map(|(m, _)| m.to_vec()).collect();
        all.sort();
        assert_eq!(z.iter().map(|(m, _)| m.to_vec()).collect::<Vec<_>>(), all);
        for b in [
            &b""[..],
            b"k",
            b"k0001",
            b"k0450",
            b"k0451",
            b"k0897",
            b"k9",
            b"z",
        ] {
            let up: Vec<Vec<u8>> = z.from_member(b).unwrap().map(|(m, _)| m.to_vec()).collect();
            let want: Vec<Vec<u8>> = all.iter().filter(|m| &m[..] >= b).cloned().collect();
            assert_eq!(up, want, "from {:?}", String::from_utf8_lossy(b));
            let down: Vec<Vec<u8>> = z
                .up_to_member(b)
                .unwrap()
                .rev()
                .map(|(m, _)| m.to_vec())
                .collect();
            let want: Vec<Vec<u8>> = all.iter().rev().filter(|m| &m[..] <= b).cloned().collect();
            assert_eq!(down, want, "down from {:?}", String::from_utf8_lossy(b));
        }
        for lo in [&b"k0003"[..], b"k0004", b"k0450", b"k9"] {
            for hi in [&b"k0003"[..], b"k0450", b"k0451", b"z"] {
                for (li, hi_incl) in [(true, true), (true, false), (false, true), (false, false)] {
                    let want = all
                        .iter()
                        .filter(|m| if li { &m[..] >= lo } else { &m[..] > lo })
                        .filter(|m| if hi_incl { &m[..] <= hi } else { &m[..] < hi })
                        .count();
                    assert_eq!(z.count_members(bs(lo, li), bs(hi, hi_incl)), Some(want));
                }
            }
        }
        assert_eq!(
            z.count_members(Bound::Unbounded, Bound::Unbounded),
            Some(z.len())
        );
        // mixed scores: no shortcut (the order is not the members')
        z.insert(b"k0002", 1.0);
        assert!(z.from_member(b"k").is_none() && z.up_to_member(b"k").is_none());
        // packed: walked from an end
        let mut small = ZSet::default();
        small.insert(b"a", 0.0);
        assert!(small.is_packed() && small.from_member(b"a").is_none());
    }
}
