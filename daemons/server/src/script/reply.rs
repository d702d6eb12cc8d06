//! Redis's conversions between replies and Lua values, both ways.
//!
//! A command's reply becomes a Lua value (`redis.call`): integers numbers,
//! bulks strings, nulls `false` (RESP2) or `nil` (RESP3), statuses `{ok=}`,
//! errors `{err=}`, RESP3 maps/sets/doubles tables. A script's return value
//! becomes the client's reply: strings bulks, numbers integers (truncated),
//! `{ok=}`/`{err=}` statuses and errors, arrays up to the first nil.

use bytes::BytesMut;
use mlua::{Lua, Table, Value};

use kvfleet_resp::encode;

/// Deeper tables than this reply with an error instead of recursing further.
const MAX_DEPTH: usize = 1000;

/// Parses the reply in `buf`: (whether it is an error, the Lua value).
pub fn resp_to_lua(lua: &Lua, buf: &[u8]) -> mlua::Result<(bool, Value)> {
    let failed = buf.first() == Some(&b'-');
    let mut pos = 0;
    let v = parse(lua, buf, &mut pos)?;
    Ok((failed, v))
}

fn line<'b>(buf: &'b [u8], pos: &mut usize) -> &'b [u8] {
    let start = *pos;
    let end = buf[start..]
        .windows(2)
        .position(|w| w == b"\r\n")
        .map_or(buf.len(), |p| start + p);
    *pos = (end + 2).min(buf.len());
    &buf[start..end]
}

fn num(b: &[u8]) -> i64 {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn single(lua: &Lua, field: &str, v: impl mlua::IntoLua) -> mlua::Result<Value> {
    let t = lua.create_table()?;
    t.raw_set(field, v)?;
    Ok(Value::Table(t))
}

fn parse(lua: &Lua, buf: &[u8], pos: &mut usize) -> mlua::Result<Value> {
    let Some(&kind) = buf.get(*pos) else {
        return Ok(Value::Nil);
    };
    *pos += 1;
    let l = line(buf, pos);
    Ok(match kind {
        b'+' => single(lua, "ok", lua.create_string(l)?)?,
        b'-' => single(lua, "err", lua.create_string(l)?)?,
        b':' => Value::Integer(num(l)),
        b'$' | b'=' => {
            let n = num(l);
            if n < 0 {
                return Ok(Value::Boolean(false));
            }
            let n = n as usize;
            let s = &buf[*pos..(*pos + n).min(buf.len())];
            *pos = (*pos + n + 2).min(buf.len());
            if kind == b'=' {
                let t = lua.create_table()?;
                t.raw_set("format", lua.create_string(&s[..3.min(s.len())])?)?;
                t.raw_set("string", lua.create_string(s.get(4..).unwrap_or_default())?)?;
                single(lua, "verbatim_string", t)?
            } else {
                Value::String(lua.create_string(s)?)
            }
        }
        b'*' | b'~' | b'>' => {
            let n = num(l);
            if n < 0 {
                return Ok(Value::Boolean(false));
            }
            let t = lua.create_table_with_capacity(n.min(1 << 16) as usize, 0)?;
            for i in 0..n as usize {
                let v = parse(lua, buf, pos)?;
                if kind == b'~' {
                    t.raw_set(v, true)?;
                } else {
                    t.raw_set(i + 1, v)?;
                }
            }
            if kind == b'~' {
                single(lua, "set", t)?
            } else {
                Value::Table(t)
            }
        }
        b'%' => {
            let t = lua.create_table()?;
            for _ in 0..num(l) {
                let k = parse(lua, buf, pos)?;
                let v = parse(lua, buf, pos)?;
                t.raw_set(k, v)?;
            }
            single(lua, "map", t)?
        }
        b'_' => Value::Nil,
        b'#' => Value::Boolean(l == b"t"),
        b',' => {
            let d = std::str::from_utf8(l)
                .ok()
                .and_then(|s| crate::util::parse_f64(s.as_bytes()))
                .unwrap_or(0.0);
            single(lua, "double", d)?
        }
        b'(' => single(lua, "big_number", lua.create_string(l)?)?,
        _ => Value::Nil,
    })
}

/// C's `(long long)` of a double as x86 does it: out of range and NaN give
/// the minimum (Redis's `return 1/0` replies -9223372036854775808).
pub fn c_i64(d: f64) -> i64 {
    if d.is_nan() || !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&d) {
        i64::MIN
    } else {
        d as i64
    }
}

