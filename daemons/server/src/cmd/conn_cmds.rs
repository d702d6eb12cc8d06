//! Connection commands: PING, ECHO, QUIT, SELECT, HELLO, AUTH, CLIENT, RESET.

use std::sync::atomic::Ordering::Relaxed;

use super::{CmdError, CmdResult, Ctx, NOT_INT, SYNTAX, err, int_arg, is};
use crate::server::ClientHandle;
use kvfleet_model::commands::COMMANDS;

pub fn ping(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    if a.len() > 2 {
        return Err(super::arity_error("ping"));
    }
    if ctx.conn.subscribed() && !ctx.resp3() {
        ctx.array(2);
        ctx.bulk(b"pong");
        ctx.bulk(a.get(1).copied().unwrap_or(b""));
    } else if a.len() == 2 {
        ctx.bulk(a[1]);
    } else {
        ctx.simple(b"PONG");
    }
    Ok(())
}

pub fn echo(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    ctx.bulk(a[1]);
    Ok(())
}

pub fn quit(ctx: &mut Ctx<'_, '_>, _a: &[&[u8]]) -> CmdResult {
    ctx.conn.close = true;
    ctx.ok();
    Ok(())
}

pub fn select(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let db = int_arg(a[1])?;
    if db != 0 {
        return Err(err("ERR DB index is out of range"));
    }
    ctx.ok();
    Ok(())
}

fn check_password(ctx: &mut Ctx<'_, '_>, user: &[u8], pass: &[u8]) -> CmdResult {
    let required = ctx.srv.rt.read().requirepass.clone();
    let Some(want) = Some(required).filter(|p| !p.is_empty()) else {
        if user == b"default" {
            // Redis accepts any password for the passwordless default user only via AUTH user pass
            ctx.conn.authed = true;
            return Ok(());
        }
        return Err(err(
            "WRONGPASS invalid username-password pair or user is disabled.",
        ));
    };
    if user == b"default" && pass == want.as_bytes() {
        ctx.conn.authed = true;
        Ok(())
    } else {
        Err(err(
            "WRONGPASS invalid username-password pair or user is disabled.",
        ))
    }
}

/// # Format
/// `AUTH [username] password`
pub fn auth(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    if a.len() > 3 {
        return Err(SYNTAX);
    }
    if a.len() == 2 && ctx.srv.rt.read().requirepass.is_empty() {
        return Err(err(
            "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
        ));
    }
    let (user, pass) = if a.len() == 3 {
        (a[1], a[2])
    } else {
        (&b"default"[..], a[1])
    };
    check_password(ctx, user, pass)?;
    ctx.ok();
    Ok(())
}

/// # Format
/// `HELLO [protover [AUTH username password] [SETNAME clientname]]`
pub fn hello(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let mut ver = None;
    if a.len() >= 2 {
        let v = crate::util::parse_i64(a[1])
            .ok_or_else(|| err("ERR Protocol version is not an integer or out of range"))?;
        if !(2..=3).contains(&v) {
            return Err(err("NOPROTO unsupported protocol version"));
        }
        ver = Some(v);
    }
    let mut i = 2;
    let mut name = None;
    while i < a.len() {
        let rest = a.len() - i - 1;
        if is(a[i], "auth") && rest >= 2 {
            check_password(ctx, a[i + 1], a[i + 2])?;
            i += 3;
        } else if is(a[i], "setname") && rest >= 1 {
            name = Some(a[i + 1]);
            i += 2;
        } else {
            return Err(err(format!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(a[i])
            )));
        }
    }
    if !ctx.conn.authed {
        return Err(err(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
        ));
    }
    if let Some(n) = name {
        valid_name(n)?;
        *ctx.conn.handle.name.lock() = if n.is_empty() { None } else { Some(n.to_vec()) };
    }
    if let Some(v) = ver {
        ctx.conn.resp3 = v == 3;
        ctx.conn.handle.resp.store(v as u8, Relaxed);
    }
    let id = ctx.conn.handle.id as i64;
    let proto = if ctx.conn.resp3 { 3 } else { 2 };
    ctx.map(7);
    ctx.bulk(b"server");
    ctx.bulk(b"redis");
    ctx.bulk(b"version");
    ctx.bulk(crate::REDIS_VERSION.as_bytes());
    ctx.bulk(b"proto");
    ctx.int(proto);
    ctx.bulk(b"id");
    ctx.int(id);
    ctx.bulk(b"mode");
    ctx.bulk(b"standalone");
    ctx.bulk(b"role");
    ctx.bulk(b"master");
    ctx.bulk(b"modules");
    ctx.array(0);
    Ok(())
}

