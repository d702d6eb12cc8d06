//! Server commands: COMMAND, CONFIG, INFO, DBSIZE, FLUSHALL, SLOWLOG, TIME,
//! DEBUG, LASTSAVE and SLOTS (our per-slot commands for migration and routing).

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

use super::{CmdError, CmdResult, Ctx, SYNTAX, cursor_arg, err, int_arg, is, scan_opts};
use crate::cmd::keys::scan_slot;
use crate::config::POLICIES;
use crate::server::Server;
use crate::util::{self, glob_match};
use kvfleet_model::NUM_SLOTS;
use kvfleet_model::commands::{COMMANDS, CommandSpec};

fn unknown_sub(cmd: &str, sub: &[u8]) -> CmdError {
    let known: &[&str] = match cmd {
        "command" => &["count", "docs", "getkeys", "info", "list", "help"],
        "config" => &["get", "set", "resetstat", "rewrite", "help"],
        "slowlog" => &["get", "len", "reset", "help"],
        "debug" => &["sleep", "populate", "set-active-expire", "help"],
        _ => &[
            "count",
            "scan",
            "del",
            "owned",
            "own",
            "disown",
            "moved-addr",
        ],
    };
    super::sub_error(cmd, sub, known)
}

// === COMMAND ===

fn command_info(ctx: &mut Ctx<'_, '_>, c: &CommandSpec) {
    kvfleet_model::commands::encode_info(ctx.out, c, ctx.conn.resp3);
}

pub fn command(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    if a.len() == 1 {
        ctx.array(COMMANDS.len());
        for c in COMMANDS {
            command_info(ctx, c);
        }
        return Ok(());
    }
    let sub = a[1];
    if is(sub, "count") && a.len() == 2 {
        ctx.int(COMMANDS.len() as i64);
    } else if is(sub, "info") {
        let names: Vec<&[u8]> = if a.len() == 2 {
            COMMANDS.iter().map(|c| c.name.as_bytes()).collect()
        } else {
            a[2..].to_vec()
        };
        ctx.array(names.len());
        for n in names {
            match kvfleet_model::commands::lookup(n) {
                Some(c) => command_info(ctx, c),
                None => ctx.null_array(),
            }
        }
    } else if is(sub, "docs") {
        let specs: Vec<&CommandSpec> = if a.len() == 2 {
            COMMANDS.iter().collect()
        } else {
            a[2..]
                .iter()
                .filter_map(|n| kvfleet_model::commands::lookup(n))
                .collect()
        };
        ctx.map(specs.len());
        for c in specs {
            ctx.bulk(c.name.as_bytes());
            ctx.map(3);
            ctx.bulk(b"summary");
            ctx.bulk(format!("kvfleet {} command", c.group).as_bytes());
            ctx.bulk(b"since");
            ctx.bulk(b"1.0.0");
            ctx.bulk(b"group");
            ctx.bulk(c.group.as_bytes());
        }
    } else if is(sub, "list") {
        let filter = if a.len() == 5 && is(a[2], "filterby") {
            Some((a[3], a[4]))
        } else {
            None
        };
        if a.len() != 2 && filter.is_none() {
            return Err(SYNTAX);
        }
        let names: Vec<&str> = COMMANDS
            .iter()
            .filter(|c| match filter {
                None => true,
                Some((k, v)) if is(k, "pattern") => glob_match(v, c.name.as_bytes(), true),
                Some((k, v)) if is(k, "aclcat") => c.group.as_bytes().eq_ignore_ascii_case(v),
                Some(_) => false,
            })
            .map(|c| c.name)
            .collect();
        ctx.array(names.len());
        names.iter().for_each(|n| ctx.bulk(n.as_bytes()));
    } else if is(sub, "getkeys") && a.len() >= 3 {
        let c = kvfleet_model::commands::lookup(a[2])
            .ok_or_else(|| err("ERR Invalid command specified"))?;
        if !c.arity_ok(a.len() - 2) {
            return Err(err("ERR Invalid number of arguments specified for command"));
        }
        let mut idx = Vec::new();
        c.key_indexes(&a[2..], &mut idx);
        if idx.is_empty() {
            return Err(err("ERR The command has no key arguments"));
        }
        ctx.array(idx.len());
        for i in idx {
            ctx.bulk(a[2 + i]);
        }
    } else if is(sub, "help") && a.len() == 2 {
        let lines = [
            "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "(no subcommand)",
            "COUNT",
            "DOCS [<command-name> ...]",
            "GETKEYS <full-command>",
            "INFO [<command-name> ...]",
            "LIST [FILTERBY (MODULE <module-name>|ACLCAT <category>|PATTERN <pattern>)]",
            "HELP",
        ];
        ctx.help_lines(&lines);
    } else {
        return Err(unknown_sub("command", sub));
    }
    Ok(())
}

// === CONFIG ===

/// Every parameter CONFIG GET knows, with its current value.
fn config_params(srv: &Server) -> Vec<(&'static str, String)> {
    let rt = srv.rt.read();
    let mut params = vec![
        ("bind", srv.bind.clone()),
        ("port", srv.port.load(Relaxed).to_string()),
        ("requirepass", rt.requirepass.clone()),
        ("maxclients", rt.maxclients.to_string()),
        ("maxmemory", srv.maxmemory.load(Relaxed).to_string()),
        ("maxmemory-policy", rt.maxmemory_policy.clone()),
        ("maxmemory-samples", rt.maxmemory_samples.to_string()),
        ("timeout", rt.timeout.to_string()),
        ("hz", rt.hz.to_string()),
        ("proto-max-bulk-len", rt.proto_max_bulk_len.to_string()),
        (
            "slowlog-log-slower-than",
            rt.slowlog_log_slower_than.to_string(),
        ),
        ("slowlog-max-len", rt.slowlog_max_len.to_string()),
        (
            "client-output-buffer-limit",
            format!(
                "normal 0 0 0 slave 268435456 67108864 60 pubsub {} {} {}",
                rt.pubsub_hard_limit, rt.pubsub_soft_limit, rt.pubsub_soft_seconds
            ),
        ),
        ("databases", "1".into()),
        ("save", rt.save.clone()),
        (
            "rdbcompression",
            if rt.rdbcompression { "yes" } else { "no" }.into(),
        ),
        (
            "appendonly",
            if rt.appendonly { "yes" } else { "no" }.into(),
        ),
        ("appendfsync", rt.appendfsync.clone()),
        ("appenddirname", rt.appenddirname.clone()),
        ("appendfilename", rt.appendfilename.clone()),
        (
            "aof-load-truncated",
            if rt.aof_load_truncated { "yes" } else { "no" }.into(),
        ),
        (
            "dir",
            std::fs::canonicalize(&rt.dir)
                .map(|d| d.display().to_string())
                .unwrap_or_else(|_| rt.dir.clone()),
        ),
        ("dbfilename", rt.dbfilename.clone()),
        ("io-threads", srv.workers.threads().to_string()),
        ("tcp-keepalive", "300".into()),
        ("lfu-log-factor", rt.lfu_log_factor.to_string()),
        (
            "busy-reply-threshold",
            srv.scripts.threshold_ms().to_string(),
        ),
        ("lua-time-limit", srv.scripts.threshold_ms().to_string()),
        ("lfu-decay-time", rt.lfu_decay_time.to_string()),
        (
            "hash-max-listpack-entries",
            rt.hash_max_listpack_entries.to_string(),
        ),
        (
            "hash-max-listpack-value",
            rt.hash_max_listpack_value.to_string(),
        ),
        (
            "set-max-intset-entries",
            rt.set_max_intset_entries.to_string(),
        ),
        (
            "zset-max-listpack-entries",
            rt.zset_max_listpack_entries.to_string(),
        ),
        (
            "zset-max-listpack-value",
            rt.zset_max_listpack_value.to_string(),
        ),
        ("list-max-listpack-size", "-2".into()),
        (
            "replica-read-only",
            if rt.replica_read_only { "yes" } else { "no" }.into(),
        ),
        ("replica-priority", rt.replica_priority.to_string()),
        ("repl-backlog-size", rt.repl_backlog_size.to_string()),
        (
            "min-replicas-to-write",
            rt.min_replicas_to_write.to_string(),
        ),
        ("min-replicas-max-lag", rt.min_replicas_max_lag.to_string()),
        ("loglevel", "notice".into()),
    ];
    // listed beside the names they stand for, as Redis 7.0 lists them
    for (alias, name) in ZIPLIST_ALIASES {
        if let Some(v) = params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
        {
            params.push((alias, v));
        }
    }
    params
}

