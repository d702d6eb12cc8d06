//! Number parsing and formatting, glob matching and clocks, each matching Redis's behaviour.

use std::time::{SystemTime, UNIX_EPOCH};

pub use kvfleet_resp::request::parse_i64;

/// Wall clock in milliseconds, as Redis's `mstime()`.
#[inline]
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Redis's `strtod`-based double parsing: no spaces, no NaN, `inf` allowed.
pub fn parse_f64(s: &[u8]) -> Option<f64> {
    if s.is_empty() || s[0].is_ascii_whitespace() || s.len() > 256 {
        return None;
    }
    let s = std::str::from_utf8(s).ok()?;
    let v: f64 = s.parse().ok()?;
    if v.is_nan() { None } else { Some(v) }
}

/// `printf("%.17g")`, which Redis 7.0 uses for scores and RESP3 doubles.
pub fn fmt_g17(x: f64, out: &mut Vec<u8>) {
    fmt_g_into(x, 17, out)
}

/// `printf("%.<prec>g")` (cjson's numbers use 14).
pub fn fmt_g(x: f64, prec: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(24);
    fmt_g_into(x, prec, &mut v);
    v
}

fn fmt_g_into(x: f64, prec: usize, out: &mut Vec<u8>) {
    if x.is_nan() {
        // as glibc's printf spells it (Lua's 0/0 has the sign bit set)
        out.extend_from_slice(if x.is_sign_negative() {
            b"-nan"
        } else {
            b"nan"
        });
        return;
    }
    let prec = prec.max(1);
    if x.is_infinite() {
        out.extend_from_slice(if x > 0.0 { b"inf" } else { b"-inf" });
        return;
    }
    if x == 0.0 {
        out.extend_from_slice(if x.is_sign_negative() { b"-0" } else { b"0" });
        return;
    }
    let e = format!("{x:.*e}", prec - 1);
    let (mant, exp) = e.split_once('e').expect("exp format");
    let exp: i32 = exp.parse().expect("exp digits");
    let neg = mant.starts_with('-');
    let digits: Vec<u8> = mant.bytes().filter(|b| b.is_ascii_digit()).collect();
    if neg {
        out.push(b'-');
    }
    if !(-4..prec as i32).contains(&exp) {
        let mut d = &digits[..];
        while d.len() > 1 && d[d.len() - 1] == b'0' {
            d = &d[..d.len() - 1];
        }
        out.push(d[0]);
        if d.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&d[1..]);
        }
        out.push(b'e');
        out.push(if exp < 0 { b'-' } else { b'+' });
        let a = exp.unsigned_abs();
        if a < 10 {
            out.push(b'0');
        }
        out.extend_from_slice(a.to_string().as_bytes());
    } else if exp >= 0 {
        let int_len = exp as usize + 1;
        out.extend_from_slice(&digits[..int_len]);
        let mut frac = &digits[int_len..];
        while !frac.is_empty() && frac[frac.len() - 1] == b'0' {
            frac = &frac[..frac.len() - 1];
        }
        if !frac.is_empty() {
            out.push(b'.');
            out.extend_from_slice(frac);
        }
    } else {
        out.extend_from_slice(b"0.");
        for _ in 0..(-exp - 1) {
            out.push(b'0');
        }
        let mut d = &digits[..];
        while d.len() > 1 && d[d.len() - 1] == b'0' {
            d = &d[..d.len() - 1];
        }
        out.extend_from_slice(d);
    }
}

pub fn g17(x: f64) -> Vec<u8> {
    let mut v = Vec::with_capacity(24);
    fmt_g17(x, &mut v);
    v
}

/// INCRBYFLOAT's human format: shortest round-trip decimal, no exponent.
pub fn fmt_human(x: f64) -> Vec<u8> {
    if x == 0.0 {
        return b"0".to_vec();
    }
    format!("{x}").into_bytes()
}

/// Redis's `stringmatchlen`: `*`, `?`, `[a-z]`, `[^x]`, `\` escapes.
pub fn glob_match(pat: &[u8], s: &[u8], nocase: bool) -> bool {
    glob_inner(pat, s, nocase, 0)
}

fn eq(a: u8, b: u8, nocase: bool) -> bool {
    if nocase {
        a.eq_ignore_ascii_case(&b)
    } else {
        a == b
    }
}

