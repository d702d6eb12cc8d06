//! HyperLogLog: PFADD, PFCOUNT, PFMERGE, on string values laid out exactly
//! as Redis lays them out — the `HYLL` header with its cached cardinality,
//! the sparse opcodes (ZERO, XZERO, VAL) edited the way Redis edits them,
//! and 6-bit dense registers — so a DUMP, an RDB file or a replica sees
//! the same bytes as from Redis, and either side can go on adding.

use super::{CmdError, CmdResult, Ctx, Handler, WRONGTYPE, err};

pub fn handler(name: &str) -> Option<Handler> {
    Some(match name {
        "pfadd" => pfadd,
        "pfcount" => pfcount,
        "pfmerge" => pfmerge,
        _ => return None,
    })
}

/// Registers: 2^14 of 6 bits each.
const P: u32 = 14;
const REGISTERS: usize = 1 << P;
const Q: u32 = 64 - P;
const HDR: usize = 16;
const DENSE_SIZE: usize = HDR + (REGISTERS * 6).div_ceil(8);
const ENC_DENSE: u8 = 0;
const ENC_SPARSE: u8 = 1;
/// Redis's `hll-sparse-max-bytes` default: past it a sparse HLL turns dense.
const SPARSE_MAX_BYTES: usize = 3000;
const SPARSE_VAL_MAX: u8 = 32;
const SPARSE_VAL_MAX_LEN: usize = 4;
const SPARSE_ZERO_MAX_LEN: usize = 64;
const SPARSE_XZERO_MAX_LEN: usize = 16384;
/// 0.5 / ln 2 (Redis's `HLL_ALPHA_INF`, the same double).
const ALPHA_INF: f64 = 0.7213475204444817;
/// Where the top byte of the cached cardinality is; its high bit marks the cache stale.
const CARD_TOP: usize = 15;

fn not_hll() -> CmdError {
    err("WRONGTYPE Key is not a valid HyperLogLog string value.")
}

fn corrupt() -> CmdError {
    err("INVALIDOBJ Corrupted HLL object detected")
}

