//! Decoding: a streaming loader for files (and replication payloads), and
//! [`value`] for one value (DUMP payloads).

use std::io::Read;

use crate::listpack::{intset, listpack, ziplist, zipmap};
use crate::{CRC64, Error, RDB_VERSION, Result, kind, op};

/// A compact container's decoder (listpack or ziplist).
type Decoder = fn(&[u8]) -> Result<Vec<Vec<u8>>>;

/// One value, in plain owned form. Integers held in compact encodings are
/// spelled in decimal, as Redis returns them.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(Vec<u8>),
    List(Vec<Vec<u8>>),
    Set(Vec<Vec<u8>>),
    Hash(Vec<(Vec<u8>, Vec<u8>)>),
    ZSet(Vec<(Vec<u8>, f64)>),
    Stream(Box<crate::stream::StreamData>),
}

/// A key with its value and metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub db: u64,
    pub key: Vec<u8>,
    pub value: Value,
    /// Absolute expiry, Unix milliseconds.
    pub expire_ms: Option<u64>,
    /// Seconds idle (LRU) or the LFU counter, when the file has them.
    pub idle: Option<u64>,
    pub freq: Option<u8>,
}

/// What a file holds besides records.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Aux(Vec<u8>, Vec<u8>),
    /// A function library's source (Redis 7 `FUNCTION LOAD` code).
    Function(Vec<u8>),
    Record(Record),
    /// End of file; the checksum has been verified (or was zero: not computed).
    Eof,
}

/// Bytes with a running CRC and position.
struct Input<R: Read> {
    r: R,
    digest: crc::Digest<'static, u64>,
    pos: u64,
}

