//! Turning the replies of a command sent to several groups into one reply,
//! and rewriting SCAN cursors so they carry the group being scanned.

use bytes::{BufMut, Bytes, BytesMut};

use crate::table::Merge;
use kvfleet_resp::frame::frame_len;

/// An aggregate reply (`*`, `~`, `%`, `>`) split into its header and elements.
pub fn elements(reply: &Bytes) -> Option<(u8, Vec<Bytes>)> {
    let kind = *reply.first()?;
    if !matches!(kind, b'*' | b'~' | b'>') {
        return None;
    }
    let eol = reply.windows(2).position(|w| w == b"\r\n")?;
    let n: i64 = std::str::from_utf8(&reply[1..eol]).ok()?.parse().ok()?;
    let mut at = eol + 2;
    let mut out = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n.max(0) {
        let len = frame_len(&reply[at..]).ok()??;
        out.push(reply.slice(at..at + len));
        at += len;
    }
    Some((kind, out))
}

fn is_error(r: &[u8]) -> bool {
    matches!(r.first(), Some(b'-' | b'!'))
}

fn is_null(r: &[u8]) -> bool {
    r == b"$-1\r\n" || r == b"_\r\n" || r == b"*-1\r\n"
}

fn int_of(r: &[u8]) -> Option<i64> {
    let body = r.strip_prefix(b":")?.strip_suffix(b"\r\n")?;
    std::str::from_utf8(body).ok()?.parse().ok()
}

