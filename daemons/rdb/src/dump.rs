//! `DUMP` payloads: `type value version(u16 LE) crc64(u64 LE)`, the format
//! Redis's RESTORE, MIGRATE and slot migration exchange.

use crate::read::{self, Value};
use crate::{CRC64, Encoder, Error, RDB_VERSION, Result};

/// Closes a payload whose type byte and value `enc` holds.
pub fn finish(mut enc: Encoder) -> Vec<u8> {
    enc.buf.extend_from_slice(&RDB_VERSION.to_le_bytes());
    let crc = CRC64.checksum(&enc.buf);
    enc.buf.extend_from_slice(&crc.to_le_bytes());
    enc.buf
}

/// Whether the footer is sound: a version we read and a matching checksum
/// (Redis answers "DUMP payload version or checksum are wrong" otherwise).
pub fn verify(payload: &[u8]) -> bool {
    if payload.len() < 10 {
        return false;
    }
    let n = payload.len();
    let version = u16::from_le_bytes([payload[n - 10], payload[n - 9]]);
    let crc = u64::from_le_bytes(payload[n - 8..].try_into().expect("8 bytes"));
    version <= RDB_VERSION && CRC64.checksum(&payload[..n - 8]) == crc
}

/// The value of a payload: [`Error::Footer`] when its version or checksum
/// is wrong, another error when its body is.
pub fn decode(payload: &[u8]) -> Result<Value> {
    if !verify(payload) {
        return Err(Error::Footer);
    }
    let body = &payload[..payload.len() - 10];
    let (&t, data) = body.split_first().ok_or(Error::Truncated)?;
    read::value(t, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind;

    fn str_value(e: &mut Encoder, s: &[u8]) {
        e.kind(kind::STRING);
        e.string(s);
    }

    fn payload(f: impl FnOnce(&mut Encoder)) -> Vec<u8> {
        let mut e = Encoder::new();
        f(&mut e);
        finish(e)
    }

    #[test]
    fn matches_redis_7_dump_bytes_for_plain_values() {
        // redis-cli DUMP of `SET k hello` on Redis 7.0.15
        let p = payload(|e| str_value(e, b"hello"));
        assert_eq!(p, b"\x00\x05hello\x0a\x00cr\xdfve4 \x0a".to_vec());
        // `SET k 12345` is integer-encoded
        let p = payload(|e| str_value(e, b"12345"));
        assert_eq!(
            p,
            b"\x00\xc190\x0a\x00\x9d\x94\xea'\x93\xfc\x08\xb9".to_vec()
        );
    }

    #[test]
    fn round_trips_every_type() {
        let cases = vec![
            Value::Str(b"007".to_vec()),
            Value::Str(b"-2147483648".to_vec()),
            Value::Str(vec![b'z'; 20000]),
            Value::List(vec![b"a".to_vec(), b"1".to_vec(), vec![]]),
            Value::Set(vec![b"x".to_vec(), b"y".to_vec()]),
            Value::Hash(vec![(b"f".to_vec(), b"v".to_vec())]),
            Value::ZSet(vec![
                (b"m".to_vec(), 1.5),
                (b"n".to_vec(), f64::INFINITY),
                (b"o".to_vec(), -0.0),
            ]),
        ];
        for v in cases {
            let p = payload(|e| match &v {
                Value::Str(s) => str_value(e, s),
                Value::List(l) => {
                    e.kind(kind::LIST);
                    e.seq(l.len(), l.iter().map(|s| &s[..]))
                }
                Value::Set(l) => {
                    e.kind(kind::SET);
                    e.seq(l.len(), l.iter().map(|s| &s[..]))
                }
                Value::Hash(h) => {
                    e.kind(kind::HASH);
                    e.hash(h.len(), h.iter().map(|(f, v)| (&f[..], &v[..])))
                }
                Value::ZSet(z) => {
                    e.kind(kind::ZSET_2);
                    e.zset(z.len(), z.iter().map(|(m, s)| (&m[..], *s)))
                }
                Value::Stream(st) => {
                    e.kind(kind::STREAM_LISTPACKS_2);
                    e.stream(st)
                }
            });
            assert_eq!(decode(&p).unwrap(), v);
        }
    }

    #[test]
    fn rejects_bad_footers_and_bodies_without_panicking() {
        let mut p = payload(|e| str_value(e, b"hello"));
        assert!(verify(&p));
        p[1] ^= 1;
        assert!(!verify(&p), "checksum catches a flipped bit");
        assert!(!verify(b"short"));
        // a newer version than ours
        let mut e = Encoder::new();
        str_value(&mut e, b"x");
        e.buf.extend_from_slice(&11u16.to_le_bytes());
        let crc = CRC64.checksum(&e.buf);
        e.buf.extend_from_slice(&crc.to_le_bytes());
        assert!(!verify(&e.buf));
        // every truncation of a valid body is an error, never a panic
        let full = payload(|e| {
            e.kind(kind::HASH);
            e.hash(2, [(&b"a"[..], &b"1"[..]), (b"bb", b"x")].into_iter())
        });
        for cut in 1..full.len() - 10 {
            let mut body = full[..cut].to_vec();
            body.extend_from_slice(&RDB_VERSION.to_le_bytes());
            let crc = CRC64.checksum(&body);
            body.extend_from_slice(&crc.to_le_bytes());
            assert!(decode(&body).is_err(), "cut at {cut}");
        }
    }
}