/// Redis 7.0 still answers to the ziplist names (alias, name).
const ZIPLIST_ALIASES: [(&str, &str); 5] = [
    ("hash-max-ziplist-entries", "hash-max-listpack-entries"),
    ("hash-max-ziplist-value", "hash-max-listpack-value"),
    ("zset-max-ziplist-entries", "zset-max-listpack-entries"),
    ("zset-max-ziplist-value", "zset-max-listpack-value"),
    ("list-max-ziplist-size", "list-max-listpack-size"),
];

fn yes_no(v: &[u8]) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_slice() {
        b"yes" => Ok(true),
        b"no" => Ok(false),
        _ => Err("argument must be 'yes' or 'no'".into()),
    }
}

fn parse_size(v: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(v).ok()?.to_ascii_lowercase();
    let (num, mul) = [
        ("gb", 1u64 << 30),
        ("mb", 1 << 20),
        ("kb", 1 << 10),
        ("g", 1_000_000_000),
        ("m", 1_000_000),
        ("k", 1000),
        ("b", 1),
    ]
    .iter()
    .find_map(|(suf, m)| s.strip_suffix(suf).map(|n| (n.to_string(), *m)))
    .unwrap_or((s.clone(), 1));
    num.parse::<u64>().ok()?.checked_mul(mul)
}

/// Redis's range for its non-negative int settings.
fn int_range(n: i64) -> Result<u64, String> {
    if (0..=i32::MAX as i64).contains(&n) {
        Ok(n as u64)
    } else {
        Err("argument must be between 0 and 2147483647 inclusive".into())
    }
}

fn config_set_one(srv: &Server, name: &str, v: &[u8]) -> Result<(), String> {
    let num = || {
        std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or("argument couldn't be parsed into an integer")
    };
    let name = ZIPLIST_ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map_or(name, |(_, n)| n);
    let mut rt = srv.rt.write();
    match name {
        "requirepass" => {
            rt.requirepass = String::from_utf8_lossy(v).into_owned();
            srv.auth_required.store(!v.is_empty(), Relaxed);
        }
        "maxclients" => rt.maxclients = num()?.max(1) as usize,
        "maxmemory" => srv.maxmemory.store(
            parse_size(v).ok_or("argument must be a memory value")?,
            Relaxed,
        ),
        "maxmemory-policy" => {
            let p = String::from_utf8_lossy(v).to_ascii_lowercase();
            if !POLICIES.contains(&p.as_str()) {
                return Err("argument(s) must be one of the following: volatile-lru, volatile-lfu, volatile-random, volatile-ttl, allkeys-lru, allkeys-lfu, allkeys-random, noeviction".into());
            }
            rt.maxmemory_policy = p;
        }
        "lfu-log-factor" => {
            rt.lfu_log_factor = u32::try_from(num()?)
                .map_err(|_| "argument must be between 0 and 4294967295 inclusive")?
        }
        "lfu-decay-time" => {
            rt.lfu_decay_time = u32::try_from(num()?)
                .map_err(|_| "argument must be between 0 and 4294967295 inclusive")?
        }
        "maxmemory-samples" => rt.maxmemory_samples = num()?.clamp(1, 64) as usize,
        "timeout" => {
            rt.timeout = num()?.max(0) as u64;
            srv.idle_timeout.store(rt.timeout, Relaxed);
        }
        "hz" => rt.hz = num()?.clamp(1, 500) as u32,
        "proto-max-bulk-len" => {
            rt.proto_max_bulk_len =
                parse_size(v).ok_or("argument must be a memory value")? as usize;
            srv.proto_max_bulk_len.store(rt.proto_max_bulk_len, Relaxed);
        }
        "slowlog-log-slower-than" => {
            rt.slowlog_log_slower_than = num()?;
            srv.slowlog_slower_than
                .store(rt.slowlog_log_slower_than, Relaxed);
        }
        "slowlog-max-len" => rt.slowlog_max_len = num()?.max(0) as usize,
        "busy-reply-threshold" | "lua-time-limit" => {
            srv.scripts.set_threshold_ms(num()?.max(0) as u64)
        }
        "client-output-buffer-limit" => {
            let s = String::from_utf8_lossy(v).to_ascii_lowercase();
            let parts: Vec<&str> = s.split_whitespace().collect();
            if !parts.len().is_multiple_of(4) {
                return Err("Invalid argument".into());
            }
            for c in parts.chunks(4) {
                let (h, so, secs) = (
                    parse_size(c[1].as_bytes()),
                    parse_size(c[2].as_bytes()),
                    c[3].parse::<u64>().ok(),
                );
                let (Some(h), Some(so), Some(secs)) = (h, so, secs) else {
                    return Err("Invalid argument".into());
                };
                if c[0] == "pubsub" {
                    rt.pubsub_hard_limit = h as usize;
                    rt.pubsub_soft_limit = so as usize;
                    rt.pubsub_soft_seconds = secs;
                } else if !matches!(c[0], "normal" | "slave" | "replica") {
                    return Err("Invalid argument".into());
                }
            }
        }
        "save" => {
            let v = String::from_utf8_lossy(v).into_owned();
            crate::persist::parse_save(&v)?;
            rt.save = v;
        }
        "dir" => {
            let d = String::from_utf8_lossy(v).into_owned();
            if !std::path::Path::new(&d).is_dir() {
                return Err("No such file or directory".into());
            }
            rt.dir = d;
        }
        "dbfilename" => {
            let f = String::from_utf8_lossy(v).into_owned();
            if f.is_empty() || f.contains('/') {
                return Err("dbfilename can't be a path, just a filename".into());
            }
            rt.dbfilename = f;
        }
        "appendfsync" => {
            let v = String::from_utf8_lossy(v).to_ascii_lowercase();
            let policy = crate::persist::aof::Fsync::parse(&v)
                .ok_or("argument(s) must be one of the following: always, everysec, no")?;
            rt.appendfsync = v;
            if let Some(f) = srv.persist.feed.inner.lock().aof.as_mut() {
                f.policy = policy;
            }
        }
        // sets already packed or not stay so; new and growing ones follow these
        "zset-max-listpack-entries" => rt.zset_max_listpack_entries = int_range(num()?)? as usize,
        "zset-max-listpack-value" => rt.zset_max_listpack_value = int_range(num()?)? as usize,
        "hash-max-listpack-entries" => rt.hash_max_listpack_entries = int_range(num()?)? as usize,
        "hash-max-listpack-value" => rt.hash_max_listpack_value = int_range(num()?)? as usize,
        "set-max-intset-entries" => rt.set_max_intset_entries = int_range(num()?)? as usize,
        "aof-load-truncated" => rt.aof_load_truncated = yes_no(v)?,
        "rdbcompression" => rt.rdbcompression = yes_no(v)?,
        "replica-read-only" | "slave-read-only" => {
            rt.replica_read_only = yes_no(v)?;
            srv.repl_policy
                .read_only
                .store(rt.replica_read_only, Relaxed);
        }
        "replica-priority" | "slave-priority" => {
            rt.replica_priority = int_range(num()?)?;
            srv.repl_policy.priority.store(rt.replica_priority, Relaxed);
        }
        "repl-backlog-size" => {
            rt.repl_backlog_size = parse_size(v).ok_or("argument must be a memory value")?;
            srv.persist
                .feed
                .inner
                .lock()
                .repl
                .set_limit(rt.repl_backlog_size as usize);
        }
        "min-replicas-to-write"
        | "min-slaves-to-write"
        | "min-replicas-max-lag"
        | "min-slaves-max-lag" => {
            let n = int_range(num()?)?;
            let p = &srv.repl_policy;
            if name.ends_with("to-write") {
                rt.min_replicas_to_write = n;
                p.min_to_write.store(n, Relaxed);
            } else {
                rt.min_replicas_max_lag = n;
                p.max_lag.store(n, Relaxed);
            }
            drop(rt);
            crate::repl::refresh_good(srv);
            return Ok(());
        }
        "appendonly" => {
            let on = yes_no(v)?;
            if on != rt.appendonly {
                rt.appendonly = on;
                // the rewrite reads the config: release it first
                drop(rt);
                if on {
                    // Redis builds the AOF from the data in the background
                    crate::persist::bgrewriteaof(srv).map_err(|e| e.to_string())?;
                } else {
                    crate::persist::aof::stop(srv);
                }
            }
            return Ok(());
        }
        "loglevel" | "tcp-keepalive" | "list-max-listpack-size" => {
            // accepted for client compatibility; these knobs do not change kvfleet's behaviour yet
        }
        _ => return Err(String::new()),
    }
    crate::db::apply_config(&rt);
    Ok(())
}