fn glob_inner(mut p: &[u8], mut s: &[u8], nocase: bool, depth: usize) -> bool {
    if depth > 1000 {
        return false;
    }
    while !p.is_empty() {
        match p[0] {
            b'*' => {
                while p.len() > 1 && p[1] == b'*' {
                    p = &p[1..];
                }
                if p.len() == 1 {
                    return true;
                }
                for i in 0..=s.len() {
                    if glob_inner(&p[1..], &s[i..], nocase, depth + 1) {
                        return true;
                    }
                }
                return false;
            }
            b'?' => {
                if s.is_empty() {
                    return false;
                }
                s = &s[1..];
            }
            b'[' => {
                if s.is_empty() {
                    return false;
                }
                p = &p[1..];
                let not = !p.is_empty() && p[0] == b'^';
                if not {
                    p = &p[1..];
                }
                let mut matched = false;
                loop {
                    if p.is_empty() {
                        break;
                    }
                    if p[0] == b'\\' && p.len() >= 2 {
                        p = &p[1..];
                        if eq(p[0], s[0], nocase) {
                            matched = true;
                        }
                    } else if p[0] == b']' {
                        break;
                    } else if p.len() >= 3 && p[1] == b'-' {
                        let (mut lo, mut hi) = (p[0], p[2]);
                        if lo > hi {
                            std::mem::swap(&mut lo, &mut hi);
                        }
                        let c = s[0];
                        let inr = if nocase {
                            let (l, h, c) = (
                                lo.to_ascii_lowercase(),
                                hi.to_ascii_lowercase(),
                                c.to_ascii_lowercase(),
                            );
                            c >= l && c <= h
                        } else {
                            c >= lo && c <= hi
                        };
                        if inr {
                            matched = true;
                        }
                        p = &p[2..];
                    } else if eq(p[0], s[0], nocase) {
                        matched = true;
                    }
                    p = &p[1..];
                }
                if not {
                    matched = !matched;
                }
                if !matched {
                    return false;
                }
                s = &s[1..];
                if p.is_empty() {
                    // unterminated class: Redis treats the end of pattern as the end
                    return s.is_empty();
                }
            }
            b'\\' if p.len() >= 2 => {
                p = &p[1..];
                if s.is_empty() || !eq(p[0], s[0], nocase) {
                    return false;
                }
                s = &s[1..];
            }
            c => {
                if s.is_empty() || !eq(c, s[0], nocase) {
                    return false;
                }
                s = &s[1..];
            }
        }
        p = &p[1..];
    }
    s.is_empty()
}

/// Redis's `string2l`-style check used for the `int` encoding and intsets.
pub fn as_canonical_i64(s: &[u8]) -> Option<i64> {
    parse_i64(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(x: f64) -> String {
        String::from_utf8(g17(x)).unwrap()
    }

    #[test]
    fn nan_prints_as_printf_does() {
        assert_eq!(g17(f64::NAN), b"nan");
        assert_eq!(g17(-f64::NAN), b"-nan");
        assert_eq!(fmt_g(f64::NAN, 14), b"nan");
    }

    #[test]
    fn g17_matches_printf() {
        assert_eq!(g(1.1), "1.1000000000000001");
        assert_eq!(g(2.0), "2");
        assert_eq!(g(1e-5), "1.0000000000000001e-05");
        assert_eq!(g(0.1), "0.10000000000000001");
        assert_eq!(g(123456789012345678.0), "1.2345678901234568e+17");
        assert_eq!(g(-2.5), "-2.5");
        assert_eq!(g(0.0001), "0.0001");
        assert_eq!(g(1e16), "10000000000000000");
        assert_eq!(g(f64::INFINITY), "inf");
        assert_eq!(g(1e300), "1.0000000000000001e+300");
    }

    #[test]
    fn glob_matches_like_redis() {
        assert!(glob_match(b"h?llo", b"hello", false));
        assert!(glob_match(b"h*llo", b"heeeello", false));
        assert!(glob_match(b"h[ae]llo", b"hallo", false));
        assert!(!glob_match(b"h[^e]llo", b"hello", false));
        assert!(glob_match(b"h[a-b]llo", b"hbllo", false));
        assert!(glob_match(b"a\\*b", b"a*b", false));
        assert!(!glob_match(b"a\\*b", b"axb", false));
        assert!(glob_match(b"*", b"", false));
        assert!(glob_match(b"HE*", b"hello", true));
    }
}
