//! Pub/sub through the proxy.
//!
//! PUBLISH goes to the group owning the channel's slot, so SUBSCRIBE asks
//! that group too; a pattern can match a channel of any group, so PSUBSCRIBE
//! asks every group. Each subscribing client has its own subscriber
//! connection per group it uses. The backends' confirmations are gathered and
//! the client gets one per channel or pattern, in its order, with the count
//! of its subscriptions through the proxy (as one Redis would give); message
//! frames pass through as they come.

use std::collections::HashSet;

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

use crate::merge::elements;
use kvfleet_resp::encode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Subscribe,
    Unsubscribe,
    PSubscribe,
    PUnsubscribe,
}

impl Kind {
    pub fn from_command(name: &str) -> Option<Kind> {
        Some(match name {
            "subscribe" => Kind::Subscribe,
            "unsubscribe" => Kind::Unsubscribe,
            "psubscribe" => Kind::PSubscribe,
            "punsubscribe" => Kind::PUnsubscribe,
            _ => return None,
        })
    }

    fn word(self) -> &'static [u8] {
        match self {
            Kind::Subscribe => b"subscribe",
            Kind::Unsubscribe => b"unsubscribe",
            Kind::PSubscribe => b"psubscribe",
            Kind::PUnsubscribe => b"punsubscribe",
        }
    }

    pub fn is_pattern(self) -> bool {
        matches!(self, Kind::PSubscribe | Kind::PUnsubscribe)
    }

    fn from_word(w: &[u8]) -> Option<Kind> {
        Some(match w {
            b"subscribe" => Kind::Subscribe,
            b"unsubscribe" => Kind::Unsubscribe,
            b"psubscribe" => Kind::PSubscribe,
            b"punsubscribe" => Kind::PUnsubscribe,
            _ => return None,
        })
    }
}

/// A confirmation frame's kind and channel (or pattern); `None` for messages.
pub fn confirmation(frame: &Bytes) -> Option<(Kind, Vec<u8>)> {
    let (_, e) = elements(frame)?;
    let word = bulk_body(e.first()?)?;
    let kind = Kind::from_word(&word.to_ascii_lowercase())?;
    Some((kind, bulk_body(e.get(1)?).unwrap_or_default()))
}

fn bulk_body(f: &Bytes) -> Option<Vec<u8>> {
    if f.first() != Some(&b'$') {
        return None;
    }
    let eol = f.windows(2).position(|w| w == b"\r\n")?;
    let n: usize = std::str::from_utf8(&f[1..eol]).ok()?.parse().ok()?;
    Some(f.get(eol + 2..eol + 2 + n)?.to_vec())
}

/// One channel or pattern a command is waiting to hear back about.
struct Want {
    kind: Kind,
    name: Vec<u8>,
    /// Confirmations still expected (one per group asked).
    left: usize,
}

/// The confirmations one (P)(UN)SUBSCRIBE command waits for.
#[derive(Default)]
pub struct Waiting {
    wants: Vec<Want>,
}

impl Waiting {
    pub fn want(&mut self, kind: Kind, name: &[u8], groups: usize) {
        self.wants.push(Want {
            kind,
            name: name.to_vec(),
            left: groups,
        });
    }

    /// Counts one confirmation; true when every one has arrived.
    pub fn confirm(&mut self, kind: Kind, name: &[u8]) -> bool {
        if let Some(w) = self
            .wants
            .iter_mut()
            .find(|w| w.kind == kind && w.name == name && w.left > 0)
        {
            w.left -= 1;
        }
        self.done()
    }

    pub fn done(&self) -> bool {
        self.wants.iter().all(|w| w.left == 0)
    }
}

/// One client's subscriptions through the proxy.
#[derive(Default)]
pub struct Subs {
    /// Subscriber connection per group index, opened on first use.
    pub links: Vec<Option<mpsc::UnboundedSender<Vec<u8>>>>,
    pub channels: HashSet<Vec<u8>>,
    pub patterns: HashSet<Vec<u8>>,
}

impl Subs {
    pub fn count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    /// Applies a completed command's confirmations, in its order, and
    /// encodes them as Redis would have sent them.
    pub fn reply(&mut self, w: Waiting, resp3: bool) -> Bytes {
        let mut out = BytesMut::new();
        for want in w.wants {
            let set = if want.kind.is_pattern() {
                &mut self.patterns
            } else {
                &mut self.channels
            };
            match want.kind {
                Kind::Subscribe | Kind::PSubscribe => {
                    set.insert(want.name.clone());
                }
                Kind::Unsubscribe | Kind::PUnsubscribe => {
                    set.remove(&want.name);
                }
            }
            frame(&mut out, want.kind, Some(&want.name), self.count(), resp3);
        }
        out.freeze()
    }
}

/// A confirmation as Redis sends it (`name` None: nothing was subscribed).
pub fn frame(out: &mut BytesMut, kind: Kind, name: Option<&[u8]>, count: usize, resp3: bool) {
    encode::push(out, 3, resp3);
    encode::bulk(out, kind.word());
    match name {
        Some(n) => encode::bulk(out, n),
        None => encode::null(out, resp3),
    }
    encode::int(out, count as i64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmations_are_recognised_and_messages_are_not() {
        let c = Bytes::from_static(b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:4\r\n");
        assert_eq!(confirmation(&c), Some((Kind::Subscribe, b"ch".to_vec())));
        let m = Bytes::from_static(b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n");
        assert_eq!(confirmation(&m), None);
    }

    #[test]
    fn counts_are_the_clients_own_in_its_order() {
        let mut s = Subs::default();
        let mut w = Waiting::default();
        w.want(Kind::Subscribe, b"a", 1);
        w.want(Kind::PSubscribe, b"p*", 2);
        assert!(!w.confirm(Kind::PSubscribe, b"p*"));
        assert!(!w.confirm(Kind::Subscribe, b"a"));
        assert!(w.confirm(Kind::PSubscribe, b"p*"));
        let r = s.reply(w, false);
        assert_eq!(
            &r[..],
            b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$10\r\npsubscribe\r\n$2\r\np*\r\n:2\r\n"
        );
    }
}
