//! Values as boxed records and commands hold them. A string whose record is
//! packed never becomes a `Value` (see `entry.rs`); `Value::Str` is for
//! strings in transit and strings grown in place, hence the spare capacity.

use std::collections::VecDeque;

pub type Hasher = foldhash::fast::RandomState;
pub type Bytes = Box<[u8]>;
pub type HashVal = super::hash::Hash;
pub type SetVal = super::set::Set;
pub type ListVal = VecDeque<Bytes>;

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
    ZSet(Box<super::zset::ZSet>),
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
                if h.is_packed() {
                    "listpack"
                } else {
                    "hashtable"
                }
            }
            Value::List(_) => "quicklist",
            Value::Set(s) => {
                if s.is_intset() {
                    "intset"
                } else {
                    "hashtable"
                }
            }
            Value::ZSet(z) => {
                if z.is_packed() {
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