pub fn config(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let sub = a[1];
    if is(sub, "get") && a.len() >= 3 {
        let params = config_params(ctx.srv);
        let mut hits: Vec<(&str, String)> = Vec::new();
        for pat in &a[2..] {
            for (n, v) in &params {
                if glob_match(pat, n.as_bytes(), true) && !hits.iter().any(|(h, _)| h == n) {
                    hits.push((n, v.clone()));
                }
            }
        }
        ctx.map(hits.len());
        for (n, v) in hits {
            ctx.bulk(n.as_bytes());
            ctx.bulk(v.as_bytes());
        }
    } else if is(sub, "set") && a.len() >= 4 && a.len().is_multiple_of(2) {
        for pv in a[2..].chunks(2) {
            let name = String::from_utf8_lossy(pv[0]).to_ascii_lowercase();
            if let Err(e) = config_set_one(ctx.srv, &name, pv[1]) {
                let msg = if e.is_empty() {
                    format!("ERR Unknown option or number of arguments for CONFIG SET - '{name}'")
                } else {
                    format!("ERR CONFIG SET failed (possibly related to argument '{name}') - {e}")
                };
                return Err(err(msg));
            }
        }
        ctx.ok();
    } else if is(sub, "resetstat") && a.len() == 2 {
        let s = &ctx.srv.stats;
        for c in [
            &s.commands,
            &s.connections,
            &s.rejected_connections,
            &s.net_in,
            &s.net_out,
            &s.evicted,
            &s.errors,
            &s.pubsub_messages,
        ] {
            c.store(0, Relaxed);
        }
        for st in &ctx.srv.cmd_stats {
            for c in [&st.calls, &st.usec, &st.rejected, &st.failed] {
                c.store(0, Relaxed);
            }
        }
        for slot in ctx.srv.db.slots.iter() {
            let mut s = slot.lock();
            s.hits = 0;
            s.misses = 0;
            s.expired = 0;
        }
        ctx.ok();
    } else if is(sub, "rewrite") && a.len() == 2 {
        return Err(err("ERR The server is running without a config file"));
    } else if is(sub, "help") && a.len() == 2 {
        let lines = [
            "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "GET <pattern>",
            "SET <directive> <value>",
            "RESETSTAT",
            "REWRITE",
            "HELP",
        ];
        ctx.help_lines(&lines);
    } else {
        return Err(unknown_sub("config", sub));
    }
    Ok(())
}

// === INFO ===

fn human(n: u64) -> String {
    let f = n as f64;
    if f >= (1u64 << 30) as f64 {
        format!("{:.2}G", f / (1u64 << 30) as f64)
    } else if f >= (1 << 20) as f64 {
        format!("{:.2}M", f / (1 << 20) as f64)
    } else if f >= 1024.0 {
        format!("{:.2}K", f / 1024.0)
    } else {
        format!("{n}B")
    }
}

fn proc_stat() -> (f64, f64) {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = s.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = 100.0;
    let u = f.get(11).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0) / tick;
    let s = f.get(12).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0) / tick;
    (u, s)
}

pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|x| x.parse::<u64>().ok())
        })
        .map_or(0, |p| p * 4096)
}

fn total_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |k| k * 1024)
}

