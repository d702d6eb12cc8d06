//! The `cmsgpack` library Redis ships (lua-cmsgpack 0.4): MessagePack with
//! integral numbers as the smallest int, other numbers as float32 when
//! exact, tables with keys 1..n as arrays, nesting past 16 as nil.

use mlua::{Lua, MultiValue, Table, Value};

const MAX_NESTING: usize = 16;

pub fn open(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "pack",
        lua.create_function(|lua, a: MultiValue| {
            if a.is_empty() {
                return Err(mlua::Error::runtime(
                    "bad argument #0 to 'pack' (MessagePack pack needs input.)",
                ));
            }
            let mut out = Vec::new();
            for v in a.iter() {
                encode(v, 0, &mut out)?;
            }
            lua.create_string(out)
        })?,
    )?;
    t.set(
        "unpack",
        lua.create_function(|lua, s: mlua::LuaString| unpack(lua, &s.as_bytes(), 0, 0))?,
    )?;
    t.set(
        "unpack_one",
        lua.create_function(|lua, (s, off): (mlua::LuaString, Option<i64>)| {
            unpack(lua, &s.as_bytes(), 1, off.unwrap_or(0))
        })?,
    )?;
    t.set(
        "unpack_limit",
        lua.create_function(
            |lua, (s, limit, off): (mlua::LuaString, i64, Option<i64>)| {
                unpack(lua, &s.as_bytes(), limit, off.unwrap_or(0))
            },
        )?,
    )?;
    t.set("_NAME", "cmsgpack")?;
    t.set("_VERSION", "lua-cmsgpack 0.4.0")?;
    t.set("_COPYRIGHT", "Copyright (C) 2012, Salvatore Sanfilippo")?;
    t.set("_DESCRIPTION", "MessagePack C implementation for Lua")?;
    Ok(t)
}

