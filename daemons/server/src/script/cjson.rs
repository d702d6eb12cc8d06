//! The `cjson` library Redis ships (lua-cjson 2.1 with Redis's defaults):
//! `encode` writes numbers with 14 significant digits, escapes `/`, refuses
//! excessively sparse arrays and NaN/Inf; `decode` turns `null` into
//! `cjson.null` (a NULL light userdata) and reports errors by character.

use mlua::{LightUserData, Lua, Table, Value};

const MAX_DEPTH: usize = 1000;
const SPARSE_RATIO: usize = 2;
const SPARSE_SAFE: usize = 10;

fn null() -> Value {
    Value::LightUserData(LightUserData(std::ptr::null_mut()))
}

pub fn open(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "encode",
        lua.create_function(|lua, a: mlua::MultiValue| {
            if a.len() != 1 {
                return Err(mlua::Error::runtime(
                    "bad argument #1 to 'encode' (expected 1 argument)",
                ));
            }
            let mut out = Vec::new();
            encode(&a[0], 0, &mut out).map_err(mlua::Error::runtime)?;
            lua.create_string(out)
        })?,
    )?;
    t.set(
        "decode",
        lua.create_function(|lua, a: mlua::MultiValue| {
            if a.len() != 1 {
                return Err(mlua::Error::runtime(
                    "bad argument #1 to 'decode' (expected 1 argument)",
                ));
            }
            let s = lua.coerce_string(a[0].clone())?.ok_or_else(|| {
                mlua::Error::runtime("bad argument #1 to 'decode' (string expected)")
            })?;
            let bytes = s.as_bytes().to_vec();
            let mut p = Parser {
                s: &bytes,
                pos: 0,
                at: 0,
                depth: 0,
            };
            let v = p.value(lua)?;
            let tok = p.token();
            if !matches!(tok, Tok::End) {
                return Err(p.expected("the end", &tok));
            }
            Ok(v)
        })?,
    )?;
    t.set("null", null())?;
    t.set("_NAME", "cjson")?;
    t.set("_VERSION", "2.1.0")?;
    // configuration knobs: accepted, and answer Redis's defaults
    for (name, v) in [
        ("encode_keep_buffer", Value::Boolean(true)),
        ("encode_max_depth", Value::Integer(1000)),
        ("decode_max_depth", Value::Integer(1000)),
        ("encode_number_precision", Value::Integer(14)),
        ("encode_invalid_numbers", Value::Boolean(false)),
        ("decode_invalid_numbers", Value::Boolean(true)),
    ] {
        t.set(
            name,
            lua.create_function(move |_, _: mlua::MultiValue| Ok(v.clone()))?,
        )?;
    }
    t.set(
        "encode_sparse_array",
        lua.create_function(|_, _: mlua::MultiValue| Ok((false, 2, 10)))?,
    )?;
    Ok(t)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Boolean(_) => "boolean",
        Value::LightUserData(_) => "userdata",
        Value::Integer(_) | Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Table(_) => "table",
        Value::Function(_) => "function",
        Value::Thread(_) => "thread",
        _ => "userdata",
    }
}

fn number(n: f64, out: &mut Vec<u8>) -> Result<(), String> {
    if !n.is_finite() {
        return Err("Cannot serialise number: must not be NaN or Inf".into());
    }
    out.extend_from_slice(&crate::util::fmt_g(n, 14));
    Ok(())
}

