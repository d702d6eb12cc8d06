//! The compact containers Redis writes inside RDB strings: listpacks
//! (7.0: small hashes, sorted sets, list nodes), intsets (small integer
//! sets), and the older ziplists (3.2–6.2) and zipmaps (before 2.6), so
//! files from the Redis versions Codis and twemproxy fleets run load too.

use crate::{Error, Result};

fn corrupt(what: &str) -> Error {
    Error::Corrupt {
        at: 0,
        what: what.into(),
    }
}

/// Every element of a listpack, integers spelled in decimal.
pub fn listpack(lp: &[u8]) -> Result<Vec<Vec<u8>>> {
    let bad = || corrupt("bad listpack");
    if lp.len() < 7 {
        return Err(bad());
    }
    let total = u32::from_le_bytes(lp[0..4].try_into().expect("4 bytes")) as usize;
    if total != lp.len() || lp[total - 1] != 0xFF {
        return Err(bad());
    }
    let count = u16::from_le_bytes([lp[4], lp[5]]) as usize;
    let mut out = Vec::with_capacity(count);
    let mut p = 6;
    loop {
        let b = *lp.get(p).ok_or_else(bad)?;
        if b == 0xFF {
            break;
        }
        let need = |n: usize| lp.get(p..p + n).ok_or_else(bad);
        let (elem, len): (Vec<u8>, usize) = if b & 0x80 == 0 {
            (int(i64::from(b & 0x7F)), 1)
        } else if b & 0xC0 == 0x80 {
            let n = (b & 0x3F) as usize;
            (need(1 + n)?[1..].to_vec(), 1 + n)
        } else if b & 0xE0 == 0xC0 {
            let h = need(2)?;
            let u = ((h[0] as u64 & 0x1F) << 8) | h[1] as u64;
            (int(sign_extend(u, 13)), 2)
        } else if b & 0xF0 == 0xE0 {
            let h = need(2)?;
            let n = ((h[0] as usize & 0x0F) << 8) | h[1] as usize;
            (need(2 + n)?[2..].to_vec(), 2 + n)
        } else {
            match b {
                0xF0 => {
                    let h = need(5)?;
                    let n = u32::from_le_bytes(h[1..5].try_into().expect("4 bytes")) as usize;
                    (need(5 + n)?[5..].to_vec(), 5 + n)
                }
                0xF1..=0xF4 => {
                    let w = [2, 3, 4, 8][(b - 0xF1) as usize];
                    let h = need(1 + w)?;
                    let mut u = 0u64;
                    for (i, x) in h[1..].iter().enumerate() {
                        u |= (*x as u64) << (8 * i);
                    }
                    (int(sign_extend(u, 8 * w as u32)), 1 + w)
                }
                _ => return Err(bad()),
            }
        };
        p += len + backlen_size(len);
        if p > lp.len() {
            return Err(bad());
        }
        out.push(elem);
    }
    if count != 0xFFFF && count != out.len() {
        return Err(bad());
    }
    Ok(out)
}

/// Bytes the back-length of an entry of `len` bytes takes.
fn backlen_size(len: usize) -> usize {
    match len {
        0..=127 => 1,
        128..=16382 => 2,
        16383..=2097150 => 3,
        2097151..=268435454 => 4,
        _ => 5,
    }
}

fn sign_extend(u: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((u << shift) as i64) >> shift
}

fn int(v: i64) -> Vec<u8> {
    itoa::Buffer::new().format(v).as_bytes().to_vec()
}

