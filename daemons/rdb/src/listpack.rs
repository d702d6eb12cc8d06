//! The compact containers Redis 7.0 writes inside RDB strings: listpacks
//! (small hashes, sorted sets, list nodes) and intsets (small integer sets).

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