impl<R: Read> Input<R> {
    fn exact(&mut self, buf: &mut [u8]) -> Result<()> {
        self.r.read_exact(buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => Error::Truncated,
            _ => Error::Io(e),
        })?;
        self.digest.update(buf);
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn byte(&mut self) -> Result<u8> {
        let mut b = [0u8; 1];
        self.exact(&mut b)?;
        Ok(b[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut b = [0u8; N];
        self.exact(&mut b)?;
        Ok(b)
    }

    fn corrupt(&self, what: impl Into<String>) -> Error {
        Error::Corrupt {
            at: self.pos,
            what: what.into(),
        }
    }

    /// A length, or `Err` for an encoded-string marker where a length must be.
    fn len(&mut self) -> Result<u64> {
        match self.len_or_enc()? {
            Len::Len(n) => Ok(n),
            Len::Enc(_) => Err(self.corrupt("encoded value where a length belongs")),
        }
    }

    fn len_or_enc(&mut self) -> Result<Len> {
        let b = self.byte()?;
        Ok(match b >> 6 {
            0 => Len::Len((b & 0x3F) as u64),
            1 => Len::Len((((b & 0x3F) as u64) << 8) | self.byte()? as u64),
            2 => match b {
                0x80 => Len::Len(u32::from_be_bytes(self.array()?) as u64),
                0x81 => Len::Len(u64::from_be_bytes(self.array()?)),
                _ => return Err(self.corrupt(format!("unknown length encoding {b:#x}"))),
            },
            _ => Len::Enc(b & 0x3F),
        })
    }

    /// Reads `n` bytes, refusing sizes no sane file holds before allocating.
    fn bytes(&mut self, n: u64) -> Result<Vec<u8>> {
        if n > MAX_STRING {
            return Err(self.corrupt(format!("string of {n} bytes")));
        }
        // Exact-size buffers (they become boxed values without a copy).
        // Past 1 MiB the buffer grows as bytes arrive, so a corrupt length
        // cannot allocate more than the input holds.
        if n <= 1 << 20 {
            let mut v = vec![0; n as usize];
            self.exact(&mut v)?;
            return Ok(v);
        }
        let mut v = Vec::new();
        if (&mut self.r).take(n).read_to_end(&mut v)? as u64 != n {
            return Err(Error::Truncated);
        }
        self.digest.update(&v);
        self.pos += n;
        Ok(v)
    }

    /// A stream (types 15 and 19; 19 adds first/max-deleted IDs, the
    /// added count and each group's entries-read).
    fn stream(&mut self, v2: bool) -> Result<crate::stream::StreamData> {
        use crate::stream::{ConsumerData, GroupData, StreamData, node_entries, parse_id};
        let mut s = StreamData::default();
        let nodes = self.len()?;
        for _ in 0..nodes {
            let master = parse_id(&self.string()?).map_err(|e| self.at(e))?;
            let lp = self.string()?;
            node_entries(master, &lp, &mut s.entries).map_err(|e| self.at(e))?;
        }
        let length = self.len()?;
        s.last_id = (self.len()?, self.len()?);
        if v2 {
            s.first_id = (self.len()?, self.len()?);
            s.max_deleted = (self.len()?, self.len()?);
            s.entries_added = self.len()?;
        } else {
            s.first_id = s.entries.first().map(|e| e.0).unwrap_or_default();
            s.entries_added = length;
        }
        let ngroups = self.len()?;
        for _ in 0..ngroups {
            let mut g = GroupData {
                name: self.string()?,
                last_id: (self.len()?, self.len()?),
                entries_read: -1,
                ..Default::default()
            };
            if v2 {
                g.entries_read = self.len()? as i64;
            }
            let n = self.len()?;
            for _ in 0..n {
                let id = parse_id(&self.array::<16>()?).map_err(|e| self.at(e))?;
                let time = u64::from_le_bytes(self.array()?);
                let count = self.len()?;
                g.pel.push((id, time, count));
            }
            let nc = self.len()?;
            for _ in 0..nc {
                let mut c = ConsumerData {
                    name: self.string()?,
                    seen_time: u64::from_le_bytes(self.array()?),
                    pel: Vec::new(),
                };
                let n = self.len()?;
                for _ in 0..n {
                    c.pel
                        .push(parse_id(&self.array::<16>()?).map_err(|e| self.at(e))?);
                }
                g.consumers.push(c);
            }
            s.groups.push(g);
        }
        Ok(s)
    }

    fn string(&mut self) -> Result<Vec<u8>> {
        match self.len_or_enc()? {
            Len::Len(n) => self.bytes(n),
            Len::Enc(0) => Ok(itoa(self.byte()? as i8 as i64)),
            Len::Enc(1) => Ok(itoa(i16::from_le_bytes(self.array()?) as i64)),
            Len::Enc(2) => Ok(itoa(i32::from_le_bytes(self.array()?) as i64)),
            Len::Enc(3) => {
                let clen = self.len()?;
                let ulen = self.len()?;
                if ulen > MAX_STRING {
                    return Err(self.corrupt(format!("string of {ulen} bytes")));
                }
                let c = self.bytes(clen)?;
                let out = lzf::decompress(&c, ulen as usize)
                    .map_err(|e| self.corrupt(format!("LZF: {e:?}")))?;
                if out.len() as u64 != ulen {
                    return Err(self.corrupt("LZF length mismatch"));
                }
                Ok(out)
            }
            Len::Enc(e) => Err(self.corrupt(format!("unknown string encoding {e}"))),
        }
    }

    /// A count of elements about to be read; each takes at least a byte, so
    /// a count beyond what could fit is corruption, not an allocation.
    fn count(&mut self) -> Result<usize> {
        let n = self.len()?;
        if n > MAX_STRING {
            return Err(self.corrupt(format!("count {n}")));
        }
        Ok(n as usize)
    }

    fn value(&mut self, t: u8) -> Result<Value> {
        let cap = |n: usize| n.min(1 << 16);
        Ok(match t {
            kind::STRING => Value::Str(self.string()?),
            kind::LIST | kind::SET => {
                let n = self.count()?;
                let mut v = Vec::with_capacity(cap(n));
                for _ in 0..n {
                    v.push(self.string()?);
                }
                if t == kind::LIST {
                    Value::List(v)
                } else {
                    Value::Set(v)
                }
            }
            kind::ZSET | kind::ZSET_2 => {
                let n = self.count()?;
                let mut v = Vec::with_capacity(cap(n));
                for _ in 0..n {
                    let m = self.string()?;
                    let score = if t == kind::ZSET_2 {
                        f64::from_le_bytes(self.array()?)
                    } else {
                        self.old_double()?
                    };
                    if score.is_nan() {
                        return Err(self.corrupt("NaN score"));
                    }
                    v.push((m, score));
                }
                Value::ZSet(v)
            }
            kind::HASH => {
                let n = self.count()?;
                let mut v = Vec::with_capacity(cap(n));
                for _ in 0..n {
                    let f = self.string()?;
                    v.push((f, self.string()?));
                }
                Value::Hash(v)
            }
            kind::SET_INTSET => Value::Set(intset(&self.string()?).map_err(|e| self.at(e))?),
            kind::HASH_LISTPACK => Value::Hash(self.pairs(listpack)?),
            kind::ZSET_LISTPACK => Value::ZSet(self.scored(listpack)?),
            kind::LIST_QUICKLIST_2 => {
                let nodes = self.count()?;
                let mut v = Vec::new();
                for _ in 0..nodes {
                    let container = self.len()?;
                    let data = self.string()?;
                    match container {
                        1 => v.push(data), // PLAIN: one large element
                        2 => v.extend(listpack(&data).map_err(|e| self.at(e))?),
                        c => return Err(self.corrupt(format!("quicklist container {c}"))),
                    }
                }
                Value::List(v)
            }
            kind::MODULE | kind::MODULE_2 => {
                return Err(Error::Unsupported("module values".into()));
            }
            kind::STREAM_LISTPACKS | kind::STREAM_LISTPACKS_2 => {
                Value::Stream(Box::new(self.stream(t == kind::STREAM_LISTPACKS_2)?))
            }
            // Redis before 7.0
            kind::HASH_ZIPMAP => Value::Hash(zipmap(&self.string()?).map_err(|e| self.at(e))?),
            kind::LIST_ZIPLIST => Value::List(ziplist(&self.string()?).map_err(|e| self.at(e))?),
            kind::HASH_ZIPLIST => Value::Hash(self.pairs(ziplist)?),
            kind::ZSET_ZIPLIST => Value::ZSet(self.scored(ziplist)?),
            kind::LIST_QUICKLIST => {
                let nodes = self.count()?;
                let mut v = Vec::new();
                for _ in 0..nodes {
                    v.extend(ziplist(&self.string()?).map_err(|e| self.at(e))?);
                }
                Value::List(v)
            }
            t => return Err(self.corrupt(format!("unknown value type {t}"))),
        })
    }

    /// A listpack or ziplist of alternating fields and values (hashes,
    /// sorted sets).
    fn pairs(&mut self, decode: Decoder) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let items = decode(&self.string()?).map_err(|e| self.at(e))?;
        if items.len() % 2 != 0 {
            return Err(self.corrupt("compact pairs with an odd number of elements"));
        }
        let mut it = items.into_iter();
        let mut v = Vec::with_capacity(it.len() / 2);
        while let (Some(a), Some(b)) = (it.next(), it.next()) {
            v.push((a, b));
        }
        Ok(v)
    }

    /// A sorted set's member/score pairs from a listpack or ziplist.
    fn scored(&mut self, decode: Decoder) -> Result<Vec<(Vec<u8>, f64)>> {
        let mut v = Vec::new();
        for (m, s) in self.pairs(decode)? {
            let score = std::str::from_utf8(&s)
                .ok()
                .and_then(|s| s.parse::<f64>().ok())
                .filter(|f| !f.is_nan())
                .ok_or_else(|| self.corrupt("bad score in a compact sorted set"))?;
            v.push((m, score));
        }
        Ok(v)
    }

    /// `RDB_TYPE_ZSET`'s scores: a length byte and ASCII, or nan/inf markers.
    fn old_double(&mut self) -> Result<f64> {
        let n = self.byte()?;
        match n {
            253 => Ok(f64::NAN),
            254 => Ok(f64::INFINITY),
            255 => Ok(f64::NEG_INFINITY),
            n => {
                let b = self.bytes(n as u64)?;
                std::str::from_utf8(&b)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| self.corrupt("bad score"))
            }
        }
    }

