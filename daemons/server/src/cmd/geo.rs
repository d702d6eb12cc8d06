//! Geo commands on sorted sets, as Redis keeps them: a member's score is
//! the 52-bit interleaved geohash of its position (26 bits of latitude in
//! [-85.05112878, 85.05112878], 26 of longitude), distances are haversine
//! on Redis's earth radius, positions and distances print as Redis's do.

use super::{CmdError, CmdResult, Ctx, Handler, NEEDS_ALL_SLOTS, NOT_FLOAT, SYNTAX, err, is};
use crate::db::{Value, ZSet};

pub fn handler(name: &str) -> Option<Handler> {
    Some(match name {
        "geoadd" => geoadd,
        "geopos" => geopos,
        "geodist" => geodist,
        "geohash" => geohash,
        "georadius" | "georadius_ro" => georadius,
        "georadiusbymember" | "georadiusbymember_ro" => georadiusbymember,
        "geosearch" | "geosearchstore" => geosearch,
        _ => return None,
    })
}

const LAT_MIN: f64 = -85.05112878;
const LAT_MAX: f64 = 85.05112878;
const LON_MIN: f64 = -180.0;
const LON_MAX: f64 = 180.0;
const STEP: u32 = 26;
const EARTH_RADIUS_M: f64 = 6372797.560856;

/// Spreads the low 32 bits of `v` to the even bit positions.
fn spread(v: u64) -> u64 {
    let mut x = v & 0xFFFF_FFFF;
    x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF;
    x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x << 2)) & 0x3333_3333_3333_3333;
    (x | (x << 1)) & 0x5555_5555_5555_5555
}

/// The even bit positions of `v`, packed.
fn squash(v: u64) -> u64 {
    let mut x = v & 0x5555_5555_5555_5555;
    x = (x | (x >> 1)) & 0x3333_3333_3333_3333;
    x = (x | (x >> 2)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x >> 4)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x >> 8)) & 0x0000_FFFF_0000_FFFF;
    (x | (x >> 16)) & 0x0000_0000_FFFF_FFFF
}

/// Latitude bits in the even positions, longitude in the odd (Redis's order).
fn encode(lon: f64, lat: f64, lat_range: (f64, f64)) -> u64 {
    let scale = (1u64 << STEP) as f64;
    let lat_off = (lat - lat_range.0) / (lat_range.1 - lat_range.0) * scale;
    let lon_off = (lon - LON_MIN) / (LON_MAX - LON_MIN) * scale;
    spread(lat_off as u32 as u64) | (spread(lon_off as u32 as u64) << 1)
}

/// The centre of a score's cell, as (longitude, latitude).
fn decode(score: f64) -> (f64, f64) {
    let bits = score as u64;
    let (ilat, ilon) = (squash(bits) as u32, squash(bits >> 1) as u32);
    let scale = (1u64 << STEP) as f64;
    let cell = |i: u32, min: f64, max: f64| {
        let lo = min + (i as f64 / scale) * (max - min);
        let hi = min + ((i as f64 + 1.0) / scale) * (max - min);
        (lo + hi) / 2.0
    };
    let lon = cell(ilon, LON_MIN, LON_MAX).clamp(LON_MIN, LON_MAX);
    let lat = cell(ilat, LAT_MIN, LAT_MAX).clamp(LAT_MIN, LAT_MAX);
    (lon, lat)
}

fn lat_distance(lat1: f64, lat2: f64) -> f64 {
    EARTH_RADIUS_M * (lat2.to_radians_redis() - lat1.to_radians_redis()).abs()
}

trait Radians {
    fn to_radians_redis(self) -> f64;
}

impl Radians for f64 {
    /// `ang * (M_PI / 180.0)`, exactly as Redis computes it.
    fn to_radians_redis(self) -> f64 {
        self * (std::f64::consts::PI / 180.0)
    }
}

/// Redis's haversine distance in meters.
fn distance(lon1: f64, lat1: f64, lon2: f64, lat2: f64) -> f64 {
    let (lon1r, lon2r) = (lon1.to_radians_redis(), lon2.to_radians_redis());
    let v = ((lon2r - lon1r) / 2.0).sin();
    if v == 0.0 {
        return lat_distance(lat1, lat2);
    }
    let (lat1r, lat2r) = (lat1.to_radians_redis(), lat2.to_radians_redis());
    let u = ((lat2r - lat1r) / 2.0).sin();
    let a = u * u + lat1r.cos() * lat2r.cos() * v * v;
    2.0 * EARTH_RADIUS_M * a.sqrt().asin()
}

