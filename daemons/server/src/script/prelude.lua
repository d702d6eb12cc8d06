-- kvfleet's script environment, loaded once into the server's Lua state.
--
-- Scripts see a read-only view of the globals Redis allows (writing one is
-- "Attempt to modify a readonly table", reading a missing one is "Script
-- attempted to access nonexistent global variable"), the redis.* API with
-- Redis 7's error tables ({err = "CODE message"}), and Redis's pcall, which
-- hands such tables back as their message.
--
-- Arguments from Rust: `K` (hidden state: `K.err` an error table a Rust
-- function raised), `api` (the Rust-made functions: redis.* that may raise,
-- math.random's generator (nil outside a run),
-- the cjson/cmsgpack/bit/struct libraries, and `where`: the innermost
-- script frame's source and line), `version` and `version_num`.
local K, api, version, version_num = ...

local rawpcall, rawset_, type_, tostring_, error_, select_, unpack_, setmt =
    pcall, rawset, type, tostring, error, select, unpack, setmetatable

local readonly = setmt({}, { __mode = 'k' })

local function ro_error()
    error_('Attempt to modify a readonly table', 2)
end

-- A read-only view of `t`: reads pass through, writes raise.
local function protect(t)
    local view = setmt({}, { __index = t, __newindex = ro_error, __metatable = false })
    readonly[view] = true
    return view
end

local function copy(t)
    local c = {}
    for k, v in pairs(t) do c[k] = v end
    return c
end

local function pack(...)
    return { n = select_('#', ...), ... }
end

-- An error a Rust function raised: its table waits in K.err (Rust cannot
-- raise a table itself).
local function pending(e)
    if type_(e) == 'userdata' then
        local p = K.err
        if p then
            K.err = nil
            return p
        end
    end
    return e
end

-- Redis 7's pcall: an error table comes back as its message.
local function redis_pcall(...)
    local r = pack(rawpcall(...))
    if not r[1] then
        r[2] = pending(r[2])
        if type_(r[2]) == 'table' then
            local e = r[2].err
            if type_(e) == 'string' or type_(e) == 'number' then r[2] = e end
        end
    end
    return unpack_(r, 1, r.n)
end

-- (int) cast of lua_tonumber, as Redis reads its numeric arguments.
local function c_int(v)
    local n = tonumber(v) or 0
    if n >= 0 then return math.floor(n) end
    return math.ceil(n)
end

local function one_string(...)
    return select_('#', ...) == 1 and type_((...)) == 'string'
end

local function error_reply(...)
    if not one_string(...) then
        return { err = 'ERR wrong number or type of arguments' }
    end
    local e = (...)
    if e:sub(1, 1) == '-' then e = e:sub(2) end
    local code, msg = e:match('^([^ ]*) (.*)$')
    if not code then code, msg = 'ERR', e end
    msg = msg:gsub('^[\r\n]+', ''):gsub('[\r\n]+$', '')
    return { err = code .. ' ' .. msg }
end

local function status_reply(...)
    if not one_string(...) then
        return { err = 'ERR wrong number or type of arguments' }
    end
    return { ok = (...) }
end

-- What both redis tables (run time and library load time) carry.
local function redis_base(t)
    t.log = api.log
    t.LOG_DEBUG, t.LOG_VERBOSE, t.LOG_NOTICE, t.LOG_WARNING = 0, 1, 2, 3
    t.REDIS_VERSION, t.REDIS_VERSION_NUM = version, version_num
    return t
end

-- The redis table (call and pcall raise when no script runs).
local redis_real = redis_base({
    call = api.call,
    pcall = api.pcall,
    setresp = api.setresp,
    sha1hex = api.sha1hex,
    error_reply = error_reply,
    status_reply = status_reply,
    set_repl = api.set_repl,
    REPL_NONE = 0,
    REPL_AOF = 1,
    REPL_SLAVE = 2,
    REPL_REPLICA = 2,
    REPL_ALL = 3,
    acl_check_cmd = api.acl_check_cmd,
    breakpoint = function() return false end,
    debug = function() end,
    replicate_commands = function() return true end,
})

local math_ = copy(math)
math_.random = function(...)
    local r = api.random()
    if not r then error_('math.random can only be called inside a script invocation', 2) end
    local n = select_('#', ...)
    if n == 0 then return r end
    if n == 1 then
        local u = c_int((...))
        if u < 1 then error_("bad argument #1 to 'random' (interval is empty)", 2) end
        return math.floor(r * u) + 1
    end
    if n == 2 then
        local l, u = c_int((...)), c_int(select_(2, ...))
        if l > u then error_("bad argument #2 to 'random' (interval is empty)", 2) end
        return math.floor(r * (u - l + 1)) + l
    end
    error_('wrong number of arguments', 2)
end
math_.randomseed = function(seed)
    if not api.randomseed(c_int(seed)) then
        error_('math.randomseed can only be called inside a script invocation', 2)
    end
end

local function safe_rawset(t, k, v)
    if readonly[t] then error_('Attempt to modify a readonly table', 0) end
    return rawset_(t, k, v)
end

-- The globals scripts see (`visible`), behind the read-only view `env`.
local visible = {
    string = protect(string),
    math = protect(math_),
    table = protect(table),
    cjson = protect(api.cjson),
    cmsgpack = protect(api.cmsgpack),
    bit = protect(api.bit),
    struct = protect(api.struct),
    coroutine = protect(coroutine),
    redis = protect(redis_real),
    xpcall = xpcall,
    tostring = tostring,
    setmetatable = setmetatable,
    next = next,
    assert = assert,
    tonumber = tonumber,
    rawequal = rawequal,
    collectgarbage = collectgarbage,
    getmetatable = getmetatable,
    rawset = safe_rawset,
    pcall = redis_pcall,
    type = type,
    select = select,
    unpack = unpack,
    gcinfo = gcinfo,
    pairs = pairs,
    rawget = rawget,
    loadstring = loadstring,
    ipairs = ipairs,
    _VERSION = _VERSION,
    load = load,
    error = error,
}
local function nonexistent(_, k)
    error_("Script attempted to access nonexistent global variable '" .. tostring_(k) .. "'", 2)
end
-- Library functions see the same globals without EVAL's KEYS and ARGV
-- (the server sets those in `visible`), behind a view of their own.
local fn_visible = copy(visible)
setmt(visible, { __index = nonexistent })
setmt(fn_visible, { __index = nonexistent })
local env = setmt({}, { __index = visible, __newindex = ro_error, __metatable = false })
readonly[env] = true
rawset_(visible, '_G', env)
local fn_env_mt = { __index = fn_visible, __newindex = ro_error, __metatable = false }
local fn_env = setmt({}, fn_env_mt)
readonly[fn_env] = true
rawset_(fn_visible, '_G', fn_env)

-- What a library's top level sees while FUNCTION LOAD runs it: only
-- redis.register_function, redis.log and the version (as in Redis).
local load_visible = setmt({
    redis = protect(setmt(redis_base({ register_function = api.register_function }),
        { __index = nonexistent })),
}, { __index = nonexistent })

local function loading(on)
    fn_env_mt.__index = on and load_visible or fn_visible
end

-- The string metatable is shared by every string: keep scripts off it.
getmetatable('').__metatable = false

-- xpcall's handler: Redis's error table, with the script's own position
-- (skipping C functions and this file's wrappers).
local function handler(e)
    e = pending(e)
    local source, line = api.where()
    if type_(e) == 'userdata' then
        -- a library function's error, placed like luaL_error places it
        local m = api.errmsg(e)
        if m then
            e = m
            if source then e = source:gsub('^[@=]', '') .. ':' .. tostring_(line) .. ': ' .. m end
        end
    end
    if type_(e) ~= 'table' then e = { err = 'ERR ' .. tostring_(e) } end
    if source then
        e.source = source
        e.line = line
    end
    return e
end

-- Whether a script left its KEYS or ARGV table as the server filled it
-- (`n` elements, no other keys, no metatable), so the next run may refill it.
-- (`next` from key n cannot fail: n is present.)
local getmt, rawget_, next_ = getmetatable, rawget, next
local function untouched(t, n)
    if getmt(t) ~= nil then return false end
    if n == 0 then return next_(t) == nil end
    return rawget_(t, n) ~= nil and next_(t, n) == nil
end

-- Runs an EVAL body (no arguments; the third result says whether it left
-- KEYS and ARGV untouched) or a library function (keys, args). Code in
-- this file still runs after SCRIPT KILL; the script's own code does not.
local function run(f, keys, args, with_args, nkeys, nargs)
    if with_args then
        return xpcall(function() return f(keys, args) end, handler)
    end
    if not nkeys then return xpcall(f, handler) end
    local ok, v = xpcall(f, handler)
    return ok, v, ok and untouched(keys, nkeys) and untouched(args, nargs)
end

return env, fn_env, visible, run, loading