fn valid_name(n: &[u8]) -> CmdResult {
    if n.iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
        return Err(err(
            "ERR Client names cannot contain spaces, newlines or special characters.",
        ));
    }
    Ok(())
}

/// A client's class for `TYPE` filters (`slave` is `replica`).
fn client_type(c: &ClientHandle) -> &'static [u8] {
    match c.kind.load(Relaxed) {
        crate::server::KIND_REPLICA => b"replica",
        crate::server::KIND_MASTER => b"master",
        _ if c.subs.load(Relaxed) + c.psubs.load(Relaxed) > 0 => b"pubsub",
        _ => b"normal",
    }
}

/// Parses a `TYPE` filter's value.
fn parse_type(v: &[u8]) -> Result<&'static [u8], CmdError> {
    match &v.to_ascii_lowercase()[..] {
        b"normal" => Ok(b"normal"),
        b"master" => Ok(b"master"),
        b"replica" | b"slave" => Ok(b"replica"),
        b"pubsub" => Ok(b"pubsub"),
        _ => Err(err(format!(
            "ERR Unknown client type '{}'",
            String::from_utf8_lossy(v)
        ))),
    }
}

/// One `CLIENT LIST` line in Redis 7.0's field order.
pub fn client_line(c: &ClientHandle) -> String {
    let now = crate::util::now_ms();
    let last = c.last_ms.load(Relaxed);
    let cmd = COMMANDS
        .get(c.last_cmd.load(Relaxed))
        .map_or("NULL", |s| s.name);
    let name = c.name.lock().clone().unwrap_or_default();
    let lib = c.lib_name.lock().clone().unwrap_or_default();
    let ver = c.lib_ver.lock().clone().unwrap_or_default();
    let subs = c.subs.load(Relaxed);
    let psubs = c.psubs.load(Relaxed);
    let kind = c.kind.load(Relaxed);
    let flags = if kind == crate::server::KIND_REPLICA {
        "S"
    } else if kind == crate::server::KIND_MASTER {
        "M"
    } else if subs + psubs > 0 {
        "P"
    } else if c.multi.load(Relaxed) >= 0 {
        "x"
    } else {
        "N"
    };
    format!(
        "id={} addr={} laddr={} fd=8 name={} age={} idle={} flags={} db=0 sub={} psub={} ssub=0 multi={} qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=16384 rbp=0 obl=0 oll=0 omem={} tot-mem=0 events=r cmd={} user=default redir=-1 resp={} lib-name={} lib-ver={} io-thread={}",
        c.id,
        c.addr,
        c.laddr,
        String::from_utf8_lossy(&name),
        c.created.elapsed().as_secs(),
        now.saturating_sub(last) / 1000,
        flags,
        subs,
        psubs,
        c.multi.load(Relaxed),
        c.pending.load(Relaxed),
        cmd,
        c.resp.load(Relaxed),
        String::from_utf8_lossy(&lib),
        String::from_utf8_lossy(&ver),
        // Redis 8's field: here the worker runtime serving the connection
        c.rt.load(Relaxed),
    )
}

fn unknown_sub(cmd: &str, sub: &[u8]) -> CmdError {
    super::sub_error(
        cmd,
        sub,
        &[
            "id", "setname", "getname", "setinfo", "list", "info", "kill", "pause", "unpause",
            "no-evict", "no-touch", "help",
        ],
    )
}

