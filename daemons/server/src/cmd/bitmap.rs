//! Bitmap commands on string values: SETBIT, GETBIT, BITCOUNT, BITPOS,
//! BITOP, BITFIELD, BITFIELD_RO. Bit 0 is the most significant bit of the
//! first byte, as in Redis; strings grow with zero bytes.

use std::sync::atomic::Ordering::Relaxed;

use super::{CmdError, CmdResult, Ctx, Handler, SYNTAX, WRONGTYPE, err, int_arg, is};
use crate::db::Entry;

pub fn handler(name: &str) -> Option<Handler> {
    Some(match name {
        "setbit" => setbit,
        "getbit" => getbit,
        "bitcount" => bitcount,
        "bitpos" => bitpos,
        "bitop" => bitop,
        "bitfield" => bitfield,
        "bitfield_ro" => bitfield_ro,
        _ => return None,
    })
}

const BAD_OFFSET: CmdError = CmdError(std::borrow::Cow::Borrowed(
    "ERR bit offset is not an integer or out of range",
));

/// A bit offset: non-negative and within `proto-max-bulk-len` bytes.
/// `#n` (BITFIELD) counts in units of `bits`.
fn bit_offset(ctx: &Ctx<'_, '_>, a: &[u8], hash_bits: Option<u64>) -> Result<u64, CmdError> {
    let (digits, mul) = match (hash_bits, a.first()) {
        (Some(bits), Some(b'#')) => (&a[1..], bits as i64),
        _ => (a, 1),
    };
    let n = crate::util::parse_i64(digits)
        .and_then(|n| n.checked_mul(mul))
        .ok_or(BAD_OFFSET)?;
    let max = ctx.srv.proto_max_bulk_len.load(Relaxed) as i64;
    if n < 0 || (n >> 3) >= max {
        return Err(BAD_OFFSET);
    }
    Ok(n as u64)
}

/// The string at `key` for writing, at least `len` bytes long (created,
/// or grown with zero bytes).
fn writable<'c>(
    ctx: &'c mut Ctx<'_, '_>,
    key: &[u8],
    len: usize,
) -> Result<&'c mut Vec<u8>, CmdError> {
    if ctx.db.get(key).is_none() {
        // Redis builds it raw (growable)
        ctx.db.slot_mut(key).insert(Entry::string(key, b"", 0));
    }
    let e = ctx.db.get(key).expect("present");
    e.str().ok_or(WRONGTYPE)?;
    let v = e.raw_str().expect("a string");
    if v.len() < len {
        v.resize(len, 0);
    }
    Ok(v)
}

/// # Format
/// `SETBIT key offset 0|1`: the bit's old value.
fn setbit(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let off = bit_offset(ctx, a[2], None)?;
    let on = match a[3] {
        b"0" => false,
        b"1" => true,
        _ => return Err(err("ERR bit is not an integer or out of range")),
    };
    let byte = (off >> 3) as usize;
    let mask = 0x80u8 >> (off & 7);
    let v = writable(ctx, a[1], byte + 1)?;
    let old = v[byte] & mask != 0;
    if on {
        v[byte] |= mask;
    } else {
        v[byte] &= !mask;
    }
    ctx.dirty += 1;
    ctx.int(old as i64);
    Ok(())
}

/// # Format
/// `GETBIT key offset`
fn getbit(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let off = bit_offset(ctx, a[2], None)?;
    let s = ctx.db.str_value(a[1])?.unwrap_or_default();
    let bit = s
        .get((off >> 3) as usize)
        .is_some_and(|b| b & (0x80 >> (off & 7)) != 0);
    ctx.int(bit as i64);
    Ok(())
}

/// A `start end [BYTE|BIT]` range over a string of `len` bytes, resolved
/// as Redis does (negative indexes from the end, clamped): the inclusive
/// bit range, or `None` when empty.
fn bit_range(len: usize, start: i64, end: i64, bits: bool) -> Option<(u64, u64)> {
    let total = if bits { len as i64 * 8 } else { len as i64 };
    let mut start = if start < 0 { total + start } else { start };
    let mut end = if end < 0 { total + end } else { end };
    start = start.max(0);
    end = end.max(0);
    if end >= total {
        end = total - 1;
    }
    if start > end {
        return None;
    }
    Some(if bits {
        (start as u64, end as u64)
    } else {
        (start as u64 * 8, end as u64 * 8 + 7)
    })
}

