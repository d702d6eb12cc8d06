//! Encoding: records into a byte buffer, and a checksummed file writer.

use std::io::Write;

use crate::{CRC64, RDB_VERSION, op};

/// Appends RDB encodings to `buf`. A record is `[expiry] [idle|freq] type key
/// value`; the caller writes the type byte ([`Encoder::kind`]), the key
/// ([`Encoder::string`]) and the body (a string, or one of the body helpers).
#[derive(Debug, Default)]
pub struct Encoder {
    pub buf: Vec<u8>,
    /// Set: strings over 20 bytes are stored LZF-compressed when that
    /// saves at least 4 bytes (Redis's `rdbcompression yes`), by
    /// [`Encoder::compress_strings`].
    lzf: Option<Box<crate::lzf::Lzf>>,
    /// Strings written plain that `compress_strings` will compress:
    /// (where the length prefix starts, where the bytes start, how many).
    pending: Vec<(usize, usize, usize)>,
    scratch: Vec<u8>,
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder::default()
    }

    /// An encoder that compresses strings, as Redis does in its files.
    /// Encoding stays a copy (a snapshot encodes under a lock); the
    /// compression runs in [`Encoder::compress_strings`], after the lock.
    pub fn compressing() -> Encoder {
        Encoder {
            lzf: Some(Box::default()),
            ..Encoder::default()
        }
    }

    /// `REDIS0010`.
    pub fn header(&mut self) {
        self.buf.extend_from_slice(b"REDIS");
        self.buf
            .extend_from_slice(format!("{RDB_VERSION:04}").as_bytes());
    }

    pub fn aux(&mut self, key: &[u8], value: &[u8]) {
        self.buf.push(op::AUX);
        self.string(key);
        self.string(value);
    }

    pub fn select_db(&mut self, db: u64) {
        self.buf.push(op::SELECTDB);
        self.len(db);
    }

    pub fn resize_db(&mut self, keys: u64, expires: u64) {
        self.buf.push(op::RESIZEDB);
        self.len(keys);
        self.len(expires);
    }

    /// Absolute expiry, Unix milliseconds.
    pub fn expire_ms(&mut self, at: u64) {
        self.buf.push(op::EXPIRETIME_MS);
        self.buf.extend_from_slice(&at.to_le_bytes());
    }

    pub fn idle(&mut self, seconds: u64) {
        self.buf.push(op::IDLE);
        self.len(seconds);
    }

    pub fn freq(&mut self, freq: u8) {
        self.buf.push(op::FREQ);
        self.buf.push(freq);
    }

    pub fn kind(&mut self, k: u8) {
        self.buf.push(k);
    }

    /// Redis's length encoding: 6, 14, 32 or 64 bits.
    pub fn len(&mut self, n: u64) {
        push_len(&mut self.buf, n);
    }

    /// A string, integer-encoded when it is the canonical form of an integer
    /// that fits 32 bits (as Redis does; `"007"` stays a string).
    pub fn string(&mut self, s: &[u8]) {
        if s.len() <= 11
            && let Some(v) = canonical_int(s)
        {
            if let Ok(v) = i8::try_from(v) {
                self.buf.extend_from_slice(&[0xC0, v as u8]);
                return;
            }
            if let Ok(v) = i16::try_from(v) {
                self.buf.push(0xC1);
                self.buf.extend_from_slice(&v.to_le_bytes());
                return;
            }
            if let Ok(v) = i32::try_from(v) {
                self.buf.push(0xC2);
                self.buf.extend_from_slice(&v.to_le_bytes());
                return;
            }
        }
        let at = self.buf.len();
        self.len(s.len() as u64);
        if s.len() > 20 && self.lzf.is_some() {
            self.pending.push((at, self.buf.len(), s.len()));
        }
        self.buf.extend_from_slice(s);
    }

    /// Rewrites the strings written since the last call in their
    /// compressed form where that saves at least 4 bytes.
    pub fn compress_strings(&mut self) {
        let Some(lzf) = self.lzf.as_mut() else { return };
        let Some(&(first, ..)) = self.pending.first() else {
            return;
        };
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        let mut c = Vec::new();
        let mut cursor = first;
        for &(prefix, data, n) in &self.pending {
            out.extend_from_slice(&self.buf[cursor..prefix]);
            c.clear();
            if lzf.compress(&self.buf[data..data + n], &mut c, n - 4) {
                out.push(0xC3);
                push_len(&mut out, c.len() as u64);
                push_len(&mut out, n as u64);
                out.extend_from_slice(&c);
            } else {
                out.extend_from_slice(&self.buf[prefix..data + n]);
            }
            cursor = data + n;
        }
        out.extend_from_slice(&self.buf[cursor..]);
        self.buf.truncate(first);
        self.buf.extend_from_slice(&out);
        self.scratch = out;
        self.pending.clear();
    }

    /// A sorted-set score as `RDB_TYPE_ZSET_2` stores it: 8 bytes, little endian.
    pub fn double(&mut self, f: f64) {
        self.buf.extend_from_slice(&f.to_le_bytes());
    }

    /// A list's or set's body: the count, then each element.
    pub fn seq<S: AsRef<[u8]>>(&mut self, n: usize, items: impl Iterator<Item = S>) {
        self.len(n as u64);
        for s in items {
            self.string(s.as_ref());
        }
    }

    /// A hash's body (`kind::HASH`).
    pub fn hash<'a>(&mut self, n: usize, pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>) {
        self.len(n as u64);
        for (f, v) in pairs {
            self.string(f);
            self.string(v);
        }
    }

    /// A sorted set's body (`kind::ZSET_2`).
    pub fn zset<'a>(&mut self, n: usize, members: impl Iterator<Item = (&'a [u8], f64)>) {
        self.len(n as u64);
        for (m, score) in members {
            self.string(m);
            self.double(score);
        }
    }
}