pub fn client(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let sub = a[1];
    let n = a.len();
    if is(sub, "id") && n == 2 {
        let id = ctx.conn.handle.id as i64;
        ctx.int(id);
    } else if is(sub, "setname") && n == 3 {
        valid_name(a[2])?;
        *ctx.conn.handle.name.lock() = if a[2].is_empty() {
            None
        } else {
            Some(a[2].to_vec())
        };
        ctx.ok();
    } else if is(sub, "getname") && n == 2 {
        let name = ctx.conn.handle.name.lock().clone();
        ctx.opt_bulk(name.as_deref());
    } else if is(sub, "setinfo") && n == 4 {
        let v = a[3];
        if v.iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
            return Err(err(format!(
                "ERR {} cannot contain spaces, newlines or special characters.",
                String::from_utf8_lossy(a[2]).to_lowercase()
            )));
        }
        if is(a[2], "lib-name") {
            *ctx.conn.handle.lib_name.lock() = Some(v.to_vec());
        } else if is(a[2], "lib-ver") {
            *ctx.conn.handle.lib_ver.lock() = Some(v.to_vec());
        } else {
            return Err(err(format!(
                "ERR Unrecognized option '{}'",
                String::from_utf8_lossy(a[2])
            )));
        }
        ctx.ok();
    } else if is(sub, "list") {
        let mut ids: Option<Vec<u64>> = None;
        let mut typ: Option<&[u8]> = None;
        let mut i = 2;
        while i < n {
            if is(a[i], "id") && i + 1 < n {
                let mut v = Vec::new();
                for x in &a[i + 1..] {
                    let id = int_arg(x)
                        .ok()
                        .filter(|&x| x > 0)
                        .ok_or_else(|| err("ERR Invalid client ID"))?;
                    v.push(id as u64);
                }
                ids = Some(v);
                i = n;
            } else if is(a[i], "type") && i + 1 < n {
                typ = Some(parse_type(a[i + 1])?);
                i += 2;
            } else {
                return Err(SYNTAX);
            }
        }
        let clients: Vec<_> = ctx.srv.clients.lock().values().cloned().collect();
        let mut clients: Vec<_> = clients
            .into_iter()
            .filter(|c| ids.as_ref().is_none_or(|v| v.contains(&c.id)))
            .filter(|c| typ.is_none_or(|t| client_type(c) == t))
            .collect();
        clients.sort_by_key(|c| c.id);
        let mut s = String::new();
        for c in clients {
            s.push_str(&client_line(&c));
            s.push('\n');
        }
        ctx.verbatim(s.as_bytes());
    } else if is(sub, "info") && n == 2 {
        let mut s = client_line(&ctx.conn.handle);
        s.push('\n');
        ctx.verbatim(s.as_bytes());
    } else if is(sub, "kill") && n >= 3 {
        client_kill(ctx, a)?;
    } else if is(sub, "pause") && (n == 3 || n == 4) {
        let ms = crate::util::parse_i64(a[2])
            .ok_or_else(|| err("ERR timeout is not an integer or out of range"))?;
        if ms < 0 {
            return Err(err("ERR timeout is negative"));
        }
        let all = match a.get(3) {
            None => true,
            Some(m) if is(m, "all") => true,
            Some(m) if is(m, "write") => false,
            Some(_) => return Err(err("ERR CLIENT PAUSE mode must be WRITE or ALL")),
        };
        ctx.srv.pause.client_pause(ms as u64, all);
        ctx.ok();
    } else if is(sub, "unpause") && n == 2 {
        ctx.srv.pause.client_unpause();
        ctx.ok();
    } else if (is(sub, "no-evict") || is(sub, "no-touch")) && n == 3 {
        if !is(a[2], "on") && !is(a[2], "off") {
            return Err(SYNTAX);
        }
        ctx.ok();
    } else if is(sub, "help") && n == 2 {
        let lines = [
            "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "GETNAME",
            "ID",
            "INFO",
            "KILL <ip:port> | <option> <value> [<option> <value> [...]]",
            "LIST [TYPE normal|master|replica|pubsub] [ID <id> ...]",
            "PAUSE <timeout> [WRITE|ALL]",
            "UNPAUSE",
            "SETNAME <name>",
            "SETINFO <LIB-NAME|LIB-VER> <value>",
            "HELP",
        ];
        ctx.help_lines(&lines);
    } else {
        return Err(unknown_sub("client", sub));
    }
    Ok(())
}