fn status_text(s: &mlua::LuaString) -> Vec<u8> {
    s.as_bytes()
        .iter()
        .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b })
        .collect()
}

/// Writes the script's return value as the client's reply. `client_resp3`
/// picks the encoding; `script_resp3` (`redis.setresp(3)`) decides what a
/// boolean means, as in Redis.
pub fn lua_to_resp(
    out: &mut BytesMut,
    v: &Value,
    client_resp3: bool,
    script_resp3: bool,
    depth: usize,
) {
    if depth > MAX_DEPTH {
        encode::error(out, b"ERR reached lua stack limit");
        return;
    }
    match v {
        Value::String(s) => encode::bulk(out, &s.as_bytes()),
        Value::Boolean(b) => {
            if script_resp3 {
                encode::boolean(out, *b, client_resp3);
            } else if *b {
                encode::int(out, 1);
            } else {
                encode::null(out, client_resp3);
            }
        }
        Value::Integer(i) => encode::int(out, *i),
        Value::Number(n) => encode::int(out, c_i64(*n)),
        Value::Table(t) => table_to_resp(out, t, client_resp3, script_resp3, depth),
        _ => encode::null(out, client_resp3),
    }
}

fn table_to_resp(out: &mut BytesMut, t: &Table, c3: bool, s3: bool, depth: usize) {
    if let Ok(Value::String(e)) = t.raw_get::<Value>("err") {
        encode::error(out, &status_text(&e));
        return;
    }
    if let Ok(Value::String(s)) = t.raw_get::<Value>("ok") {
        encode::simple(out, &status_text(&s));
        return;
    }
    match t.raw_get::<Value>("double") {
        Ok(Value::Number(d)) => return encode::double_str(out, &crate::util::g17(d), c3),
        Ok(Value::Integer(i)) => return encode::double_str(out, &crate::util::g17(i as f64), c3),
        _ => {}
    }
    if let Ok(Value::String(s)) = t.raw_get::<Value>("big_number") {
        let s = status_text(&s);
        if c3 {
            out.extend_from_slice(b"(");
            out.extend_from_slice(&s);
            out.extend_from_slice(b"\r\n");
        } else {
            encode::bulk(out, &s);
        }
        return;
    }
    if let Ok(Value::Table(vt)) = t.raw_get::<Value>("verbatim_string")
        && let (Ok(Value::String(f)), Ok(Value::String(s))) =
            (vt.raw_get::<Value>("format"), vt.raw_get::<Value>("string"))
    {
        let s = s.as_bytes();
        if c3 {
            let f = f.as_bytes();
            let f = &f[..3.min(f.len())];
            out.extend_from_slice(format!("={}\r\n", s.len() + 4).as_bytes());
            out.extend_from_slice(f);
            out.extend_from_slice(b":");
            out.extend_from_slice(&s);
            out.extend_from_slice(b"\r\n");
        } else {
            encode::bulk(out, &s);
        }
        return;
    }
    if let Ok(Value::Table(m)) = t.raw_get::<Value>("map") {
        let mut body = BytesMut::new();
        let mut n = 0;
        for (k, v) in m.pairs::<Value, Value>().flatten() {
            lua_to_resp(&mut body, &k, c3, s3, depth + 1);
            lua_to_resp(&mut body, &v, c3, s3, depth + 1);
            n += 1;
        }
        encode::map(out, n, c3);
        out.extend_from_slice(&body);
        return;
    }
    if let Ok(Value::Table(m)) = t.raw_get::<Value>("set") {
        let mut body = BytesMut::new();
        let mut n = 0;
        for (k, _) in m.pairs::<Value, Value>().flatten() {
            lua_to_resp(&mut body, &k, c3, s3, depth + 1);
            n += 1;
        }
        encode::set(out, n, c3);
        out.extend_from_slice(&body);
        return;
    }
    let mut items = Vec::new();
    let mut i = 1;
    while let Ok(v) = t.raw_get::<Value>(i) {
        if v.is_nil() {
            break;
        }
        items.push(v);
        i += 1;
    }
    encode::array(out, items.len());
    for v in &items {
        lua_to_resp(out, v, c3, s3, depth + 1);
    }
}
