//! How the proxy treats each command: the model's command table (what the
//! server runs, plus the Redis commands it does not run yet) with a routing
//! class per row. `COMMAND` on the proxy answers from the same rows.

use std::collections::HashMap;
use std::sync::OnceLock;

use kvfleet_model::commands::{COMMANDS, CommandSpec, EXTRA_COMMANDS, Keys, flag};

/// How replies of a command sent to several groups become one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// MGET: each group's values back in the client's key order.
    Values,
    /// MSET, FLUSHALL: `+OK` when every group said so, else the first error.
    AllOk,
    /// DEL, EXISTS, DBSIZE: the sum of the integers.
    Sum,
    /// KEYS, PUBSUB CHANNELS: all arrays' elements, one array.
    Concat,
    /// RANDOMKEY: a non-null reply from a random group.
    AnyNonNull,
    /// SCRIPT LOAD, FUNCTION LOAD: the same answer from every group.
    First,
    /// SCRIPT EXISTS: element-wise minimum (loaded only if loaded everywhere).
    MinEach,
    /// A transaction sent as MULTI, commands, EXEC: only EXEC's reply counts.
    Last,
    /// PUBSUB NUMSUB: `[name, n, ...]` from each group, the n summed.
    SumPairs,
    /// SCRIPT KILL, FUNCTION KILL: `+OK` if any group said so, else the first reply.
    AnyOk,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The proxy answers itself.
    Local,
    /// To the group owning the keys' slot; several keys must share a slot.
    Slot,
    /// Keys split per group, replies merged (MGET, MSET, DEL, UNLINK, EXISTS, TOUCH).
    Split(Merge, SplitKind),
    /// To every group's master, replies merged.
    FanOut(Merge),
    /// To any one master (TIME, LASTSAVE, FUNCTION LIST).
    AnyGroup,
    /// SCAN: one group at a time, the group in the cursor.
    Scan,
    /// PUBLISH: routed by the channel's slot, where SUBSCRIBE listens.
    Channel,
    /// Needs a connection of its own (blocking pops, SUBSCRIBE, MULTI/WATCH).
    Private,
    /// Refused with a clear error; the connection stays.
    Unsupported,
}

/// How a split command's arguments divide per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitKind {
    /// One argument per key (MGET, DEL).
    Keys,
    /// Key and value pairs (MSET).
    Pairs,
}

pub struct Cmd {
    pub spec: &'static CommandSpec,
    pub route: Route,
    /// Position in [`table`], for per-command statistics.
    pub index: usize,
}

fn route_of(c: &CommandSpec) -> Route {
    use Merge::*;
    match c.name {
        "ping" | "echo" | "quit" | "select" | "auth" | "hello" | "command" | "info" | "client"
        | "slowlog" | "proxy" | "reset" => Route::Local,
        "mget" => Route::Split(Values, SplitKind::Keys),
        "mset" => Route::Split(AllOk, SplitKind::Pairs),
        "del" | "unlink" | "exists" | "touch" => Route::Split(Sum, SplitKind::Keys),
        "dbsize" => Route::FanOut(Sum),
        "flushall" | "flushdb" => Route::FanOut(AllOk),
        "keys" => Route::FanOut(Concat),
        "randomkey" => Route::FanOut(AnyNonNull),
        // subcommand decides the merge; see `script_merge`
        "script" | "function" | "pubsub" => Route::FanOut(First),
        "time" | "lastsave" => Route::AnyGroup,
        "scan" => Route::Scan,
        "publish" => Route::Channel,
        "subscribe" | "psubscribe" | "unsubscribe" | "punsubscribe" | "multi" | "exec"
        | "discard" | "watch" | "unwatch" => Route::Private,
        _ if c.has(flag::BLOCKING) => Route::Private,
        _ if c.keys != Keys::None => Route::Slot,
        // CONFIG, DEBUG, SLOTS, PUBSUB, MONITOR, ...: per-server, meaningless through a proxy
        _ => Route::Unsupported,
    }
}

