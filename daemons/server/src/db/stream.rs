//! The stream type: entries by ID in a B-tree, the counters Redis 7.0
//! keeps (last ID, max deleted ID, entries added), and consumer groups
//! with their pending-entries lists.

use std::collections::{BTreeMap, BTreeSet};

use kvfleet_rdb::stream::{ConsumerData, GroupData, StreamData};

use super::value::Bytes;

/// An entry's field/value pairs in one allocation: the item count, then
/// each item as `[len][bytes]`, counts and lengths LEB128. A boxed slice of
/// boxed items cost an allocation per field and per value plus the slice
/// (an XADD of one pair: ~64 bytes in three allocations; this: 16 in one).
#[derive(Clone, PartialEq, Eq)]
pub struct Fields(Box<[u8]>);

impl Fields {
    pub fn new<T: AsRef<[u8]>>(items: &[T]) -> Fields {
        let body: usize = items
            .iter()
            .map(|i| varint_len(i.as_ref().len()) + i.as_ref().len())
            .sum();
        let mut v = Vec::with_capacity(varint_len(items.len()) + body);
        put_varint(&mut v, items.len());
        for i in items {
            put_varint(&mut v, i.as_ref().len());
            v.extend_from_slice(i.as_ref());
        }
        Fields(v.into_boxed_slice())
    }

    /// Items (fields and values both).
    pub fn len(&self) -> usize {
        get_varint(&self.0).0
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn heap_bytes(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> FieldsIter<'_> {
        let (left, at) = get_varint(&self.0);
        FieldsIter {
            buf: &self.0[at..],
            left,
        }
    }
}

impl std::fmt::Debug for Fields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.iter().map(String::from_utf8_lossy))
            .finish()
    }
}

pub struct FieldsIter<'a> {
    buf: &'a [u8],
    left: usize,
}

impl<'a> Iterator for FieldsIter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let (len, at) = get_varint(self.buf);
        let (item, rest) = self.buf[at..].split_at(len);
        self.buf = rest;
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for FieldsIter<'_> {}

fn varint_len(mut n: usize) -> usize {
    let mut len = 1;
    while n >= 0x80 {
        n >>= 7;
        len += 1;
    }
    len
}

fn put_varint(v: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        v.push(n as u8 | 0x80);
        n >>= 7;
    }
    v.push(n as u8);
}

/// The value and the bytes it took; only ever reads what `put_varint` wrote.
fn get_varint(b: &[u8]) -> (usize, usize) {
    let (mut n, mut shift, mut i) = (0usize, 0, 0);
    loop {
        let byte = b[i];
        n |= ((byte & 0x7f) as usize) << shift;
        i += 1;
        if byte < 0x80 {
            return (n, i);
        }
        shift += 7;
    }
}

/// A formatted [`StreamId`]: two u64s and a dash fit in 41 bytes.
pub struct IdText {
    buf: [u8; 41],
    len: usize,
}

impl IdText {
    fn push(&mut self, b: &[u8]) {
        self.buf[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
    }
}

impl std::ops::Deref for IdText {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    pub const MIN: StreamId = StreamId { ms: 0, seq: 0 };
    pub const MAX: StreamId = StreamId {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    pub fn new(ms: u64, seq: u64) -> StreamId {
        StreamId { ms, seq }
    }

    /// `ms-seq`, on the stack (replies format an ID per entry).
    pub fn fmt(&self) -> IdText {
        let mut t = IdText {
            buf: [0; 41],
            len: 0,
        };
        let mut b = itoa::Buffer::new();
        t.push(b.format(self.ms).as_bytes());
        t.push(b"-");
        t.push(b.format(self.seq).as_bytes());
        t
    }

    /// The next ID, `None` past the last.
    pub fn next(&self) -> Option<StreamId> {
        if self.seq < u64::MAX {
            Some(StreamId::new(self.ms, self.seq + 1))
        } else if self.ms < u64::MAX {
            Some(StreamId::new(self.ms + 1, 0))
        } else {
            None
        }
    }

    pub fn prev(&self) -> Option<StreamId> {
        if self.seq > 0 {
            Some(StreamId::new(self.ms, self.seq - 1))
        } else if self.ms > 0 {
            Some(StreamId::new(self.ms - 1, u64::MAX))
        } else {
            None
        }
    }

    fn pair(&self) -> (u64, u64) {
        (self.ms, self.seq)
    }

    fn from_pair(p: (u64, u64)) -> StreamId {
        StreamId::new(p.0, p.1)
    }
}

/// A pending entry: delivered to `consumer`, not yet acknowledged.
#[derive(Debug, Clone)]
pub struct Pending {
    pub consumer: Bytes,
    pub delivery_time: u64,
    pub delivery_count: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Consumer {
    pub seen_time: u64,
    pub pel: BTreeSet<StreamId>,
}

#[derive(Debug, Clone, Default)]
pub struct Group {
    pub last_id: StreamId,
    /// Redis's `entries_read`: -1 when unknown.
    pub entries_read: i64,
    pub pel: BTreeMap<StreamId, Pending>,
    pub consumers: BTreeMap<Bytes, Consumer>,
}

#[derive(Debug, Clone, Default)]
pub struct Stream {
    /// Field/value pairs flattened, per entry.
    pub entries: BTreeMap<StreamId, Fields>,
    pub last_id: StreamId,
    pub max_deleted: StreamId,
    pub entries_added: u64,
    pub groups: BTreeMap<Bytes, Group>,
}

impl Stream {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn first_id(&self) -> StreamId {
        self.entries.keys().next().copied().unwrap_or_default()
    }

