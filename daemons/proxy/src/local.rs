//! Commands the proxy answers itself: connection state (PING, HELLO, AUTH,
//! SELECT, CLIENT, QUIT, RESET), what it knows (COMMAND, INFO, SLOWLOG) and
//! its admin command, PROXY.

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

use crate::client::Client;
use crate::table::{Cmd, table};
use kvfleet_resp::encode;

fn is(a: &[u8], s: &str) -> bool {
    a.eq_ignore_ascii_case(s.as_bytes())
}

pub fn run(c: &mut Client, cmd: &Cmd, argv: &[&[u8]]) {
    let ci = cmd.index as u16;
    match cmd.spec.name {
        // RESP2 subscribers get PING's answer as a pub/sub frame, as from Redis
        "ping" if c.subscribed() && !c.resp3 && argv.len() <= 2 => c.reply(ci, |o, _| {
            encode::array(o, 2);
            encode::bulk(o, b"pong");
            encode::bulk(o, argv.get(1).copied().unwrap_or(b""));
        }),
        "ping" => match argv.len() {
            1 => c.reply(ci, |o, _| encode::simple(o, b"PONG")),
            2 => c.reply(ci, |o, _| encode::bulk(o, argv[1])),
            _ => c.error(ci, "ERR wrong number of arguments for 'ping' command"),
        },
        "echo" => c.reply(ci, |o, _| encode::bulk(o, argv[1])),
        "quit" => {
            c.reply(ci, |o, _| encode::simple(o, b"OK"));
            c.close = true;
        }
        "select" => match argv[1] {
            b"0" => c.reply(ci, |o, _| encode::simple(o, b"OK")),
            _ if std::str::from_utf8(argv[1]).is_ok_and(|s| s.parse::<i64>().is_ok()) => {
                c.error(ci, "ERR DB index is out of range")
            }
            _ => c.error(ci, "ERR value is not an integer or out of range"),
        },
        "auth" => auth(c, ci, argv),
        "hello" => hello(c, ci, argv),
        "reset" => {
            c.reset();
            *c.info.name.lock() = String::new();
            c.reply(ci, |o, _| encode::simple(o, b"RESET"));
        }
        "command" => command(c, ci, argv),
        "client" => client(c, ci, argv),
        "info" => {
            let text = info(c, &argv[1..]);
            c.reply(ci, |o, r| encode::verbatim(o, text.as_bytes(), r));
        }
        "slowlog" => slowlog(c, ci, argv),
        "proxy" => proxy(c, ci, argv),
        _ => c.error(ci, "ERR unknown command"),
    }
}

fn check_password(c: &Client, pw: &[u8]) -> Result<(), &'static str> {
    let cfg = c.px.cfg.read();
    if cfg.password.is_empty() {
        return Err(
            "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
        );
    }
    if cfg.password.as_bytes() != pw {
        return Err("WRONGPASS invalid username-password pair or user is disabled.");
    }
    Ok(())
}

/// `AUTH [username] password` against the proxy's own password.
fn auth(c: &mut Client, ci: u16, argv: &[&[u8]]) {
    let pw = match argv.len() {
        2 => argv[1],
        3 if is(argv[1], "default") => argv[2],
        3 => {
            c.error(
                ci,
                "WRONGPASS invalid username-password pair or user is disabled.",
            );
            return;
        }
        _ => {
            c.error(ci, "ERR syntax error");
            return;
        }
    };
    match check_password(c, pw) {
        Ok(()) => {
            c.authed = true;
            c.reply(ci, |o, _| encode::simple(o, b"OK"));
        }
        Err(e) => c.error(ci, e),
    }
}

