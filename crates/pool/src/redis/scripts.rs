//! The Lua scripts that make each multi-step change of the Redis backend atomic (run with
//! `EVALSHA`, loaded again by the client after a Redis restart emptied the script cache).

use std::sync::OnceLock;

use redis::Script;

/// A worker posts a chunk's reply, only while it still owns the entry (a worker that lost its
/// lease to another, or whose entry is gone, posts nothing: the owner will), then acknowledges
/// and deletes the entry, in one step.
///
/// KEYS: tasks, results. ARGV: group, consumer, entry id, sequence number, reply, its
/// signature (empty without an authkey). Returns 1 when posted, 0 when not the owner.
const COMPLETE: &str = r#"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #p == 0 or p[1][2] ~= ARGV[2] then return 0 end
redis.call('XADD', KEYS[2], 'NOMKSTREAM', '*', 's', ARGV[4], 'k', 'r', 'n', p[1][4], 'r', ARGV[5], 'h', ARGV[6])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
return 1
"#;

/// The lease heartbeat: renew the entry's lease (reset its idle time, not its delivery count)
/// only while this consumer owns it, so an entry reclaimed by another worker is never taken
/// back by the one that lost it.
///
/// KEYS: tasks. ARGV: group, consumer, entry id. Returns 1 when renewed, 0 when lost.
const TOUCH: &str = r#"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #p == 0 or p[1][2] ~= ARGV[2] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1
"#;

/// Reclaim one entry whose lease lapsed (`XAUTOCLAIM` with the lease as minimum idle time).
/// An entry delivered more often than its `m` field allows is not run again: it is
/// acknowledged, deleted, and reported lost to its driver (`k = l`, `n` the deliveries).
///
/// KEYS: tasks. ARGV: group, consumer, lease (ms), default max deliveries, results prefix.
/// Returns `{id, fields, deliveries}` or nil.
const RECLAIM: &str = r#"
local cursor = '0-0'
for _ = 1, 64 do
  local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], cursor, 'COUNT', 1)
  cursor = r[1]
  for _, e in ipairs(r[2]) do
    -- (Redis 6.2 lists a deleted entry as nil, which Lua sees as false; Redis's Lua is 5.1:
    -- no goto)
    if type(e) == 'table' then
      local id, f = e[1], e[2]
      local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
      local n = 1
      if #p > 0 then n = tonumber(p[1][4]) end
      local fields = {}
      for i = 1, #f, 2 do fields[f[i]] = f[i + 1] end
      local m = tonumber(fields['m'] or '') or tonumber(ARGV[4])
      if n > m then
        local d, s = fields['d'], fields['s']
        if d and s and string.match(d, '^%x+$') and string.match(s, '^%d+$') then
          redis.call('XADD', ARGV[5] .. d, 'NOMKSTREAM', '*', 's', s, 'k', 'l', 'n', n - 1, 'r', '')
        end
        redis.call('XACK', KEYS[1], ARGV[1], id)
        redis.call('XDEL', KEYS[1], id)
      else
        return {id, f, n}
      end
    end
  end
  if cursor == '0-0' then return false end
end
return false
"#;

/// Register (or renew) a worker in the workers set until now + ttl (server time), dropping
/// the registrations that expired.
///
/// KEYS: workers. ARGV: member, ttl (ms).
const REGISTER: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1
"#;

/// The live workers of every build (server time).
///
/// KEYS: workers.
const LIVE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
"#;

/// Every script, to load on each new connection (so a pipelined `EVALSHA` finds it; a
/// restarted Redis has an empty script cache, and a restart breaks the connection).
pub(crate) fn load_all(c: &mut redis::Connection) -> redis::RedisResult<()> {
    let mut p = redis::pipe();
    for s in [complete(), touch(), reclaim(), register(), live()] {
        p.load_script(s).ignore();
    }
    p.query(c)
}

/// An `EVALSHA` of `script` (loaded by [`load_all`]) with `keys`; add the arguments.
pub(crate) fn evalsha(script: &Script, keys: &[&str]) -> redis::Cmd {
    let mut c = redis::cmd("EVALSHA");
    c.arg(script.get_hash()).arg(keys.len()).arg(keys);
    c
}

macro_rules! script {
    ($name:ident, $src:ident) => {
        pub(crate) fn $name() -> &'static Script {
            static S: OnceLock<Script> = OnceLock::new();
            S.get_or_init(|| Script::new($src))
        }
    };
}

script!(complete, COMPLETE);
script!(touch, TOUCH);
script!(reclaim, RECLAIM);
script!(register, REGISTER);
script!(live, LIVE);