/// Redis's MurmurHash64A (seed 0xadc83b19), little-endian reads.
fn murmur64a(key: &[u8]) -> u64 {
    const M: u64 = 0xc6a4a7935bd1e995;
    const R: u32 = 47;
    let mut h: u64 = 0xadc83b19 ^ (key.len() as u64).wrapping_mul(M);
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let mut k = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, b) in tail.iter().enumerate() {
            h ^= (*b as u64) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

/// The register an element goes to and the run of zeros it brings (1..=51).
fn pattern(ele: &[u8]) -> (usize, u8) {
    let hash = murmur64a(ele);
    let index = (hash as usize) & (REGISTERS - 1);
    let rest = (hash >> P) | (1 << Q);
    (index, rest.trailing_zeros() as u8 + 1)
}

fn dense_get(regs: &[u8], i: usize) -> u8 {
    let byte = i * 6 / 8;
    let fb = (i * 6) & 7;
    let b0 = regs[byte] as u16;
    let b1 = regs.get(byte + 1).copied().unwrap_or(0) as u16;
    (((b0 >> fb) | (b1 << (8 - fb))) & 63) as u8
}

fn dense_set(regs: &mut [u8], i: usize, val: u8) {
    let byte = i * 6 / 8;
    let fb = (i * 6) & 7;
    let v = val as u16;
    regs[byte] &= !((63u16 << fb) as u8);
    regs[byte] |= (v << fb) as u8;
    if let Some(b1) = regs.get_mut(byte + 1) {
        *b1 &= !((63u16 >> (8 - fb)) as u8);
        *b1 |= (v >> (8 - fb)) as u8;
    }
}

/// A new, empty HLL: sparse, one XZERO opcode, cached cardinality 0.
fn new_sparse() -> Vec<u8> {
    let mut v = b"HYLL".to_vec();
    v.push(ENC_SPARSE);
    v.extend_from_slice(&[0; 11]);
    let l = SPARSE_XZERO_MAX_LEN - 1;
    v.push((l >> 8) as u8 | 0x40);
    v.push(l as u8);
    v
}

fn is_hll(s: &[u8]) -> bool {
    s.len() >= HDR
        && &s[..4] == b"HYLL"
        && s[4] <= ENC_SPARSE
        && (s[4] != ENC_DENSE || s.len() == DENSE_SIZE)
}

/// One sparse opcode: (registers covered, value, bytes).
fn opcode(v: &[u8], p: usize) -> Option<(usize, u8, usize)> {
    let b = *v.get(p)?;
    Some(if b & 0x80 != 0 {
        ((b & 3) as usize + 1, ((b >> 2) & 0x1F) + 1, 1)
    } else if b & 0x40 == 0 {
        ((b & 0x3F) as usize + 1, 0, 1)
    } else {
        let lo = *v.get(p + 1)? as usize;
        ((((b & 0x3F) as usize) << 8 | lo) + 1, 0, 2)
    })
}

fn val_op(val: u8, len: usize) -> u8 {
    0x80 | ((val - 1) << 2) | (len as u8 - 1)
}

fn zero_run(out: &mut Vec<u8>, len: usize) {
    if len > SPARSE_ZERO_MAX_LEN {
        let l = len - 1;
        out.push((l >> 8) as u8 | 0x40);
        out.push(l as u8);
    } else {
        out.push(len as u8 - 1);
    }
}

/// Every register's value, from any encoding (`None`: corrupt).
fn registers(v: &[u8]) -> Option<Vec<u8>> {
    let mut regs = vec![0u8; REGISTERS];
    if v[4] == ENC_DENSE {
        for (i, r) in regs.iter_mut().enumerate() {
            *r = dense_get(&v[HDR..], i);
        }
        return Some(regs);
    }
    let (mut p, mut idx) = (HDR, 0usize);
    while p < v.len() {
        let (span, val, len) = opcode(v, p)?;
        if val > 0 {
            if idx + span > REGISTERS {
                return None;
            }
            regs[idx..idx + span].fill(val);
        }
        idx += span;
        p += len;
    }
    (idx == REGISTERS).then_some(regs)
}

/// Rewrites a sparse HLL as dense, keeping the header (and its cache).
fn to_dense(v: &mut Vec<u8>) -> Result<(), CmdError> {
    if v[4] == ENC_DENSE {
        return Ok(());
    }
    let regs = registers(v).ok_or_else(corrupt)?;
    let mut d = vec![0u8; DENSE_SIZE];
    d[..HDR].copy_from_slice(&v[..HDR]);
    d[4] = ENC_DENSE;
    for (i, &r) in regs.iter().enumerate() {
        if r != 0 {
            dense_set(&mut d[HDR..], i, r);
        }
    }
    *v = d;
    Ok(())
}

/// Raises register `index` to `count`; whether it changed. Sparse HLLs are
/// edited in place as Redis edits them (split the covering opcode, merge
/// equal neighbours), and turn dense past 3000 bytes or a value over 32.
fn set(v: &mut Vec<u8>, index: usize, count: u8) -> Result<bool, CmdError> {
    if v[4] == ENC_DENSE {
        let regs = &mut v[HDR..];
        if dense_get(regs, index) >= count {
            return Ok(false);
        }
        dense_set(regs, index, count);
        return Ok(true);
    }
    if count > SPARSE_VAL_MAX {
        return promote(v, index, count);
    }
    // the opcode covering `index`
    let (mut p, mut first, mut prev) = (HDR, 0usize, None);
    let (span, val, oplen) = loop {
        let Some((span, val, len)) = opcode(v, p) else {
            return Err(corrupt());
        };
        if index < first + span {
            break (span, val, len);
        }
        prev = Some(p);
        p += len;
        first += span;
    };
    let is_val = v[p] & 0x80 != 0;
    if is_val {
        if val >= count {
            return Ok(false);
        }
        if span == 1 {
            v[p] = val_op(count, 1);
            merge(v, prev);
            return Ok(true);
        }
    } else if oplen == 1 && span == 1 {
        v[p] = val_op(count, 1);
        merge(v, prev);
        return Ok(true);
    }
    // split: [before] VAL(count) [after]
    let last = first + span - 1;
    let mut seq = Vec::with_capacity(5);
    if is_val {
        if index != first {
            seq.push(val_op(val, index - first));
        }
        seq.push(val_op(count, 1));
        if index != last {
            seq.push(val_op(val, last - index));
        }
    } else {
        if index != first {
            zero_run(&mut seq, index - first);
        }
        seq.push(val_op(count, 1));
        if index != last {
            zero_run(&mut seq, last - index);
        }
    }
    if seq.len() > oplen && v.len() + seq.len() - oplen > SPARSE_MAX_BYTES {
        return promote(v, index, count);
    }
    v.splice(p..p + oplen, seq);
    merge(v, prev);
    Ok(true)
}

/// Merges adjacent VAL opcodes of equal value, scanning up to 5 opcodes
/// from the one before the edit (Redis's exact pass, so bytes match).
fn merge(v: &mut Vec<u8>, prev: Option<usize>) {
    let mut p = prev.unwrap_or(HDR);
    let mut scan = 5;
    while p < v.len() && scan > 0 {
        scan -= 1;
        let b = v[p];
        if b & 0xC0 == 0x40 {
            p += 2;
            continue;
        }
        if b & 0x80 == 0 {
            p += 1;
            continue;
        }
        if p + 1 < v.len() && v[p + 1] & 0x80 != 0 {
            let (v1, v2) = (((b >> 2) & 0x1F) + 1, ((v[p + 1] >> 2) & 0x1F) + 1);
            let len = (b & 3) as usize + (v[p + 1] & 3) as usize + 2;
            if v1 == v2 && len <= SPARSE_VAL_MAX_LEN {
                v[p + 1] = val_op(v1, len);
                v.remove(p);
                continue;
            }
        }
        p += 1;
    }
}

fn promote(v: &mut Vec<u8>, index: usize, count: u8) -> Result<bool, CmdError> {
    to_dense(v)?;
    dense_set(&mut v[HDR..], index, count);
    Ok(true)
}

fn invalidate_cache(v: &mut [u8]) {
    v[CARD_TOP] |= 0x80;
}

/// Ertl's improved estimator over the register histogram, as Redis 7 counts.
fn estimate(regs: &[u8]) -> u64 {
    let m = REGISTERS as f64;
    let mut histo = [0u32; Q as usize + 2];
    for &r in regs {
        histo[r as usize] += 1;
    }
    let mut z = m * tau((m - histo[Q as usize + 1] as f64) / m);
    for j in (1..=Q as usize).rev() {
        z += histo[j] as f64;
        z *= 0.5;
    }
    z += m * sigma(histo[0] as f64 / m);
    (ALPHA_INF * m * m / z).round() as u64
}

fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let (mut y, mut z) = (1.0, x);
    loop {
        x *= x;
        let prev = z;
        z += x * y;
        y += y;
        if prev == z {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let (mut y, mut z) = (1.0, 1.0 - x);
    loop {
        x = x.sqrt();
        let prev = z;
        y *= 0.5;
        z -= (1.0 - x).powi(2) * y;
        if prev == z {
            return z / 3.0;
        }
    }
}

/// The HLL at `key`, checked (`None` if missing).
fn read<'c>(ctx: &'c mut Ctx<'_, '_>, key: &[u8]) -> Result<Option<&'c [u8]>, CmdError> {
    match ctx.db.str_value(key) {
        Err(_) => Err(WRONGTYPE),
        Ok(None) => Ok(None),
        Ok(Some(s)) if is_hll(s) => Ok(Some(s)),
        Ok(Some(_)) => Err(not_hll()),
    }
}