fn range_mode(a: &[u8]) -> Result<bool, CmdError> {
    if is(a, "bit") {
        Ok(true)
    } else if is(a, "byte") {
        Ok(false)
    } else {
        Err(SYNTAX)
    }
}

/// Set bits in `[from, to]` (inclusive bit positions, within `s`).
fn count_bits(s: &[u8], from: u64, to: u64) -> u64 {
    let (fb, tb) = ((from >> 3) as usize, (to >> 3) as usize);
    // the edge bytes count only their bits inside the range
    let first = 0xFFu8 >> (from & 7);
    let last = 0xFFu8 << (7 - (to & 7));
    if fb == tb {
        return (s[fb] & first & last).count_ones() as u64;
    }
    let middle: u64 = s[fb + 1..tb].iter().map(|b| b.count_ones() as u64).sum();
    middle + (s[fb] & first).count_ones() as u64 + (s[tb] & last).count_ones() as u64
}

/// # Format
/// `BITCOUNT key [start end [BYTE|BIT]]`
fn bitcount(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    // as Redis 7.0: a missing key answers 0 before the arguments are read
    let Some(s) = ctx.db.str_value(a[1])? else {
        ctx.int(0);
        return Ok(());
    };
    let range = match a.len() {
        2 => (!s.is_empty()).then(|| (0, s.len() as u64 * 8 - 1)),
        4 | 5 => {
            let (start, end) = (int_arg(a[2])?, int_arg(a[3])?);
            let bits = a.len() == 5 && range_mode(a[4])?;
            if start < 0 && end < 0 && start > end {
                None
            } else {
                bit_range(s.len(), start, end, bits)
            }
        }
        _ => return Err(SYNTAX),
    };
    let n = range.map_or(0, |(f, t)| count_bits(s, f, t));
    ctx.int(n as i64);
    Ok(())
}

