//! Our records in RDB form and back (the format itself is `kvfleet-rdb`'s).

use kvfleet_rdb::{Encoder, kind, read::Value as RdbValue};

use crate::db::ZSet;
use crate::db::value::{HashVal, ListVal, SetVal, Value};
use crate::db::{Entry, ValueRef};

/// The RDB type we write for a value: the plain encodings, which every Redis
/// loads, and an intset as Redis writes it (so DUMP matches Redis's).
pub fn kind_of(v: ValueRef<'_>) -> u8 {
    match v {
        ValueRef::Str(_) => kind::STRING,
        ValueRef::List(_) => kind::LIST,
        ValueRef::Set(s) if s.is_intset() => kind::SET_INTSET,
        ValueRef::Set(_) => kind::SET,
        ValueRef::Hash(_) => kind::HASH,
        ValueRef::ZSet(_) => kind::ZSET_2,
        ValueRef::Stream(_) => kind::STREAM_LISTPACKS_2,
    }
}

fn body(enc: &mut Encoder, v: ValueRef<'_>) {
    match v {
        ValueRef::Str(s) => enc.string(s),
        ValueRef::List(l) => enc.seq(l.len(), l.iter().map(|s| &s[..])),
        ValueRef::Set(s) => match s.intset_blob() {
            Some(blob) => enc.string(&blob),
            None => enc.seq(s.len(), s.iter()),
        },
        ValueRef::Hash(h) => enc.hash(h.len(), h.iter()),
        ValueRef::ZSet(z) => enc.zset(z.len(), z.iter()),
        ValueRef::Stream(s) => enc.stream(&s.to_rdb()),
    }
}

/// One key as a file record: `[expiry] type key value`.
pub fn encode_record(enc: &mut Encoder, e: &Entry) {
    if e.expire_at() != 0 {
        enc.expire_ms(e.expire_at());
    }
    let v = e.value();
    enc.kind(kind_of(v));
    enc.string(e.key());
    body(enc, v);
}

/// A `DUMP` payload.
pub fn dump(v: ValueRef<'_>) -> Vec<u8> {
    let mut enc = Encoder::new();
    enc.kind(kind_of(v));
    body(&mut enc, v);
    kvfleet_rdb::dump::finish(enc)
}

/// A decoded value as ours. Empty containers and duplicate members are
/// refused, as Redis refuses them.
pub fn to_value(v: RdbValue) -> Result<Value, &'static str> {
    fn nonempty(n: usize) -> Result<(), &'static str> {
        if n == 0 {
            Err("empty collection")
        } else {
            Ok(())
        }
    }
    Ok(match v {
        RdbValue::Str(s) => Value::Str(s),
        RdbValue::List(l) => {
            nonempty(l.len())?;
            let list: ListVal = l.into_iter().map(Vec::into_boxed_slice).collect();
            Value::List(Box::new(list))
        }
        RdbValue::Set(members) => {
            nonempty(members.len())?;
            let mut set = SetVal::sized(members.len());
            for m in members {
                if !set.insert(&m) {
                    return Err("duplicate set member");
                }
            }
            Value::Set(Box::new(set))
        }
        RdbValue::Hash(pairs) => {
            nonempty(pairs.len())?;
            let longest = pairs
                .iter()
                .map(|(f, v)| f.len().max(v.len()))
                .max()
                .unwrap_or(0);
            let mut h = HashVal::sized(pairs.len(), longest);
            for (f, v) in pairs {
                if !h.set(&f, &v) {
                    return Err("duplicate hash field");
                }
            }
            Value::Hash(Box::new(h))
        }
        RdbValue::ZSet(members) => {
            nonempty(members.len())?;
            let longest = members.iter().map(|(m, _)| m.len()).max().unwrap_or(0);
            let mut z = ZSet::sized(members.len(), longest);
            for (m, score) in members {
                if z.insert(&m, score).is_some() {
                    return Err("duplicate sorted set member");
                }
            }
            Value::ZSet(Box::new(z))
        }
        RdbValue::Stream(s) => Value::Stream(Box::new(crate::db::stream::Stream::from_rdb(*s)?)),
    })
}