/// # Format
/// `PFADD key [element ...]`: 1 if the estimate may have changed.
fn pfadd(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let key = a[1];
    let mut updated = 0;
    if read(ctx, key)?.is_none() {
        ctx.db.set_str(key, &new_sparse());
        updated += 1;
    }
    let v = ctx
        .db
        .peek(key)
        .and_then(|e| e.raw_str())
        .expect("an HLL string");
    for ele in &a[2..] {
        let (index, count) = pattern(ele);
        match set(v, index, count) {
            Ok(true) => updated += 1,
            Ok(false) => {}
            Err(e) => {
                invalidate_cache(v);
                ctx.dirty += 1;
                return Err(e);
            }
        }
    }
    if updated > 0 {
        invalidate_cache(v);
        ctx.dirty += updated;
    }
    ctx.int((updated > 0) as i64);
    Ok(())
}

/// # Format
/// `PFCOUNT key [key ...]`: the estimate; for one key the cached value,
/// refreshed into the string when stale (as Redis does).
fn pfcount(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    if a.len() > 2 {
        let mut max = vec![0u8; REGISTERS];
        for k in &a[1..] {
            let Some(s) = read(ctx, k)? else { continue };
            let regs = registers(s).ok_or_else(corrupt)?;
            for (m, r) in max.iter_mut().zip(regs) {
                *m = (*m).max(r);
            }
        }
        ctx.int(estimate(&max) as i64);
        return Ok(());
    }
    let Some(s) = read(ctx, a[1])? else {
        ctx.int(0);
        return Ok(());
    };
    if s[CARD_TOP] & 0x80 == 0 {
        let card = u64::from_le_bytes(s[8..16].try_into().expect("8 bytes"));
        ctx.int(card as i64);
        return Ok(());
    }
    let card = estimate(&registers(s).ok_or_else(corrupt)?);
    let v = ctx
        .db
        .peek(a[1])
        .and_then(|e| e.raw_str())
        .expect("an HLL string");
    v[8..16].copy_from_slice(&card.to_le_bytes());
    ctx.dirty += 1;
    ctx.int(card as i64);
    Ok(())
}