/// First bit equal to `bit` in `[from, to]`.
fn find_bit(s: &[u8], bit: bool, from: u64, to: u64) -> Option<u64> {
    let mut i = from;
    while i <= to {
        let byte = s[(i >> 3) as usize];
        // skip whole bytes that cannot hold it
        if i & 7 == 0 && i + 7 <= to && byte == if bit { 0 } else { 0xFF } {
            i += 8;
            continue;
        }
        if (byte & (0x80 >> (i & 7)) != 0) == bit {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// # Format
/// `BITPOS key 0|1 [start [end [BYTE|BIT]]]`
fn bitpos(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let bit = match int_arg(a[2])? {
        0 => false,
        1 => true,
        _ => return Err(err("ERR The bit argument must be 1 or 0.")),
    };
    // a missing key is an endless run of 0 bits
    let Some(s) = ctx.db.str_value(a[1])? else {
        ctx.int(if bit { -1 } else { 0 });
        return Ok(());
    };
    let (range, end_given) = match a.len() {
        3 => ((!s.is_empty()).then(|| (0, s.len() as u64 * 8 - 1)), false),
        4..=6 => {
            let start = int_arg(a[3])?;
            let bits = a.len() == 6 && range_mode(a[5])?;
            let end = match a.get(4) {
                Some(e) => int_arg(e)?,
                None => i64::MAX,
            };
            (bit_range(s.len(), start, end, bits), a.len() >= 5)
        }
        _ => return Err(SYNTAX),
    };
    let pos = match range {
        None => -1,
        Some((from, to)) => match find_bit(s, bit, from, to) {
            Some(p) => p as i64,
            // a clear bit right after the string, unless an end was given
            None if !bit && !end_given => to as i64 + 1,
            None => -1,
        },
    };
    ctx.int(pos);
    Ok(())
}

/// # Format
/// `BITOP AND|OR|XOR|NOT destkey key [key ...]`: the result's length.
fn bitop(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    #[derive(PartialEq)]
    enum Op {
        And,
        Or,
        Xor,
        Not,
    }
    let op = if is(a[1], "and") {
        Op::And
    } else if is(a[1], "or") {
        Op::Or
    } else if is(a[1], "xor") {
        Op::Xor
    } else if is(a[1], "not") {
        Op::Not
    } else {
        return Err(SYNTAX);
    };
    let srcs = &a[3..];
    if op == Op::Not && srcs.len() != 1 {
        return Err(err(
            "ERR BITOP NOT must be called with a single source key.",
        ));
    }
    let mut inputs: Vec<Vec<u8>> = Vec::with_capacity(srcs.len());
    for k in srcs {
        inputs.push(ctx.db.str_value(k)?.map(<[u8]>::to_vec).unwrap_or_default());
    }
    let len = inputs.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = vec![0u8; len];
    for (i, o) in out.iter_mut().enumerate() {
        let byte = |v: &Vec<u8>| v.get(i).copied().unwrap_or(0);
        let mut it = inputs.iter().map(byte);
        let first = it.next().unwrap_or(0);
        *o = match op {
            Op::And => it.fold(first, |x, y| x & y),
            Op::Or => it.fold(first, |x, y| x | y),
            Op::Xor => it.fold(first, |x, y| x ^ y),
            Op::Not => !first,
        };
    }
    let dest = a[2];
    if out.is_empty() {
        if ctx.db.remove(dest).is_some() {
            ctx.dirty += 1;
        }
    } else {
        ctx.db.set_str(dest, &out);
        ctx.dirty += 1;
    }
    ctx.int(len as i64);
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
enum Overflow {
    Wrap,
    Sat,
    Fail,
}

#[derive(Clone, Copy)]
enum FieldOp {
    Get,
    Set(i64),
    IncrBy(i64),
}

struct Field {
    op: FieldOp,
    signed: bool,
    bits: u32,
    offset: u64,
    overflow: Overflow,
}

fn field_type(a: &[u8]) -> Result<(bool, u32), CmdError> {
    let bad = || {
        err(
            "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.",
        )
    };
    let signed = match a.first() {
        Some(b'i' | b'I') => true,
        Some(b'u' | b'U') => false,
        _ => return Err(bad()),
    };
    let bits = crate::util::parse_i64(&a[1..]).ok_or_else(bad)?;
    if bits < 1 || (signed && bits > 64) || (!signed && bits > 63) {
        return Err(bad());
    }
    Ok((signed, bits as u32))
}

fn parse_fields(ctx: &Ctx<'_, '_>, a: &[&[u8]], read_only: bool) -> Result<Vec<Field>, CmdError> {
    let mut fields = Vec::new();
    let mut overflow = Overflow::Wrap;
    let mut j = 2;
    while j < a.len() {
        let rest = a.len() - j - 1;
        let sub = a[j];
        if is(sub, "get") && rest >= 2 {
            let (signed, bits) = field_type(a[j + 1])?;
            let offset = bit_offset(ctx, a[j + 2], Some(bits as u64))?;
            fields.push(Field {
                op: FieldOp::Get,
                signed,
                bits,
                offset,
                overflow,
            });
            j += 3;
        } else if (is(sub, "set") || is(sub, "incrby")) && rest >= 3 {
            if read_only {
                return Err(err("ERR BITFIELD_RO only supports the GET subcommand"));
            }
            let (signed, bits) = field_type(a[j + 1])?;
            let offset = bit_offset(ctx, a[j + 2], Some(bits as u64))?;
            let v = int_arg(a[j + 3])?;
            let op = if is(sub, "set") {
                FieldOp::Set(v)
            } else {
                FieldOp::IncrBy(v)
            };
            fields.push(Field {
                op,
                signed,
                bits,
                offset,
                overflow,
            });
            j += 4;
        } else if is(sub, "overflow") && rest >= 1 {
            overflow = if is(a[j + 1], "wrap") {
                Overflow::Wrap
            } else if is(a[j + 1], "sat") {
                Overflow::Sat
            } else if is(a[j + 1], "fail") {
                Overflow::Fail
            } else {
                return Err(err("ERR Invalid OVERFLOW type specified"));
            };
            j += 2;
        } else {
            return Err(SYNTAX);
        }
    }
    Ok(fields)
}

/// `bits` bits at bit `offset`, most significant first (zeros past the end).
fn get_bits(s: &[u8], offset: u64, bits: u32) -> u64 {
    let mut v = 0u64;
    for i in 0..bits as u64 {
        let pos = offset + i;
        let bit = s
            .get((pos >> 3) as usize)
            .is_some_and(|b| b & (0x80 >> (pos & 7)) != 0);
        v = (v << 1) | bit as u64;
    }
    v
}

fn set_bits(s: &mut [u8], offset: u64, bits: u32, v: u64) {
    for i in 0..bits as u64 {
        let pos = offset + i;
        let bit = (v >> (bits as u64 - 1 - i)) & 1 != 0;
        let (byte, mask) = ((pos >> 3) as usize, 0x80u8 >> (pos & 7));
        if bit {
            s[byte] |= mask;
        } else {
            s[byte] &= !mask;
        }
    }
}

fn sign_extend(v: u64, bits: u32) -> i64 {
    if bits == 64 {
        v as i64
    } else {
        let shift = 64 - bits;
        ((v << shift) as i64) >> shift
    }
}

/// Redis's overflow rules for `value + incr` in an unsigned field:
/// `None` when it fits, else what WRAP or SAT make of it.
fn unsigned_overflow(value: u64, incr: i64, bits: u32, ov: Overflow) -> Option<u64> {
    let max = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let maxincr = max.wrapping_sub(value) as i64;
    let minincr = (value as i64).wrapping_neg();
    let wrap = || value.wrapping_add(incr as u64) & max;
    if value > max || (incr > 0 && incr > maxincr) {
        Some(if ov == Overflow::Sat { max } else { wrap() })
    } else if incr < 0 && incr < minincr {
        Some(if ov == Overflow::Sat { 0 } else { wrap() })
    } else {
        None
    }
}

/// As [`unsigned_overflow`], for a signed field.
fn signed_overflow(value: i64, incr: i64, bits: u32, ov: Overflow) -> Option<i64> {
    let max = if bits == 64 {
        i64::MAX
    } else {
        (1i64 << (bits - 1)) - 1
    };
    let min = -max - 1;
    let maxincr = (max as u64).wrapping_sub(value as u64) as i64;
    let minincr = min.wrapping_sub(value);
    let wrap = || {
        let c = (value as u64).wrapping_add(incr as u64);
        sign_extend(c, bits)
    };
    if value > max || (bits != 64 && incr > maxincr) || (value >= 0 && incr > 0 && incr > maxincr) {
        Some(if ov == Overflow::Sat { max } else { wrap() })
    } else if value < min
        || (bits != 64 && incr < minincr)
        || (value < 0 && incr < 0 && incr < minincr)
    {
        Some(if ov == Overflow::Sat { min } else { wrap() })
    } else {
        None
    }
}

fn bitfield_generic(ctx: &mut Ctx<'_, '_>, a: &[&[u8]], read_only: bool) -> CmdResult {
    let fields = parse_fields(ctx, a, read_only)?;
    let writes = fields.iter().any(|f| !matches!(f.op, FieldOp::Get));
    if !writes {
        let s = ctx.db.str_value(a[1])?.unwrap_or_default();
        let vals: Vec<i64> = fields
            .iter()
            .map(|f| {
                let v = get_bits(s, f.offset, f.bits);
                if f.signed {
                    sign_extend(v, f.bits)
                } else {
                    v as i64
                }
            })
            .collect();
        ctx.array(vals.len());
        for v in vals {
            ctx.int(v);
        }
        return Ok(());
    }
    // as Redis: the string grows to the highest written field first
    let need = fields
        .iter()
        .filter(|f| !matches!(f.op, FieldOp::Get))
        .map(|f| ((f.offset + f.bits as u64 - 1) >> 3) as usize + 1)
        .max()
        .unwrap_or(0);
    let s = writable(ctx, a[1], need)?;
    let mut replies: Vec<Option<i64>> = Vec::with_capacity(fields.len());
    for f in &fields {
        let raw = get_bits(s, f.offset, f.bits);
        let (reply, new) = if f.signed {
            let old = sign_extend(raw, f.bits);
            match f.op {
                FieldOp::Get => (Some(old), None),
                FieldOp::IncrBy(incr) => match signed_overflow(old, incr, f.bits, f.overflow) {
                    Some(_) if f.overflow == Overflow::Fail => (None, None),
                    Some(v) => (Some(v), Some(v as u64)),
                    None => (Some(old + incr), Some((old + incr) as u64)),
                },
                FieldOp::Set(v) => match signed_overflow(v, 0, f.bits, f.overflow) {
                    Some(_) if f.overflow == Overflow::Fail => (None, None),
                    Some(w) => (Some(old), Some(w as u64)),
                    None => (Some(old), Some(v as u64)),
                },
            }
        } else {
            match f.op {
                FieldOp::Get => (Some(raw as i64), None),
                FieldOp::IncrBy(incr) => match unsigned_overflow(raw, incr, f.bits, f.overflow) {
                    Some(_) if f.overflow == Overflow::Fail => (None, None),
                    Some(v) => (Some(v as i64), Some(v)),
                    None => {
                        let v = raw.wrapping_add(incr as u64);
                        (Some(v as i64), Some(v))
                    }
                },
                FieldOp::Set(v) => match unsigned_overflow(v as u64, 0, f.bits, f.overflow) {
                    Some(_) if f.overflow == Overflow::Fail => (None, None),
                    Some(w) => (Some(raw as i64), Some(w)),
                    None => (Some(raw as i64), Some(v as u64)),
                },
            }
        };
        if let Some(n) = new {
            let mask = if f.bits == 64 {
                u64::MAX
            } else {
                (1u64 << f.bits) - 1
            };
            set_bits(s, f.offset, f.bits, n & mask);
        }
        replies.push(reply);
    }
    // creating or growing the string is a change even if every write failed
    ctx.dirty += 1;
    ctx.array(replies.len());
    for r in replies {
        match r {
            Some(v) => ctx.int(v),
            None => ctx.null(),
        }
    }
    Ok(())
}

/// # Format
/// `BITFIELD key [GET type offset] [SET type offset value] [INCRBY type offset increment] [OVERFLOW WRAP|SAT|FAIL] ...`
fn bitfield(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    bitfield_generic(ctx, a, false)
}

/// # Format
/// `BITFIELD_RO key [GET type offset] ...`
fn bitfield_ro(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    bitfield_generic(ctx, a, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_bits_in_ranges_with_partial_edge_bytes() {
        let s = [0xFFu8, 0x0F, 0xF0];
        let naive = |f: u64, t: u64| (f..=t).filter(|&i| get_bits(&s, i, 1) == 1).count() as u64;
        for f in 0..24 {
            for t in f..24 {
                assert_eq!(count_bits(&s, f, t), naive(f, t), "{f}..{t}");
                assert_eq!(
                    find_bit(&s, false, f, t),
                    (f..=t).find(|&i| get_bits(&s, i, 1) == 0)
                );
            }
        }
    }

    #[test]
    fn fields_read_back_what_was_written() {
        let mut s = vec![0u8; 16];
        for (off, bits, v) in [
            (0, 1, 1u64),
            (3, 5, 17),
            (13, 64, u64::MAX - 5),
            (77, 33, 1 << 32),
        ] {
            set_bits(&mut s, off, bits, v);
            assert_eq!(get_bits(&s, off, bits), v);
        }
        assert_eq!(sign_extend(0b1111, 4), -1);
        assert_eq!(signed_overflow(127, 1, 8, Overflow::Wrap), Some(-128));
        assert_eq!(signed_overflow(127, 1, 8, Overflow::Sat), Some(127));
        assert_eq!(signed_overflow(-128, -1, 8, Overflow::Sat), Some(-128));
        assert_eq!(unsigned_overflow(255, 1, 8, Overflow::Wrap), Some(0));
        assert_eq!(unsigned_overflow(0, -1, 8, Overflow::Sat), Some(0));
        assert_eq!(unsigned_overflow(3, 4, 8, Overflow::Wrap), None);
    }
}