/// `HELLO [protover [AUTH user pass] [SETNAME name]]`
fn hello(c: &mut Client, ci: u16, argv: &[&[u8]]) {
    let mut proto = if c.resp3 { 3 } else { 2 };
    let mut i = 1;
    if argv.len() > 1 {
        match std::str::from_utf8(argv[1])
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
        {
            Some(p @ (2 | 3)) => proto = p,
            Some(_) => {
                c.error(ci, "NOPROTO unsupported protocol version");
                return;
            }
            None => {
                c.error(ci, "ERR Protocol version is not an integer or out of range");
                return;
            }
        }
        i = 2;
    }
    let mut name = None;
    while i < argv.len() {
        if is(argv[i], "auth") && i + 2 < argv.len() {
            if let Err(e) = check_password(c, argv[i + 2]) {
                c.error(ci, e);
                return;
            }
            c.authed = true;
            i += 3;
        } else if is(argv[i], "setname") && i + 1 < argv.len() {
            name = Some(String::from_utf8_lossy(argv[i + 1]).into_owned());
            i += 2;
        } else {
            let msg = format!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(argv[i])
            );
            c.error(ci, &msg);
            return;
        }
    }
    if !c.authed {
        c.error(ci, "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
        return;
    }
    if let Some(n) = name {
        *c.info.name.lock() = n;
    }
    let resp3 = proto == 3;
    if resp3 != c.resp3 {
        // later commands use the other protocol's backend connections: let
        // everything before this finish first, so order is kept
        c.barrier = true;
    }
    c.resp3 = resp3;
    let id = c.id;
    c.reply(ci, |o, r| {
        encode::map(o, 7, r);
        encode::bulk(o, b"server");
        encode::bulk(o, b"redis");
        encode::bulk(o, b"version");
        encode::bulk(o, b"7.0.15");
        encode::bulk(o, b"proto");
        encode::int(o, proto);
        encode::bulk(o, b"id");
        encode::int(o, id as i64);
        encode::bulk(o, b"mode");
        encode::bulk(o, b"standalone");
        encode::bulk(o, b"role");
        encode::bulk(o, b"master");
        encode::bulk(o, b"modules");
        encode::array(o, 0);
    });
}

fn command(c: &mut Client, ci: u16, argv: &[&[u8]]) {
    let t = table();
    let sub = argv.get(1).copied().unwrap_or(b"");
    if argv.len() == 1 {
        c.reply(ci, |o, r| {
            encode::array(o, t.cmds.len());
            t.cmds
                .iter()
                .for_each(|cmd| kvfleet_model::commands::encode_info(o, cmd.spec, r));
        });
    } else if is(sub, "count") {
        c.reply(ci, |o, _| encode::int(o, t.cmds.len() as i64));
    } else if is(sub, "info") {
        c.reply(ci, |o, r| {
            let names: Vec<&[u8]> = if argv.len() == 2 {
                t.cmds.iter().map(|c| c.spec.name.as_bytes()).collect()
            } else {
                argv[2..].to_vec()
            };
            encode::array(o, names.len());
            for n in names {
                match t.lookup(n) {
                    Some(cmd) => kvfleet_model::commands::encode_info(o, cmd.spec, r),
                    None => encode::null_array(o, r),
                }
            }
        });
    } else if is(sub, "list") {
        c.reply(ci, |o, _| {
            encode::array(o, t.cmds.len());
            t.cmds
                .iter()
                .for_each(|cmd| encode::bulk(o, cmd.spec.name.as_bytes()));
        });
    } else if is(sub, "docs") {
        // redis-cli asks for docs for its hints; an empty map is a valid answer
        c.reply(ci, |o, r| encode::map(o, 0, r));
    } else {
        let msg = format!(
            "ERR unknown subcommand '{}'. Try COMMAND HELP.",
            String::from_utf8_lossy(sub)
        );
        c.error(ci, &msg);
    }
}

fn client_line(c: &Client, info: &crate::ClientInfo) -> String {
    let last = info.last_cmd.load(Relaxed);
    let cmd = table().cmds.get(last).map_or("NULL", |c| c.spec.name);
    format!(
        "id={} addr={} name={} age={} cmd={} resp={}\n",
        info.id,
        info.addr,
        info.name.lock(),
        info.created.elapsed().as_secs(),
        cmd,
        if info.id == c.id && c.resp3 { 3 } else { 2 }
    )
}