/// Redis's human long-double format: 17 decimals, trailing zeros dropped.
fn human(x: f64) -> String {
    let s = format!("{x:.17}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

fn reply_coord(ctx: &mut Ctx<'_, '_>, x: f64) {
    let s = human(x);
    if ctx.conn.resp3 {
        ctx.out.extend_from_slice(b",");
        ctx.out.extend_from_slice(s.as_bytes());
        ctx.out.extend_from_slice(b"\r\n");
    } else {
        ctx.bulk(s.as_bytes());
    }
}

fn reply_distance(ctx: &mut Ctx<'_, '_>, d: f64) {
    ctx.bulk(format!("{d:.4}").as_bytes());
}

fn float(a: &[u8], msg: Option<&'static str>) -> Result<f64, CmdError> {
    crate::util::parse_f64(a)
        .filter(|f| !f.is_nan())
        .ok_or_else(|| msg.map_or(NOT_FLOAT, err))
}

/// A longitude/latitude pair, in range.
fn lon_lat(a: &[&[u8]]) -> Result<(f64, f64), CmdError> {
    let (lon, lat) = (float(a[0], None)?, float(a[1], None)?);
    if !(LON_MIN..=LON_MAX).contains(&lon) || !(LAT_MIN..=LAT_MAX).contains(&lat) {
        return Err(err(format!(
            "ERR invalid longitude,latitude pair {lon:.6},{lat:.6}"
        )));
    }
    Ok((lon, lat))
}

fn unit(a: &[u8]) -> Result<f64, CmdError> {
    Ok(if is(a, "m") {
        1.0
    } else if is(a, "km") {
        1000.0
    } else if is(a, "ft") {
        0.3048
    } else if is(a, "mi") {
        1609.34
    } else {
        return Err(err(
            "ERR unsupported unit provided. please use M, KM, FT, MI",
        ));
    })
}

/// The sorted set at `key` (`None` if missing).
fn zset<'c>(ctx: &'c mut Ctx<'_, '_>, key: &[u8]) -> Result<Option<&'c mut ZSet>, CmdError> {
    ctx.db.zset(key)
}

/// # Format
/// `GEOADD key [NX|XX] [CH] longitude latitude member [...]`: a ZADD of
/// the members at their geohash scores.
fn geoadd(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let mut i = 2;
    let (mut nx, mut xx) = (false, false);
    while i < a.len() {
        if is(a[i], "nx") {
            nx = true;
        } else if is(a[i], "xx") {
            xx = true;
        } else if !is(a[i], "ch") {
            break;
        }
        i += 1;
    }
    if !(a.len() - i).is_multiple_of(3) || (nx && xx) || i == a.len() {
        return Err(SYNTAX);
    }
    let mut pairs = Vec::with_capacity((a.len() - i) / 3);
    for t in a[i..].chunks(3) {
        let (lon, lat) = lon_lat(t)?;
        pairs.push((encode(lon, lat, (LAT_MIN, LAT_MAX)) as f64, t[2]));
    }
    let flags = super::zset::AddFlags {
        nx,
        xx,
        ch: a[2..i].iter().any(|o| is(o, "ch")),
        ..Default::default()
    };
    super::zset::add_parsed(ctx, a[1], flags, pairs)
}

/// # Format
/// `GEOPOS key [member ...]`
fn geopos(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let pos: Vec<Option<f64>> = match zset(ctx, a[1])? {
        Some(z) => a[2..].iter().map(|m| z.score(m)).collect(),
        None => vec![None; a.len() - 2],
    };
    ctx.array(pos.len());
    for p in pos {
        match p {
            None => ctx.null_array(),
            Some(s) => {
                let (lon, lat) = decode(s);
                ctx.array(2);
                reply_coord(ctx, lon);
                reply_coord(ctx, lat);
            }
        }
    }
    Ok(())
}

/// # Format
/// `GEODIST key member1 member2 [M|KM|FT|MI]`
fn geodist(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let to_m = match a.len() {
        4 => 1.0,
        5 => unit(a[4])?,
        _ => return Err(SYNTAX),
    };
    let pair = match zset(ctx, a[1])? {
        None => None,
        Some(z) => z.score(a[2]).zip(z.score(a[3])),
    };
    match pair {
        None => ctx.null(),
        Some((s1, s2)) => {
            let ((x1, y1), (x2, y2)) = (decode(s1), decode(s2));
            reply_distance(ctx, distance(x1, y1, x2, y2) / to_m);
        }
    }
    Ok(())
}