pub fn info_text(srv: &Server, sections: &[&[u8]]) -> String {
    let want = |name: &str| -> bool {
        if sections.is_empty() {
            return name != "commandstats";
        }
        sections.iter().any(|s| {
            is(s, name)
                || is(s, "all")
                || is(s, "everything")
                || (is(s, "default") && name != "commandstats")
        })
    };
    let mut o = String::with_capacity(4096);
    let section = |o: &mut String, title: &str| {
        if !o.is_empty() {
            o.push_str("\r\n");
        }
        let _ = write!(o, "# {title}\r\n");
    };
    let uptime = srv.start.elapsed().as_secs();
    if want("server") {
        section(&mut o, "Server");
        let _ = write!(
            o,
            "redis_version:{}\r\nredis_git_sha1:00000000\r\nredis_git_dirty:0\r\nredis_build_id:0\r\nredis_mode:standalone\r\nos:{} {}\r\narch_bits:64\r\nmonotonic_clock:POSIX clock_gettime\r\nmultiplexing_api:epoll\r\natomicvar_api:c11-builtin\r\ngcc_version:0.0.0\r\nprocess_id:{}\r\nprocess_supervised:no\r\nrun_id:{}\r\ntcp_port:{}\r\nserver_time_usec:{}\r\nuptime_in_seconds:{}\r\nuptime_in_days:{}\r\nhz:{}\r\nconfigured_hz:{}\r\nlru_clock:{}\r\nexecutable:{}\r\nconfig_file:{}\r\nio_threads_active:0\r\nkvfleet_version:{}\r\nkvfleet_threads:{}\r\n",
            crate::REDIS_VERSION,
            std::env::consts::OS,
            std::env::consts::ARCH,
            std::process::id(),
            srv.run_id,
            srv.port.load(Relaxed),
            util::now_us(),
            uptime,
            uptime / 86400,
            srv.rt.read().hz,
            srv.rt.read().hz,
            crate::db::lru_clock(),
            std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            srv.config_file.clone().unwrap_or_default(),
            env!("CARGO_PKG_VERSION"),
            srv.workers.threads(),
        );
        // which worker runtimes serve clients, their connections and how
        // busy each was over the governor's last period (decision 0013)
        let w = &srv.workers;
        let _ = write!(
            o,
            "kvfleet_threads_active:{}\r\nkvfleet_threads_adaptive:{}\r\nkvfleet_connections_moved:{}\r\nkvfleet_spreads_undone:{}\r\n",
            w.active(),
            if w.adaptive() { "yes" } else { "no" },
            w.moves.load(Relaxed),
            w.undone.load(Relaxed),
        );
        let polls = w.polls();
        let _ = write!(
            o,
            "kvfleet_busy_poll_us:{}\r\nkvfleet_cpu_quota:{:.2}\r\nkvfleet_cpu_quota_bound:{}\r\n",
            polls.map_or(0, |p| p.budget().as_micros()),
            w.cpu_quota(),
            u8::from(w.quota_bound())
        );
        for (i, (conns, busy)) in w.snapshot().into_iter().enumerate() {
            let _ = write!(
                o,
                "kvfleet_thread{i}:connections={conns},busy={:.2},bursts={}",
                f64::from(busy) / 1000.0,
                w.bursts(i)
            );
            // whether it polls before sleeping, and how those polls ended (decision 0014)
            if let Some(p) = polls.and_then(|p| p.get(i)) {
                let _ = write!(
                    o,
                    ",polling={},poll_hits={},poll_misses={},poll_sec={:.3}",
                    u8::from(p.is_on()),
                    p.hits.load(Relaxed),
                    p.misses.load(Relaxed),
                    p.spun().as_secs_f64()
                );
            }
            o.push_str("\r\n");
        }
    }
    if want("clients") {
        section(&mut o, "Clients");
        let clients = srv.clients.lock();
        let pubsub = clients
            .values()
            .filter(|c| c.subs.load(Relaxed) + c.psubs.load(Relaxed) > 0)
            .count();
        let _ = write!(
            o,
            "connected_clients:{}\r\ncluster_connections:0\r\nmaxclients:{}\r\nclient_recent_max_input_buffer:0\r\nclient_recent_max_output_buffer:0\r\nblocked_clients:{}\r\ntracking_clients:0\r\nclients_in_timeout_table:{}\r\npubsub_clients:{}\r\n",
            clients.len(),
            srv.rt.read().maxclients,
            srv.blocked_clients(),
            srv.blocked_clients(),
            pubsub,
        );
    }
    let (keys, volatile) = srv.db.counts();
    if want("memory") {
        section(&mut o, "Memory");
        let used = srv.used_memory();
        let rss = rss_bytes();
        let max = srv.maxmemory.load(Relaxed);
        let total = total_memory();
        // one interpreter per worker thread serves EVAL and functions alike:
        // its heap is reported as the eval VM's
        let sc = srv.scripts.memory_stats();
        let vm = sc.vm;
        let _ = write!(
            o,
            "used_memory:{used}\r\nused_memory_human:{}\r\nused_memory_rss:{rss}\r\nused_memory_rss_human:{}\r\nused_memory_peak:{used}\r\nused_memory_peak_human:{}\r\nused_memory_peak_perc:100.00%\r\nused_memory_overhead:0\r\nused_memory_startup:0\r\nused_memory_dataset:{used}\r\nused_memory_dataset_perc:100.00%\r\nallocator_allocated:{used}\r\nallocator_active:{rss}\r\nallocator_resident:{rss}\r\ntotal_system_memory:{total}\r\ntotal_system_memory_human:{}\r\nused_memory_lua:{vm}\r\nused_memory_vm_eval:{vm}\r\nused_memory_lua_human:{}\r\nused_memory_scripts_eval:{}\r\nnumber_of_cached_scripts:{}\r\nnumber_of_functions:{}\r\nnumber_of_libraries:{}\r\nused_memory_vm_functions:0\r\nused_memory_vm_total:{vm}\r\nused_memory_vm_total_human:{}\r\nused_memory_functions:{}\r\nused_memory_scripts:{}\r\nused_memory_scripts_human:{}\r\nmaxmemory:{max}\r\nmaxmemory_human:{}\r\nmaxmemory_policy:{}\r\nallocator_frag_ratio:1.00\r\nallocator_frag_bytes:0\r\nallocator_rss_ratio:1.00\r\nallocator_rss_bytes:0\r\nrss_overhead_ratio:1.00\r\nrss_overhead_bytes:0\r\nmem_fragmentation_ratio:{:.2}\r\nmem_fragmentation_bytes:{}\r\nmem_not_counted_for_evict:0\r\nmem_replication_backlog:0\r\nmem_total_replication_buffers:0\r\nmem_clients_slaves:0\r\nmem_clients_normal:0\r\nmem_cluster_links:0\r\nmem_aof_buffer:0\r\nmem_allocator:mimalloc\r\nactive_defrag_running:0\r\nlazyfree_pending_objects:0\r\nlazyfreed_objects:0\r\n",
            human(used),
            human(rss),
            human(used),
            human(total),
            human(vm as u64),
            sc.scripts_bytes,
            sc.cached_scripts,
            sc.functions,
            sc.libraries,
            human(vm as u64),
            sc.libraries_bytes,
            sc.scripts_bytes + sc.libraries_bytes,
            human((sc.scripts_bytes + sc.libraries_bytes) as u64),
            human(max),
            srv.rt.read().maxmemory_policy,
            if used > 0 {
                rss as f64 / used as f64
            } else {
                1.0
            },
            rss as i64 - used as i64,
        );
    }
    if want("persistence") {
        section(&mut o, "Persistence");
        let p = &srv.persist;
        // one lock, taken once (the arguments below live to the end of one statement)
        let (aof_on, aof_failed) = {
            let g = p.feed.inner.lock();
            (g.aof.is_some(), g.write_failed)
        };
        let _ = write!(
            o,
            "loading:0\r\nasync_loading:0\r\ncurrent_cow_peak:0\r\ncurrent_cow_size:0\r\ncurrent_cow_size_age:0\r\ncurrent_fork_perc:0.00\r\ncurrent_save_keys_processed:0\r\ncurrent_save_keys_total:0\r\nrdb_changes_since_last_save:{}\r\nrdb_bgsave_in_progress:{}\r\nrdb_last_save_time:{}\r\nrdb_last_bgsave_status:{}\r\nrdb_last_bgsave_time_sec:{}\r\nrdb_current_bgsave_time_sec:{}\r\nrdb_saves:{}\r\nrdb_last_cow_size:0\r\nrdb_last_load_keys_expired:{}\r\nrdb_last_load_keys_loaded:{}\r\naof_enabled:{}\r\naof_rewrite_in_progress:{}\r\naof_rewrite_scheduled:0\r\naof_last_rewrite_time_sec:-1\r\naof_current_rewrite_time_sec:-1\r\naof_last_bgrewrite_status:{}\r\naof_rewrites:{}\r\naof_rewrites_consecutive_failures:0\r\naof_last_write_status:{}\r\naof_last_cow_size:0\r\nmodule_fork_in_progress:0\r\nmodule_fork_last_cow_size:0\r\n",
            srv.stats.dirty.load(Relaxed),
            p.bgsave_in_progress.load(Relaxed) as u8,
            srv.lastsave.load(Relaxed),
            if p.last_bgsave_ok.load(Relaxed) {
                "ok"
            } else {
                "err"
            },
            p.last_bgsave_secs.load(Relaxed),
            if p.bgsave_in_progress.load(Relaxed) && p.bgsave_started.load(Relaxed) != 0 {
                (util::now_ms() / 1000).saturating_sub(p.bgsave_started.load(Relaxed)) as i64
            } else {
                -1
            },
            p.saves.load(Relaxed),
            p.loaded_expired.load(Relaxed),
            p.loaded_keys.load(Relaxed),
            aof_on as u8,
            p.aof_rewrite_in_progress.load(Relaxed) as u8,
            if p.aof_last_rewrite_ok.load(Relaxed) {
                "ok"
            } else {
                "err"
            },
            p.aof_rewrites.load(Relaxed),
            if aof_failed { "err" } else { "ok" },
        );
    }
    if want("stats") {
        section(&mut o, "Stats");
        let (mut hits, mut misses, mut expired) = (0, 0, 0);
        for s in srv.db.slots.iter() {
            let s = s.lock();
            hits += s.hits;
            misses += s.misses;
            expired += s.expired;
        }
        let st = &srv.stats;
        let _ = write!(
            o,
            "total_connections_received:{}\r\ntotal_commands_processed:{}\r\ninstantaneous_ops_per_sec:{}\r\ntotal_net_input_bytes:{}\r\ntotal_net_output_bytes:{}\r\ntotal_net_repl_input_bytes:0\r\ntotal_net_repl_output_bytes:0\r\ninstantaneous_input_kbps:0.00\r\ninstantaneous_output_kbps:0.00\r\ninstantaneous_input_repl_kbps:0.00\r\ninstantaneous_output_repl_kbps:0.00\r\nrejected_connections:{}\r\nsync_full:{}\r\nsync_partial_ok:{}\r\nsync_partial_err:{}\r\nexpired_keys:{expired}\r\nexpired_stale_perc:0.00\r\nexpired_time_cap_reached_count:0\r\nexpire_cycle_cpu_milliseconds:0\r\nevicted_keys:{}\r\nevicted_clients:0\r\ntotal_eviction_exceeded_time:0\r\ncurrent_eviction_exceeded_time:0\r\nkeyspace_hits:{hits}\r\nkeyspace_misses:{misses}\r\npubsub_channels:{}\r\npubsub_patterns:{}\r\npubsubshard_channels:0\r\nlatest_fork_usec:{}\r\ntotal_forks:{}\r\nmigrate_cached_sockets:0\r\nslave_expires_tracked_keys:0\r\nactive_defrag_hits:0\r\nactive_defrag_misses:0\r\nactive_defrag_key_hits:0\r\nactive_defrag_key_misses:0\r\ntotal_active_defrag_time:0\r\ncurrent_active_defrag_time:0\r\ntracking_total_keys:0\r\ntracking_total_items:0\r\ntracking_total_prefixes:0\r\nunexpected_error_replies:0\r\ntotal_error_replies:{}\r\ndump_payload_sanitizations:0\r\ntotal_reads_processed:{}\r\ntotal_writes_processed:{}\r\nio_threaded_reads_processed:0\r\nio_threaded_writes_processed:0\r\nreply_buffer_shrinks:0\r\nreply_buffer_expands:0\r\n",
            st.connections.load(Relaxed),
            st.commands.load(Relaxed),
            st.ops_per_sec.load(Relaxed),
            st.net_in.load(Relaxed),
            st.net_out.load(Relaxed),
            st.rejected_connections.load(Relaxed),
            srv.persist.sync_full.load(Relaxed),
            srv.persist.sync_partial_ok.load(Relaxed),
            srv.persist.sync_partial_err.load(Relaxed),
            st.evicted.load(Relaxed),
            srv.pubsub.channels.read().len(),
            srv.pubsub.patterns.read().len(),
            srv.persist.latest_fork_usec.load(Relaxed),
            srv.persist.total_forks.load(Relaxed),
            st.errors.load(Relaxed),
            st.commands.load(Relaxed),
            st.commands.load(Relaxed),
        );
    }
    if want("replication") {
        section(&mut o, "Replication");
        let g = srv.persist.feed.inner.lock();
        let r = &g.repl;
        let f = &srv.follow;
        let following = f.master.read().clone();
        if let Some((host, port)) = &following {
            let up = f.link_up.load(Relaxed);
            let io = util::now_ms().saturating_sub(f.last_io_ms.load(Relaxed)) / 1000;
            let p = &srv.repl_policy;
            let _ = write!(
                o,
                "role:slave\r\nmaster_host:{host}\r\nmaster_port:{port}\r\nmaster_link_status:{}\r\nmaster_last_io_seconds_ago:{}\r\nmaster_sync_in_progress:{}\r\nslave_read_repl_offset:{off}\r\nslave_repl_offset:{off}\r\nslave_priority:{}\r\nslave_read_only:{}\r\nreplica_announced:1\r\n",
                if up { "up" } else { "down" },
                if up { io as i64 } else { -1 },
                f.sync_in_progress.load(Relaxed) as u8,
                p.priority.load(Relaxed),
                p.read_only.load(Relaxed) as u8,
                off = r.offset,
            );
        } else {
            let _ = write!(o, "role:master\r\n");
        }
        let _ = write!(o, "connected_slaves:{}\r\n", r.replicas.len());
        let min = srv.repl_policy.min_to_write.load(Relaxed);
        if min > 0 {
            let _ = write!(
                o,
                "min_slaves_good_slaves:{}\r\n",
                srv.repl_policy.good.load(Relaxed)
            );
        }
        let now = util::now_ms();
        for (i, (_, info)) in r.replicas.iter().enumerate() {
            let ack_ms = info.ack_ms.load(Relaxed);
            let lag = if ack_ms == 0 {
                0
            } else {
                now.saturating_sub(ack_ms) / 1000
            };
            let _ = write!(
                o,
                "slave{i}:ip={},port={},state={},offset={},lag={lag}\r\n",
                info.ip,
                info.port.load(Relaxed),
                if info.online.load(Relaxed) {
                    "online"
                } else {
                    "wait_bgsave"
                },
                info.ack.load(Relaxed)
            );
        }
        let _ = write!(
            o,
            "master_failover_state:{}\r\nmaster_replid:{}\r\nmaster_replid2:{}\r\nmaster_repl_offset:{}\r\nsecond_repl_offset:{}\r\nrepl_backlog_active:{}\r\nrepl_backlog_size:{}\r\nrepl_backlog_first_byte_offset:{}\r\nrepl_backlog_histlen:{}\r\n",
            srv.failover.state().name(),
            r.replid,
            r.replid2,
            r.offset,
            r.second_offset,
            r.active as u8,
            r.limit,
            if r.active { r.first_byte() } else { 0 },
            r.backlog.len()
        );
    }
    if want("cpu") {
        section(&mut o, "CPU");
        let (u, s) = proc_stat();
        let _ = write!(
            o,
            "used_cpu_sys:{s:.6}\r\nused_cpu_user:{u:.6}\r\nused_cpu_sys_children:0.000000\r\nused_cpu_user_children:0.000000\r\nused_cpu_sys_main_thread:{s:.6}\r\nused_cpu_user_main_thread:{u:.6}\r\n"
        );
    }
    if want("modules") {
        section(&mut o, "Modules");
    }
    if want("errorstats") {
        section(&mut o, "Errorstats");
    }
    if want("cluster") {
        section(&mut o, "Cluster");
        o.push_str("cluster_enabled:0\r\n");
    }
    if want("keyspace") {
        section(&mut o, "Keyspace");
        if keys > 0 {
            let _ = write!(o, "db0:keys={keys},expires={volatile},avg_ttl=0\r\n");
        }
    }
    if want("commandstats") {
        section(&mut o, "Commandstats");
        for (c, st) in COMMANDS.iter().zip(&srv.cmd_stats) {
            let calls = st.calls.load(Relaxed);
            let (rej, fail) = (st.rejected.load(Relaxed), st.failed.load(Relaxed));
            if calls + rej + fail == 0 {
                continue;
            }
            let usec = st.usec.load(Relaxed);
            let per = if calls > 0 {
                usec as f64 / calls as f64
            } else {
                0.0
            };
            let _ = write!(
                o,
                "cmdstat_{}:calls={calls},usec={usec},usec_per_call={per:.2},rejected_calls={rej},failed_calls={fail}\r\n",
                c.name
            );
        }
    }
    o
}

