//! One key's record: 16 bytes in its slot table's dense vector.
//!
//! Most keys of a cache are strings, so a string key and its value share one
//! allocation behind a 8-byte header (16 with an expiry). Redis spends a dict
//! entry, a key sds, an `robj` and a value sds on the same key; we spend this
//! record, one allocation and a few bytes of hash index. Containers, strings
//! grown in place (APPEND, SETRANGE keep spare capacity, as Redis's sds does)
//! and keys of 64 KiB or more live in a boxed [`Full`] record instead.
//! See docs/decisions/0003-compact-records.md.

use super::value::{HashVal, ListVal, SetVal, Value};
use super::zset::ZSet;

#[derive(Debug, Clone)]
pub struct Entry(Repr);

#[derive(Debug, Clone)]
enum Repr {
    /// `[access u32][key len u16][flags u16][expire_at u64 if EXPIRES][key][value]`
    Packed(Box<[u8]>),
    Boxed(Box<Full>),
}

#[derive(Debug, Clone)]
struct Full {
    key: Box<[u8]>,
    value: Value,
    expire_at: u64,
    access: u32,
}

const HDR: usize = 8;
const EXPIRES: u16 = 1;

/// A borrowed view of a value, whichever record holds it.
#[derive(Debug, Clone, Copy)]
pub enum ValueRef<'a> {
    Str(&'a [u8]),
    Hash(&'a HashVal),
    List(&'a ListVal),
    Set(&'a SetVal),
    ZSet(&'a ZSet),
    Stream(&'a super::stream::Stream),
}

fn pack(key: &[u8], val: &[u8], expire_at: u64, access: u32) -> Box<[u8]> {
    debug_assert!(key.len() <= u16::MAX as usize);
    let ex = if expire_at != 0 { 8 } else { 0 };
    let mut b = Vec::with_capacity(HDR + ex + key.len() + val.len());
    b.extend_from_slice(&access.to_le_bytes());
    b.extend_from_slice(&(key.len() as u16).to_le_bytes());
    b.extend_from_slice(&(if ex != 0 { EXPIRES } else { 0 }).to_le_bytes());
    if ex != 0 {
        b.extend_from_slice(&expire_at.to_le_bytes());
    }
    b.extend_from_slice(key);
    b.extend_from_slice(val);
    b.into_boxed_slice()
}

#[inline]
fn flags(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[6], b[7]])
}

/// `(key start, value start)` in a packed record.
#[inline]
fn offsets(b: &[u8]) -> (usize, usize) {
    let k = if flags(b) & EXPIRES != 0 {
        HDR + 8
    } else {
        HDR
    };
    (k, k + u16::from_le_bytes([b[4], b[5]]) as usize)
}

impl Entry {
    /// A new record stamped as just accessed.
    pub fn new(key: &[u8], value: Value, expire_at: u64) -> Entry {
        match value {
            Value::Str(s) if key.len() <= u16::MAX as usize => Entry::string(key, &s, expire_at),
            value => Entry(Repr::Boxed(Box::new(Full {
                key: key.into(),
                value,
                expire_at,
                access: super::new_access(),
            }))),
        }
    }

    /// A string record, built straight from the request's argument bytes.
    #[inline]
    pub fn string(key: &[u8], val: &[u8], expire_at: u64) -> Entry {
        if key.len() > u16::MAX as usize {
            return Entry::new(key, Value::Str(val.into()), expire_at);
        }
        Entry(Repr::Packed(pack(key, val, expire_at, super::new_access())))
    }

    #[inline]
    pub fn key(&self) -> &[u8] {
        match &self.0 {
            Repr::Packed(b) => {
                let (k, v) = offsets(b);
                &b[k..v]
            }
            Repr::Boxed(f) => &f.key,
        }
    }

    /// Absolute expiry in Unix milliseconds; 0 means none.
    #[inline]
    pub fn expire_at(&self) -> u64 {
        match &self.0 {
            Repr::Packed(b) if flags(b) & EXPIRES != 0 => {
                u64::from_le_bytes(b[HDR..HDR + 8].try_into().expect("8 bytes"))
            }
            Repr::Packed(_) => 0,
            Repr::Boxed(f) => f.expire_at,
        }
    }

    #[inline]
    pub fn expired(&self, now: u64) -> bool {
        let at = self.expire_at();
        at != 0 && at <= now
    }

    /// Only the slot table calls this: it counts volatile keys.
    pub(super) fn set_expire_at(&mut self, at: u64) {
        match &mut self.0 {
            Repr::Packed(b) => {
                if (flags(b) & EXPIRES != 0) == (at != 0) {
                    if at != 0 {
                        b[HDR..HDR + 8].copy_from_slice(&at.to_le_bytes());
                    }
                    return;
                }
                let (k, v) = offsets(b);
                let access = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                *b = pack(&b[k..v], &b[v..], at, access);
            }
            Repr::Boxed(f) => f.expire_at = at,
        }
    }

    /// The LRU clock or LFU counter of the last access, per [`super::touched`].
    #[inline]
    pub fn access(&self) -> u32 {
        match &self.0 {
            Repr::Packed(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            Repr::Boxed(f) => f.access,
        }
    }

    #[inline]
    pub fn set_access(&mut self, a: u32) {
        match &mut self.0 {
            Repr::Packed(b) => b[..4].copy_from_slice(&a.to_le_bytes()),
            Repr::Boxed(f) => f.access = a,
        }
    }

    #[inline]
    pub fn value(&self) -> ValueRef<'_> {
        match &self.0 {
            Repr::Packed(b) => ValueRef::Str(&b[offsets(b).1..]),
            Repr::Boxed(f) => match &f.value {
                Value::Str(s) => ValueRef::Str(s),
                Value::Hash(h) => ValueRef::Hash(h),
                Value::List(l) => ValueRef::List(l),
                Value::Set(s) => ValueRef::Set(s),
                Value::ZSet(z) => ValueRef::ZSet(z),
                Value::Stream(s) => ValueRef::Stream(s),
            },
        }
    }

    /// The value of a boxed record (every container); `None` for a packed string.
    #[inline]
    pub fn value_mut(&mut self) -> Option<&mut Value> {
        match &mut self.0 {
            Repr::Packed(_) => None,
            Repr::Boxed(f) => Some(&mut f.value),
        }
    }

    #[inline]
    pub fn str(&self) -> Option<&[u8]> {
        match self.value() {
            ValueRef::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A string's bytes for an in-place rewrite of the same length.
    #[inline]
    pub fn str_mut(&mut self) -> Option<&mut [u8]> {
        match &mut self.0 {
            Repr::Packed(b) => {
                let v = offsets(b).1;
                Some(&mut b[v..])
            }
            Repr::Boxed(f) => match &mut f.value {
                Value::Str(s) => Some(s),
                _ => None,
            },
        }
    }

    /// Makes this a string holding `val`, keeping the key, expiry and access
    /// stamp. A grown (raw) string is packed again, as Redis's INCR replaces
    /// a raw string with a fresh integer object.
    pub fn set_str(&mut self, val: &[u8]) {
        if let Repr::Packed(b) = &mut self.0 {
            let v = offsets(b).1;
            if b.len() - v == val.len() {
                b[v..].copy_from_slice(val);
                return;
            }
        }
        if self.key().len() > u16::MAX as usize {
            if let Repr::Boxed(f) = &mut self.0 {
                f.value = Value::Str(val.into());
            }
            return;
        }
        let b = pack(self.key(), val, self.expire_at(), self.access());
        self.0 = Repr::Packed(b);
    }

    /// A string as a growable buffer (APPEND, SETRANGE): the record moves to
    /// its boxed form once, then grows with spare capacity like an sds.
    pub fn raw_str(&mut self) -> Option<&mut Vec<u8>> {
        if let Repr::Packed(b) = &self.0 {
            let (k, v) = offsets(b);
            let full = Full {
                key: b[k..v].into(),
                value: Value::Str(b[v..].to_vec()),
                expire_at: self.expire_at(),
                access: self.access(),
            };
            self.0 = Repr::Boxed(Box::new(full));
        }
        match self.value_mut() {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// The same record under another key (RENAME, COPY).
    pub fn rekey(self, key: &[u8]) -> Entry {
        match self.0 {
            Repr::Packed(b) if key.len() <= u16::MAX as usize => {
                let old = Entry(Repr::Packed(b));
                let (at, access) = (old.expire_at(), old.access());
                let val = old.str().expect("packed records are strings");
                Entry(Repr::Packed(pack(key, val, at, access)))
            }
            Repr::Packed(b) => {
                let e = Entry(Repr::Packed(b));
                let (at, access) = (e.expire_at(), e.access());
                let mut n = Entry::new(key, Value::Str(e.str().expect("string").to_vec()), at);
                n.set_access(access);
                n
            }
            Repr::Boxed(mut f) => {
                f.key = key.into();
                Entry(Repr::Boxed(f))
            }
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self.value() {
            ValueRef::Str(_) => "string",
            ValueRef::Hash(_) => "hash",
            ValueRef::List(_) => "list",
            ValueRef::Set(_) => "set",
            ValueRef::ZSet(_) => "zset",
            ValueRef::Stream(_) => "stream",
        }
    }

    /// What `OBJECT ENCODING` says, following Redis 7.0's thresholds. A string
    /// grown in place is `raw`, as Redis's APPEND and SETRANGE leave it.
    pub fn encoding(&self) -> &'static str {
        match &self.0 {
            Repr::Boxed(f) if matches!(f.value, Value::Str(_)) => "raw",
            Repr::Packed(_) => super::value::str_encoding(self.str().expect("string")),
            Repr::Boxed(f) => f.value.encoding(),
        }
    }

    pub fn is_empty_container(&self) -> bool {
        match &self.0 {
            Repr::Packed(_) => false,
            Repr::Boxed(f) => f.value.is_empty_container(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_is_two_words() {
        assert_eq!(std::mem::size_of::<Entry>(), 16);
    }

    #[test]
    fn packed_string_round_trips_key_value_expiry_and_access() {
        let mut e = Entry::string(b"key:1", b"hello", 0);
        assert_eq!(e.key(), b"key:1");
        assert_eq!(e.str(), Some(&b"hello"[..]));
        assert_eq!(e.expire_at(), 0);
        e.set_expire_at(1_700_000_000_123);
        assert_eq!(e.expire_at(), 1_700_000_000_123);
        assert_eq!((e.key(), e.str()), (&b"key:1"[..], Some(&b"hello"[..])));
        e.set_access(0xABCDEF);
        e.set_str(b"a longer value");
        assert_eq!(e.str(), Some(&b"a longer value"[..]));
        assert_eq!((e.access(), e.expire_at()), (0xABCDEF, 1_700_000_000_123));
        e.set_expire_at(0);
        assert_eq!((e.expire_at(), e.key()), (0, &b"key:1"[..]));
        let e = e.rekey(b"other");
        assert_eq!(
            (e.key(), e.str()),
            (&b"other"[..], Some(&b"a longer value"[..]))
        );
        assert_eq!(e.encoding(), "embstr");
    }

    #[test]
    fn raw_strings_grow_in_place_and_keep_metadata() {
        let mut e = Entry::string(b"k", b"12", 42);
        e.raw_str().unwrap().extend_from_slice(b"34");
        assert_eq!((e.str(), e.expire_at()), (Some(&b"1234"[..]), 42));
        assert_eq!(e.encoding(), "raw");
        e.set_str(b"7");
        assert_eq!((e.str(), e.key()), (Some(&b"7"[..]), &b"k"[..]));
    }

    #[test]
    fn huge_keys_use_the_boxed_record() {
        let key = vec![b'x'; 70_000];
        let mut e = Entry::string(&key, b"v", 0);
        assert_eq!((e.key(), e.str()), (&key[..], Some(&b"v"[..])));
        e.set_str(b"value two");
        assert_eq!(e.str(), Some(&b"value two"[..]));
        let e = Entry::string(b"short", b"v", 5).rekey(&key);
        assert_eq!((e.key().len(), e.expire_at()), (70_000, 5));
    }
}