fn client_kill(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let me = ctx.conn.handle.id;
    let clients: Vec<_> = ctx.srv.clients.lock().values().cloned().collect();
    if a.len() == 3 {
        let addr = String::from_utf8_lossy(a[2]);
        let Some(c) = clients.iter().find(|c| c.addr == addr) else {
            return Err(err("ERR No such client"));
        };
        c.kill();
        if c.id == me {
            ctx.conn.close = true;
        }
        ctx.ok();
        return Ok(());
    }
    let (mut id, mut addr, mut laddr, mut skipme) = (None, None, None, true);
    let (mut typ, mut maxage) = (None, None);
    let mut i = 2;
    while i + 1 < a.len() {
        let v = a[i + 1];
        if is(a[i], "id") {
            id = Some(
                crate::util::parse_i64(v)
                    .filter(|&x| x > 0)
                    .ok_or_else(|| err("ERR client-id should be greater than 0"))?
                    as u64,
            );
        } else if is(a[i], "addr") {
            addr = Some(String::from_utf8_lossy(v).into_owned());
        } else if is(a[i], "laddr") {
            laddr = Some(String::from_utf8_lossy(v).into_owned());
        } else if is(a[i], "skipme") {
            skipme = if is(v, "yes") {
                true
            } else if is(v, "no") {
                false
            } else {
                return Err(SYNTAX);
            };
        } else if is(a[i], "type") {
            typ = Some(parse_type(v)?);
        } else if is(a[i], "maxage") {
            maxage = Some(crate::util::parse_i64(v).ok_or(NOT_INT)?.max(0) as u64);
        } else if is(a[i], "user") {
            // one user exists
            if !is(v, "default") {
                return Err(err(format!(
                    "ERR No such user '{}'",
                    String::from_utf8_lossy(v)
                )));
            }
        } else {
            return Err(SYNTAX);
        }
        i += 2;
    }
    if i != a.len() {
        return Err(SYNTAX);
    }
    let mut n = 0;
    for c in clients {
        if id.is_some_and(|x| x != c.id)
            || addr.as_ref().is_some_and(|x| *x != c.addr)
            || laddr.as_ref().is_some_and(|x| *x != c.laddr)
            || typ.is_some_and(|t| client_type(&c) != t)
            || maxage.is_some_and(|m| c.created.elapsed().as_secs() < m)
            || (skipme && c.id == me)
        {
            continue;
        }
        c.kill();
        if c.id == me {
            ctx.conn.close = true;
        }
        n += 1;
    }
    ctx.int(n);
    Ok(())
}

pub fn reset(ctx: &mut Ctx<'_, '_>, _a: &[&[u8]]) -> CmdResult {
    ctx.conn.multi = None;
    ctx.conn.multi_err = false;
    ctx.conn.handle.multi.store(-1, Relaxed);
    super::multi::unwatch_all(ctx.srv, ctx.conn);
    super::pubsub::unsubscribe_all(ctx.srv, ctx.conn);
    ctx.conn.resp3 = false;
    ctx.conn.handle.resp.store(2, Relaxed);
    *ctx.conn.handle.name.lock() = None;
    ctx.conn.authed = !ctx.srv.auth_required.load(Relaxed);
    ctx.simple(b"RESET");
    Ok(())
}