fn bytes_hdr(len: usize, out: &mut Vec<u8>) {
    if len < 32 {
        out.push(0xa0 | len as u8);
    } else if len <= 0xff {
        out.extend_from_slice(&[0xd9, len as u8]);
    } else if len <= 0xffff {
        out.push(0xda);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

fn int(n: i64, out: &mut Vec<u8>) {
    if n >= 0 {
        if n <= 127 {
            out.push(n as u8);
        } else if n <= 0xff {
            out.extend_from_slice(&[0xcc, n as u8]);
        } else if n <= 0xffff {
            out.push(0xcd);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        } else if n <= 0xffff_ffff {
            out.push(0xce);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    } else if n >= -32 {
        out.push(n as i8 as u8);
    } else if n >= -128 {
        out.extend_from_slice(&[0xd0, n as i8 as u8]);
    } else if n >= -32768 {
        out.push(0xd1);
        out.extend_from_slice(&(n as i16).to_be_bytes());
    } else if n >= -2_147_483_648 {
        out.push(0xd2);
        out.extend_from_slice(&(n as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn number(n: f64, out: &mut Vec<u8>) {
    if n.is_finite() && (n as i64) as f64 == n {
        return int(n as i64, out);
    }
    let f = n as f32;
    if f as f64 == n || n.is_nan() {
        out.push(0xca);
        out.extend_from_slice(&f.to_be_bytes());
    } else {
        out.push(0xcb);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn header(out: &mut Vec<u8>, n: usize, fix: u8, b16: u8, b32: u8) {
    if n < 16 {
        out.push(fix | n as u8);
    } else if n <= 0xffff {
        out.push(b16);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(b32);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

fn encode(v: &Value, level: usize, out: &mut Vec<u8>) -> mlua::Result<()> {
    match v {
        Value::String(s) => {
            let b = s.as_bytes();
            bytes_hdr(b.len(), out);
            out.extend_from_slice(&b);
        }
        Value::Boolean(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Integer(i) => int(*i, out),
        Value::Number(n) => number(*n, out),
        Value::Table(t) if level < MAX_NESTING => {
            let (mut count, mut max, mut array) = (0usize, 0usize, true);
            for pair in t.pairs::<Value, Value>() {
                let (k, _) = pair?;
                count += 1;
                match k {
                    Value::Integer(i) if i > 0 => max = max.max(i as usize),
                    _ => array = false,
                }
            }
            if array && max == count {
                header(out, count, 0x90, 0xdc, 0xdd);
                for i in 1..=count {
                    encode(&t.raw_get::<Value>(i)?, level + 1, out)?;
                }
            } else {
                header(out, count, 0x80, 0xde, 0xdf);
                for pair in t.pairs::<Value, Value>() {
                    let (k, v) = pair?;
                    encode(&k, level + 1, out)?;
                    encode(&v, level + 1, out)?;
                }
            }
        }
        _ => out.push(0xc0),
    }
    Ok(())
}

enum Bad {
    Eof,
    Format,
    Deep,
}

struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
    /// Arrays and maps open around the current value.
    depth: usize,
}

/// Deeper nesting than Lua's C stack allows Redis is refused, not recursed into.
const MAX_DECODE_DEPTH: usize = 1000;

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], Bad> {
        if self.s.len() - self.pos < n {
            return Err(Bad::Eof);
        }
        let b = &self.s[self.pos..self.pos + n];
        self.pos += n;
        Ok(b)
    }
    fn be(&mut self, n: usize) -> Result<u64, Bad> {
        Ok(self.take(n)?.iter().fold(0u64, |a, &b| (a << 8) | b as u64))
    }
}

fn decode(lua: &Lua, c: &mut Cursor<'_>) -> Result<mlua::Result<Value>, Bad> {
    let tag = c.take(1)?[0];
    let v = match tag {
        0xcc => Value::Integer(c.be(1)? as i64),
        0xcd => Value::Integer(c.be(2)? as i64),
        0xce => Value::Integer(c.be(4)? as i64),
        0xcf => Value::Number(c.be(8)? as f64),
        0xd0 => Value::Integer(c.be(1)? as u8 as i8 as i64),
        0xd1 => Value::Integer(c.be(2)? as u16 as i16 as i64),
        0xd2 => Value::Integer(c.be(4)? as u32 as i32 as i64),
        0xd3 => Value::Number(c.be(8)? as i64 as f64),
        0xc0 => Value::Nil,
        0xc3 => Value::Boolean(true),
        0xc2 => Value::Boolean(false),
        0xca => Value::Number(f32::from_bits(c.be(4)? as u32) as f64),
        0xcb => Value::Number(f64::from_bits(c.be(8)?)),
        0xd9..=0xdb => {
            let n = c.be(1 << (tag - 0xd9))? as usize;
            return c.take(n).map(|b| lua.create_string(b).map(Value::String));
        }
        0xdc | 0xdd => {
            let n = c.be(if tag == 0xdc { 2 } else { 4 })? as usize;
            return array(lua, c, n);
        }
        0xde | 0xdf => {
            let n = c.be(if tag == 0xde { 2 } else { 4 })? as usize;
            return map(lua, c, n);
        }
        t if t & 0x80 == 0 => Value::Integer(t as i64),
        t if t & 0xe0 == 0xe0 => Value::Integer(t as i8 as i64),
        t if t & 0xe0 == 0xa0 => {
            let n = (t & 0x1f) as usize;
            return c.take(n).map(|b| lua.create_string(b).map(Value::String));
        }
        t if t & 0xf0 == 0x90 => return array(lua, c, (t & 0xf) as usize),
        t if t & 0xf0 == 0x80 => return map(lua, c, (t & 0xf) as usize),
        _ => return Err(Bad::Format),
    };
    Ok(Ok(v))
}

fn array(lua: &Lua, c: &mut Cursor<'_>, n: usize) -> Result<mlua::Result<Value>, Bad> {
    c.depth += 1;
    if c.depth > MAX_DECODE_DEPTH {
        return Err(Bad::Deep);
    }
    let r = array_items(lua, c, n);
    c.depth -= 1;
    r
}

fn array_items(lua: &Lua, c: &mut Cursor<'_>, n: usize) -> Result<mlua::Result<Value>, Bad> {
    let t = match lua.create_table() {
        Ok(t) => t,
        Err(e) => return Ok(Err(e)),
    };
    for i in 1..=n {
        let v = match decode(lua, c)? {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = t.raw_set(i, v) {
            return Ok(Err(e));
        }
    }
    Ok(Ok(Value::Table(t)))
}

fn map(lua: &Lua, c: &mut Cursor<'_>, n: usize) -> Result<mlua::Result<Value>, Bad> {
    c.depth += 1;
    if c.depth > MAX_DECODE_DEPTH {
        return Err(Bad::Deep);
    }
    let r = map_items(lua, c, n);
    c.depth -= 1;
    r
}

fn map_items(lua: &Lua, c: &mut Cursor<'_>, n: usize) -> Result<mlua::Result<Value>, Bad> {
    let t = match lua.create_table() {
        Ok(t) => t,
        Err(e) => return Ok(Err(e)),
    };
    for _ in 0..n {
        let k = match decode(lua, c)? {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        let v = match decode(lua, c)? {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        if k.is_nil() {
            continue;
        }
        if let Err(e) = t.raw_set(k, v) {
            return Ok(Err(e));
        }
    }
    Ok(Ok(Value::Table(t)))
}

fn unpack(lua: &Lua, s: &[u8], limit: i64, offset: i64) -> mlua::Result<MultiValue> {
    let all = limit == 0 && offset == 0;
    if offset < 0 || limit < 0 {
        return Err(mlua::Error::runtime(format!(
            "Invalid request to unpack with offset of {offset} and limit of {}.",
            s.len()
        )));
    }
    if offset as usize > s.len() {
        return Err(mlua::Error::runtime(format!(
            "Start offset {offset} greater than input length {}.",
            s.len()
        )));
    }
    let limit = if all { i64::MAX } else { limit };
    let mut c = Cursor {
        s,
        pos: offset as usize,
        depth: 0,
    };
    let mut out = Vec::new();
    let mut n = 0;
    while c.pos < s.len() && n < limit {
        match decode(lua, &mut c) {
            Ok(v) => out.push(v?),
            Err(Bad::Eof) => return Err(mlua::Error::runtime("Missing bytes in input.")),
            Err(Bad::Format) => return Err(mlua::Error::runtime("Bad data format in input.")),
            Err(Bad::Deep) => {
                return Err(mlua::Error::runtime(
                    "stack overflow (too many nested arrays or maps)",
                ));
            }
        }
        n += 1;
    }
    if !all {
        let next = if c.pos == s.len() { -1 } else { c.pos as i64 };
        out.insert(0, Value::Integer(next));
    }
    Ok(MultiValue::from_iter(out))
}
