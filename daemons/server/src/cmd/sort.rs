//! SORT and SORT_RO: lists, sets and sorted sets, numerically or by bytes
//! (ALPHA), by the elements or by keys a pattern forms from them (BY),
//! returning the elements or such keys' values (GET), sliced (LIMIT),
//! optionally stored as a list (STORE).
//!
//! Patterns reach keys the command did not declare: a SORT with BY or GET
//! patterns asks to run again with every slot locked (in slot order, as
//! EXEC does), so it reads them consistently and cannot deadlock.

use std::cmp::Ordering;

use super::{
    CmdError, CmdResult, Ctx, Handler, NEEDS_ALL_SLOTS, SYNTAX, WRONGTYPE, err, int_arg, is,
};
use crate::db::Value;

pub fn handler(name: &str) -> Option<Handler> {
    Some(match name {
        "sort" => sort,
        "sort_ro" => sort_ro,
        _ => return None,
    })
}

struct Options<'a> {
    by: Option<&'a [u8]>,
    dont_sort: bool,
    gets: Vec<&'a [u8]>,
    limit: Option<(i64, i64)>,
    desc: bool,
    alpha: bool,
    store: Option<&'a [u8]>,
}

fn parse<'a>(a: &[&'a [u8]], read_only: bool) -> Result<Options<'a>, CmdError> {
    let mut o = Options {
        by: None,
        dont_sort: false,
        gets: Vec::new(),
        limit: None,
        desc: false,
        alpha: false,
        store: None,
    };
    let mut j = 2;
    while j < a.len() {
        let left = a.len() - j - 1;
        if is(a[j], "asc") {
            o.desc = false;
        } else if is(a[j], "desc") {
            o.desc = true;
        } else if is(a[j], "alpha") {
            o.alpha = true;
        } else if is(a[j], "limit") && left >= 2 {
            o.limit = Some((int_arg(a[j + 1])?, int_arg(a[j + 2])?));
            j += 2;
        } else if is(a[j], "store") && left >= 1 && !read_only {
            o.store = Some(a[j + 1]);
            j += 1;
        } else if is(a[j], "by") && left >= 1 {
            o.by = Some(a[j + 1]);
            // a pattern without '*' means "do not sort"
            o.dont_sort = !a[j + 1].contains(&b'*');
            j += 1;
        } else if is(a[j], "get") && left >= 1 {
            o.gets.push(a[j + 1]);
            j += 1;
        } else {
            return Err(SYNTAX);
        }
        j += 1;
    }
    Ok(o)
}

/// Whether a pattern reads other keys (everything but `#` and patterns
/// without `*`, which read nothing).
fn reads_keys(p: &[u8]) -> bool {
    p != b"#" && p.contains(&b'*')
}

/// The value a pattern names for `elem`: `#` is the element; `pre*post`
/// the string at that key; `pre*post->field` that hash field.
fn lookup(ctx: &mut Ctx<'_, '_>, pattern: &[u8], elem: &[u8]) -> Option<Vec<u8>> {
    if pattern == b"#" {
        return Some(elem.to_vec());
    }
    let star = pattern.iter().position(|&b| b == b'*')?;
    let (key_pat, field) = match pattern[star + 1..].windows(2).position(|w| w == b"->") {
        Some(i) if star + 1 + i + 2 < pattern.len() => {
            (&pattern[..star + 1 + i], Some(&pattern[star + 1 + i + 2..]))
        }
        _ => (pattern, None),
    };
    let mut key = Vec::with_capacity(key_pat.len() + elem.len());
    key.extend_from_slice(&key_pat[..star]);
    key.extend_from_slice(elem);
    key.extend_from_slice(&key_pat[star + 1..]);
    let e = ctx.db.get(&key)?;
    match field {
        None => e.str().map(<[u8]>::to_vec),
        Some(f) => match e.value_mut() {
            Some(Value::Hash(h)) => h.get(f).map(|v| v.to_vec()),
            _ => None,
        },
    }
}

fn sort(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    sort_generic(ctx, a, false)
}

fn sort_ro(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    sort_generic(ctx, a, true)
}