fn client(c: &mut Client, ci: u16, argv: &[&[u8]]) {
    let sub = argv[1];
    if is(sub, "id") && argv.len() == 2 {
        let id = c.id as i64;
        c.reply(ci, |o, _| encode::int(o, id));
    } else if is(sub, "setname") && argv.len() == 3 {
        if argv[2].iter().any(|&b| b <= b' ' || b > b'~') {
            c.error(
                ci,
                "ERR Client names cannot contain spaces, newlines or special characters.",
            );
            return;
        }
        *c.info.name.lock() = String::from_utf8_lossy(argv[2]).into_owned();
        c.reply(ci, |o, _| encode::simple(o, b"OK"));
    } else if is(sub, "getname") && argv.len() == 2 {
        let name = c.info.name.lock().clone();
        c.reply(ci, |o, r| {
            if name.is_empty() {
                encode::null(o, r)
            } else {
                encode::bulk(o, name.as_bytes())
            }
        });
    } else if is(sub, "setinfo") && argv.len() == 4 {
        c.reply(ci, |o, _| encode::simple(o, b"OK"));
    } else if is(sub, "info") && argv.len() == 2 {
        let line = client_line(c, &c.info);
        c.reply(ci, |o, r| encode::verbatim(o, line.as_bytes(), r));
    } else if is(sub, "list") && argv.len() == 2 {
        let clients: Vec<_> = c.px.clients.lock().values().cloned().collect();
        let mut text = String::new();
        for info in clients {
            text.push_str(&client_line(c, &info));
        }
        c.reply(ci, |o, r| encode::verbatim(o, text.as_bytes(), r));
    } else if is(sub, "kill") && argv.len() == 4 && is(argv[2], "id") {
        let id = std::str::from_utf8(argv[3])
            .ok()
            .and_then(|s| s.parse::<u64>().ok());
        let target = id.and_then(|id| c.px.clients.lock().get(&id).cloned());
        match target {
            Some(t) => {
                t.kill.notify_one();
                c.reply(ci, |o, _| encode::int(o, 1));
            }
            None => c.error(ci, "ERR No such client"),
        }
    } else {
        let msg = format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'. Try CLIENT HELP.",
            String::from_utf8_lossy(sub)
        );
        c.error(ci, &msg);
    }
}

fn slowlog(c: &mut Client, ci: u16, argv: &[&[u8]]) {
    let sub = argv[1];
    if is(sub, "len") {
        let n = c.px.stats.slowlog.lock().len() as i64;
        c.reply(ci, |o, _| encode::int(o, n));
    } else if is(sub, "reset") {
        c.px.stats.slowlog.lock().clear();
        c.reply(ci, |o, _| encode::simple(o, b"OK"));
    } else if is(sub, "get") {
        let n = match argv.get(2).map(|a| {
            std::str::from_utf8(a)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
        }) {
            None => 10,
            Some(Some(n)) if n >= -1 => n,
            Some(_) => {
                c.error(ci, "ERR count should be greater than or equal to -1");
                return;
            }
        };
        let px = c.px.clone();
        c.reply(ci, |o, _| {
            let log = px.stats.slowlog.lock();
            let take = if n < 0 {
                log.len()
            } else {
                (n as usize).min(log.len())
            };
            encode::array(o, take);
            for e in log.iter().take(take) {
                encode::array(o, 6);
                encode::int(o, e.id as i64);
                encode::int(o, e.at as i64);
                encode::int(o, e.usec as i64);
                encode::array(o, e.args.len());
                e.args.iter().for_each(|a| encode::bulk(o, a));
                encode::bulk(o, b"");
                encode::bulk(o, b"");
            }
        });
    } else {
        let msg = format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'. Try SLOWLOG HELP.",
            String::from_utf8_lossy(sub)
        );
        c.error(ci, &msg);
    }
}

