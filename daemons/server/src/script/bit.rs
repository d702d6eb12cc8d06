//! The `bit` library Redis ships (LuaBitOp 1.0): 32-bit operations on Lua numbers.

use mlua::{Lua, Table, Variadic};

/// LuaBitOp's normalisation: round to the nearest integer, keep the low 32 bits.
fn tobit(x: f64) -> i32 {
    if !x.is_finite() {
        return 0;
    }
    x.round_ties_even().rem_euclid(4_294_967_296.0) as u64 as u32 as i32
}

fn hex(x: f64, n: Option<f64>) -> String {
    let n = n.map(tobit).unwrap_or(8);
    let (upper, n) = if n < 0 { (true, -n) } else { (false, n) };
    let n = n.clamp(1, 8) as usize;
    let v = tobit(x) as u32;
    let s = if upper {
        format!("{v:08X}")
    } else {
        format!("{v:08x}")
    };
    s[8 - n..].to_string()
}

pub fn open(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("tobit", lua.create_function(|_, x: f64| Ok(tobit(x)))?)?;
    t.set(
        "tohex",
        lua.create_function(|_, (x, n): (f64, Option<f64>)| Ok(hex(x, n)))?,
    )?;
    t.set("bnot", lua.create_function(|_, x: f64| Ok(!tobit(x)))?)?;
    let fold = |lua: &Lua, f: fn(i32, i32) -> i32| {
        lua.create_function(move |_, (x, rest): (f64, Variadic<f64>)| {
            Ok(rest.iter().fold(tobit(x), |a, &b| f(a, tobit(b))))
        })
    };
    t.set("band", fold(lua, |a, b| a & b)?)?;
    t.set("bor", fold(lua, |a, b| a | b)?)?;
    t.set("bxor", fold(lua, |a, b| a ^ b)?)?;
    let shift = |lua: &Lua, f: fn(i32, u32) -> i32| {
        lua.create_function(move |_, (x, n): (f64, f64)| Ok(f(tobit(x), tobit(n) as u32 & 31)))
    };
    t.set("lshift", shift(lua, |a, n| ((a as u32) << n) as i32)?)?;
    t.set("rshift", shift(lua, |a, n| ((a as u32) >> n) as i32)?)?;
    t.set("arshift", shift(lua, |a, n| a >> n)?)?;
    t.set("rol", shift(lua, |a, n| (a as u32).rotate_left(n) as i32)?)?;
    t.set("ror", shift(lua, |a, n| (a as u32).rotate_right(n) as i32)?)?;
    t.set(
        "bswap",
        lua.create_function(|_, x: f64| Ok((tobit(x) as u32).swap_bytes() as i32))?,
    )?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_luabitop() {
        assert_eq!(tobit(4_294_967_297.0), 1);
        assert_eq!(tobit(2_147_483_648.0), i32::MIN);
        assert_eq!(tobit(-1.0), -1);
        assert_eq!(tobit(2.5), 2);
        assert_eq!(tobit(3.5), 4);
        assert_eq!(hex(65535.0, None), "0000ffff");
        assert_eq!(hex(-1.0, Some(-4.0)), "FFFF");
    }
}
