//! Redis 7 function libraries: FUNCTION LOAD/LIST/DELETE/FLUSH/DUMP/
//! RESTORE/STATS/KILL and FCALL/FCALL_RO.
//!
//! A library is Lua code behind a `#!lua name=<lib>` line whose top level
//! calls `redis.register_function`. Libraries live in the same interpreter
//! as EVAL scripts (with the same read-only globals), are replicated as
//! their FUNCTION commands, and are saved in the RDB as records of type
//! 245 (Redis's `RDB_OPCODE_FUNCTION2`), which is also FUNCTION DUMP's payload.

use std::sync::atomic::Ordering::Relaxed;

use indexmap::IndexMap;
use mlua::{Function, Lua, MultiValue, Table, Value};

use super::{Engine, RunError, RunSpec, raise, sflag};
use crate::cmd::scripting::{check_flags, numkeys};
use crate::cmd::{CmdError, CmdResult, Ctx, NEEDS_ALL_SLOTS, err, is, sub_error};

pub struct Func {
    pub desc: Option<String>,
    pub flags: u8,
    pub f: Function,
    /// It touched keys it did not declare: later calls lock every slot at once.
    pub undeclared: bool,
}

pub struct Library {
    /// The whole FUNCTION LOAD payload, shebang included.
    pub code: Vec<u8>,
    pub functions: IndexMap<String, Func>,
}

#[derive(Default)]
pub struct Libraries {
    pub libs: IndexMap<String, Library>,
    /// Function name → its library.
    pub funcs: std::collections::HashMap<String, String>,
}