    pub fn to_rdb(&self) -> StreamData {
        StreamData {
            entries: self
                .entries
                .iter()
                .map(|(id, fv)| (id.pair(), fv.iter().map(|b| b.to_vec()).collect()))
                .collect(),
            last_id: self.last_id.pair(),
            first_id: self.first_id().pair(),
            max_deleted: self.max_deleted.pair(),
            entries_added: self.entries_added,
            groups: self
                .groups
                .iter()
                .map(|(name, g)| GroupData {
                    name: name.to_vec(),
                    last_id: g.last_id.pair(),
                    entries_read: g.entries_read,
                    pel: g
                        .pel
                        .iter()
                        .map(|(id, p)| (id.pair(), p.delivery_time, p.delivery_count))
                        .collect(),
                    consumers: g
                        .consumers
                        .iter()
                        .map(|(cn, c)| ConsumerData {
                            name: cn.to_vec(),
                            seen_time: c.seen_time,
                            pel: c.pel.iter().map(|id| id.pair()).collect(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    pub fn from_rdb(d: StreamData) -> Result<Stream, &'static str> {
        let mut s = Stream {
            last_id: StreamId::from_pair(d.last_id),
            max_deleted: StreamId::from_pair(d.max_deleted),
            entries_added: d.entries_added,
            ..Default::default()
        };
        for (id, fv) in d.entries {
            if fv.is_empty() || fv.len() % 2 != 0 {
                return Err("stream entry without field/value pairs");
            }
            s.entries.insert(StreamId::from_pair(id), Fields::new(&fv));
        }
        for g in d.groups {
            let mut group = Group {
                last_id: StreamId::from_pair(g.last_id),
                entries_read: g.entries_read,
                ..Default::default()
            };
            let times: BTreeMap<StreamId, (u64, u64)> = g
                .pel
                .iter()
                .map(|(id, t, c)| (StreamId::from_pair(*id), (*t, *c)))
                .collect();
            for c in g.consumers {
                let name: Bytes = c.name.into();
                let mut consumer = Consumer {
                    seen_time: c.seen_time,
                    ..Default::default()
                };
                for id in c.pel {
                    let id = StreamId::from_pair(id);
                    let Some(&(t, n)) = times.get(&id) else {
                        return Err("consumer PEL entry missing from the group's PEL");
                    };
                    consumer.pel.insert(id);
                    group.pel.insert(
                        id,
                        Pending {
                            consumer: name.clone(),
                            delivery_time: t,
                            delivery_count: n,
                        },
                    );
                }
                group.consumers.insert(name, consumer);
            }
            if group.pel.len() != times.len() {
                return Err("group PEL entry owned by no consumer");
            }
            s.groups.insert(g.name.into(), group);
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::StreamId;

    #[test]
    fn fields_keep_their_items_and_order() {
        use super::Fields;
        let long = vec![b'x'; 300];
        let items: [&[u8]; 4] = [b"f", b"", &long, b"v"];
        let f = Fields::new(&items);
        assert_eq!(f.len(), 4);
        assert_eq!(f.iter().collect::<Vec<_>>(), items);
        assert_eq!(f.iter().len(), 4);
        assert!(Fields::new::<&[u8]>(&[]).is_empty());
    }

    #[test]
    fn ids_format_as_redis_prints_them() {
        assert_eq!(&*StreamId::new(0, 0).fmt(), b"0-0");
        assert_eq!(
            &*StreamId::new(1526919030474, 55).fmt(),
            b"1526919030474-55"
        );
        let max = StreamId::MAX.fmt();
        assert_eq!(max.len(), 41);
        assert_eq!(&*max, format!("{}-{}", u64::MAX, u64::MAX).as_bytes());
    }
}
