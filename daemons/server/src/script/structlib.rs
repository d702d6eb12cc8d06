//! The `struct` library Redis ships (Roberto Ierusalimschy's struct.c):
//! `pack`, `unpack` and `size` over a format of `<`/`>`/`!n` controls and
//! `b B h H l L T i[n] I[n] x f d c[n] s` items, on a little-endian
//! 64-bit layout (x86-64, where Redis runs).

use mlua::{Lua, MultiValue, Table, Value};

const MAX_INT_SIZE: usize = 32;
const MAX_ALIGN: usize = 8;

struct Header {
    little: bool,
    align: usize,
}

fn fail(msg: String) -> mlua::Error {
    mlua::Error::runtime(msg)
}

fn getnum(fmt: &[u8], i: &mut usize, default: usize) -> mlua::Result<usize> {
    if !fmt.get(*i).is_some_and(u8::is_ascii_digit) {
        return Ok(default);
    }
    let mut a: usize = 0;
    while let Some(d) = fmt.get(*i).filter(|d| d.is_ascii_digit()) {
        a = a
            .checked_mul(10)
            .and_then(|a| a.checked_add((d - b'0') as usize))
            .filter(|&a| a <= i32::MAX as usize)
            .ok_or_else(|| fail("integral size overflow".into()))?;
        *i += 1;
    }
    Ok(a)
}

fn optsize(opt: u8, fmt: &[u8], i: &mut usize) -> mlua::Result<usize> {
    Ok(match opt {
        b'B' | b'b' | b'x' => 1,
        b'H' | b'h' => 2,
        b'L' | b'l' | b'T' | b'd' => 8,
        b'f' => 4,
        b'c' => getnum(fmt, i, 1)?,
        b'i' | b'I' => {
            let sz = getnum(fmt, i, 4)?;
            if sz > MAX_INT_SIZE {
                return Err(fail(format!(
                    "integral size {sz} is larger than limit of {MAX_INT_SIZE}"
                )));
            }
            sz
        }
        _ => 0,
    })
}

fn toalign(len: usize, h: &Header, opt: u8, size: usize) -> usize {
    if size == 0 || opt == b'c' {
        return 0;
    }
    let size = size.min(h.align);
    (size - (len & (size - 1))) & (size - 1)
}

fn control(opt: u8, fmt: &[u8], i: &mut usize, h: &mut Header, f: &str) -> mlua::Result<()> {
    match opt {
        b' ' => {}
        b'>' => h.little = false,
        b'<' => h.little = true,
        b'!' => {
            let a = getnum(fmt, i, MAX_ALIGN)?;
            if !a.is_power_of_two() {
                return Err(fail(format!("alignment {a} is not a power of 2")));
            }
            h.align = a;
        }
        other => {
            return Err(fail(format!(
                "bad argument #1 to '{f}' (invalid format option '{}')",
                other as char
            )));
        }
    }
    Ok(())
}

fn arg_num(lua: &Lua, a: &MultiValue, at: usize) -> mlua::Result<f64> {
    a.get(at)
        .cloned()
        .and_then(|v| lua.coerce_number(v).ok().flatten())
        .ok_or_else(|| {
            fail(format!(
                "bad argument #{} to 'pack' (number expected, got {})",
                at + 1,
                a.get(at).map_or("no value", |v| v.type_name())
            ))
        })
}

fn pack(lua: &Lua, a: MultiValue) -> mlua::Result<mlua::LuaString> {
    let fmt = match a.front().cloned().map(|v| lua.coerce_string(v)) {
        Some(Ok(Some(s))) => s.as_bytes().to_vec(),
        _ => {
            return Err(fail(
                "bad argument #1 to 'pack' (string expected, got no value)".into(),
            ));
        }
    };
    let mut h = Header {
        little: true,
        align: 1,
    };
    let (mut out, mut i, mut arg) = (Vec::new(), 0, 1);
    while i < fmt.len() {
        let opt = fmt[i];
        i += 1;
        let mut size = optsize(opt, &fmt, &mut i)?;
        let pad = toalign(out.len(), &h, opt, size);
        out.resize(out.len() + pad, 0);
        match opt {
            b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                let n = arg_num(lua, &a, arg)?;
                arg += 1;
                let mut v = if n < 0.0 { n as i64 as u64 } else { n as u64 };
                let mut buf = vec![0u8; size];
                for k in 0..size {
                    let at = if h.little { k } else { size - 1 - k };
                    buf[at] = (v & 0xff) as u8;
                    v = v.checked_shr(8).unwrap_or(0);
                }
                out.extend_from_slice(&buf);
            }
            b'x' => out.push(0),
            b'f' => {
                let f = arg_num(lua, &a, arg)? as f32;
                arg += 1;
                out.extend_from_slice(&if h.little {
                    f.to_le_bytes()
                } else {
                    f.to_be_bytes()
                });
            }
            b'd' => {
                let d = arg_num(lua, &a, arg)?;
                arg += 1;
                out.extend_from_slice(&if h.little {
                    d.to_le_bytes()
                } else {
                    d.to_be_bytes()
                });
            }
            b'c' | b's' => {
                let s = match a.get(arg).cloned().map(|v| lua.coerce_string(v)) {
                    Some(Ok(Some(s))) => s.as_bytes().to_vec(),
                    _ => {
                        return Err(fail(format!(
                            "bad argument #{} to 'pack' (string expected, got no value)",
                            arg + 1
                        )));
                    }
                };
                arg += 1;
                if size == 0 {
                    size = s.len();
                }
                if s.len() < size {
                    return Err(fail(format!(
                        "bad argument #{} to 'pack' (string too short)",
                        arg
                    )));
                }
                out.extend_from_slice(&s[..size]);
                if opt == b's' {
                    out.push(0);
                }
            }
            _ => control(opt, &fmt, &mut i, &mut h, "pack")?,
        }
    }
    lua.create_string(out)
}

