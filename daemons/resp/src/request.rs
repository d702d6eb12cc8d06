//! Client request parsing: multibulk (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`) and inline
//! (`GET k\r\n`) commands, with Redis 7.0's limits and error texts.
//!
//! Arguments come out as byte ranges into the caller's buffer; the caller keeps
//! the buffer and slices it. Nothing is allocated per command once the range
//! vector has grown to the widest command seen.

use std::ops::Range;

/// Longest inline command or `*`/`$` header line Redis accepts (`PROTO_INLINE_MAX_SIZE`).
pub const INLINE_MAX: usize = 64 * 1024;
/// Redis's `proto-max-bulk-len` default: 512 MB.
pub const DEFAULT_MAX_BULK_LEN: usize = 512 * 1024 * 1024;
/// Redis caps the multibulk count at `INT_MAX`.
pub const MAX_MULTIBULK: i64 = i32::MAX as i64;

/// Limits enforced while parsing.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bulk_len: usize,
    /// Before authentication Redis allows only small requests (10 args, 16 KB bulks).
    pub authenticated: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: DEFAULT_MAX_BULK_LEN,
            authenticated: true,
        }
    }
}

/// A violation that ends the connection after the reply, as in Redis.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Protocol error: {0}")]
pub struct ProtocolError(pub String);

fn perr(s: impl Into<String>) -> ProtocolError {
    ProtocolError(s.into())
}

/// Parses requests; reuse one per connection.
#[derive(Debug, Default)]
pub struct RequestParser {
    /// Argument ranges of the last parsed request.
    pub args: Vec<Range<usize>>,
    /// Inline arguments are unescaped, so they cannot point into the buffer;
    /// they live here and `args` point into it when `inline` is set.
    pub inline_buf: Vec<u8>,
    pub inline: bool,
    /// Size hint: the length of a bulk still arriving, so the reader can reserve.
    pub pending_bulk: usize,
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    // memchr on '\r' then check '\n'; headers are short so a plain scan is fine.
    let mut i = from;
    while i + 1 < buf.len() {
        match buf[i..].iter().position(|&b| b == b'\r') {
            Some(p) => {
                let at = i + p;
                if at + 1 < buf.len() {
                    if buf[at + 1] == b'\n' {
                        return Some(at);
                    }
                    i = at + 1;
                } else {
                    return None;
                }
            }
            None => return None,
        }
    }
    None
}

/// Redis's `string2ll`: optional '-', digits, no '+', no leading zeros except "0".
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let (neg, digits) = if s[0] == b'-' {
        (true, &s[1..])
    } else {
        (false, s)
    };
    if digits.is_empty() || (digits[0] == b'0' && digits.len() > 1) {
        return None;
    }
    if neg && digits == b"0" {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let x = (d - b'0') as i64;
        v = if neg {
            v.checked_mul(10)?.checked_sub(x)?
        } else {
            v.checked_mul(10)?.checked_add(x)?
        };
    }
    Some(v)
}