fn string(s: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &b in s {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' => out.extend_from_slice(b"\\/"),
            b'\x08' => out.extend_from_slice(b"\\b"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\x0c' => out.extend_from_slice(b"\\f"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0..=0x1f | 0x7f => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// The table's array length, or `None` for an object (lua-cjson's rule).
fn array_len(t: &Table) -> Result<Option<usize>, String> {
    let (mut max, mut items) = (0usize, 0usize);
    for pair in t.pairs::<Value, Value>() {
        let (k, _) = pair.map_err(|e| e.to_string())?;
        let k = match k {
            Value::Integer(i) if i >= 1 => i as f64,
            Value::Number(n) if n >= 1.0 && n.floor() == n => n,
            _ => return Ok(None),
        };
        max = max.max(k as usize);
        items += 1;
    }
    if max > items * SPARSE_RATIO && max > SPARSE_SAFE {
        return Err("Cannot serialise table: excessively sparse array".into());
    }
    Ok(if max > 0 { Some(max) } else { None })
}

fn encode(v: &Value, depth: usize, out: &mut Vec<u8>) -> Result<(), String> {
    match v {
        Value::String(s) => string(&s.as_bytes(), out),
        Value::Integer(i) => number(*i as f64, out)?,
        Value::Number(n) => number(*n, out)?,
        Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Nil => out.extend_from_slice(b"null"),
        Value::LightUserData(p) if p.0.is_null() => out.extend_from_slice(b"null"),
        Value::Table(t) => {
            let depth = depth + 1;
            if depth > MAX_DEPTH {
                return Err(format!("Cannot serialise, excessive nesting ({depth})"));
            }
            match array_len(t)? {
                Some(n) => {
                    out.push(b'[');
                    for i in 1..=n {
                        if i > 1 {
                            out.push(b',');
                        }
                        let item: Value = t.raw_get(i).map_err(|e| e.to_string())?;
                        encode(&item, depth, out)?;
                    }
                    out.push(b']');
                }
                None => {
                    out.push(b'{');
                    let mut first = true;
                    for pair in t.pairs::<Value, Value>() {
                        let (k, val) = pair.map_err(|e| e.to_string())?;
                        if !first {
                            out.push(b',');
                        }
                        first = false;
                        match &k {
                            Value::Integer(i) => {
                                out.push(b'"');
                                number(*i as f64, out)?;
                                out.extend_from_slice(b"\":");
                            }
                            Value::Number(n) => {
                                out.push(b'"');
                                number(*n, out)?;
                                out.extend_from_slice(b"\":");
                            }
                            Value::String(s) => {
                                string(&s.as_bytes(), out);
                                out.push(b':');
                            }
                            other => {
                                return Err(format!(
                                    "Cannot serialise {}: table key must be a number or string",
                                    type_name(other)
                                ));
                            }
                        }
                        encode(&val, depth, out)?;
                    }
                    out.push(b'}');
                }
            }
        }
        other => {
            return Err(format!(
                "Cannot serialise {}: type not supported",
                type_name(other)
            ));
        }
    }
    Ok(())
}

enum Tok {
    ObjBegin,
    ObjEnd,
    ArrBegin,
    ArrEnd,
    Str(Vec<u8>),
    Num(f64),
    Bool(bool),
    Null,
    Colon,
    Comma,
    End,
    Error(&'static str, usize),
}

impl Tok {
    fn name(&self) -> &'static str {
        match self {
            Tok::ObjBegin => "T_OBJ_BEGIN",
            Tok::ObjEnd => "T_OBJ_END",
            Tok::ArrBegin => "T_ARR_BEGIN",
            Tok::ArrEnd => "T_ARR_END",
            Tok::Str(_) => "T_STRING",
            Tok::Num(_) => "T_NUMBER",
            Tok::Bool(_) => "T_BOOLEAN",
            Tok::Null => "T_NULL",
            Tok::Colon => "T_COLON",
            Tok::Comma => "T_COMMA",
            Tok::End => "T_END",
            Tok::Error(e, _) => e,
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    /// Where the last token started.
    at: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> u8 {
        self.s.get(self.pos).copied().unwrap_or(0)
    }

    fn token(&mut self) -> Tok {
        while matches!(self.peek(), b' ' | b'\t' | b'\r' | b'\n') {
            self.pos += 1;
        }
        let at = self.pos;
        self.at = at;
        let c = self.peek();
        let simple = match c {
            0 if self.pos >= self.s.len() => return Tok::End,
            b'{' => Some(Tok::ObjBegin),
            b'}' => Some(Tok::ObjEnd),
            b'[' => Some(Tok::ArrBegin),
            b']' => Some(Tok::ArrEnd),
            b':' => Some(Tok::Colon),
            b',' => Some(Tok::Comma),
            _ => None,
        };
        if let Some(t) = simple {
            self.pos += 1;
            return t;
        }
        let rest = &self.s[self.pos..];
        match c {
            b'"' => self.string(),
            b'-' | b'0'..=b'9' => self.number(at),
            _ if rest.starts_with(b"true") => {
                self.pos += 4;
                Tok::Bool(true)
            }
            _ if rest.starts_with(b"false") => {
                self.pos += 5;
                Tok::Bool(false)
            }
            _ if rest.starts_with(b"null") => {
                self.pos += 4;
                Tok::Null
            }
            _ => Tok::Error("invalid token", at),
        }
    }

    fn number(&mut self, at: usize) -> Tok {
        let s = self.s;
        let mut end = self.pos;
        if s.get(end) == Some(&b'-') {
            end += 1;
        }
        while end < s.len() && (s[end].is_ascii_digit() || matches!(s[end], b'.' | b'e' | b'E')) {
            if matches!(s[end], b'e' | b'E') && matches!(s.get(end + 1), Some(b'+' | b'-')) {
                end += 1;
            }
            end += 1;
        }
        match std::str::from_utf8(&s[self.pos..end])
            .ok()
            .and_then(|t| t.parse::<f64>().ok())
        {
            Some(n) => {
                self.pos = end;
                Tok::Num(n)
            }
            None => Tok::Error("invalid number", at),
        }
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        let h = self.s.get(at..at + 4)?;
        u32::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
    }

    fn string(&mut self) -> Tok {
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.pos) else {
                return Tok::Error("unexpected end of string", self.pos);
            };
            match c {
                b'"' => {
                    self.pos += 1;
                    return Tok::Str(out);
                }
                b'\\' => {
                    let e = self.s.get(self.pos + 1).copied().unwrap_or(0);
                    let ch = match e {
                        b'"' => b'"',
                        b'\\' => b'\\',
                        b'/' => b'/',
                        b'b' => 8,
                        b'f' => 12,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'u' => {
                            let Some(mut cp) = self.hex4(self.pos + 2) else {
                                return Tok::Error("invalid unicode escape code", self.pos);
                            };
                            let mut len = 6;
                            if cp & 0xF800 == 0xD800 {
                                let low = (cp & 0x400 == 0
                                    && self.s.get(self.pos + 6) == Some(&b'\\')
                                    && self.s.get(self.pos + 7) == Some(&b'u'))
                                .then(|| self.hex4(self.pos + 8))
                                .flatten()
                                .filter(|l| l & 0xFC00 == 0xDC00);
                                let Some(low) = low else {
                                    return Tok::Error("invalid unicode escape code", self.pos);
                                };
                                cp = (((cp & 0x3FF) << 10) | (low & 0x3FF)) + 0x10000;
                                len = 12;
                            }
                            let ch = char::from_u32(cp).unwrap_or('\u{FFFD}');
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                            self.pos += len;
                            continue;
                        }
                        _ => return Tok::Error("invalid escape code", self.pos),
                    };
                    out.push(ch);
                    self.pos += 2;
                }
                _ => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn expected(&self, what: &str, tok: &Tok) -> mlua::Error {
        let at = match tok {
            Tok::Error(_, at) => *at,
            _ => self.at,
        };
        mlua::Error::runtime(format!(
            "Expected {what} but found {} at character {}",
            tok.name(),
            at + 1
        ))
    }

    fn value(&mut self, lua: &Lua) -> mlua::Result<Value> {
        let tok = self.token();
        self.value_from(lua, tok)
    }

    fn nest(&mut self) -> mlua::Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(mlua::Error::runtime(format!(
                "Found too many nested data structures ({}) at character {}",
                self.depth, self.pos
            )));
        }
        Ok(())
    }

    fn value_from(&mut self, lua: &Lua, tok: Tok) -> mlua::Result<Value> {
        Ok(match tok {
            Tok::Str(s) => Value::String(lua.create_string(s)?),
            Tok::Num(n) => Value::Number(n),
            Tok::Bool(b) => Value::Boolean(b),
            Tok::Null => null(),
            Tok::ObjBegin => {
                self.nest()?;
                let t = lua.create_table()?;
                let mut tok = self.token();
                if !matches!(tok, Tok::ObjEnd) {
                    loop {
                        let Tok::Str(k) = tok else {
                            return Err(self.expected("object key string", &tok));
                        };
                        let colon = self.token();
                        if !matches!(colon, Tok::Colon) {
                            return Err(self.expected("colon", &colon));
                        }
                        let v = self.value(lua)?;
                        t.raw_set(lua.create_string(k)?, v)?;
                        let sep = self.token();
                        match sep {
                            Tok::ObjEnd => break,
                            Tok::Comma => tok = self.token(),
                            other => return Err(self.expected("comma or object end", &other)),
                        }
                    }
                }
                self.depth -= 1;
                Value::Table(t)
            }
            Tok::ArrBegin => {
                self.nest()?;
                let t = lua.create_table()?;
                let mut tok = self.token();
                if !matches!(tok, Tok::ArrEnd) {
                    let mut i = 1;
                    loop {
                        let v = self.value_from(lua, tok)?;
                        t.raw_set(i, v)?;
                        i += 1;
                        let sep = self.token();
                        match sep {
                            Tok::ArrEnd => break,
                            Tok::Comma => tok = self.token(),
                            other => return Err(self.expected("comma or array end", &other)),
                        }
                    }
                }
                self.depth -= 1;
                Value::Table(t)
            }
            other => return Err(self.expected("value", &other)),
        })
    }
}