/// Every element of a ziplist, integers spelled in decimal.
pub fn ziplist(zl: &[u8]) -> Result<Vec<Vec<u8>>> {
    let bad = || corrupt("bad ziplist");
    if zl.len() < 11 {
        return Err(bad());
    }
    let total = u32::from_le_bytes(zl[0..4].try_into().expect("4 bytes")) as usize;
    if total != zl.len() || zl[total - 1] != 0xFF {
        return Err(bad());
    }
    let count = u16::from_le_bytes([zl[8], zl[9]]) as usize;
    let mut out = Vec::with_capacity(count.min(zl.len()));
    let mut p = 10;
    loop {
        let first = *zl.get(p).ok_or_else(bad)?;
        if first == 0xFF {
            break;
        }
        // the previous entry's length: 1 byte, or 0xFE and 4 bytes
        p += if first < 0xFE { 1 } else { 5 };
        let b = *zl.get(p).ok_or_else(bad)?;
        let need = |n: usize| zl.get(p..p + n).ok_or_else(bad);
        let le = |h: &[u8]| {
            let mut u = 0u64;
            for (i, x) in h.iter().enumerate() {
                u |= (*x as u64) << (8 * i);
            }
            u
        };
        let (elem, len) = match b >> 6 {
            0 => {
                let n = (b & 0x3F) as usize;
                (need(1 + n)?[1..].to_vec(), 1 + n)
            }
            1 => {
                let h = need(2)?;
                let n = ((h[0] as usize & 0x3F) << 8) | h[1] as usize;
                (need(2 + n)?[2..].to_vec(), 2 + n)
            }
            2 => {
                let h = need(5)?;
                let n = u32::from_be_bytes(h[1..5].try_into().expect("4 bytes")) as usize;
                (need(5 + n)?[5..].to_vec(), 5 + n)
            }
            _ => match b {
                0xC0 => (int(sign_extend(le(&need(3)?[1..]), 16)), 3),
                0xD0 => (int(sign_extend(le(&need(5)?[1..]), 32)), 5),
                0xE0 => (int(le(&need(9)?[1..]) as i64), 9),
                0xF0 => (int(sign_extend(le(&need(4)?[1..]), 24)), 4),
                0xFE => (int(need(2)?[1] as i8 as i64), 2),
                0xF1..=0xFD => (int(i64::from(b & 0x0F) - 1), 1),
                _ => return Err(bad()),
            },
        };
        p += len;
        out.push(elem);
    }
    // 0xFFFF: too many to count in the header
    if count != 0xFFFF && count != out.len() {
        return Err(bad());
    }
    Ok(out)
}

/// A zipmap's field/value pairs (hashes in files from before Redis 2.6).
pub fn zipmap(zm: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let bad = || corrupt("bad zipmap");
    let mut p = 1;
    let mut out = Vec::new();
    let len_at = |p: &mut usize| -> Result<Option<usize>> {
        let b = *zm.get(*p).ok_or_else(bad)?;
        *p += 1;
        Ok(match b {
            0xFF => None,
            0xFE => {
                let h = zm.get(*p..*p + 4).ok_or_else(bad)?;
                *p += 4;
                Some(u32::from_le_bytes(h.try_into().expect("4 bytes")) as usize)
            }
            n => Some(n as usize),
        })
    };
    while let Some(klen) = len_at(&mut p)? {
        let k = zm.get(p..p + klen).ok_or_else(bad)?.to_vec();
        p += klen;
        let vlen = len_at(&mut p)?.ok_or_else(bad)?;
        let free = *zm.get(p).ok_or_else(bad)? as usize;
        p += 1;
        let v = zm.get(p..p + vlen).ok_or_else(bad)?.to_vec();
        p += vlen + free;
        out.push((k, v));
    }
    Ok(out)
}

