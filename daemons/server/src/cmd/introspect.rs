//! MEMORY and LATENCY, for the tools that call them (redis_exporter,
//! redis-cli --bigkeys/--memkeys, operators' runbooks).
//!
//! MEMORY USAGE estimates what a key costs in this server's own layout
//! (the packed record, container nodes): it will not equal Redis's number,
//! which describes Redis's encodings, but it ranks keys the same way.
//! LATENCY answers as a Redis with latency monitoring off (the default).

use super::{CmdResult, Ctx, Handler, SYNTAX, int_arg, is, sub_error};
use crate::db::ValueRef;

pub fn handler(name: &str) -> Option<Handler> {
    Some(match name {
        "memory" => memory,
        "latency" => latency,
        _ => return None,
    })
}

/// Bytes a key takes: its record, and for containers their elements with
/// the per-element overhead of the structures holding them (hash-table
/// slots, list blocks, tree nodes).
fn usage(key: &[u8], v: ValueRef<'_>) -> usize {
    const RECORD: usize = 24;
    RECORD
        + key.len()
        + match v {
            ValueRef::Str(s) => s.len(),
            ValueRef::Hash(h) => 64 + h.heap_bytes(),
            ValueRef::List(l) => 48 + l.iter().map(|e| e.len() + 24).sum::<usize>(),
            ValueRef::Set(s) => 32 + s.heap_bytes(),
            ValueRef::ZSet(z) => 96 + z.heap_bytes(),
            ValueRef::Stream(s) => {
                128 + s
                    .entries
                    .values()
                    // B-tree slot and the entry's one allocation
                    .map(|fv| 40 + fv.heap_bytes())
                    .sum::<usize>()
            }
        }
}

/// # Format
/// `MEMORY USAGE key [SAMPLES count] | STATS | DOCTOR | MALLOC-STATS | PURGE | HELP`
fn memory(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let sub = a[1];
    if is(sub, "usage") && a.len() >= 3 {
        match a.len() {
            3 => {}
            5 if is(a[3], "samples") => {
                // every element is counted: SAMPLES only bounds Redis's estimate
                int_arg(a[4])?;
            }
            _ => return Err(SYNTAX),
        }
        let n = ctx.db.peek(a[2]).map(|e| usage(e.key(), e.value()));
        match n {
            Some(n) => ctx.int(n as i64),
            None => ctx.null(),
        }
    } else if is(sub, "doctor") && a.len() == 2 {
        ctx.verbatim(b"Hi Sam, I can't find any memory issue in your instance. I can only account for what occurs on this base.");
    } else if is(sub, "malloc-stats") && a.len() == 2 {
        ctx.verbatim(b"Stats not supported for the current allocator");
    } else if is(sub, "purge") && a.len() == 2 {
        ctx.ok();
    } else if is(sub, "stats") && a.len() == 2 {
        let used = ctx.srv.used_memory() as i64;
        let keys = ctx.srv.db.dbsize() as i64;
        let fields: [(&str, i64); 6] = [
            ("peak.allocated", used),
            ("total.allocated", used),
            ("startup.allocated", 0),
            ("keys.count", keys),
            ("keys.bytes-per-key", if keys > 0 { used / keys } else { 0 }),
            ("dataset.bytes", used),
        ];
        ctx.map(fields.len());
        for (k, v) in fields {
            ctx.bulk(k.as_bytes());
            ctx.int(v);
        }
    } else if is(sub, "help") && a.len() == 2 {
        ctx.help_lines(&[
            "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "DOCTOR",
            "    Return memory problems reports.",
            "MALLOC-STATS",
            "    Return internal statistics report from the memory allocator.",
            "PURGE",
            "    Attempt to purge dirty pages for reclamation by the allocator.",
            "STATS",
            "    Return information about the memory usage of the server.",
            "USAGE <key> [SAMPLES <count>]",
            "    Return memory in bytes used by <key> and its value. Nested values are",
            "    sampled up to <count> times (default: 5, 0 means sample all).",
            "HELP",
            "    Prints this help.",
        ]);
    } else {
        return Err(sub_error(
            "memory",
            sub,
            &["usage", "stats", "doctor", "malloc-stats", "purge", "help"],
        ));
    }
    Ok(())
}

/// # Format
/// `LATENCY LATEST | HISTORY event | RESET [event ...] | DOCTOR | GRAPH event | HISTOGRAM [command ...] | HELP`
fn latency(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let sub = a[1];
    let n = a.len();
    if (is(sub, "latest") && n == 2) || (is(sub, "history") && n == 3) {
        ctx.array(0);
    } else if is(sub, "reset") {
        ctx.int(0);
    } else if is(sub, "histogram") {
        ctx.map(0);
    } else if is(sub, "graph") && n == 3 {
        return Err(super::err(format!(
            "ERR No samples available for event '{}'",
            String::from_utf8_lossy(a[2])
        )));
    } else if is(sub, "doctor") && n == 2 {
        ctx.verbatim(b"Dave, no latency spike was observed during the lifetime of this Redis instance, not in the slightest bit. I honestly think you ought to sleep tonight.\n");
    } else if is(sub, "help") && n == 2 {
        ctx.help_lines(&[
            "LATENCY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "DOCTOR",
            "    Return a human readable latency analysis report.",
            "GRAPH <event>",
            "    Return an ASCII latency graph for the <event> class.",
            "HISTORY <event>",
            "    Return time-latency samples for the <event> class.",
            "LATEST",
            "    Return the latest latency samples for all events.",
            "RESET [<event> ...]",
            "    Reset latency data of one or more <event> classes.",
            "    (default: reset all data for all event classes)",
            "HISTOGRAM [COMMAND ...]",
            "    Return a cumulative distribution of latencies in the format of a histogram for the specified command names.",
            "    If no commands are specified then all histograms are replied.",
            "HELP",
            "    Prints this help.",
        ]);
    } else {
        return Err(sub_error(
            "latency",
            sub,
            &[
                "latest",
                "history",
                "reset",
                "doctor",
                "graph",
                "histogram",
                "help",
            ],
        ));
    }
    Ok(())
}
