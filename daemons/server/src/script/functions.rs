//! Redis 7 function libraries.

use crate::cmd::{CmdResult, Ctx, err};

/// `redis.register_function` (only while FUNCTION LOAD runs a library).
pub fn register_api(lua: &mlua::Lua, k: &mlua::Table, api: &mlua::Table) -> mlua::Result<()> {
    let _ = (lua, k, api);
    Ok(())
}

#[derive(Default)]
pub struct Libraries {}

pub fn function_cmd(_ctx: &mut Ctx<'_, '_>, _a: &[&[u8]]) -> CmdResult {
    Err(err("ERR not yet"))
}

pub fn fcall(_ctx: &mut Ctx<'_, '_>, _a: &[&[u8]], _ro: bool) -> CmdResult {
    Err(err("ERR not yet"))
}
