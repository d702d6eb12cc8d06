//! EVAL, EVALSHA (and their `_RO` forms), SCRIPT, FCALL, FUNCTION: the
//! command side of `crate::script`.

use std::sync::atomic::Ordering::Relaxed;

use super::{CmdResult, Ctx, NEEDS_ALL_SLOTS, NOT_INT, err, int_arg, is, sub_error};
use crate::script::{self, RunError, RunSpec, sflag};

pub fn handler(name: &str) -> Option<super::Handler> {
    Some(match name {
        "eval" => eval,
        "evalsha" => evalsha,
        "eval_ro" => eval_ro,
        "evalsha_ro" => evalsha_ro,
        "script" => script_cmd,
        "fcall" => fcall,
        "fcall_ro" => fcall_ro,
        "function" => script::functions::function_cmd,
        _ => return None,
    })
}

fn eval(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    eval_generic(ctx, a, false, false)
}
fn evalsha(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    eval_generic(ctx, a, true, false)
}
fn eval_ro(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    eval_generic(ctx, a, false, true)
}
fn evalsha_ro(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    eval_generic(ctx, a, true, true)
}
fn fcall(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    script::functions::fcall(ctx, a, false)
}
fn fcall_ro(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    script::functions::fcall(ctx, a, true)
}

/// EVAL's and FCALL's `numkeys`, checked against the arguments that follow.
pub fn numkeys(a: &[&[u8]]) -> Result<usize, super::CmdError> {
    let n = int_arg(a[2]).map_err(|_| NOT_INT)?;
    if n > (a.len() - 3) as i64 {
        return Err(err(
            "ERR Number of keys can't be greater than number of args",
        ));
    }
    if n < 0 {
        return Err(err("ERR Number of keys can't be negative"));
    }
    Ok(n as usize)
}

/// Redis's checks made before a script with declared flags runs.
pub fn check_flags(ctx: &Ctx<'_, '_>, flags: u8, ro: bool) -> CmdResult {
    if flags & sflag::COMPAT != 0 {
        return Ok(());
    }
    let srv = ctx.srv;
    let obey = ctx.conn.from_master;
    if flags & sflag::NO_WRITES == 0 {
        if srv.follow.is_replica() && srv.repl_policy.read_only.load(Relaxed) && !obey {
            return Err(err(
                "READONLY Can not run script with write flag on readonly replica",
            ));
        }
        if ro {
            return Err(err(
                "ERR Can not execute a script with write flag using *_ro command.",
            ));
        }
        if !srv.follow.is_replica() && !srv.repl_policy.enough_replicas() {
            return Err(err("NOREPLICAS Not enough good replicas to write."));
        }
    }
    let max = srv.maxmemory.load(Relaxed);
    if max > 0
        && flags & (sflag::ALLOW_OOM | sflag::NO_WRITES) == 0
        && !obey
        && srv.used_memory() > max
    {
        return Err(err(
            "OOM allow-oom flag is not set on the script, can not run it when used memory > 'maxmemory'",
        ));
    }
    Ok(())
}

fn eval_generic(ctx: &mut Ctx<'_, '_>, a: &[&[u8]], by_sha: bool, ro: bool) -> CmdResult {
    let nk = numkeys(a)?;
    if by_sha && a[1].len() != 40 {
        return Err(err(script::NOSCRIPT));
    }
    let srv = ctx.srv;
    let mut eng = srv.scripts.engine()?;
    let sha = if by_sha {
        let mut s = [0u8; 40];
        s.copy_from_slice(a[1]);
        s.make_ascii_lowercase();
        if !eng.scripts.contains_key(&s) {
            // loaded on another thread: compile it here from the registry
            let body = srv
                .scripts
                .cached(&s)
                .ok_or_else(|| err(script::NOSCRIPT))?;
            eng.compile(s, &body)?;
        }
        s
    } else {
        let sha = script::sha1_hex(a[1]);
        if !eng.scripts.contains_key(&sha) {
            eng.compile(sha, a[1])?;
            srv.scripts.remember(sha, a[1]);
        }
        sha
    };
    let s = &eng.scripts[&sha];
    if s.undeclared && !ctx.db.all_locked() {
        return Err(NEEDS_ALL_SLOTS);
    }
    let flags = s.flags;
    check_flags(ctx, flags, ro)?;
    let spec = RunSpec {
        // hex digits: always UTF-8
        name: std::str::from_utf8(&sha).unwrap_or_default(),
        eval: true,
        flags,
        read_only: ro || (flags & sflag::COMPAT == 0 && flags & sflag::NO_WRITES != 0),
        keys: &a[3..3 + nk],
        args: &a[3 + nk..],
    };
    match eng.run(ctx, &s.func, &spec) {
        Ok(()) => Ok(()),
        Err(RunError::NeedsAllSlots) => {
            if let Some(s) = eng.scripts.get_mut(&sha) {
                s.undeclared = true;
            }
            Err(NEEDS_ALL_SLOTS)
        }
        Err(RunError::Failed(e)) => Err(e),
    }
}

const SCRIPT_SUBS: &[&str] = &["debug", "exists", "flush", "help", "kill", "load"];

fn script_cmd(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let sub = a[1];
    let n = a.len();
    if is(sub, "help") && n == 2 {
        ctx.help_lines(&[
            "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "DEBUG (YES|SYNC|NO)",
            "    Set the debug mode for subsequent scripts executed.",
            "EXISTS <sha1> [<sha1> ...]",
            "    Return information about the existence of the scripts in the script cache.",
            "FLUSH [ASYNC|SYNC]",
            "    Flush the Lua scripts cache. Very dangerous on replicas.",
            "    When called without the optional mode argument, the behavior is determined by the",
            "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
            "    * ASYNC: Asynchronously flush the scripts cache.",
            "    * SYNC: Synchronously flush the scripts cache.",
            "KILL",
            "    Kill the currently executing Lua script.",
            "LOAD <script>",
            "    Load a script into the scripts cache without executing it.",
            "HELP",
            "    Prints this help.",
        ]);
        return Ok(());
    }
    if is(sub, "flush") && n <= 3 {
        if n == 3 && !is(a[2], "sync") && !is(a[2], "async") {
            return Err(err("ERR SCRIPT FLUSH only support SYNC|ASYNC option"));
        }
        ctx.srv.scripts.flush_scripts();
        ctx.ok();
        return Ok(());
    }
    if is(sub, "exists") && n >= 3 {
        let scripts = &ctx.srv.scripts;
        let found: Vec<bool> = a[2..]
            .iter()
            .map(|s| {
                s.len() == 40 && {
                    let mut k = [0u8; 40];
                    k.copy_from_slice(s);
                    k.make_ascii_lowercase();
                    scripts.exists(&k)
                }
            })
            .collect();
        ctx.array(found.len());
        found.into_iter().for_each(|f| ctx.int(f as i64));
        return Ok(());
    }
    if is(sub, "load") && n == 3 {
        let sha = script::sha1_hex(a[2]);
        ctx.srv.scripts.engine()?.compile(sha, a[2])?;
        ctx.srv.scripts.remember(sha, a[2]);
        ctx.bulk(&sha);
        return Ok(());
    }
    if is(sub, "kill") && n == 2 {
        ctx.srv.scripts.kill(true)?;
        ctx.ok();
        return Ok(());
    }
    if is(sub, "debug") && n == 3 {
        return Err(err(
            "ERR SCRIPT DEBUG is not supported by kvfleet (run the script against redis-server to step through it)",
        ));
    }
    Err(sub_error("script", sub, SCRIPT_SUBS))
}