fn push_len(buf: &mut Vec<u8>, n: u64) {
    if n < 1 << 6 {
        buf.push(n as u8);
    } else if n < 1 << 14 {
        buf.push(0x40 | (n >> 8) as u8);
        buf.push(n as u8);
    } else if n <= u32::MAX as u64 {
        buf.push(0x80);
        buf.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        buf.push(0x81);
        buf.extend_from_slice(&n.to_be_bytes());
    }
}

/// The integer `s` spells, if `s` is exactly how Redis would print it.
fn canonical_int(s: &[u8]) -> Option<i64> {
    let v: i64 = std::str::from_utf8(s).ok()?.parse().ok()?;
    (itoa::Buffer::new().format(v).as_bytes() == s).then_some(v)
}

/// A file (or socket) being written: everything passes through the CRC-64,
/// and [`FileWriter::finish`] appends the EOF opcode and the checksum.
pub struct FileWriter<W: Write> {
    w: W,
    digest: crc::Digest<'static, u64>,
    written: u64,
}

impl<W: Write> FileWriter<W> {
    pub fn new(w: W) -> FileWriter<W> {
        FileWriter {
            w,
            digest: CRC64.digest(),
            written: 0,
        }
    }

    pub fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.digest.update(bytes);
        self.written += bytes.len() as u64;
        self.w.write_all(bytes)
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    /// EOF, then the checksum of everything before it (EOF included).
    pub fn finish(mut self) -> std::io::Result<W> {
        self.write(&[op::EOF])?;
        let crc = self.digest.finalize();
        self.w.write_all(&crc.to_le_bytes())?;
        self.w.flush()?;
        Ok(self.w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Item, Loader, Value, kind};

    #[test]
    fn compressed_strings_load_back_and_shrink_the_file() {
        let records: Vec<(Vec<u8>, Vec<u8>)> = (0..200)
            .map(|i| {
                let v = if i % 3 == 0 {
                    format!("short{i}").into_bytes()
                } else {
                    format!("value:{i:08}:").repeat(10).into_bytes()
                };
                (format!("key:{i}:{}", "k".repeat(i % 30)).into_bytes(), v)
            })
            .collect();
        let encode = |mut e: Encoder| {
            e.header();
            e.select_db(0);
            for (chunk, part) in records.chunks(7).enumerate() {
                for (k, v) in part {
                    e.kind(kind::STRING);
                    e.string(k);
                    e.string(v);
                }
                // as a snapshot does: after each lock hold
                if chunk % 2 == 0 {
                    e.compress_strings();
                }
            }
            e.compress_strings();
            let mut w = FileWriter::new(Vec::new());
            w.write(&e.buf).unwrap();
            w.finish().unwrap()
        };
        let plain = encode(Encoder::new());
        let packed = encode(Encoder::compressing());
        assert!(
            packed.len() * 3 < plain.len(),
            "{} vs {}",
            packed.len(),
            plain.len()
        );
        for file in [plain, packed] {
            let mut l = Loader::new(&file[..]).unwrap();
            let mut got = Vec::new();
            while let Some(item) = l.next_item().unwrap() {
                if let Item::Record(r) = item {
                    let Value::Str(v) = r.value else { panic!() };
                    got.push((r.key, v));
                }
            }
            assert_eq!(got, records);
        }
    }
}