fn unpack(
    lua: &Lua,
    (fmt, data, pos): (mlua::LuaString, mlua::LuaString, Option<i64>),
) -> mlua::Result<MultiValue> {
    let (fmt, data) = (fmt.as_bytes().to_vec(), data.as_bytes().to_vec());
    let pos = pos.unwrap_or(1);
    if pos <= 0 {
        return Err(fail(
            "bad argument #3 to 'unpack' (offset must be 1 or greater)".into(),
        ));
    }
    let mut pos = pos as usize - 1;
    let mut h = Header {
        little: true,
        align: 1,
    };
    let mut out: Vec<Value> = Vec::new();
    let mut i = 0;
    let short = || fail("bad argument #2 to 'unpack' (data string too short)".into());
    while i < fmt.len() {
        let opt = fmt[i];
        i += 1;
        let mut size = optsize(opt, &fmt, &mut i)?;
        pos += toalign(pos, &h, opt, size);
        if size > data.len() || pos > data.len() - size {
            return Err(short());
        }
        match opt {
            b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                let bytes = &data[pos..pos + size];
                let mut l: u64 = 0;
                for k in 0..size {
                    let b = if h.little {
                        bytes[size - 1 - k]
                    } else {
                        bytes[k]
                    };
                    l = l.checked_shl(8).unwrap_or(0) | b as u64;
                }
                let v = if opt.is_ascii_lowercase() && size > 0 && size <= 8 {
                    let shift = 64 - size * 8;
                    ((l << shift) as i64 >> shift) as f64
                } else {
                    l as f64
                };
                out.push(Value::Number(v));
            }
            b'x' => {}
            b'f' => {
                let b: [u8; 4] = data[pos..pos + 4].try_into().expect("4 bytes");
                let f = if h.little {
                    f32::from_le_bytes(b)
                } else {
                    f32::from_be_bytes(b)
                };
                out.push(Value::Number(f as f64));
            }
            b'd' => {
                let b: [u8; 8] = data[pos..pos + 8].try_into().expect("8 bytes");
                let d = if h.little {
                    f64::from_le_bytes(b)
                } else {
                    f64::from_be_bytes(b)
                };
                out.push(Value::Number(d));
            }
            b'c' => {
                if size == 0 {
                    let prev = match out.pop() {
                        Some(Value::Number(n)) => n as usize,
                        Some(Value::Integer(n)) => n as usize,
                        _ => return Err(fail("format 'c0' needs a previous size".into())),
                    };
                    size = prev;
                    if size > data.len() || pos > data.len() - size {
                        return Err(short());
                    }
                }
                out.push(Value::String(lua.create_string(&data[pos..pos + size])?));
            }
            b's' => {
                let Some(e) = data[pos..].iter().position(|&b| b == 0) else {
                    return Err(fail("unfinished string in data".into()));
                };
                out.push(Value::String(lua.create_string(&data[pos..pos + e])?));
                size = e + 1;
            }
            _ => control(opt, &fmt, &mut i, &mut h, "unpack")?,
        }
        pos += size;
    }
    out.push(Value::Integer(pos as i64 + 1));
    Ok(MultiValue::from_iter(out))
}

fn size(_: &Lua, fmt: mlua::LuaString) -> mlua::Result<i64> {
    let fmt = fmt.as_bytes().to_vec();
    let mut h = Header {
        little: true,
        align: 1,
    };
    let (mut pos, mut i) = (0usize, 0usize);
    while i < fmt.len() {
        let opt = fmt[i];
        i += 1;
        let size = optsize(opt, &fmt, &mut i)?;
        pos += toalign(pos, &h, opt, size);
        if opt == b's' {
            return Err(fail(
                "bad argument #1 to 'size' (option 's' has no fixed size)".into(),
            ));
        }
        if opt == b'c' && size == 0 {
            return Err(fail(
                "bad argument #1 to 'size' (option 'c0' has no fixed size)".into(),
            ));
        }
        if !opt.is_ascii_alphanumeric() {
            control(opt, &fmt, &mut i, &mut h, "size")?;
        }
        pos += size;
    }
    Ok(pos as i64)
}

pub fn open(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("pack", lua.create_function(pack)?)?;
    t.set("unpack", lua.create_function(unpack)?)?;
    t.set("size", lua.create_function(size)?)?;
    Ok(t)
}
