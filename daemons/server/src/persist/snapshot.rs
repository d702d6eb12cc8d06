//! The forkless snapshot: an O(slots) start that freezes every table's
//! contents as of one instant, then serialisation slot by slot, one segment
//! per lock hold, while writers keep going (docs/decisions/0005).

use std::io::Write;
use std::time::{Duration, Instant};

use kvfleet_rdb::Encoder;
use kvfleet_rdb::write::FileWriter;

use crate::db::{Db, bump_snapshot_epoch};

/// What the start saw.
#[derive(Debug, Clone, Copy)]
pub struct Started {
    /// How long writers were held off (Redis reports its fork this way).
    pub pause: Duration,
    pub keys: u64,
    pub expires: u64,
}

/// Locks every slot in ascending order (as multi-slot commands do), bumps
/// the snapshot epoch, counts, unlocks. A slot that stays busy (a command
/// that locks slots out of order) makes it back off and retry rather than
/// deadlock.
pub fn start(db: &Db) -> Started {
    start_with(db, || {})
}

/// [`start`], running `at_instant` while every slot is locked (the AOF
/// rewrite switches files there, so each write lands on exactly one side).
pub fn start_with(db: &Db, at_instant: impl FnOnce()) -> Started {
    let mut at_instant = Some(at_instant);
    let t = Instant::now();
    let _batch = db.batch.lock();
    'retry: loop {
        let mut guards = Vec::with_capacity(db.slots.len());
        for s in db.slots.iter() {
            match s.try_lock_for(Duration::from_millis(5)) {
                Some(g) => guards.push(g),
                None => {
                    drop(guards);
                    std::thread::yield_now();
                    continue 'retry;
                }
            }
        }
        bump_snapshot_epoch();
        if let Some(f) = at_instant.take() {
            f();
        }
        let (keys, expires) = guards.iter().fold((0, 0), |(k, e), g| {
            (k + g.map.len() as u64, e + g.volatile as u64)
        });
        drop(guards);
        return Started {
            pause: t.elapsed(),
            keys,
            expires,
        };
    }
}

/// Flush to the sink past this much serialised data.
const CHUNK: usize = 256 * 1024;

/// Writes the snapshot begun by `start` as an RDB stream: header, `aux`
/// fields, database 0, every record, EOF and checksum. On failure the
/// remaining tables are released (they stop saving pre-images).
pub fn write<W: Write>(
    db: &Db,
    st: &Started,
    aux: &[(&str, String)],
    libs: &[Vec<u8>],
    compress: bool,
    out: W,
) -> std::io::Result<W> {
    crate::priority::enter_bulk_work();
    let mut w = FileWriter::new(out);
    let mut enc = if compress {
        Encoder::compressing()
    } else {
        Encoder::new()
    };
    enc.header();
    for (k, v) in aux {
        enc.aux(k.as_bytes(), v.as_bytes());
    }
    for code in libs {
        enc.kind(kvfleet_rdb::op::FUNCTION2);
        enc.string(code);
    }
    enc.select_db(0);
    enc.resize_db(st.keys, st.expires);
    let mut done = 0;
    let result = (|| {
        for slot in db.slots.iter() {
            let mut seg = 0;
            loop {
                let more = slot.lock().map.snapshot_step(seg, &mut enc);
                // outside the slot's lock: commands wait for copies, not for LZF
                enc.compress_strings();
                if enc.buf.len() >= CHUNK || !more {
                    w.write(&enc.buf)?;
                    enc.buf.clear();
                }
                if !more {
                    break;
                }
                seg += 1;
            }
            done += 1;
        }
        Ok::<_, std::io::Error>(())
    })();
    if let Err(e) = result {
        for slot in db.slots.iter().skip(done) {
            slot.lock().map.snapshot_done();
        }
        return Err(e);
    }
    w.finish()
}