/// # Format
/// `SORT key [BY pattern] [LIMIT offset count] [GET pattern ...] [ASC|DESC] [ALPHA] [STORE destination]`
fn sort_generic(ctx: &mut Ctx<'_, '_>, a: &[&[u8]], read_only: bool) -> CmdResult {
    let mut o = parse(a, read_only)?;
    let patterns =
        o.by.is_some_and(|b| !o.dont_sort && reads_keys(b)) || o.gets.iter().any(|g| reads_keys(g));
    let other_dest = o
        .store
        .is_some_and(|d| kvfleet_model::slot(d) != kvfleet_model::slot(a[1]));
    if (patterns || other_dest) && !ctx.db.all_locked() {
        return Err(NEEDS_ALL_SLOTS);
    }
    // the elements, in the container's own order
    let (mut elems, is_set): (Vec<Vec<u8>>, bool) = match ctx.db.get(a[1]) {
        None => (Vec::new(), false),
        Some(e) => match e.value_mut() {
            Some(Value::List(l)) => (l.iter().map(|x| x.to_vec()).collect(), false),
            Some(Value::Set(s)) => (s.iter().map(|x| x.to_vec()).collect(), true),
            Some(Value::ZSet(z)) => (z.iter().map(|(m, _)| m.to_vec()).collect(), false),
            _ => return Err(WRONGTYPE),
        },
    };
    // a set's order is arbitrary: stored results are sorted for determinism (as Redis)
    if o.dont_sort && is_set && o.store.is_some() {
        o.dont_sort = false;
        o.alpha = true;
        o.by = None;
    }
    let n = elems.len() as i64;
    let (start, count) = o.limit.unwrap_or((0, -1));
    let mut start = start.max(0);
    let mut end = if count < 0 { n - 1 } else { start + count - 1 };
    if start >= n {
        start = n - 1;
        end = n - 2;
    }
    end = end.min(n - 1);
    if !o.dont_sort {
        // sort keys: numbers, or bytes for ALPHA (missing BY values sort first / as 0)
        enum Key {
            Num(f64),
            Bytes(Option<Vec<u8>>),
        }
        let mut keyed: Vec<(Key, Vec<u8>)> = Vec::with_capacity(elems.len());
        for el in elems.drain(..) {
            let by = match o.by {
                Some(p) => lookup(ctx, p, &el),
                None => Some(el.clone()),
            };
            let k = if o.alpha {
                Key::Bytes(if o.by.is_some() { by } else { None })
            } else {
                match by {
                    None => Key::Num(0.0),
                    Some(v) => Key::Num(
                        crate::util::parse_f64(&v)
                            .filter(|f| !f.is_nan())
                            .ok_or_else(|| {
                                err("ERR One or more scores can't be converted into double")
                            })?,
                    ),
                }
            };
            keyed.push((k, el));
        }
        let by_pattern = o.by.is_some();
        keyed.sort_by(|(ka, ea), (kb, eb)| {
            let c = match (ka, kb) {
                (Key::Num(x), Key::Num(y)) => x
                    .partial_cmp(y)
                    .unwrap_or(Ordering::Equal)
                    .then_with(|| ea.cmp(eb)),
                (Key::Bytes(x), Key::Bytes(y)) if by_pattern => x.cmp(y),
                _ => ea.cmp(eb),
            };
            if o.desc { c.reverse() } else { c }
        });
        elems = keyed.into_iter().map(|(_, e)| e).collect();
    } else if o.desc && !is_set {
        // unsorted list or sorted set: its own order, reversed for DESC
        elems.reverse();
    }
    let slice: Vec<Vec<u8>> = if start <= end && end >= 0 {
        elems[start as usize..=end as usize].to_vec()
    } else {
        Vec::new()
    };
    // the reply (or stored list): elements, or each GET pattern's value per element
    let mut out: Vec<Option<Vec<u8>>> = Vec::new();
    for el in &slice {
        if o.gets.is_empty() {
            out.push(Some(el.clone()));
        }
        for g in &o.gets {
            out.push(lookup(ctx, g, el));
        }
    }
    if let Some(dest) = o.store {
        if out.is_empty() {
            if ctx.db.remove(dest).is_some() {
                ctx.dirty += 1;
            }
        } else {
            let list: crate::db::value::ListVal = out
                .iter()
                .map(|v| Box::from(v.as_deref().unwrap_or_default()))
                .collect();
            ctx.db.set(dest, Value::List(Box::new(list)));
            ctx.dirty += 1;
        }
        ctx.int(out.len() as i64);
        return Ok(());
    }
    ctx.array(out.len());
    for v in out {
        match v {
            Some(v) => ctx.bulk(&v),
            None => ctx.null(),
        }
    }
    Ok(())
}