pub fn info(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    // this connection's batched counts belong in what it is about to read
    super::flush_stats(ctx.srv, ctx.conn);
    let s = info_text(ctx.srv, &a[1..]);
    ctx.verbatim(s.as_bytes());
    Ok(())
}

// === keyspace-wide ===

pub fn dbsize(ctx: &mut Ctx<'_, '_>, _a: &[&[u8]]) -> CmdResult {
    let mut n = 0;
    ctx.db.for_each_slot(|_, s| n += s.map.len());
    ctx.int(n as i64);
    Ok(())
}

/// # Format
/// `FLUSHALL [ASYNC | SYNC]` (and FLUSHDB). ASYNC frees the old tables on another thread.
pub fn flushall(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let asynch = match a.len() {
        1 => false,
        2 if is(a[1], "async") => true,
        2 if is(a[1], "sync") => false,
        _ => return Err(SYNTAX),
    };
    let mut old = Vec::new();
    let mut n = 0;
    ctx.db.for_each_slot(|_, s| {
        n += s.map.len();
        if asynch {
            old.push(s.take());
        } else {
            s.clear();
        }
    });
    if asynch && n > 0 {
        std::thread::spawn(move || drop(old));
    }
    ctx.dirty += n.max(1) as u64;
    ctx.ok();
    Ok(())
}