/// # Format
/// `GEOHASH key [member ...]`: standard 11-character geohashes.
fn geohash(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    const ALPHABET: &[u8] = b"0123456789bcdefghjkmnpqrstuvwxyz";
    let hashes: Vec<Option<Vec<u8>>> = match zset(ctx, a[1])? {
        None => vec![None; a.len() - 2],
        Some(z) => a[2..]
            .iter()
            .map(|m| {
                z.score(m).map(|s| {
                    // re-encoded on the standard latitude range, as Redis does
                    let (lon, lat) = decode(s);
                    let bits = encode(lon, lat, (-90.0, 90.0));
                    (0..11)
                        .map(|i| {
                            let idx = if i == 10 {
                                0
                            } else {
                                (bits >> (52 - (i + 1) * 5)) & 0x1F
                            };
                            ALPHABET[idx as usize]
                        })
                        .collect()
                })
            })
            .collect(),
    };
    ctx.array(hashes.len());
    for h in hashes {
        match h {
            Some(h) => ctx.bulk(&h),
            None => ctx.null(),
        }
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Shape {
    Radius(f64),
    /// width, height (meters)
    Box(f64, f64),
}

struct Search<'a> {
    center: Option<(f64, f64)>,
    from_member: Option<&'a [u8]>,
    shape: Option<Shape>,
    /// meters per unit
    to_m: f64,
    withdist: bool,
    withhash: bool,
    withcoord: bool,
    any: bool,
    count: i64,
    sort: Option<bool>, // Some(true) = ASC
    store: Option<&'a [u8]>,
    storedist: bool,
}

/// # Format
/// `GEORADIUS key longitude latitude radius M|KM|FT|MI [WITHCOORD] [WITHDIST] [WITHHASH] [COUNT count [ANY]] [ASC|DESC] [STORE key] [STOREDIST key]`
/// (also GEORADIUS_RO, without STORE)
fn georadius(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    if a.len() < 6 {
        return Err(SYNTAX);
    }
    let center = lon_lat(&a[2..4])?;
    let mut s = search_defaults(1.0);
    s.center = Some(center);
    radius_search(ctx, a, s, 4)
}

/// # Format
/// `GEORADIUSBYMEMBER key member radius M|KM|FT|MI [...]` (options as GEORADIUS)
fn georadiusbymember(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    if a.len() < 5 {
        return Err(SYNTAX);
    }
    let mut s = search_defaults(1.0);
    // a missing key answers empty whatever the member (as Redis)
    if zset(ctx, a[1])?.is_some() {
        s.from_member = Some(a[2]);
    }
    radius_search(ctx, a, s, 3)
}

/// The GEORADIUS family after its centre: `radius unit` at `at`, then options.
fn radius_search<'a>(
    ctx: &mut Ctx<'_, '_>,
    a: &[&'a [u8]],
    mut s: Search<'a>,
    at: usize,
) -> CmdResult {
    if s.center.is_some() || s.from_member.is_some() {
        let (r, to_m) = radius(a[at], a[at + 1])?;
        s.to_m = to_m;
        s.shape = Some(Shape::Radius(r * to_m));
    }
    let read_only = a[0].len() >= 3 && a[0][a[0].len() - 3..].eq_ignore_ascii_case(b"_ro");
    let kind = if read_only {
        Kind::RadiusRo
    } else {
        Kind::Radius
    };
    options(ctx, a, at + 2, &mut s, kind)?;
    run(ctx, a[1], s, "STORE option in GEORADIUS")
}

/// # Format
/// `GEOSEARCH key FROMMEMBER member|FROMLONLAT lon lat BYRADIUS r unit|BYBOX w h unit [ASC|DESC] [COUNT n [ANY]] [WITHCOORD] [WITHDIST] [WITHHASH]`
/// `GEOSEARCHSTORE dest src ... [STOREDIST]`
fn geosearch(ctx: &mut Ctx<'_, '_>, a: &[&[u8]]) -> CmdResult {
    let store = a[0].len() > 9;
    let src = if store { a[2] } else { a[1] };
    let mut s = search_defaults(1.0);
    if store {
        s.store = Some(a[1]);
    }
    options(
        ctx,
        a,
        if store { 3 } else { 2 },
        &mut s,
        if store {
            Kind::SearchStore
        } else {
            Kind::Search
        },
    )?;
    let name = String::from_utf8_lossy(a[0]).into_owned();
    if s.center.is_none() && s.from_member.is_none() {
        return Err(err(format!(
            "ERR exactly one of FROMMEMBER or FROMLONLAT can be specified for {name}"
        )));
    }
    if s.shape.is_none() {
        return Err(err(format!(
            "ERR exactly one of BYRADIUS and BYBOX can be specified for {name}"
        )));
    }
    run(ctx, src, s, "GEOSEARCHSTORE")
}

fn search_defaults<'a>(to_m: f64) -> Search<'a> {
    Search {
        center: None,
        from_member: None,
        shape: None,
        to_m,
        withdist: false,
        withhash: false,
        withcoord: false,
        any: false,
        count: 0,
        sort: None,
        store: None,
        storedist: false,
    }
}

fn radius(r: &[u8], u: &[u8]) -> Result<(f64, f64), CmdError> {
    let r = float(r, Some("ERR need numeric radius"))?;
    if r < 0.0 {
        return Err(err("ERR radius cannot be negative"));
    }
    Ok((r, unit(u)?))
}

#[derive(PartialEq, Clone, Copy)]
enum Kind {
    Radius,
    RadiusRo,
    Search,
    SearchStore,
}

fn options<'a>(
    ctx: &mut Ctx<'_, '_>,
    a: &[&'a [u8]],
    base: usize,
    s: &mut Search<'a>,
    kind: Kind,
) -> CmdResult {
    let search = matches!(kind, Kind::Search | Kind::SearchStore);
    let src = if kind == Kind::SearchStore {
        a[2]
    } else {
        a[1]
    };
    let remaining = a.len() - base;
    let mut i = 0;
    while i < remaining {
        let arg = a[base + i];
        let left = remaining - i - 1;
        if is(arg, "withdist") {
            s.withdist = true;
        } else if is(arg, "withhash") {
            s.withhash = true;
        } else if is(arg, "withcoord") {
            s.withcoord = true;
        } else if is(arg, "any") {
            s.any = true;
        } else if is(arg, "asc") {
            s.sort = Some(true);
        } else if is(arg, "desc") {
            s.sort = Some(false);
        } else if is(arg, "count") && left >= 1 {
            s.count = super::int_arg(a[base + i + 1])?;
            if s.count <= 0 {
                return Err(err("ERR COUNT must be > 0"));
            }
            i += 1;
        } else if (is(arg, "store") || is(arg, "storedist")) && left >= 1 && kind == Kind::Radius {
            s.store = Some(a[base + i + 1]);
            s.storedist = is(arg, "storedist");
            i += 1;
        } else if is(arg, "storedist") && kind == Kind::SearchStore {
            s.storedist = true;
        } else if is(arg, "frommember") && left >= 1 && search && s.center.is_none() {
            s.from_member = Some(a[base + i + 1]);
            i += 1;
        } else if is(arg, "fromlonlat") && left >= 2 && search && s.from_member.is_none() {
            s.center = Some(lon_lat(&a[base + i + 1..base + i + 3])?);
            i += 2;
        } else if is(arg, "byradius")
            && left >= 2
            && search
            && !matches!(s.shape, Some(Shape::Box(..)))
        {
            let (r, to_m) = radius(a[base + i + 1], a[base + i + 2])?;
            s.to_m = to_m;
            s.shape = Some(Shape::Radius(r * to_m));
            i += 2;
        } else if is(arg, "bybox")
            && left >= 3
            && search
            && !matches!(s.shape, Some(Shape::Radius(_)))
        {
            let w = float(a[base + i + 1], Some("ERR need numeric width"))?;
            let h = float(a[base + i + 2], Some("ERR need numeric height"))?;
            if w < 0.0 || h < 0.0 {
                return Err(err("ERR height or width cannot be negative"));
            }
            let to_m = unit(a[base + i + 3])?;
            s.to_m = to_m;
            s.shape = Some(Shape::Box(w * to_m, h * to_m));
            i += 3;
        } else {
            return Err(SYNTAX);
        }
        // FROMMEMBER's member must exist (checked as Redis does, while parsing)
        if is(arg, "frommember")
            && let Some(m) = s.from_member
            && let Some(z) = zset(ctx, src)?
            && z.score(m).is_none()
        {
            return Err(err("ERR could not decode requested zset member"));
        }
        i += 1;
    }
    Ok(())
}

/// A member within the searched shape.
struct Hit {
    lon: f64,
    lat: f64,
    member: Vec<u8>,
    score: f64,
    /// From the centre, meters.
    dist: f64,
}

fn run(ctx: &mut Ctx<'_, '_>, src: &[u8], s: Search<'_>, store_name: &str) -> CmdResult {
    if s.store.is_some() && (s.withdist || s.withhash || s.withcoord) {
        return Err(err(format!(
            "ERR {store_name} is not compatible with WITHDIST, WITHHASH and WITHCOORD options"
        )));
    }
    if s.any && s.count == 0 {
        return Err(err("ERR the ANY argument requires COUNT argument"));
    }
    if let Some(d) = s.store
        && kvfleet_model::slot(d) != kvfleet_model::slot(src)
        && !ctx.db.all_locked()
    {
        return Err(NEEDS_ALL_SLOTS);
    }
    let found: Option<Vec<Hit>> = match zset(ctx, src)? {
        None => None,
        Some(z) => {
            let center = match (s.center, s.from_member) {
                (Some(c), _) => c,
                (None, Some(m)) => match z.score(m) {
                    Some(sc) => decode(sc),
                    None => return Err(err("ERR could not decode requested zset member")),
                },
                (None, None) => unreachable!("checked by the callers"),
            };
            let shape = s.shape.expect("a shape");
            let limit = if s.any { s.count as usize } else { usize::MAX };
            let mut v = Vec::new();
            for (m, score) in z.iter() {
                let (lon, lat) = decode(score);
                let d = match shape {
                    Shape::Radius(r) => {
                        let d = distance(center.0, center.1, lon, lat);
                        if d > r {
                            continue;
                        }
                        d
                    }
                    Shape::Box(w, h) => {
                        if lat_distance(lat, center.1) > h / 2.0
                            || distance(lon, lat, center.0, lat) > w / 2.0
                        {
                            continue;
                        }
                        distance(center.0, center.1, lon, lat)
                    }
                };
                v.push(Hit {
                    lon,
                    lat,
                    member: m.to_vec(),
                    score,
                    dist: d,
                });
                if v.len() >= limit {
                    break;
                }
            }
            Some(v)
        }
    };
    let Some(mut found) = found else {
        if let Some(d) = s.store {
            if ctx.db.remove(d).is_some() {
                ctx.dirty += 1;
            }
            ctx.int(0);
        } else {
            ctx.array(0);
        }
        return Ok(());
    };
    let sort = match s.sort {
        None if s.count > 0 && !s.any => Some(true),
        other => other,
    };
    if let Some(asc) = sort {
        found.sort_by(|x, y| {
            let c = x
                .dist
                .partial_cmp(&y.dist)
                .unwrap_or(std::cmp::Ordering::Equal);
            if asc { c } else { c.reverse() }
        });
    }
    if s.count > 0 {
        found.truncate(s.count as usize);
    }
    if let Some(dest) = s.store {
        let n = found.len();
        if n == 0 {
            if ctx.db.remove(dest).is_some() {
                ctx.dirty += 1;
            }
        } else {
            let longest = found.iter().map(|h| h.member.len()).max().unwrap_or(0);
            let mut z = ZSet::sized(found.len(), longest);
            for h in &found {
                z.insert(
                    &h.member,
                    if s.storedist {
                        h.dist / s.to_m
                    } else {
                        h.score
                    },
                );
            }
            ctx.db.set(dest, Value::ZSet(Box::new(z)));
            ctx.dirty += n as u64;
        }
        ctx.int(n as i64);
        return Ok(());
    }
    let opts = s.withdist as usize + s.withhash as usize + s.withcoord as usize;
    ctx.array(found.len());
    for h in found {
        if opts > 0 {
            ctx.array(opts + 1);
        }
        ctx.bulk(&h.member);
        if s.withdist {
            reply_distance(ctx, h.dist / s.to_m);
        }
        if s.withhash {
            ctx.int(h.score as i64);
        }
        if s.withcoord {
            ctx.array(2);
            reply_coord(ctx, h.lon);
            reply_coord(ctx, h.lat);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_as_redis_does() {
        // GEOADD Sicily 13.361389 38.115556 "Palermo" stores this score in Redis 7.0
        assert_eq!(
            encode(13.361389, 38.115556, (LAT_MIN, LAT_MAX)),
            3479099956230698
        );
        let (lon, lat) = decode(3479099956230698.0);
        assert_eq!(human(lon), "13.36138933897018433");
        assert_eq!(human(lat), "38.11555639549629859");
        assert_eq!(squash(spread(0xDEAD_BEEF)), 0xDEAD_BEEF);
    }
}