/// Every member of an intset, in decimal.
pub fn intset(is: &[u8]) -> Result<Vec<Vec<u8>>> {
    let bad = || corrupt("bad intset");
    if is.len() < 8 {
        return Err(bad());
    }
    let width = u32::from_le_bytes(is[0..4].try_into().expect("4 bytes")) as usize;
    let n = u32::from_le_bytes(is[4..8].try_into().expect("4 bytes")) as usize;
    if !matches!(width, 2 | 4 | 8) || is.len() != 8 + width * n {
        return Err(bad());
    }
    Ok(is[8..]
        .chunks_exact(width)
        .map(|c| {
            let v = match width {
                2 => i16::from_le_bytes(c.try_into().expect("2")) as i64,
                4 => i32::from_le_bytes(c.try_into().expect("4")) as i64,
                _ => i64::from_le_bytes(c.try_into().expect("8")),
            };
            int(v)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_each_listpack_encoding() {
        // "a", 5, -1 (13-bit), 1000 (13-bit), 70000 (24-bit), a 70-byte string (12-bit len)
        let mut lp = vec![0, 0, 0, 0, 6, 0];
        lp.extend_from_slice(&[0x81, b'a', 2]);
        lp.extend_from_slice(&[5, 1]);
        lp.extend_from_slice(&[0xDF, 0xFF, 2]);
        lp.extend_from_slice(&[0xC3, 0xE8, 2]);
        lp.extend_from_slice(&[0xF2, 0x70, 0x11, 0x01, 4]);
        lp.extend_from_slice(&[0xE0, 70]);
        lp.extend_from_slice(&[b'x'; 70]);
        lp.push(72);
        lp.push(0xFF);
        let total = lp.len() as u32;
        lp[0..4].copy_from_slice(&total.to_le_bytes());
        let got = listpack(&lp).unwrap();
        let want: Vec<Vec<u8>> = vec![
            b"a".to_vec(),
            b"5".to_vec(),
            b"-1".to_vec(),
            b"1000".to_vec(),
            b"70000".to_vec(),
            vec![b'x'; 70],
        ];
        assert_eq!(got, want);
    }

    /// A ziplist of `entries` (each the encoding bytes and payload), with
    /// the prev-length fields filled in as Redis writes them.
    fn build_ziplist(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut zl = vec![0; 10];
        let mut prev = 0usize;
        for e in entries {
            let start = zl.len();
            if prev < 254 {
                zl.push(prev as u8);
            } else {
                zl.push(0xFE);
                zl.extend_from_slice(&(prev as u32).to_le_bytes());
            }
            zl.extend_from_slice(e);
            prev = zl.len() - start;
        }
        zl.push(0xFF);
        let total = zl.len() as u32;
        zl[0..4].copy_from_slice(&total.to_le_bytes());
        zl[8..10].copy_from_slice(&(entries.len() as u16).to_le_bytes());
        zl
    }

    #[test]
    fn decodes_each_ziplist_encoding() {
        let mut long = vec![0x40 | 1, 44]; // 14-bit length 300
        long.extend_from_slice(&[b'y'; 300]);
        let mut huge = vec![0x80, 0, 0, 0x40, 0]; // 32-bit length 16384
        huge.extend_from_slice(&[b'z'; 16384]);
        let entries = vec![
            vec![1, b'a'],                         // 6-bit string
            long,                                  // 14-bit string (prev < 254)
            vec![0xF1],                            // immediate 0
            vec![0xFD],                            // immediate 12
            vec![0xFE, 0x80],                      // int8 -128
            vec![0xC0, 0x39, 0x30],                // int16 12345
            vec![0xF0, 0xFF, 0xFF, 0x7F],          // int24 8388607
            vec![0xD0, 0, 0, 0, 0x80],             // int32 min
            vec![0xE0, 1, 0, 0, 0, 0, 0, 0, 0x80], // int64
            huge,
            vec![0], // empty string after a 5-byte prevlen
        ];
        let got = ziplist(&build_ziplist(&entries)).unwrap();
        let want: Vec<Vec<u8>> = vec![
            b"a".to_vec(),
            vec![b'y'; 300],
            b"0".to_vec(),
            b"12".to_vec(),
            b"-128".to_vec(),
            b"12345".to_vec(),
            b"8388607".to_vec(),
            b"-2147483648".to_vec(),
            b"-9223372036854775807".to_vec(),
            vec![b'z'; 16384],
            vec![],
        ];
        assert_eq!(got, want);
        // every truncation and a miscount are errors, never panics
        let zl = build_ziplist(&entries[..6]);
        for n in 0..zl.len() {
            assert!(ziplist(&zl[..n]).is_err());
        }
        let mut miscounted = zl.clone();
        miscounted[8] = 9;
        assert!(ziplist(&miscounted).is_err());
    }

    #[test]
    fn decodes_zipmaps() {
        // {"f": "v", "long": 300 bytes with 2 free bytes}
        let mut zm = vec![2, 1, b'f', 1, 0, b'v', 4];
        zm.extend_from_slice(b"long");
        zm.extend_from_slice(&[0xFE, 44, 1, 0, 0, 2]);
        zm.extend_from_slice(&[b'q'; 300]);
        zm.extend_from_slice(&[0, 0, 0xFF]);
        let got = zipmap(&zm).unwrap();
        assert_eq!(
            got,
            vec![
                (b"f".to_vec(), b"v".to_vec()),
                (b"long".to_vec(), vec![b'q'; 300])
            ]
        );
        for n in 0..zm.len() {
            assert!(zipmap(&zm[..n]).is_err());
        }
    }

    #[test]
    fn rejects_truncated_and_miscounted_listpacks() {
        let mut lp = vec![10, 0, 0, 0, 2, 0, 5, 1, 0xFF];
        lp[0] = lp.len() as u8;
        assert!(listpack(&lp).is_err(), "count says 2, holds 1");
        assert!(listpack(&[9, 0, 0, 0, 1, 0, 0x85, 1, 0xFF]).is_err());
        assert!(listpack(&[]).is_err());
    }

    #[test]
    fn decodes_intsets_of_each_width() {
        let mut is = vec![2, 0, 0, 0, 2, 0, 0, 0];
        is.extend_from_slice(&(-3i16).to_le_bytes());
        is.extend_from_slice(&300i16.to_le_bytes());
        assert_eq!(intset(&is).unwrap(), vec![b"-3".to_vec(), b"300".to_vec()]);
        let mut is = vec![8, 0, 0, 0, 1, 0, 0, 0];
        is.extend_from_slice(&i64::MIN.to_le_bytes());
        assert_eq!(
            intset(&is).unwrap(),
            vec![i64::MIN.to_string().into_bytes()]
        );
        assert!(intset(&[4, 0, 0, 0, 1, 0, 0, 0, 1]).is_err());
    }
}

/// A listpack element to write.
pub enum Lp<'a> {
    Int(i64),
    Str(&'a [u8]),
}

fn backlen(l: usize, out: &mut Vec<u8>) {
    // the element's length, written to be read backwards
    if l <= 127 {
        out.push(l as u8);
    } else if l < 16383 {
        out.extend_from_slice(&[(l >> 7) as u8, ((l & 127) | 128) as u8]);
    } else if l < 2_097_151 {
        out.extend_from_slice(&[
            (l >> 14) as u8,
            (((l >> 7) & 127) | 128) as u8,
            ((l & 127) | 128) as u8,
        ]);
    } else if l < 268_435_455 {
        out.extend_from_slice(&[
            (l >> 21) as u8,
            (((l >> 14) & 127) | 128) as u8,
            (((l >> 7) & 127) | 128) as u8,
            ((l & 127) | 128) as u8,
        ]);
    } else {
        out.extend_from_slice(&[
            (l >> 28) as u8,
            (((l >> 21) & 127) | 128) as u8,
            (((l >> 14) & 127) | 128) as u8,
            (((l >> 7) & 127) | 128) as u8,
            ((l & 127) | 128) as u8,
        ]);
    }
}

/// A listpack of `items`, as Redis lays one out (smallest encodings).
pub fn encode(items: &[Lp<'_>]) -> Vec<u8> {
    let mut out = vec![0u8; 6];
    let mut e = Vec::with_capacity(16);
    for it in items {
        e.clear();
        match *it {
            Lp::Int(v) if (0..=127).contains(&v) => e.push(v as u8),
            Lp::Int(v) if (-4096..4096).contains(&v) => {
                let u = (v as u16) & 0x1FFF;
                e.extend_from_slice(&[0xC0 | (u >> 8) as u8, u as u8]);
            }
            Lp::Int(v) if i16::try_from(v).is_ok() => {
                e.push(0xF1);
                e.extend_from_slice(&(v as i16).to_le_bytes());
            }
            Lp::Int(v) if (-(1 << 23)..(1 << 23)).contains(&v) => {
                e.push(0xF2);
                e.extend_from_slice(&(v as i32).to_le_bytes()[..3]);
            }
            Lp::Int(v) if i32::try_from(v).is_ok() => {
                e.push(0xF3);
                e.extend_from_slice(&(v as i32).to_le_bytes());
            }
            Lp::Int(v) => {
                e.push(0xF4);
                e.extend_from_slice(&v.to_le_bytes());
            }
            Lp::Str(s) if s.len() < 64 => {
                e.push(0x80 | s.len() as u8);
                e.extend_from_slice(s);
            }
            Lp::Str(s) if s.len() < 4096 => {
                e.extend_from_slice(&[0xE0 | (s.len() >> 8) as u8, s.len() as u8]);
                e.extend_from_slice(s);
            }
            Lp::Str(s) => {
                e.push(0xF0);
                e.extend_from_slice(&(s.len() as u32).to_le_bytes());
                e.extend_from_slice(s);
            }
        }
        let l = e.len();
        out.extend_from_slice(&e);
        backlen(l, &mut out);
    }
    out.push(0xFF);
    let total = out.len() as u32;
    out[0..4].copy_from_slice(&total.to_le_bytes());
    let n = items.len().min(65535) as u16;
    out[4..6].copy_from_slice(&n.to_le_bytes());
    out
}

#[cfg(test)]
mod encode_tests {
    use super::*;

    #[test]
    fn encoded_listpacks_read_back() {
        let long = vec![b'x'; 5000];
        let items = [
            Lp::Int(0),
            Lp::Int(127),
            Lp::Int(-1),
            Lp::Int(4000),
            Lp::Int(-30000),
            Lp::Int(1 << 22),
            Lp::Int(1 << 30),
            Lp::Int(1 << 40),
            Lp::Int(i64::MIN),
            Lp::Str(b"abc"),
            Lp::Str(&[b'y'; 300]),
            Lp::Str(&long),
        ];
        let lp = encode(&items);
        let back = listpack(&lp).unwrap();
        let want: Vec<Vec<u8>> = items
            .iter()
            .map(|i| match i {
                Lp::Int(v) => v.to_string().into_bytes(),
                Lp::Str(s) => s.to_vec(),
            })
            .collect();
        assert_eq!(back, want);
    }
}
