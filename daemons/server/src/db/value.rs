//! Values as boxed records and commands hold them. A string whose record is
//! packed never becomes a `Value` (see `entry.rs`); `Value::Str` is for
//! strings in transit and strings grown in place, hence the spare capacity.
//! Small hashes keep insertion order (Redis's listpack does, and clients see it).

use std::collections::{BTreeSet, VecDeque};

use indexmap::{IndexMap, IndexSet};

pub type Hasher = foldhash::fast::RandomState;
pub type Bytes = Box<[u8]>;
pub type HashVal = IndexMap<Bytes, Bytes, Hasher>;
pub type SetVal = IndexSet<Bytes, Hasher>;
pub type ListVal = VecDeque<Bytes>;

/// Redis's `hash-max-listpack-entries` default: below it Redis keeps order, so do we.
pub const SMALL_HASH: usize = 128;
/// Redis's `set-max-intset-entries`: integer sets this small are sorted in Redis.
pub const SMALL_INTSET: usize = 512;
pub const SMALL_ZSET: usize = 128;
pub const SMALL_LIST: usize = 128;

/// A string's `OBJECT ENCODING` by Redis 7.0's rules for a freshly set value.
pub fn str_encoding(s: &[u8]) -> &'static str {
    if s.len() <= 20 && crate::util::parse_i64(s).is_some() {
        "int"
    } else if s.len() <= 44 {
        "embstr"
    } else {
        "raw"
    }
}

#[derive(Debug, Clone)]
pub enum Value {
    Str(Vec<u8>),
    Hash(Box<HashVal>),
    List(Box<ListVal>),
    Set(Box<SetVal>),
    ZSet(Box<ZSet>),
    Stream(Box<super::stream::Stream>),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::Hash(_) => "hash",
            Value::List(_) => "list",
            Value::Set(_) => "set",
            Value::ZSet(_) => "zset",
            Value::Stream(_) => "stream",
        }
    }

    /// What `OBJECT ENCODING` says, following Redis 7.0's thresholds.
    pub fn encoding(&self) -> &'static str {
        match self {
            Value::Str(s) => str_encoding(s),
            Value::Hash(h) => {
                if h.len() <= SMALL_HASH && h.iter().all(|(k, v)| k.len() <= 64 && v.len() <= 64) {
                    "listpack"
                } else {
                    "hashtable"
                }
            }
            Value::List(_) => "quicklist",
            Value::Set(s) => {
                if s.len() <= SMALL_INTSET && s.iter().all(|m| crate::util::parse_i64(m).is_some())
                {
                    "intset"
                } else {
                    "hashtable"
                }
            }
            Value::ZSet(z) => {
                if z.len() <= SMALL_ZSET && z.scores.keys().all(|m| m.len() <= 64) {
                    "listpack"
                } else {
                    "skiplist"
                }
            }
            Value::Stream(_) => "stream",
        }
    }

    pub fn is_empty_container(&self) -> bool {
        match self {
            Value::Str(_) => false,
            Value::Hash(h) => h.is_empty(),
            Value::List(l) => l.is_empty(),
            Value::Set(s) => s.is_empty(),
            Value::ZSet(z) => z.is_empty(),
            // an empty stream is a value (XADD MAXLEN 0, XDEL of the last entry)
            Value::Stream(_) => false,
        }
    }
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

/// Sorted set: member → score, plus (score, member) order.
///
/// Rank queries walk the ordered set (O(rank)); an order-statistic tree would
/// make them O(log n). Recorded in docs/server.md as a known gap.
#[derive(Debug, Clone, Default)]
pub struct ZSet {
    pub scores: IndexMap<Bytes, f64, Hasher>,
    pub order: BTreeSet<(Score, Bytes)>,
}

impl ZSet {
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    /// Inserts or updates; returns the previous score.
    pub fn insert(&mut self, member: &[u8], score: f64) -> Option<f64> {
        let score = if score == 0.0 { 0.0 } else { score };
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

    pub fn remove(&mut self, member: &[u8]) -> Option<f64> {
        let s = self.scores.swap_remove(member)?;
        self.order.remove(&(Score(s), Bytes::from(member)));
        Some(s)
    }

    pub fn score(&self, member: &[u8]) -> Option<f64> {
        self.scores.get(member).copied()
    }

    /// 0-based rank in ascending order.
    pub fn rank(&self, member: &[u8]) -> Option<usize> {
        let s = self.score(member)?;
        let key = (Score(s), Bytes::from(member));
        Some(self.order.range(..key).count())
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&[u8], f64)> {
        self.order.iter().map(|(s, m)| (&m[..], s.0))
    }
}
