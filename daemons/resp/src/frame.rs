//! A RESP2/RESP3 value tree and its decoder, for clients, tests and the proxy.
//!
//! Decoding has two phases, as in mini-redis: [`frame_len`] checks that a whole
//! frame has arrived without allocating; [`parse_frame`] then builds it, with
//! bulk strings sliced zero-copy out of the frozen input.

use bytes::Bytes;

use crate::DecodeError;
use crate::request::parse_i64;

/// Nesting deeper than this is refused rather than risking the stack.
const MAX_DEPTH: usize = 512;
/// Bulk lengths past this are refused rather than awaited (Redis's own cap is 512 MB).
const MAX_BULK: i64 = 1 << 32;

#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Simple(Bytes),
    Error(Bytes),
    Integer(i64),
    Bulk(Bytes),
    /// RESP2 `$-1` / `*-1` and RESP3 `_`.
    Null,
    Array(Vec<Frame>),
    Map(Vec<(Frame, Frame)>),
    Set(Vec<Frame>),
    Push(Vec<Frame>),
    Attribute(Vec<(Frame, Frame)>),
    Double(Bytes),
    Boolean(bool),
    BigNumber(Bytes),
    Verbatim(Bytes),
}

fn line_end(buf: &[u8], from: usize) -> Result<Option<usize>, DecodeError> {
    let mut i = from;
    while i < buf.len() {
        if buf[i] == b'\r' {
            if i + 1 >= buf.len() {
                return Ok(None);
            }
            if buf[i + 1] == b'\n' {
                return Ok(Some(i));
            }
            return Err(DecodeError("bad line terminator"));
        }
        i += 1;
    }
    Ok(None)
}

fn int_of(s: &[u8]) -> Result<i64, DecodeError> {
    parse_i64(s).ok_or(DecodeError("invalid length or integer"))
}

/// The length of the complete frame at the front of `buf`, or `None` if more bytes are needed.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    scan(buf, 0, 0)
}

fn scan(buf: &[u8], pos: usize, depth: usize) -> Result<Option<usize>, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError("nesting too deep"));
    }
    let Some(&tag) = buf.get(pos) else {
        return Ok(None);
    };
    let Some(nl) = line_end(buf, pos + 1)? else {
        return Ok(None);
    };
    let next = nl + 2;
    match tag {
        b'+' | b'-' | b',' | b'(' => Ok(Some(next)),
        // validated here so that a frame `frame_len` accepts always parses
        b':' => int_of(&buf[pos + 1..nl]).map(|_| Some(next)),
        b'#' if matches!(&buf[pos + 1..nl], b"t" | b"f") => Ok(Some(next)),
        b'_' if nl == pos + 1 => Ok(Some(next)),
        b'#' | b'_' => Err(DecodeError("invalid boolean or null")),
        b'$' | b'!' | b'=' => {
            let n = int_of(&buf[pos + 1..nl])?;
            if n < 0 {
                return Ok(Some(next));
            }
            if n > MAX_BULK {
                return Err(DecodeError("length too large"));
            }
            let end = next
                .checked_add(n as usize)
                .and_then(|e| e.checked_add(2))
                .ok_or(DecodeError("length too large"))?;
            if buf.len() < end {
                return Ok(None);
            }
            if &buf[end - 2..end] != b"\r\n" {
                return Err(DecodeError("bulk not terminated by CRLF"));
            }
            Ok(Some(end))
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n = int_of(&buf[pos + 1..nl])?;
            let items = if n < 0 {
                0
            } else if matches!(tag, b'%' | b'|') {
                n.checked_mul(2).ok_or(DecodeError("length too large"))?
            } else {
                n
            };
            let mut p = next;
            for _ in 0..items {
                match scan(buf, p, depth + 1)? {
                    Some(e) => p = e,
                    None => return Ok(None),
                }
            }
            Ok(Some(p))
        }
        _ => Err(DecodeError("unknown frame type")),
    }
}

/// Decodes one frame from the front of `buf` (which must hold at least
/// [`frame_len`] bytes). Returns the frame and the bytes it used.
pub fn parse_frame(buf: &Bytes) -> Result<Option<(Frame, usize)>, DecodeError> {
    let Some(len) = frame_len(buf)? else {
        return Ok(None);
    };
    let (f, used) = build(buf, 0)?;
    debug_assert_eq!(used, len);
    Ok(Some((f, used)))
}

