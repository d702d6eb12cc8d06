//! Streams in RDB files (type 19, `RDB_TYPE_STREAM_LISTPACKS_2` of Redis
//! 7.0; type 15 of Redis 5–6.2 loads too): entries in listpack nodes keyed
//! by a master ID, then the stream's counters and its consumer groups.

use crate::listpack::{Lp, encode, listpack};
use crate::{Encoder, Error, Result};

pub type Id = (u64, u64);
/// An entry: its ID and its field/value pairs flattened.
pub type Entry = (Id, Vec<Vec<u8>>);

/// A stream as a file holds it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StreamData {
    /// Entries in ID order, each with its field/value pairs flattened.
    pub entries: Vec<Entry>,
    pub last_id: Id,
    pub first_id: Id,
    pub max_deleted: Id,
    pub entries_added: u64,
    pub groups: Vec<GroupData>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct GroupData {
    pub name: Vec<u8>,
    pub last_id: Id,
    /// Redis's `entries_read`; `None` is its "invalid" (-1... stored as such).
    pub entries_read: i64,
    /// (id, delivery time ms, delivery count)
    pub pel: Vec<(Id, u64, u64)>,
    pub consumers: Vec<ConsumerData>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConsumerData {
    pub name: Vec<u8>,
    pub seen_time: u64,
    pub pel: Vec<Id>,
}

/// Entries per listpack node (Redis's `stream-node-max-entries`).
const NODE_ENTRIES: usize = 100;

fn id_bytes(id: Id) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&id.0.to_be_bytes());
    b[8..].copy_from_slice(&id.1.to_be_bytes());
    b
}

impl Encoder {
    /// A stream's body (after its type byte and key).
    pub fn stream(&mut self, s: &StreamData) {
        let nodes: Vec<&[Entry]> = s.entries.chunks(NODE_ENTRIES).collect();
        self.len(nodes.len() as u64);
        for node in nodes {
            let master = node[0].0;
            let mfields: Vec<&[u8]> = node[0].1.iter().step_by(2).map(|f| &f[..]).collect();
            let mut items: Vec<Lp<'_>> = vec![
                Lp::Int(node.len() as i64),
                Lp::Int(0),
                Lp::Int(mfields.len() as i64),
            ];
            items.extend(mfields.iter().map(|f| Lp::Str(f)));
            items.push(Lp::Int(0));
            for (id, fv) in node {
                let same = fv.len() / 2 == mfields.len()
                    && fv
                        .iter()
                        .step_by(2)
                        .zip(&mfields)
                        .all(|(a, b)| &a[..] == *b);
                let ms = id.0.wrapping_sub(master.0) as i64;
                let seq = id.1.wrapping_sub(master.1) as i64;
                let start = items.len();
                items.push(Lp::Int(if same { 2 } else { 0 }));
                items.push(Lp::Int(ms));
                items.push(Lp::Int(seq));
                if same {
                    items.extend(fv.iter().skip(1).step_by(2).map(|v| Lp::Str(v)));
                } else {
                    items.push(Lp::Int((fv.len() / 2) as i64));
                    items.extend(fv.iter().map(|x| Lp::Str(x)));
                }
                let n = items.len() - start;
                items.push(Lp::Int(n as i64));
            }
            self.string(&id_bytes(master));
            self.string(&encode(&items));
        }
        self.len(s.entries.len() as u64);
        for id in [s.last_id, s.first_id, s.max_deleted] {
            self.len(id.0);
            self.len(id.1);
        }
        self.len(s.entries_added);
        self.len(s.groups.len() as u64);
        for g in &s.groups {
            self.string(&g.name);
            self.len(g.last_id.0);
            self.len(g.last_id.1);
            self.len(g.entries_read as u64);
            self.len(g.pel.len() as u64);
            for (id, time, count) in &g.pel {
                self.buf.extend_from_slice(&id_bytes(*id));
                self.buf.extend_from_slice(&time.to_le_bytes());
                self.len(*count);
            }
            self.len(g.consumers.len() as u64);
            for c in &g.consumers {
                self.string(&c.name);
                self.buf.extend_from_slice(&c.seen_time.to_le_bytes());
                self.len(c.pel.len() as u64);
                for id in &c.pel {
                    self.buf.extend_from_slice(&id_bytes(*id));
                }
            }
        }
    }
}

fn num(b: &[u8]) -> Result<i64> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| corrupt("stream listpack integer"))
}

fn corrupt(what: &str) -> Error {
    Error::Corrupt {
        at: 0,
        what: what.into(),
    }
}

/// The entries of one listpack node whose master ID is `master`.
pub fn node_entries(master: Id, lp: &[u8], out: &mut Vec<Entry>) -> Result<()> {
    let e = listpack(lp)?;
    let mut it = e.iter();
    let mut next = || it.next().ok_or_else(|| corrupt("short stream node"));
    let count = num(next()?)?;
    let deleted = num(next()?)?;
    let nf = num(next()?)? as usize;
    let mut mfields = Vec::with_capacity(nf);
    for _ in 0..nf {
        mfields.push(next()?.clone());
    }
    next()?; // the master entry's terminator
    for _ in 0..(count + deleted) {
        let flags = num(next()?)?;
        let ms = master.0.wrapping_add(num(next()?)? as u64);
        let seq = master.1.wrapping_add(num(next()?)? as u64);
        let mut fv = Vec::new();
        if flags & 2 != 0 {
            for f in &mfields {
                fv.push(f.clone());
                fv.push(next()?.clone());
            }
        } else {
            let n = num(next()?)? as usize;
            for _ in 0..2 * n {
                fv.push(next()?.clone());
            }
        }
        next()?; // lp-count
        if flags & 1 == 0 {
            out.push(((ms, seq), fv));
        }
    }
    Ok(())
}

pub fn parse_id(b: &[u8]) -> Result<Id> {
    if b.len() != 16 {
        return Err(corrupt("stream node key"));
    }
    Ok((
        u64::from_be_bytes(b[..8].try_into().expect("8")),
        u64::from_be_bytes(b[8..].try_into().expect("8")),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_round_trip_with_and_without_shared_fields() {
        let mut entries = Vec::new();
        for i in 0..250u64 {
            let fv = if i % 7 == 3 {
                vec![
                    b"other".to_vec(),
                    i.to_string().into_bytes(),
                    b"x".to_vec(),
                    vec![b'v'; 70],
                ]
            } else {
                vec![b"f".to_vec(), i.to_string().into_bytes()]
            };
            entries.push(((1_700_000_000_000 + i / 3, i % 3), fv));
        }
        let s = StreamData {
            last_id: entries.last().unwrap().0,
            first_id: entries[0].0,
            entries_added: 250,
            entries,
            ..Default::default()
        };
        let mut enc = Encoder::new();
        enc.stream(&s);
        // read it back through the loader's path
        let mut rdb = b"REDIS0010".to_vec();
        rdb.push(crate::kind::STREAM_LISTPACKS_2);
        let mut key = Encoder::new();
        key.string(b"s");
        rdb.extend_from_slice(&key.buf);
        rdb.extend_from_slice(&enc.buf);
        rdb.push(0xFF);
        rdb.extend_from_slice(&[0; 8]);
        let mut l = crate::Loader::new(&rdb[..]).unwrap();
        match l.next_item().unwrap() {
            Some(crate::Item::Record(r)) => match r.value {
                crate::read::Value::Stream(got) => assert_eq!(*got, s),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }
}
