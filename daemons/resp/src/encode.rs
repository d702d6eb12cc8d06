//! Reply encoding straight into an output buffer, RESP2 or RESP3.
//!
//! The server writes every reply through these functions, so a reply costs
//! no allocation beyond the connection's output buffer growing.

use bytes::{BufMut, BytesMut};

#[inline]
fn header(out: &mut BytesMut, tag: u8, n: i64) {
    out.put_u8(tag);
    out.put_slice(itoa::Buffer::new().format(n).as_bytes());
    out.put_slice(b"\r\n");
}

#[inline]
pub fn simple(out: &mut BytesMut, s: &[u8]) {
    out.put_u8(b'+');
    out.put_slice(s);
    out.put_slice(b"\r\n");
}

/// An error line; `s` is the text after `-`, e.g. `ERR syntax error`.
/// CR/LF inside would break the framing, so they become spaces (as Redis does).
#[inline]
pub fn error(out: &mut BytesMut, s: &[u8]) {
    out.put_u8(b'-');
    for &b in s {
        out.put_u8(if b == b'\r' || b == b'\n' { b' ' } else { b });
    }
    out.put_slice(b"\r\n");
}

#[inline]
pub fn int(out: &mut BytesMut, n: i64) {
    header(out, b':', n);
}

#[inline]
pub fn bulk(out: &mut BytesMut, b: &[u8]) {
    header(out, b'$', b.len() as i64);
    out.put_slice(b);
    out.put_slice(b"\r\n");
}

#[inline]
pub fn null(out: &mut BytesMut, resp3: bool) {
    out.put_slice(if resp3 { b"_\r\n" } else { b"$-1\r\n" });
}

#[inline]
pub fn null_array(out: &mut BytesMut, resp3: bool) {
    out.put_slice(if resp3 { b"_\r\n" } else { b"*-1\r\n" });
}

#[inline]
pub fn array(out: &mut BytesMut, n: usize) {
    header(out, b'*', n as i64);
}

/// A map of `n` pairs: `%n` in RESP3, an array of `2n` in RESP2.
#[inline]
pub fn map(out: &mut BytesMut, n: usize, resp3: bool) {
    if resp3 {
        header(out, b'%', n as i64)
    } else {
        header(out, b'*', 2 * n as i64)
    }
}

#[inline]
pub fn set(out: &mut BytesMut, n: usize, resp3: bool) {
    header(out, if resp3 { b'~' } else { b'*' }, n as i64);
}

#[inline]
pub fn push(out: &mut BytesMut, n: usize, resp3: bool) {
    header(out, if resp3 { b'>' } else { b'*' }, n as i64);
}

/// A double already formatted as Redis formats it: `,x` in RESP3, a bulk in RESP2.
#[inline]
pub fn double_str(out: &mut BytesMut, s: &[u8], resp3: bool) {
    if resp3 {
        out.put_u8(b',');
        out.put_slice(s);
        out.put_slice(b"\r\n");
    } else {
        bulk(out, s);
    }
}

#[inline]
pub fn boolean(out: &mut BytesMut, b: bool, resp3: bool) {
    if resp3 {
        out.put_slice(if b { b"#t\r\n" } else { b"#f\r\n" });
    } else {
        int(out, b as i64);
    }
}

/// A verbatim string (`=len\r\ntxt:...`) in RESP3, a bulk in RESP2.
pub fn verbatim(out: &mut BytesMut, s: &[u8], resp3: bool) {
    if resp3 {
        header(out, b'=', s.len() as i64 + 4);
        out.put_slice(b"txt:");
        out.put_slice(s);
        out.put_slice(b"\r\n");
    } else {
        bulk(out, s);
    }
}

/// A command as clients send it (an array of bulk strings), appended to
/// `out`: what proxies send backends, and what the AOF and replicas get.
pub fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    let mut b = itoa::Buffer::new();
    out.push(b'*');
    out.extend_from_slice(b.format(args.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    for a in args {
        out.push(b'$');
        out.extend_from_slice(b.format(a.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}