fn build(buf: &Bytes, pos: usize) -> Result<(Frame, usize), DecodeError> {
    let tag = buf[pos];
    let nl = line_end(buf, pos + 1)?.ok_or(DecodeError("incomplete"))?;
    let line = buf.slice(pos + 1..nl);
    let next = nl + 2;
    let f = match tag {
        b'+' => Frame::Simple(line),
        b'-' => Frame::Error(line),
        b':' => Frame::Integer(int_of(&line)?),
        b',' => Frame::Double(line),
        b'(' => Frame::BigNumber(line),
        b'#' => Frame::Boolean(&line[..] == b"t"),
        b'_' => Frame::Null,
        b'$' | b'!' | b'=' => {
            let n = int_of(&line)?;
            if n < 0 {
                return Ok((Frame::Null, next));
            }
            let body = buf.slice(next..next + n as usize);
            let end = next + n as usize + 2;
            let f = match tag {
                b'$' => Frame::Bulk(body),
                b'!' => Frame::Error(body),
                _ => Frame::Verbatim(body),
            };
            return Ok((f, end));
        }
        b'*' | b'~' | b'>' => {
            let n = int_of(&line)?;
            if n < 0 {
                return Ok((Frame::Null, next));
            }
            let mut p = next;
            let mut v = Vec::with_capacity((n as usize).min(4096));
            for _ in 0..n {
                let (f, e) = build(buf, p)?;
                v.push(f);
                p = e;
            }
            let f = match tag {
                b'*' => Frame::Array(v),
                b'~' => Frame::Set(v),
                _ => Frame::Push(v),
            };
            return Ok((f, p));
        }
        b'%' | b'|' => {
            let n = int_of(&line)?;
            let mut p = next;
            let mut v = Vec::with_capacity((n.max(0) as usize).min(4096));
            for _ in 0..n {
                let (k, e) = build(buf, p)?;
                let (val, e) = build(buf, e)?;
                v.push((k, val));
                p = e;
            }
            return Ok((
                if tag == b'%' {
                    Frame::Map(v)
                } else {
                    Frame::Attribute(v)
                },
                p,
            ));
        }
        _ => return Err(DecodeError("unknown frame type")),
    };
    Ok((f, next))
}

impl Frame {
    /// Encodes the frame as RESP (RESP3 types as RESP3).
    pub fn encode(&self, out: &mut Vec<u8>) {
        fn hdr(out: &mut Vec<u8>, tag: u8, n: usize) {
            out.push(tag);
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        fn line(out: &mut Vec<u8>, tag: u8, s: &[u8]) {
            out.push(tag);
            out.extend_from_slice(s);
            out.extend_from_slice(b"\r\n");
        }
        match self {
            Frame::Simple(s) => line(out, b'+', s),
            Frame::Error(s) => line(out, b'-', s),
            Frame::Integer(i) => line(out, b':', itoa::Buffer::new().format(*i).as_bytes()),
            Frame::Double(s) => line(out, b',', s),
            Frame::BigNumber(s) => line(out, b'(', s),
            Frame::Boolean(b) => line(out, b'#', if *b { b"t" } else { b"f" }),
            Frame::Null => out.extend_from_slice(b"_\r\n"),
            Frame::Bulk(b) | Frame::Verbatim(b) => {
                hdr(
                    out,
                    if matches!(self, Frame::Bulk(_)) {
                        b'$'
                    } else {
                        b'='
                    },
                    b.len(),
                );
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
            Frame::Array(v) | Frame::Set(v) | Frame::Push(v) => {
                let tag = match self {
                    Frame::Array(_) => b'*',
                    Frame::Set(_) => b'~',
                    _ => b'>',
                };
                hdr(out, tag, v.len());
                v.iter().for_each(|f| f.encode(out));
            }
            Frame::Map(v) | Frame::Attribute(v) => {
                hdr(
                    out,
                    if matches!(self, Frame::Map(_)) {
                        b'%'
                    } else {
                        b'|'
                    },
                    v.len(),
                );
                for (k, val) in v {
                    k.encode(out);
                    val.encode(out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_nested_resp3_and_round_trips() {
        let raw =
            b"%2\r\n+a\r\n*2\r\n:1\r\n$3\r\nxyz\r\n$1\r\nb\r\n~1\r\n,1.5\r\n>2\r\n#t\r\n_\r\n";
        let buf = Bytes::from_static(raw);
        let (f, used) = parse_frame(&buf).unwrap().unwrap();
        assert_eq!(used, raw.len() - 11);
        let mut out = Vec::new();
        f.encode(&mut out);
        assert_eq!(&out[..], &raw[..used]);
        let (p, _) = parse_frame(&buf.slice(used..)).unwrap().unwrap();
        assert_eq!(p, Frame::Push(vec![Frame::Boolean(true), Frame::Null]));
    }

    #[test]
    fn incomplete_frames_need_more_and_garbage_errors() {
        let raw = b"*2\r\n$3\r\nfoo\r\n:12\r\n";
        for cut in 0..raw.len() {
            assert_eq!(frame_len(&raw[..cut]).unwrap(), None);
        }
        assert_eq!(frame_len(raw).unwrap(), Some(raw.len()));
        assert!(frame_len(b"?x\r\n").is_err());
        assert!(frame_len(b"$3\r\nfooXX").is_err());
        // found by the fuzzer: the check phase must reject what the parse phase rejects
        assert!(frame_len(b":X4\t_\n#\r\nt\t\x1f\n").is_err());
        assert!(frame_len(b"#x\r\n").is_err());
        assert!(frame_len(b"_x\r\n").is_err());
        assert!(frame_len(b"*3\r\n%5666666666666666667\r\n").is_err());
        assert!(frame_len(b"$9223372036854775807\r\n").is_err());
    }
}