    /// Places a container decoding error at the current position.
    fn at(&self, e: Error) -> Error {
        match e {
            Error::Corrupt { what, .. } => self.corrupt(what),
            e => e,
        }
    }
}

enum Len {
    Len(u64),
    Enc(u8),
}

/// No single string in a sane file is larger (Redis's proto-max-bulk-len is 512 MB).
const MAX_STRING: u64 = 1 << 32;

fn itoa(v: i64) -> Vec<u8> {
    itoa::Buffer::new().format(v).as_bytes().to_vec()
}

/// Reads an RDB stream item by item. Callers that must not apply half a file
/// collect the records and commit only after [`Item::Eof`] (the checksum is
/// checked there).
pub struct Loader<R: Read> {
    input: Input<R>,
    pub version: u32,
    db: u64,
    done: bool,
}

impl<R: Read> Loader<R> {
    /// Checks the `REDIS00NN` header.
    pub fn new(r: R) -> Result<Loader<R>> {
        let mut input = Input {
            r,
            digest: CRC64.digest(),
            pos: 0,
        };
        let magic: [u8; 9] = input.array().map_err(|e| match e {
            Error::Truncated => Error::Magic,
            e => e,
        })?;
        if &magic[..5] != b"REDIS" {
            return Err(Error::Magic);
        }
        let version: u32 = std::str::from_utf8(&magic[5..])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(Error::Magic)?;
        if version < 1 || version > RDB_VERSION as u32 {
            return Err(Error::Version(version));
        }
        Ok(Loader {
            input,
            version,
            db: 0,
            done: false,
        })
    }