impl RequestParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// The arguments of the last parsed request, resolved against `buf`
    /// (the same buffer passed to [`parse`](Self::parse)).
    pub fn arg<'a>(&'a self, buf: &'a [u8], i: usize) -> &'a [u8] {
        let r = self.args[i].clone();
        if self.inline {
            &self.inline_buf[r]
        } else {
            &buf[r]
        }
    }

    /// Parses one request from the front of `buf`. Returns the bytes consumed
    /// (`args` may be empty for an empty request, which callers skip), `None`
    /// when more bytes are needed, or a protocol error.
    pub fn parse(&mut self, buf: &[u8], limits: &Limits) -> Result<Option<usize>, ProtocolError> {
        self.args.clear();
        self.pending_bulk = 0;
        if buf.is_empty() {
            return Ok(None);
        }
        if buf[0] == b'*' {
            self.inline = false;
            self.parse_multibulk(buf, limits)
        } else {
            self.inline = true;
            self.parse_inline(buf)
        }
    }

    fn parse_multibulk(
        &mut self,
        buf: &[u8],
        limits: &Limits,
    ) -> Result<Option<usize>, ProtocolError> {
        let Some(nl) = find_crlf(buf, 1) else {
            if buf.len() > INLINE_MAX {
                return Err(perr("too big mbulk count string"));
            }
            return Ok(None);
        };
        if nl > INLINE_MAX {
            return Err(perr("too big mbulk count string"));
        }
        let count = match parse_i64(&buf[1..nl]) {
            Some(n) if n <= MAX_MULTIBULK => n,
            _ => return Err(perr("invalid multibulk length")),
        };
        if count > 10 && !limits.authenticated {
            return Err(perr("unauthenticated multibulk length"));
        }
        let mut pos = nl + 2;
        if count <= 0 {
            return Ok(Some(pos));
        }
        // Don't trust the count for preallocation: it is attacker-controlled.
        self.args.reserve((count as usize).min(1024));
        for _ in 0..count {
            if pos >= buf.len() {
                return Ok(None);
            }
            if buf[pos] != b'$' {
                let got = buf[pos] as char;
                return Err(perr(format!("expected '$', got '{got}'")));
            }
            let Some(nl) = find_crlf(buf, pos + 1) else {
                if buf.len() - pos > INLINE_MAX {
                    return Err(perr("too big bulk count string"));
                }
                return Ok(None);
            };
            if nl - pos > INLINE_MAX {
                return Err(perr("too big bulk count string"));
            }
            let len = match parse_i64(&buf[pos + 1..nl]) {
                Some(n) if n >= 0 && (n as usize) <= limits.max_bulk_len => n as usize,
                _ => return Err(perr("invalid bulk length")),
            };
            if len > 16384 && !limits.authenticated {
                return Err(perr("unauthenticated bulk length"));
            }
            let start = nl + 2;
            let end = start + len;
            if buf.len() < end + 2 {
                self.pending_bulk = end + 2 - buf.len();
                return Ok(None);
            }
            self.args.push(start..end);
            // Redis does not check the trailing CRLF of a bulk; it skips two bytes.
            pos = end + 2;
        }
        Ok(Some(pos))
    }

    fn parse_inline(&mut self, buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
        let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
            if buf.len() > INLINE_MAX {
                return Err(perr("too big inline request"));
            }
            return Ok(None);
        };
        if nl > INLINE_MAX {
            return Err(perr("too big inline request"));
        }
        let line = if nl > 0 && buf[nl - 1] == b'\r' {
            &buf[..nl - 1]
        } else {
            &buf[..nl]
        };
        self.inline_buf.clear();
        split_args(line, &mut self.inline_buf, &mut self.args)
            .ok_or_else(|| perr("unbalanced quotes in request"))?;
        Ok(Some(nl + 1))
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Redis's `sdssplitargs`: whitespace-separated words, "double quotes" with
/// C escapes (`\n`, `\x41`), 'single quotes' with only `\'`. A closing quote
/// must be followed by a space or the end. `None` on unbalanced quotes.
pub fn split_args(line: &[u8], out: &mut Vec<u8>, args: &mut Vec<Range<usize>>) -> Option<()> {
    let mut i = 0;
    let n = line.len();
    loop {
        while i < n && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= n {
            return Some(());
        }
        let start = out.len();
        let (mut inq, mut insq) = (false, false);
        loop {
            if inq {
                if i >= n {
                    return None;
                }
                if line[i] == b'\\'
                    && i + 3 < n
                    && line[i + 1] == b'x'
                    && let (Some(h), Some(l)) = (hex(line[i + 2]), hex(line[i + 3]))
                {
                    out.push(h * 16 + l);
                    i += 3;
                } else if line[i] == b'\\' && i + 1 < n {
                    i += 1;
                    out.push(match line[i] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        c => c,
                    });
                } else if line[i] == b'"' {
                    if i + 1 < n && !line[i + 1].is_ascii_whitespace() {
                        return None;
                    }
                    i += 1;
                    break;
                } else {
                    out.push(line[i]);
                }
            } else if insq {
                if i >= n {
                    return None;
                }
                if line[i] == b'\\' && i + 1 < n && line[i + 1] == b'\'' {
                    i += 1;
                    out.push(b'\'');
                } else if line[i] == b'\'' {
                    if i + 1 < n && !line[i + 1].is_ascii_whitespace() {
                        return None;
                    }
                    i += 1;
                    break;
                } else {
                    out.push(line[i]);
                }
            } else {
                if i >= n {
                    break;
                }
                match line[i] {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => {
                        i += 1;
                        break;
                    }
                    b'"' => inq = true,
                    b'\'' => insq = true,
                    c => out.push(c),
                }
            }
            i += 1;
        }
        args.push(start..out.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Parsed = Option<(usize, Vec<Vec<u8>>)>;

    fn parse(buf: &[u8]) -> Result<Parsed, ProtocolError> {
        let mut p = RequestParser::new();
        let r = p.parse(buf, &Limits::default())?;
        Ok(r.map(|n| {
            (
                n,
                (0..p.args.len()).map(|i| p.arg(buf, i).to_vec()).collect(),
            )
        }))
    }

    #[test]
    fn multibulk_parses_and_reports_consumed() {
        let buf = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n";
        let (n, args) = parse(buf).unwrap().unwrap();
        assert_eq!(n, 20);
        assert_eq!(args, vec![b"GET".to_vec(), b"k".to_vec()]);
    }

    #[test]
    fn partial_input_needs_more() {
        let full = b"*2\r\n$3\r\nSET\r\n$5\r\nhello\r\n";
        for cut in 0..full.len() {
            assert_eq!(parse(&full[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert!(parse(full).unwrap().is_some());
    }

    #[test]
    fn redis_protocol_errors() {
        assert_eq!(
            parse(b"*x\r\n").unwrap_err().to_string(),
            "Protocol error: invalid multibulk length"
        );
        assert_eq!(
            parse(b"*1\r\n+a\r\n").unwrap_err().to_string(),
            "Protocol error: expected '$', got '+'"
        );
        assert_eq!(
            parse(b"*1\r\n$-1\r\n").unwrap_err().to_string(),
            "Protocol error: invalid bulk length"
        );
        assert_eq!(
            parse(b"*1\r\n$600000000\r\n").unwrap_err().to_string(),
            "Protocol error: invalid bulk length"
        );
        assert_eq!(
            parse(b"*3000000000\r\n").unwrap_err().to_string(),
            "Protocol error: invalid multibulk length"
        );
        let long = vec![b'a'; INLINE_MAX + 10];
        assert_eq!(
            parse(&long).unwrap_err().to_string(),
            "Protocol error: too big inline request"
        );
        assert_eq!(
            parse(b"set \"a b\r\n").unwrap_err().to_string(),
            "Protocol error: unbalanced quotes in request"
        );
    }

    #[test]
    fn inline_commands_split_like_sdssplitargs() {
        let (_, args) = parse(b"set \"a\\x41\\n\" 'it\\'s'  x\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            args,
            vec![
                b"set".to_vec(),
                b"aA\n".to_vec(),
                b"it's".to_vec(),
                b"x".to_vec()
            ]
        );
        let (n, args) = parse(b"\r\n").unwrap().unwrap();
        assert_eq!((n, args.len()), (2, 0));
    }

    #[test]
    fn parse_i64_is_strict() {
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"+1",
            b"01",
            b"-0",
            b"1 ",
            b"9223372036854775808",
            b"1.0",
        ] {
            assert_eq!(parse_i64(bad), None, "{bad:?}");
        }
    }
}