pub fn slowlog(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let sub = a[1];
    if is(sub, "get") && a.len() <= 3 {
        let n = match a.get(2) {
            Some(c) => {
                let n = int_arg(c)
                    .map_err(|_| err("ERR count should be greater than or equal to -1"))?;
                if n < -1 {
                    return Err(err("ERR count should be greater than or equal to -1"));
                }
                if n == -1 { usize::MAX } else { n as usize }
            }
            None => 10,
        };
        let entries: Vec<_> = ctx
            .srv
            .slowlog
            .lock()
            .entries
            .iter()
            .take(n)
            .cloned()
            .collect();
        ctx.array(entries.len());
        for e in entries {
            ctx.array(6);
            ctx.int(e.id as i64);
            ctx.int(e.ts as i64);
            ctx.int(e.usec as i64);
            ctx.array(e.args.len());
            e.args.iter().for_each(|x| ctx.bulk(x));
            ctx.bulk(e.addr.as_bytes());
            ctx.bulk(&e.name);
        }
    } else if is(sub, "len") && a.len() == 2 {
        let n = ctx.srv.slowlog.lock().entries.len();
        ctx.int(n as i64);
    } else if is(sub, "reset") && a.len() == 2 {
        ctx.srv.slowlog.lock().entries.clear();
        ctx.ok();
    } else if is(sub, "help") && a.len() == 2 {
        let lines = [
            "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "GET [<count>]",
            "LEN",
            "RESET",
            "HELP",
        ];
        ctx.help_lines(&lines);
    } else {
        return Err(unknown_sub("slowlog", sub));
    }
    Ok(())
}

pub fn time(ctx: &mut Ctx<'_, '_>, _a: &[&[u8]]) -> CmdResult {
    let us = util::now_us();
    ctx.array(2);
    ctx.bulk((us / 1_000_000).to_string().as_bytes());
    ctx.bulk((us % 1_000_000).to_string().as_bytes());
    Ok(())
}

pub fn save(ctx: &mut Ctx<'_, '_>, _a: &[&[u8]]) -> CmdResult {
    if ctx.srv.persist.bgsave_in_progress.load(Relaxed) {
        return Err(err("ERR Background save already in progress"));
    }
    crate::persist::save(ctx.srv).map_err(|_| err("ERR"))?;
    ctx.ok();
    Ok(())
}

/// # Format
/// `BGSAVE [SCHEDULE]`
pub fn bgsave(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    // SCHEDULE waits for other background work in Redis; a snapshot here
    // never waits for anything else, so it starts at once
    if a.len() > 2 || (a.len() == 2 && !is(a[1], "schedule")) {
        return Err(SYNTAX);
    }
    crate::persist::bgsave(ctx.srv).map_err(err)?;
    ctx.simple(b"Background saving started");
    Ok(())
}

pub fn bgrewriteaof(ctx: &mut Ctx<'_, '_>, _a: &[&[u8]]) -> CmdResult {
    crate::persist::bgrewriteaof(ctx.srv).map_err(err)?;
    ctx.simple(b"Background append only file rewriting started");
    Ok(())
}

/// # Format
/// `REPLCONF listening-port <port> | ip-address <ip> | capa <eof|psync2> ... | ACK <offset> | GETACK *`
pub fn replconf(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    if a.len().is_multiple_of(2) {
        return Err(SYNTAX);
    }
    for pair in a[1..].chunks(2) {
        if is(pair[0], "listening-port") {
            ctx.conn.replconf_port = int_arg(pair[1])?.max(0) as u64;
        } else if is(pair[0], "capa") {
            ctx.conn.replconf_eof |= is(pair[1], "eof");
        } else if is(pair[0], "ack") || is(pair[0], "getack") {
            // ACKs arrive on replica links (read there); nothing to answer here
            return Ok(());
        } else if !is(pair[0], "ip-address") && !is(pair[0], "rdb-only") {
            return Err(err(format!(
                "ERR Unrecognized REPLCONF option: {}",
                String::from_utf8_lossy(pair[0])
            )));
        }
    }
    ctx.ok();
    Ok(())
}