    /// The next item; `Eof` once, then `None`.
    pub fn next_item(&mut self) -> Result<Option<Item>> {
        if self.done {
            return Ok(None);
        }
        let mut expire_ms = None;
        let mut idle = None;
        let mut freq = None;
        loop {
            let t = self.input.byte()?;
            match t {
                op::EOF => {
                    self.done = true;
                    if self.version >= 5 {
                        let computed = self.input.digest.clone().finalize();
                        let mut b = [0u8; 8];
                        self.input
                            .r
                            .read_exact(&mut b)
                            .map_err(|_| Error::Truncated)?;
                        let stored = u64::from_le_bytes(b);
                        if stored != 0 && stored != computed {
                            return Err(Error::Checksum { stored, computed });
                        }
                    }
                    return Ok(Some(Item::Eof));
                }
                op::SELECTDB => self.db = self.input.len()?,
                op::RESIZEDB => {
                    self.input.len()?;
                    self.input.len()?;
                }
                op::AUX => {
                    let k = self.input.string()?;
                    let v = self.input.string()?;
                    return Ok(Some(Item::Aux(k, v)));
                }
                op::FUNCTION2 => return Ok(Some(Item::Function(self.input.string()?))),
                op::FUNCTION => {
                    return Err(Error::Unsupported(
                        "pre-release 7.0 function records".into(),
                    ));
                }
                op::MODULE_AUX => return Err(Error::Unsupported("module data".into())),
                op::EXPIRETIME_MS => expire_ms = Some(u64::from_le_bytes(self.input.array()?)),
                op::EXPIRETIME => {
                    expire_ms = Some(u32::from_le_bytes(self.input.array()?) as u64 * 1000)
                }
                op::IDLE => idle = Some(self.input.len()?),
                op::FREQ => freq = Some(self.input.byte()?),
                t => {
                    let key = self.input.string()?;
                    let value = self.input.value(t)?;
                    return Ok(Some(Item::Record(Record {
                        db: self.db,
                        key,
                        value,
                        expire_ms,
                        idle,
                        freq,
                    })));
                }
            }
        }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> u64 {
        self.input.pos
    }

    pub fn into_inner(self) -> R {
        self.input.r
    }
}

/// One value of type `t` from `data` (a DUMP payload's body); `data` must
/// hold exactly that value.
pub fn value(t: u8, data: &[u8]) -> Result<Value> {
    let mut input = Input {
        r: data,
        digest: CRC64.digest(),
        pos: 0,
    };
    let v = input.value(t)?;
    if !input.r.is_empty() {
        return Err(input.corrupt("trailing bytes after the value"));
    }
    Ok(v)
}