fn valid_name(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

const BAD_NAME: &str = "Library names can only contain letters, numbers, or underscores(_) and must be at least one character long";

/// `redis.register_function`: valid only while FUNCTION LOAD runs a
/// library's top level (`K.reg` collects what it registers).
pub fn register_api(lua: &Lua, k: &Table, api: &Table) -> mlua::Result<()> {
    let kk = k.clone();
    api.set(
        "register_function",
        lua.create_function(move |lua, a: MultiValue| {
            let reg: Option<Table> = kk.raw_get("reg")?;
            let Some(reg) = reg else {
                return Err(raise(
                    lua,
                    &kk,
                    "ERR redis.register_function can only be called on FUNCTION LOAD command",
                ));
            };
            let fail = |m: &str| raise(lua, &kk, &format!("ERR {m}"));
            let (name, f, desc, flags) = match a.len() {
                1 => {
                    let Value::Table(t) = &a[0] else {
                        return Err(fail("calling redis.register_function with a single argument is only applicable to Lua table (representing named arguments)."));
                    };
                    let (mut name, mut f, mut desc, mut flags) = (None, None, None, 0u8);
                    for pair in t.pairs::<Value, Value>() {
                        let (k, v) = pair?;
                        let Value::String(k) = k else {
                            return Err(fail("named argument key given to redis.register_function is not a string"));
                        };
                        match k.to_string_lossy().to_ascii_lowercase().as_str() {
                            "function_name" => match v {
                                Value::String(s) => name = Some(s.to_string_lossy()),
                                _ => return Err(fail("function_name argument given to redis.register_function must be a string")),
                            },
                            "description" => match v {
                                Value::String(s) => desc = Some(s.to_string_lossy()),
                                _ => return Err(fail("description argument given to redis.register_function must be a string")),
                            },
                            "callback" => match v {
                                Value::Function(cb) => f = Some(cb),
                                _ => return Err(fail("callback argument given to redis.register_function must be a function")),
                            },
                            "flags" => {
                                let Value::Table(ft) = v else {
                                    return Err(fail("flags argument to redis.register_function must be a table representing function flags"));
                                };
                                for fv in ft.sequence_values::<Value>() {
                                    let known = match fv? {
                                        Value::String(s) => {
                                            let s = s.to_string_lossy().to_ascii_lowercase();
                                            sflag::NAMES.iter().find(|(_, n)| *n == s).map(|(b, _)| *b)
                                        }
                                        _ => None,
                                    };
                                    match known {
                                        Some(b) => flags |= b,
                                        None => return Err(fail("unknown flag given")),
                                    }
                                }
                            }
                            _ => return Err(fail("unknown argument given to redis.register_function")),
                        }
                    }
                    let Some(name) = name else {
                        return Err(fail("redis.register_function must get a function name argument"));
                    };
                    let Some(f) = f else {
                        return Err(fail("redis.register_function must get a callback argument"));
                    };
                    (name, f, desc, flags)
                }
                2 => {
                    let name = match &a[0] {
                        Value::String(s) => s.to_string_lossy(),
                        Value::Integer(i) => i.to_string(),
                        _ => return Err(fail("first argument to redis.register_function must be a string")),
                    };
                    let Value::Function(f) = &a[1] else {
                        return Err(fail("second argument to redis.register_function must be a function"));
                    };
                    (name, f.clone(), None, 0)
                }
                _ => return Err(fail("wrong number of arguments to redis.register_function")),
            };
            if !valid_name(&name) {
                return Err(fail(BAD_NAME));
            }
            if reg.contains_key(name.as_str())? {
                return Err(fail("Function already exists in the library"));
            }
            let entry = lua.create_table()?;
            entry.raw_set("f", f)?;
            entry.raw_set("flags", flags)?;
            if let Some(d) = desc {
                entry.raw_set("desc", d)?;
            }
            reg.raw_set(name, entry)?;
            Ok(())
        })?,
    )
}

/// The `#!<engine> name=<lib>` line: (engine, library name, where the code starts).
fn metadata(code: &[u8]) -> Result<(String, String, usize), String> {
    if !code.starts_with(b"#!") {
        return Err("Missing library metadata".into());
    }
    let Some(end) = code.iter().position(|&b| b == b'\n') else {
        return Err("Invalid library metadata".into());
    };
    let line = String::from_utf8_lossy(&code[2..end]).into_owned();
    let mut parts = line.split_ascii_whitespace();
    let engine = parts.next().unwrap_or("").to_string();
    let mut name = None;
    for p in parts {
        if p.len() >= 5 && p[..5].eq_ignore_ascii_case("name=") {
            if name.is_some() {
                return Err(
                    "Invalid metadata value, name argument was given multiple times".into(),
                );
            }
            name = Some(p[5..].to_string());
            continue;
        }
        return Err(format!("Invalid metadata value given: {p}"));
    }
    let name = name.ok_or("Library name was not given")?;
    Ok((engine, name, end))
}

impl Engine {
    /// FUNCTION LOAD: compiles and runs `code`'s top level, then links its
    /// functions. Returns the library's name.
    pub fn load_library(&mut self, code: &[u8], replace: bool) -> Result<String, String> {
        let (engine, name, start) = metadata(code)?;
        if !valid_name(&name) {
            return Err(BAD_NAME.into());
        }
        if !engine.eq_ignore_ascii_case("lua") {
            return Err(format!("Engine '{engine}' not found"));
        }
        if self.libs.libs.contains_key(&name) && !replace {
            return Err(format!("Library '{name}' already exists"));
        }
        let f = self
            .lua
            .load(&code[start..])
            .set_name("@user_function")
            .set_environment(self.fn_env.clone())
            .into_function()
            .map_err(|e| format!("Error compiling function: {}", super::lua_message(&e)))?;
        let reg = self.lua.create_table().map_err(|e| e.to_string())?;
        self.k.raw_set("reg", &reg).map_err(|e| e.to_string())?;
        let _ = self.loading.call::<()>(true);
        let r = self.run_library_top(f);
        let _ = self.loading.call::<()>(false);
        let _ = self.k.raw_set("reg", Value::Nil);
        let _ = self.k.raw_set("err", Value::Nil);
        match r {
            Ok((true, _)) => {}
            Ok((false, Value::Table(t))) => {
                let msg: String = t.raw_get("err").unwrap_or_default();
                return Err(format!("Error registering functions: {msg}"));
            }
            Ok((false, _)) => return Err("Error registering functions".into()),
            Err(e) => {
                return Err(format!(
                    "Error registering functions: {}",
                    super::lua_message(&e)
                ));
            }
        }
        let mut functions = IndexMap::new();
        for pair in reg.pairs::<String, Table>() {
            let (fname, t) = pair.map_err(|e| e.to_string())?;
            functions.insert(
                fname,
                Func {
                    desc: t.raw_get("desc").ok(),
                    flags: t.raw_get::<u8>("flags").unwrap_or(0),
                    f: t.raw_get("f").map_err(|e| e.to_string())?,
                    undeclared: false,
                },
            );
        }
        if functions.is_empty() {
            return Err("No functions registered".into());
        }
        for fname in functions.keys() {
            if let Some(owner) = self.libs.funcs.get(fname)
                && *owner != name
            {
                return Err(format!("Function {fname} already exists"));
            }
        }
        self.unlink(&name);
        for fname in functions.keys() {
            self.libs.funcs.insert(fname.clone(), name.clone());
        }
        self.libs.libs.insert(
            name.clone(),
            Library {
                code: code.to_vec(),
                functions,
            },
        );
        Ok(name)
    }

    fn unlink(&mut self, name: &str) -> Option<Library> {
        let lib = self.libs.libs.shift_remove(name)?;
        for f in lib.functions.keys() {
            self.libs.funcs.remove(f);
        }
        Some(lib)
    }

    fn flush_libraries(&mut self) {
        self.libs = Libraries::default();
    }

    /// The libraries' source, for RDB files and FUNCTION DUMP.
    pub fn library_codes(&self) -> Vec<Vec<u8>> {
        self.libs.libs.values().map(|l| l.code.clone()).collect()
    }
}

/// Keeps the copy of the libraries' code that snapshots read (they must
/// not wait for the interpreter while a script runs).
fn publish(ctx: &Ctx<'_, '_>, eng: &mut Engine) {
    ctx.srv.scripts.publish_libraries(eng);
}

pub fn fcall(ctx: &mut Ctx<'_, '_>, a: &[&[u8]], ro: bool) -> CmdResult {
    let srv = ctx.srv;
    let mut eng = srv.scripts.engine()?;
    let fname = String::from_utf8_lossy(a[1]).into_owned();
    let Some(lib) = eng.libs.funcs.get(&fname).cloned() else {
        return Err(err("ERR Function not found"));
    };
    if crate::util::parse_i64(a[2]).is_none() {
        return Err(err("ERR Bad number of keys provided"));
    }
    let nk = numkeys(a)?;
    let func = &eng.libs.libs[&lib].functions[&fname];
    if func.undeclared && !ctx.db.all_locked() {
        return Err(NEEDS_ALL_SLOTS);
    }
    let (f, flags) = (func.f.clone(), func.flags);
    check_flags(ctx, flags, ro)?;
    let spec = RunSpec {
        name: &fname,
        eval: false,
        flags,
        read_only: ro || flags & sflag::NO_WRITES != 0,
        keys: &a[3..3 + nk],
        args: &a[3 + nk..],
    };
    match eng.run(ctx, &f, &spec) {
        Ok(()) => Ok(()),
        Err(RunError::NeedsAllSlots) => {
            if let Some(func) = eng
                .libs
                .libs
                .get_mut(&lib)
                .and_then(|l| l.functions.get_mut(&fname))
            {
                func.undeclared = true;
            }
            Err(NEEDS_ALL_SLOTS)
        }
        Err(RunError::Failed(e)) => Err(e),
    }
}

const SUBS: &[&str] = &[
    "delete", "dump", "flush", "help", "kill", "list", "load", "restore", "stats",
];

/// FUNCTION LOAD/DELETE/FLUSH/RESTORE change the dataset (replicated, and
/// refused on read-only replicas).
fn writes(ctx: &mut Ctx<'_, '_>) -> CmdResult {
    let srv = ctx.srv;
    if srv.follow.is_replica() && srv.repl_policy.read_only.load(Relaxed) && !ctx.conn.from_master {
        return Err(err("READONLY You can't write against a read only replica."));
    }
    ctx.dirty += 1;
    Ok(())
}

pub fn function_cmd(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let sub = a[1];
    let n = a.len();
    if is(sub, "help") && n == 2 {
        ctx.help_lines(&[
            "FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "LOAD [REPLACE] <FUNCTION CODE>",
            "    Create a new library with the given library name and code.",
            "DELETE <LIBRARY NAME>",
            "    Delete the given library.",
            "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
            "    Return general information on all the libraries:",
            "    * Library name",
            "    * The engine used to run the Library",
            "    * Library description",
            "    * Functions list",
            "    * Library code (if WITHCODE is given)",
            "    It also possible to get only function that matches a pattern using LIBRARYNAME argument.",
            "STATS",
            "    Return information about the current function running:",
            "    * Function name",
            "    * Command used to run the function",
            "    * Duration in MS that the function is running",
            "    If no function is running, return nil",
            "    In addition, returns a list of available engines.",
            "KILL",
            "    Kill the current running function.",
            "FLUSH [ASYNC|SYNC]",
            "    Delete all the libraries.",
            "    When called without the optional mode argument, the behavior is determined by the",
            "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
            "    * ASYNC: Asynchronously flush the libraries.",
            "    * SYNC: Synchronously flush the libraries.",
            "DUMP",
            "    Return a serialized payload representing the current libraries, can be restored using FUNCTION RESTORE command",
            "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
            "    Restore the libraries represented by the given payload, it is possible to give a restore policy to",
            "    control how to handle existing libraries (default APPEND):",
            "    * FLUSH: delete all existing libraries.",
            "    * APPEND: appends the restored libraries to the existing libraries. On collision, abort.",
            "    * REPLACE: appends the restored libraries to the existing libraries, On collision, replace the old",
            "      libraries with the new libraries (notice that even on this option there is a chance of failure",
            "      in case of functions name collision with another library).",
            "HELP",
            "    Prints this help.",
        ]);
        return Ok(());
    }
    if is(sub, "load") && n >= 3 {
        let mut replace = false;
        for o in &a[2..n - 1] {
            if is(o, "replace") {
                replace = true;
            } else {
                return Err(err(format!(
                    "ERR Unknown option given: {}",
                    String::from_utf8_lossy(o)
                )));
            }
        }
        let _w = ctx.srv.scripts.lib_write.lock();
        let mut eng = ctx.srv.scripts.engine()?;
        let name = eng
            .load_library(a[n - 1], replace)
            .map_err(|e| err(format!("ERR {e}")))?;
        publish(ctx, &mut eng);
        drop(eng);
        writes(ctx)?;
        ctx.bulk(name.as_bytes());
        return Ok(());
    }
    if is(sub, "delete") && n == 3 {
        let _w = ctx.srv.scripts.lib_write.lock();
        let mut eng = ctx.srv.scripts.engine()?;
        let name = String::from_utf8_lossy(a[2]).into_owned();
        if eng.unlink(&name).is_none() {
            return Err(err("ERR Library not found"));
        }
        publish(ctx, &mut eng);
        drop(eng);
        writes(ctx)?;
        ctx.ok();
        return Ok(());
    }
    if is(sub, "flush") && n <= 3 {
        if n == 3 && !is(a[2], "sync") && !is(a[2], "async") {
            return Err(err("ERR FUNCTION FLUSH only supports SYNC|ASYNC option"));
        }
        let _w = ctx.srv.scripts.lib_write.lock();
        let mut eng = ctx.srv.scripts.engine()?;
        eng.flush_libraries();
        publish(ctx, &mut eng);
        drop(eng);
        writes(ctx)?;
        ctx.ok();
        return Ok(());
    }
    if is(sub, "list") && n >= 2 {
        return list(ctx, a);
    }
    if is(sub, "dump") && n == 2 {
        let codes = ctx.srv.scripts.engine()?.library_codes();
        ctx.bulk(&dump_payload(&codes));
        return Ok(());
    }
    if is(sub, "restore") && n >= 3 {
        return restore(ctx, a);
    }
    if is(sub, "stats") && n == 2 {
        return stats(ctx);
    }
    if is(sub, "kill") && n == 2 {
        ctx.srv.scripts.kill(false)?;
        ctx.ok();
        return Ok(());
    }
    Err(sub_error("function", sub, SUBS))
}

/// FUNCTION DUMP's payload: each library as a type-245 record, then the
/// RDB version and CRC64, as DUMP payloads end.
pub fn dump_payload(codes: &[Vec<u8>]) -> Vec<u8> {
    let mut enc = kvfleet_rdb::Encoder::new();
    for c in codes {
        enc.kind(kvfleet_rdb::op::FUNCTION2);
        enc.string(c);
    }
    kvfleet_rdb::dump::finish(enc)
}

/// The library sources in a FUNCTION DUMP payload.
fn parse_payload(p: &[u8]) -> Result<Vec<Vec<u8>>, CmdError> {
    if !kvfleet_rdb::dump::verify(p) {
        return Err(err("ERR DUMP payload version or checksum are wrong"));
    }
    // read the records as an RDB body: header, records, EOF, no checksum
    let mut rdb = b"REDIS0010".to_vec();
    rdb.extend_from_slice(&p[..p.len() - 10]);
    rdb.push(0xff);
    rdb.extend_from_slice(&[0; 8]);
    let mut l =
        kvfleet_rdb::read::Loader::new(&rdb[..]).map_err(|_| err("ERR can not read data type"))?;
    let mut codes = Vec::new();
    loop {
        match l.next_item() {
            Ok(Some(kvfleet_rdb::read::Item::Function(c))) => codes.push(c),
            Ok(Some(kvfleet_rdb::read::Item::Eof)) | Ok(None) => break,
            Ok(Some(_)) => return Err(err("ERR given type is not a function")),
            Err(_) => return Err(err("ERR failed loading the given functions payload")),
        }
    }
    Ok(codes)
}

fn restore(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    if a.len() > 4 {
        return Err(err(
            "ERR unknown subcommand or wrong number of arguments for 'restore'. Try FUNCTION HELP.",
        ));
    }
    #[derive(PartialEq)]
    enum Policy {
        Append,
        Replace,
        Flush,
    }
    let policy = match a.get(3) {
        None => Policy::Append,
        Some(p) if is(p, "append") => Policy::Append,
        Some(p) if is(p, "replace") => Policy::Replace,
        Some(p) if is(p, "flush") => Policy::Flush,
        Some(_) => {
            return Err(err(
                "ERR Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE.",
            ));
        }
    };
    let codes = parse_payload(a[2])?;
    let _w = ctx.srv.scripts.lib_write.lock();
    let mut eng = ctx.srv.scripts.engine()?;
    // load the payload's libraries on their own, then join them to the
    // current set (which stays as it was on any error)
    let before = std::mem::take(&mut eng.libs);
    let mut result = Ok(());
    for c in &codes {
        if let Err(e) = eng.load_library(c, false) {
            result = Err(e);
            break;
        }
    }
    let restored = std::mem::replace(&mut eng.libs, before);
    if let Err(e) = result {
        return Err(err(format!("ERR {e}")));
    }
    if policy == Policy::Flush {
        eng.libs = restored;
    } else {
        for (name, lib) in &restored.libs {
            if eng.libs.libs.contains_key(name) && policy == Policy::Append {
                return Err(err(format!("ERR Library {name} already exists")));
            }
            for f in lib.functions.keys() {
                if let Some(owner) = eng.libs.funcs.get(f)
                    && owner != name
                    && !restored.libs.contains_key(owner)
                {
                    return Err(err(format!("ERR Function {f} already exists")));
                }
            }
        }
        for (name, lib) in restored.libs {
            eng.unlink(&name);
            for f in lib.functions.keys() {
                eng.libs.funcs.insert(f.clone(), name.clone());
            }
            eng.libs.libs.insert(name, lib);
        }
    }
    publish(ctx, &mut eng);
    drop(eng);
    writes(ctx)?;
    ctx.ok();
    Ok(())
}

fn list(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let (mut with_code, mut pattern): (bool, Option<&[u8]>) = (false, None);
    let mut i = 2;
    while i < a.len() {
        if !with_code && is(a[i], "withcode") {
            with_code = true;
        } else if pattern.is_none() && is(a[i], "libraryname") {
            if i + 1 >= a.len() {
                return Err(err("ERR library name argument was not given"));
            }
            pattern = Some(a[i + 1]);
            i += 1;
        } else {
            return Err(err(format!(
                "ERR Unknown argument {}",
                String::from_utf8_lossy(a[i])
            )));
        }
        i += 1;
    }
    let eng = ctx.srv.scripts.engine()?;
    let libs: Vec<(&String, &Library)> = eng
        .libs
        .libs
        .iter()
        .filter(|(name, _)| {
            pattern.is_none_or(|p| crate::util::glob_match(p, name.as_bytes(), true))
        })
        .collect();
    ctx.array(libs.len());
    for (name, lib) in libs {
        ctx.map(if with_code { 4 } else { 3 });
        ctx.bulk(b"library_name");
        ctx.bulk(name.as_bytes());
        ctx.bulk(b"engine");
        ctx.bulk(b"LUA");
        ctx.bulk(b"functions");
        ctx.array(lib.functions.len());
        for (fname, f) in &lib.functions {
            ctx.map(3);
            ctx.bulk(b"name");
            ctx.bulk(fname.as_bytes());
            ctx.bulk(b"description");
            ctx.opt_bulk(f.desc.as_deref().map(str::as_bytes));
            ctx.bulk(b"flags");
            let names: Vec<&str> = sflag::NAMES
                .iter()
                .filter(|(b, _)| f.flags & b != 0)
                .map(|(_, n)| *n)
                .collect();
            ctx.set_hdr(names.len());
            names.iter().for_each(|n| ctx.simple(n.as_bytes()));
        }
        if with_code {
            ctx.bulk(b"library_code");
            ctx.bulk(&lib.code);
        }
    }
    Ok(())
}

fn stats(ctx: &mut Ctx<'_, '_>) -> CmdResult {
    let srv = ctx.srv;
    if srv.scripts.running_eval() {
        return Err(err(
            "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
        ));
    }
    let running = srv.scripts.running_info();
    let (libs, funcs) = {
        let codes = srv.scripts.lib_codes.lock();
        let funcs = srv.scripts.function_count.load(Relaxed);
        (codes.len(), funcs)
    };
    ctx.map(2);
    ctx.bulk(b"running_script");
    match running {
        Some((name, cmd, ms)) => {
            ctx.map(3);
            ctx.bulk(b"name");
            ctx.bulk(name.as_bytes());
            ctx.bulk(b"command");
            ctx.array(cmd.len());
            cmd.iter().for_each(|c| ctx.bulk(c));
            ctx.bulk(b"duration_ms");
            ctx.int(ms as i64);
        }
        None => ctx.null(),
    }
    ctx.bulk(b"engines");
    ctx.map(1);
    ctx.bulk(b"LUA");
    ctx.map(2);
    ctx.bulk(b"libraries_count");
    ctx.int(libs as i64);
    ctx.bulk(b"functions_count");
    ctx.int(funcs as i64);
    Ok(())
}