/// Route for SCRIPT / FUNCTION / PUBSUB by subcommand; `None` when the
/// subcommand is not one a proxy can answer for every group.
pub fn script_merge(cmd: &str, sub: &[u8]) -> Option<Route> {
    let s = sub.to_ascii_lowercase();
    Some(match (cmd, s.as_slice()) {
        ("pubsub", b"channels") => Route::FanOut(Merge::Concat),
        ("pubsub", b"numsub") => Route::FanOut(Merge::SumPairs),
        // patterns are registered on every group; any one knows them all
        ("pubsub", b"numpat") => Route::AnyGroup,
        ("pubsub", b"shardchannels") | ("pubsub", b"shardnumsub") => return None,
        // HELP, and unknown subcommands get the server's own answer
        ("pubsub", _) => Route::AnyGroup,
        ("script", b"load") | ("function", b"load") => Route::FanOut(Merge::First),
        ("script", b"exists") => Route::FanOut(Merge::MinEach),
        ("script", b"flush")
        | ("function", b"flush")
        | ("function", b"delete")
        | ("function", b"restore") => Route::FanOut(Merge::AllOk),
        ("script", b"kill") | ("function", b"kill") => Route::FanOut(Merge::AnyOk),
        ("function", b"list") | ("function", b"dump") | ("function", b"stats") => Route::AnyGroup,
        // HELP, DEBUG and unknown subcommands get a server's own answer
        ("script", _) | ("function", _) => Route::AnyGroup,
        _ => return None,
    })
}

/// The proxy's `PROXY` admin command is not in the model table; it is a row of ours.
static PROXY_SPEC: CommandSpec = CommandSpec {
    name: "proxy",
    arity: -2,
    flags: flag::ADMIN | flag::NOSCRIPT | flag::LOADING | flag::STALE,
    keys: Keys::None,
    group: "server",
};

pub struct Table {
    pub cmds: Vec<Cmd>,
    by_name: HashMap<&'static [u8], usize, foldhash::fast::FixedState>,
}

/// Every command the proxy knows, built once.
pub fn table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| {
        let cmds: Vec<Cmd> = COMMANDS
            .iter()
            .chain(EXTRA_COMMANDS)
            .chain(std::iter::once(&PROXY_SPEC))
            .enumerate()
            .map(|(index, spec)| Cmd {
                spec,
                route: route_of(spec),
                index,
            })
            .collect();
        let by_name = cmds
            .iter()
            .map(|c| (c.spec.name.as_bytes(), c.index))
            .collect();
        Table { cmds, by_name }
    })
}

impl Table {
    /// Case-insensitive lookup without allocating for names up to 32 bytes.
    pub fn lookup(&self, name: &[u8]) -> Option<&Cmd> {
        let mut buf = [0u8; 32];
        let lower = buf.get_mut(..name.len())?;
        for (d, s) in lower.iter_mut().zip(name) {
            *d = s.to_ascii_lowercase();
        }
        self.by_name.get(&*lower).map(|&i| &self.cmds[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_has_one_name_and_a_sensible_route() {
        let t = table();
        assert_eq!(
            t.by_name.len(),
            t.cmds.len(),
            "duplicate names across tables"
        );
        let r = |n: &str| t.lookup(n.as_bytes()).unwrap().route;
        assert_eq!(r("GET"), Route::Slot);
        assert_eq!(r("mget"), Route::Split(Merge::Values, SplitKind::Keys));
        assert_eq!(r("MSET"), Route::Split(Merge::AllOk, SplitKind::Pairs));
        assert_eq!(r("msetnx"), Route::Slot);
        assert_eq!(r("blpop"), Route::Private);
        assert_eq!(r("evalsha"), Route::Slot);
        assert_eq!(r("config"), Route::Unsupported);
        assert_eq!(r("ping"), Route::Local);
        assert!(t.lookup(b"nosuchcommand").is_none());
        assert!(t.lookup(&[b'x'; 40]).is_none());
    }
}