/// `PSYNC replid offset` / `SYNC`: the reply (`+FULLRESYNC` or
/// `+CONTINUE`) and everything after come from the replica link.
pub fn psync(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    if ctx.conn.in_exec || ctx.conn.multi.is_some() {
        return Err(err("ERR Replica can't interact with the keyspace"));
    }
    let (replid, offset) = if a.len() >= 3 {
        (a[1].to_vec(), util::parse_i64(a[2]).unwrap_or(-1))
    } else {
        (b"?".to_vec(), -1)
    };
    let srv = ctx.srv;
    if a.len() > 3 {
        if !is(a[3], "failover") {
            return Err(SYNTAX);
        }
        // FAILOVER's last step: our master hands over to us, if we hold
        // its history
        let mine = srv.persist.feed.inner.lock().repl.replid.as_bytes() == &replid[..];
        if !mine {
            return Err(err("ERR PSYNC FAILOVER replid must match my replid."));
        }
        if srv.follow.is_replica() {
            tracing::info!("failover request received: promoting");
            crate::repl::replicaof(srv, None);
        }
    }
    if srv.failover.state() != crate::failover::State::None {
        return Err(err("NOMASTERLINK Can't SYNC while failing over"));
    }
    if srv.follow.is_replica() && !srv.follow.link_up.load(Relaxed) {
        return Err(err(
            "NOMASTERLINK Can't SYNC while not connected with my master",
        ));
    }
    ctx.conn.handoff = Some(crate::repl::Psync {
        replid,
        offset,
        eof_capable: ctx.conn.replconf_eof,
        port: ctx.conn.replconf_port,
    });
    Ok(())
}

/// # Format
/// `WAIT numreplicas timeout`: replies once that many replicas acknowledged
/// every write made before it (or at the timeout, with how many did).
pub fn wait(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    if ctx.srv.follow.is_replica() {
        return Err(err(
            "ERR WAIT cannot be used with replica instances. Please also note that since Redis 4.0 if a replica is configured to be writable (which is not the default) writes to replicas are just local and are not propagated.",
        ));
    }
    let n = int_arg(a[1])?.max(0) as usize;
    let timeout = int_arg(a[2])?;
    if timeout < 0 {
        return Err(err("ERR timeout is negative"));
    }
    // as Redis: the replicas must have this client's own last write
    let target = ctx.conn.woff;
    let acked = crate::repl::acked_since(ctx.srv, target);
    if acked >= n || ctx.conn.in_exec {
        ctx.int(acked as i64);
        return Ok(());
    }
    crate::repl::request_acks(ctx.srv);
    let deadline = (timeout > 0)
        .then(|| std::time::Instant::now() + std::time::Duration::from_millis(timeout as u64));
    ctx.conn.wait = Some((n, target, deadline));
    Ok(())
}

/// # Format
/// `FAILOVER [TO host port [FORCE]] [ABORT] [TIMEOUT ms]`: a planned
/// switchover to a caught-up replica (see `crate::failover`); replies at
/// once, the switch happens in the background (`INFO replication`'s
/// `master_failover_state`).
pub fn failover(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let mut req = crate::failover::Request::default();
    let mut j = 1;
    while j < a.len() {
        if is(a[j], "to") && j + 2 < a.len() && req.target.is_none() {
            let port = int_arg(a[j + 2])?;
            req.target = Some((String::from_utf8_lossy(a[j + 1]).into_owned(), port));
            j += 3;
        } else if is(a[j], "timeout") && j + 1 < a.len() && req.timeout_ms.is_none() {
            let ms = int_arg(a[j + 1])?;
            if ms <= 0 {
                return Err(err("ERR FAILOVER timeout must be greater than 0"));
            }
            req.timeout_ms = Some(ms as u64);
            j += 2;
        } else if is(a[j], "force") && !req.force {
            req.force = true;
            j += 1;
        } else if is(a[j], "abort") && !req.abort {
            req.abort = true;
            j += 1;
        } else {
            return Err(SYNTAX);
        }
    }
    ctx.srv.failover.start(ctx.srv, req).map_err(err)?;
    ctx.ok();
    Ok(())
}

/// # Format
/// `SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE] [ABORT]`: saves (with save points
/// configured, or SAVE) and exits, as SIGTERM does. A failed save keeps
/// the server running unless FORCE.
pub fn shutdown(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let (mut save, mut nosave, mut force, mut abort) = (false, false, false, false);
    for o in &a[1..] {
        if is(o, "save") {
            save = true;
        } else if is(o, "nosave") {
            nosave = true;
        } else if is(o, "force") {
            force = true;
        } else if is(o, "abort") {
            abort = true;
        } else if !is(o, "now") {
            return Err(SYNTAX);
        }
    }
    if (save && nosave) || (abort && a.len() > 2) {
        return Err(SYNTAX);
    }
    if abort {
        return Err(err("ERR No shutdown in progress."));
    }
    let srv = ctx.srv;
    if srv.scripts.running() {
        // the script holds its slots (and maybe a worker) until it ends:
        // nothing consistent to save, and no orderly stop to wait for
        if !nosave {
            return Err(err("ERR Errors trying to SHUTDOWN. Check logs."));
        }
        tracing::warn!("SHUTDOWN NOSAVE while a script runs: exiting now");
        std::process::exit(0);
    }
    let wants_save = save || (!nosave && !srv.rt.read().save.trim().is_empty());
    if wants_save && let Err(e) = crate::persist::save(srv) {
        tracing::warn!(error = %e, "error trying to save the DB on SHUTDOWN");
        if !force {
            return Err(err("ERR Errors trying to SHUTDOWN. Check logs."));
        }
    }
    tracing::info!("user requested shutdown");
    srv.shutdown_saved.store(true, Relaxed);
    srv.shutdown.notify_one();
    // as Redis: no reply, the connection just closes
    ctx.conn.close = true;
    Ok(())
}

/// `REPLICAOF host port` / `REPLICAOF NO ONE` (also `SLAVEOF`).
pub fn replicaof(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    if ctx.srv.failover.state() != crate::failover::State::None {
        return Err(err("ERR REPLICAOF not allowed while failing over."));
    }
    if is(a[1], "no") && is(a[2], "one") {
        if ctx.srv.follow.is_replica() {
            crate::repl::replicaof(ctx.srv, None);
            tracing::info!("MASTER MODE enabled (REPLICAOF NO ONE)");
        }
        ctx.ok();
        return Ok(());
    }
    let port = int_arg(a[2])
        .ok()
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| err("ERR Invalid master port"))?;
    let host = String::from_utf8_lossy(a[1]).into_owned();
    if ctx.srv.follow.master.read().as_ref() == Some(&(host.clone(), port)) {
        ctx.simple(b"OK Already connected to specified master");
        return Ok(());
    }
    crate::repl::replicaof(ctx.srv, Some((host, port)));
    ctx.ok();
    Ok(())
}