fn header(out: &mut BytesMut, kind: u8, n: usize) {
    out.put_u8(kind);
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn protocol_error(what: &str) -> Bytes {
    Bytes::from(format!(
        "-ERR kvfleet-proxy: unexpected backend reply to {what}\r\n"
    ))
}

/// Collects the parts of one split or fanned-out command.
pub struct Merger {
    kind: Merge,
    parts: Vec<Option<Bytes>>,
    left: usize,
    /// For `Values`: the client's key position of each part's keys, in order.
    pub positions: Vec<Vec<u32>>,
    /// For `Values`: how many keys the client asked for.
    pub nkeys: usize,
    /// For `Last`: the reply to give instead, once the parts are in.
    pub fixed: Option<Bytes>,
}

impl Merger {
    pub fn new(kind: Merge, parts: usize) -> Merger {
        Merger {
            kind,
            parts: vec![None; parts],
            left: parts,
            positions: Vec::new(),
            nkeys: 0,
            fixed: None,
        }
    }

    /// Stores one part; true when all have arrived.
    pub fn add(&mut self, part: u32, data: Bytes) -> bool {
        if let Some(slot) = self.parts.get_mut(part as usize)
            && slot.is_none()
        {
            *slot = Some(data);
            self.left -= 1;
        }
        self.left == 0
    }

    pub fn finish(mut self) -> Bytes {
        let mut parts: Vec<Bytes> = std::mem::take(&mut self.parts)
            .into_iter()
            .map(|p| p.unwrap_or_default())
            .collect();
        if self.kind == Merge::Last {
            return self
                .fixed
                .unwrap_or_else(|| parts.pop().unwrap_or_default());
        }
        if self.kind == Merge::AnyOk {
            // SCRIPT KILL: the group running the script says OK, the rest NOTBUSY
            return match parts.iter().find(|p| &p[..] == b"+OK\r\n") {
                Some(ok) => ok.clone(),
                None => parts.into_iter().next().unwrap_or_default(),
            };
        }
        if let Some(e) = parts.iter().find(|p| is_error(p)) {
            return e.clone();
        }
        let mut out = BytesMut::new();
        match self.kind {
            Merge::AllOk => return Bytes::from_static(b"+OK\r\n"),
            Merge::AnyOk => unreachable!("handled above"),
            Merge::Last => unreachable!("handled above"),
            Merge::First => return parts.into_iter().next().unwrap_or_default(),
            Merge::Sum => {
                let mut sum = 0i64;
                for p in &parts {
                    let Some(n) = int_of(p) else {
                        return protocol_error("a counting command");
                    };
                    sum = sum.saturating_add(n);
                }
                out.put_u8(b':');
                out.extend_from_slice(itoa::Buffer::new().format(sum).as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            Merge::Values => {
                let mut slots: Vec<Option<Bytes>> = vec![None; self.nkeys];
                for (p, pos) in parts.iter().zip(&self.positions) {
                    let Some((_, elems)) = elements(p) else {
                        return protocol_error("MGET");
                    };
                    if elems.len() != pos.len() {
                        return protocol_error("MGET");
                    }
                    for (e, &i) in elems.into_iter().zip(pos) {
                        slots[i as usize] = Some(e);
                    }
                }
                header(&mut out, b'*', slots.len());
                for s in slots {
                    out.extend_from_slice(&s.unwrap_or_else(|| Bytes::from_static(b"$-1\r\n")));
                }
            }
            Merge::Concat => {
                let mut all = Vec::new();
                let mut kind = b'*';
                for p in &parts {
                    let Some((k, elems)) = elements(p) else {
                        return protocol_error("a listing command");
                    };
                    kind = k;
                    all.extend(elems);
                }
                header(&mut out, kind, all.len());
                all.iter().for_each(|e| out.extend_from_slice(e));
            }
            Merge::AnyNonNull => {
                let live: Vec<&Bytes> = parts.iter().filter(|p| !is_null(p)).collect();
                return match live.len() {
                    0 => parts.into_iter().next().unwrap_or_default(),
                    n => live[fastrand::usize(..n)].clone(),
                };
            }
            Merge::SumPairs => {
                let mut acc: Option<Vec<(Bytes, i64)>> = None;
                for p in &parts {
                    let Some((_, elems)) = elements(p) else {
                        return protocol_error("PUBSUB NUMSUB");
                    };
                    let pairs: Vec<(Bytes, i64)> = elems
                        .chunks(2)
                        .map(|c| (c[0].clone(), c.get(1).and_then(|n| int_of(n)).unwrap_or(0)))
                        .collect();
                    acc = Some(match acc {
                        None => pairs,
                        Some(a) => a
                            .into_iter()
                            .zip(pairs)
                            .map(|((k, x), (_, y))| (k, x + y))
                            .collect(),
                    });
                }
                let acc = acc.unwrap_or_default();
                header(&mut out, b'*', acc.len() * 2);
                for (k, n) in acc {
                    out.extend_from_slice(&k);
                    out.put_u8(b':');
                    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
            }
            Merge::MinEach => {
                let mut mins: Option<Vec<Bytes>> = None;
                for p in &parts {
                    let Some((_, elems)) = elements(p) else {
                        return protocol_error("SCRIPT EXISTS");
                    };
                    mins = Some(match mins {
                        None => elems,
                        Some(m) => m
                            .into_iter()
                            .zip(elems)
                            .map(|(a, b)| if int_of(&b) < int_of(&a) { b } else { a })
                            .collect(),
                    });
                }
                let mins = mins.unwrap_or_default();
                header(&mut out, b'*', mins.len());
                mins.iter().for_each(|e| out.extend_from_slice(e));
            }
        }
        out.freeze()
    }
}

/// SCAN cursors through the proxy: `backend_cursor * groups + group`, so the
/// cursor alone says which group to continue in. Backend cursors stay far
/// below 2^54 (Redis's are bounded by its table size, ours by 2^42), so
/// this fits in 64 bits for up to 1024 groups.
pub fn split_cursor(cursor: u64, groups: u64) -> (usize, u64) {
    ((cursor % groups) as usize, cursor / groups)
}

/// Rewrites a backend's SCAN reply for the client: its cursor becomes ours.
pub fn scan_reply(reply: &Bytes, group: usize, groups: usize) -> Bytes {
    if is_error(reply) {
        return reply.clone();
    }
    let Some((kind, elems)) = elements(reply) else {
        return protocol_error("SCAN");
    };
    let cursor = elems.first().and_then(|c| {
        let body = c.strip_suffix(b"\r\n")?;
        let at = body.iter().position(|&b| b == b'\n')?;
        std::str::from_utf8(&body[at + 1..])
            .ok()?
            .parse::<u64>()
            .ok()
    });
    let (Some(bc), 2) = (cursor, elems.len()) else {
        return protocol_error("SCAN");
    };
    let next = if bc != 0 {
        bc.checked_mul(groups as u64)
            .and_then(|c| c.checked_add(group as u64))
    } else if group + 1 < groups {
        Some(group as u64 + 1)
    } else {
        Some(0)
    };
    let Some(next) = next else {
        return protocol_error("SCAN (cursor out of range)");
    };
    let mut out = BytesMut::new();
    header(&mut out, kind, 2);
    let c = itoa::Buffer::new().format(next).to_string();
    header(&mut out, b'$', c.len());
    out.extend_from_slice(c.as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&elems[1]);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mget_parts_go_back_to_the_clients_order() {
        let mut m = Merger::new(Merge::Values, 2);
        m.nkeys = 3;
        m.positions = vec![vec![0, 2], vec![1]];
        assert!(!m.add(1, Bytes::from_static(b"*1\r\n$1\r\nb\r\n")));
        assert!(m.add(0, Bytes::from_static(b"*2\r\n$1\r\na\r\n$-1\r\n")));
        assert_eq!(&m.finish()[..], b"*3\r\n$1\r\na\r\n$1\r\nb\r\n$-1\r\n");
    }

    #[test]
    fn sums_and_errors() {
        let mut m = Merger::new(Merge::Sum, 2);
        m.add(0, Bytes::from_static(b":2\r\n"));
        m.add(1, Bytes::from_static(b":3\r\n"));
        assert_eq!(&m.finish()[..], b":5\r\n");
        let mut m = Merger::new(Merge::AllOk, 2);
        m.add(0, Bytes::from_static(b"+OK\r\n"));
        m.add(1, Bytes::from_static(b"-ERR down\r\n"));
        assert_eq!(&m.finish()[..], b"-ERR down\r\n");
    }

    #[test]
    fn scan_cursor_moves_to_the_next_group_when_one_is_done() {
        let r = Bytes::from_static(b"*2\r\n$2\r\n17\r\n*1\r\n$1\r\nk\r\n");
        assert_eq!(
            &scan_reply(&r, 1, 3)[..],
            b"*2\r\n$2\r\n52\r\n*1\r\n$1\r\nk\r\n"
        );
        assert_eq!(split_cursor(52, 3), (1, 17));
        let done = Bytes::from_static(b"*2\r\n$1\r\n0\r\n*0\r\n");
        assert_eq!(&scan_reply(&done, 1, 3)[..], b"*2\r\n$1\r\n2\r\n*0\r\n");
        assert_eq!(&scan_reply(&done, 2, 3)[..], b"*2\r\n$1\r\n0\r\n*0\r\n");
    }
}