/// # Format
/// `PFMERGE destkey [sourcekey ...]`: dest becomes the union (dest included).
fn pfmerge(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let mut max = vec![0u8; REGISTERS];
    let mut dense = false;
    for k in &a[1..] {
        let Some(s) = read(ctx, k)? else { continue };
        dense |= s[4] == ENC_DENSE;
        let regs = registers(s).ok_or_else(corrupt)?;
        for (m, r) in max.iter_mut().zip(regs) {
            *m = (*m).max(r);
        }
    }
    let dest = a[1];
    if ctx.db.peek(dest).is_none() {
        ctx.db.set_str(dest, &new_sparse());
    }
    let v = ctx
        .db
        .peek(dest)
        .and_then(|e| e.raw_str())
        .expect("an HLL string");
    if dense {
        to_dense(v)?;
    }
    for (i, &m) in max.iter().enumerate() {
        if m != 0 {
            set(v, i, m)?;
        }
    }
    invalidate_cache(v);
    ctx.dirty += 1;
    ctx.ok();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_registers_round_trip_at_every_alignment() {
        let mut regs = vec![0u8; DENSE_SIZE - HDR];
        for i in 0..REGISTERS {
            dense_set(&mut regs, i, (i % 64) as u8);
        }
        for i in 0..REGISTERS {
            assert_eq!(dense_get(&regs, i), (i % 64) as u8, "{i}");
        }
    }

    #[test]
    fn sparse_edits_agree_with_the_registers_they_encode() {
        let mut v = new_sparse();
        let mut want = vec![0u8; REGISTERS];
        let mut x = 12345u64;
        for n in 0..3000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let i = (x >> 20) as usize % if n < 1500 { 64 } else { REGISTERS };
            let c = 1 + (x >> 50) as u8 % 40;
            let changed = set(&mut v, i, c).unwrap();
            assert_eq!(changed, c > want[i]);
            want[i] = want[i].max(c);
            assert_eq!(registers(&v).unwrap(), want, "after {n}");
        }
        assert_eq!(v[4], ENC_DENSE, "turned dense");
    }

    #[test]
    fn estimates_are_close() {
        let mut v = new_sparse();
        for i in 0..100_000u32 {
            let (idx, c) = pattern(format!("ele:{i}").as_bytes());
            set(&mut v, idx, c).unwrap();
        }
        let e = estimate(&registers(&v).unwrap()) as f64;
        assert!((e - 100_000.0).abs() / 100_000.0 < 0.02, "{e}");
    }
}