/// `ROLE`: `master`, the replication offset, and each replica's ip, port and acknowledged offset.
pub fn role(ctx: &mut Ctx<'_, '_>, _a: &[&[u8]]) -> CmdResult {
    let f = &ctx.srv.follow;
    if let Some((host, port)) = f.master.read().clone() {
        let state: &[u8] = if f.link_up.load(Relaxed) {
            b"connected"
        } else if f.sync_in_progress.load(Relaxed) {
            b"sync"
        } else {
            b"connect"
        };
        ctx.array(5);
        ctx.bulk(b"slave");
        ctx.bulk(host.as_bytes());
        ctx.int(port as i64);
        ctx.bulk(state);
        ctx.int(ctx.srv.persist.feed.inner.lock().repl.offset as i64);
        return Ok(());
    }
    let (offset, replicas) = {
        let g = ctx.srv.persist.feed.inner.lock();
        let r: Vec<(String, u64, u64)> = g
            .repl
            .replicas
            .iter()
            .map(|(_, i)| (i.ip.clone(), i.port.load(Relaxed), i.ack.load(Relaxed)))
            .collect();
        (g.repl.offset, r)
    };
    ctx.array(3);
    ctx.bulk(b"master");
    ctx.int(offset as i64);
    ctx.array(replicas.len());
    for (ip, port, ack) in replicas {
        ctx.array(3);
        ctx.bulk(ip.as_bytes());
        ctx.bulk(port.to_string().as_bytes());
        ctx.bulk(ack.to_string().as_bytes());
    }
    Ok(())
}

pub fn lastsave(ctx: &mut Ctx<'_, '_>, _a: &[&[u8]]) -> CmdResult {
    let t = ctx.srv.lastsave.load(Relaxed);
    ctx.int(t as i64);
    Ok(())
}

/// # Format
/// `DEBUG SLEEP seconds | POPULATE count [prefix] [size] | SET-ACTIVE-EXPIRE 0|1 | WORKERS n | HELP`
pub fn debug(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let sub = a[1];
    if is(sub, "sleep") && a.len() == 3 {
        let secs = util::parse_f64(a[2]).ok_or(super::NOT_FLOAT)?;
        std::thread::sleep(std::time::Duration::from_secs_f64(secs.clamp(0.0, 3600.0)));
        ctx.ok();
    } else if is(sub, "populate") && (3..=5).contains(&a.len()) {
        let count = int_arg(a[2])?;
        if count < 0 {
            return Err(err("ERR count must be positive"));
        }
        let prefix = a.get(3).copied().unwrap_or(b"key");
        let size = match a.get(4) {
            Some(s) => int_arg(s)?.max(0) as usize,
            None => 0,
        };
        for i in 0..count {
            let mut k = prefix.to_vec();
            k.push(b':');
            k.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
            let slot = kvfleet_model::slot(&k) as usize;
            let mut v = format!("value:{i}").into_bytes();
            if size > 0 {
                v.resize(size, 0);
            }
            ctx.db.with_slot(slot, |s| {
                if !s.map.contains_key(&k[..]) {
                    s.insert(crate::db::Entry::string(&k, &v, 0));
                }
            });
        }
        ctx.ok();
    } else if is(sub, "workers") && a.len() == 3 {
        let n = int_arg(a[2])?;
        if n < 1 || n as usize > ctx.srv.workers.threads() {
            return Err(err(format!(
                "ERR workers must be between 1 and {}",
                ctx.srv.workers.threads()
            )));
        }
        ctx.srv.workers.set_active(ctx.srv, n as usize);
        ctx.ok();
    } else if is(sub, "set-active-expire") && a.len() == 3 {
        crate::cron::ACTIVE_EXPIRE.store(a[2] != b"0", Relaxed);
        ctx.ok();
    } else if is(sub, "help") {
        let lines = [
            "DEBUG <subcommand>. Subcommands are:",
            "SLEEP <seconds>",
            "POPULATE <count> [<prefix>] [<size>]",
            "SET-ACTIVE-EXPIRE <0|1>",
            "WORKERS <n>",
            "    Serve clients on n worker threads now, moving connections as the governor would.",
        ];
        ctx.help_lines(&lines);
    } else {
        return Err(unknown_sub("debug", sub));
    }
    Ok(())
}

// === SLOTS ===

fn slot_arg(a: &[u8]) -> Result<usize, CmdError> {
    let s = int_arg(a)?;
    if s < 0 || s as usize >= NUM_SLOTS {
        return Err(err("ERR Invalid or out of range slot"));
    }
    Ok(s as usize)
}

fn slot_ranges(a: &[&[u8]]) -> Result<Vec<(u16, u16)>, CmdError> {
    let v: Vec<String> = a
        .iter()
        .map(|x| String::from_utf8_lossy(x).into_owned())
        .collect();
    crate::config::parse_slot_ranges(&v).map_err(|e| err(format!("ERR {e}")))
}

/// # Format
/// `SLOTS COUNT slot` · `SLOTS SCAN slot cursor [COUNT n] [MATCH p]` · `SLOTS DEL slot [slot ...]` ·
/// `SLOTS OWNED` · `SLOTS OWN range...` · `SLOTS DISOWN range...` · `SLOTS MOVED-ADDR host:port`
pub fn slots(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let sub = a[1];
    let srv = ctx.srv;
    if is(sub, "count") && a.len() == 3 {
        let s = slot_arg(a[2])?;
        let n = ctx.db.with_slot(s, |s| s.map.len());
        ctx.int(n as i64);
    } else if is(sub, "scan") && a.len() >= 4 {
        let s = slot_arg(a[2])?;
        let cursor = cursor_arg(a[3])?;
        let o = scan_opts(&a[4..], false)?;
        if cursor > u32::MAX as u64 {
            return Err(err("ERR invalid cursor"));
        }
        let mut found: Vec<Box<[u8]>> = Vec::new();
        let mut budget = o.count;
        let now = ctx.now;
        let next = ctx.db.with_slot(s, |g| {
            scan_slot(g, cursor as u32, &mut budget, now, |k, _| {
                if o.pattern.is_none_or(|p| glob_match(p, k, false)) {
                    found.push(k.into());
                }
            })
        });
        ctx.array(2);
        let next = if next == u32::MAX { 0 } else { next as u64 };
        ctx.bulk(next.to_string().as_bytes());
        ctx.array(found.len());
        found.iter().for_each(|k| ctx.bulk(k));
    } else if is(sub, "del") && a.len() >= 3 {
        let mut n = 0;
        for x in &a[2..] {
            let s = slot_arg(x)?;
            n += ctx.db.with_slot(s, |g| g.clear());
        }
        ctx.dirty += n as u64;
        ctx.int(n as i64);
    } else if is(sub, "owned") && a.len() == 2 {
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        for s in 0..NUM_SLOTS {
            if srv.owned[s].load(Relaxed) {
                match ranges.last_mut() {
                    Some(r) if r.1 + 1 == s => r.1 = s,
                    _ => ranges.push((s, s)),
                }
            }
        }
        ctx.array(ranges.len());
        for (x, y) in ranges {
            ctx.array(2);
            ctx.int(x as i64);
            ctx.int(y as i64);
        }
    } else if (is(sub, "own") || is(sub, "disown")) && a.len() >= 3 {
        let own = is(sub, "own");
        let ranges = slot_ranges(&a[2..])?;
        for (x, y) in ranges {
            for s in x..=y {
                srv.owned[s as usize].store(own, Relaxed);
            }
        }
        ctx.ok();
    } else if is(sub, "moved-addr") && a.len() == 3 {
        *srv.moved_addr.write() = String::from_utf8_lossy(a[2]).into_owned();
        ctx.ok();
    } else {
        return Err(unknown_sub("slots", sub));
    }
    Ok(())
}