/// `PROXY EPOCH | TOPOLOGY | RELOAD | HELP`: the proxy's admin command.
fn proxy(c: &mut Client, ci: u16, argv: &[&[u8]]) {
    let sub = argv[1];
    if is(sub, "epoch") {
        let e = c.routing().topo.epoch as i64;
        c.reply(ci, |o, _| encode::int(o, e));
    } else if is(sub, "topology") {
        let text = toml::to_string(&c.px.routing.get().topo).unwrap_or_default();
        c.reply(ci, |o, r| encode::verbatim(o, text.as_bytes(), r));
    } else if is(sub, "reload") {
        match c.px.reload() {
            Ok(epoch) => c.reply(ci, |o, _| encode::int(o, epoch as i64)),
            Err(e) => c.error(ci, &format!("ERR reload failed: {e}")),
        }
    } else if is(sub, "help") {
        let lines = [
            "PROXY <subcommand>. Subcommands are:",
            "EPOCH",
            "    The epoch of the topology in use.",
            "TOPOLOGY",
            "    The topology in use, as TOML.",
            "RELOAD",
            "    Re-read the topology file; applied unless its epoch is lower.",
        ];
        c.reply(ci, |o, _| {
            encode::array(o, lines.len());
            lines.iter().for_each(|l| encode::simple(o, l.as_bytes()));
        });
    } else {
        let msg = format!(
            "ERR unknown subcommand '{}'. Try PROXY HELP.",
            String::from_utf8_lossy(sub)
        );
        c.error(ci, &msg);
    }
}

/// INFO on the proxy: its own sections (Redis's field names where Redis has
/// the figure), per-command latency percentiles, and the backends.
pub fn info(c: &Client, sections: &[&[u8]]) -> String {
    let want = |s: &str| {
        sections.is_empty()
            || sections.iter().any(|a| {
                is(a, s)
                    || is(a, "all")
                    || is(a, "everything")
                    || (is(a, "default") && s != "commandstats")
            })
    };
    let px = &c.px;
    let mut o = String::new();
    if want("server") {
        let up = px.started.elapsed().as_secs();
        let _ = write!(
            o,
            "# Server\r\nredis_version:7.0.15\r\nkvfleet_proxy_version:{}\r\nredis_mode:proxy\r\nos:{}\r\nprocess_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{up}\r\nuptime_in_days:{}\r\n\r\n",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::process::id(),
            px.port.load(Relaxed),
            up / 86400
        );
    }
    if want("clients") {
        let _ = write!(
            o,
            "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\n\r\n",
            px.clients.lock().len(),
            px.cfg.read().max_clients
        );
    }
    if want("stats") {
        let s = &px.stats;
        let total = s.total_calls();
        let _ = write!(
            o,
            "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{total}\r\ninstantaneous_ops_per_sec:{}\r\ntotal_net_input_bytes:{}\r\ntotal_net_output_bytes:{}\r\nrejected_connections:{}\r\nclient_output_buffer_limit_disconnections:{}\r\nbackend_errors:{}\r\n\r\n",
            s.connections_received.load(Relaxed),
            s.ops_per_sec.load(Relaxed),
            s.net_in.load(Relaxed),
            s.net_out.load(Relaxed),
            s.rejected_connections.load(Relaxed),
            s.output_limit_kills.load(Relaxed),
            s.backend_errors.load(Relaxed),
        );
    }
    if want("commandstats") {
        o.push_str("# Commandstats\r\n");
        for cmd in &table().cmds {
            let m = c.px.stats.summary(cmd.index);
            if m.calls == 0 {
                continue;
            }
            let _ = write!(
                o,
                "cmdstat_{}:calls={},usec={},usec_per_call={:.2},failed_calls={},p50={},p99={},p99.9={},p99.99={},max={}\r\n",
                cmd.spec.name,
                m.calls,
                m.usec,
                m.usec as f64 / m.calls as f64,
                m.errors,
                m.pct[0],
                m.pct[1],
                m.pct[2],
                m.pct[3],
                m.max_us
            );
        }
        o.push_str("\r\n");
    }
    if want("backends") {
        let r = px.routing.get();
        let _ = write!(
            o,
            "# Backends\r\ntopology_epoch:{}\r\ngroups:{}\r\n",
            r.topo.epoch,
            r.groups.len()
        );
        for (i, (g, t)) in r.groups.iter().zip(&r.topo.groups).enumerate() {
            let _ = write!(
                o,
                "group{i}:name={},master={},slots={},connected={},errors={}\r\n",
                g.name,
                g.master.addr,
                t.slots.join(" "),
                g.master.state.connected.load(Relaxed),
                g.master.state.errors.load(Relaxed),
            );
        }
        o.push_str("\r\n");
    }
    o
}
