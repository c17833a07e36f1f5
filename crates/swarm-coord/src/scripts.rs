//! The Lua scripts that make presence and consensus atomic on Redis (docs/FORMAT.md 2.6).
//!
//! Every script reads the time from the Redis server (`TIME`), so hosts whose clocks differ
//! still agree on expiry and deadlines. Replies are arrays of strings only: Redis truncates
//! Lua numbers to integers on the way out, and confidence sums are floats.

/// Lua's `now` in Unix milliseconds from the server clock.
macro_rules! now_ms {
    () => {
        "local t = redis.call('TIME')\n\
         local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    };
}

/// A heartbeat. KEYS: presence hash, heartbeat hash, deadline zset, participant hash. ARGV:
/// agent, expiry ms, key retention ms, the agent's signed join record. Marks the agent
/// online, records the server time, sets its deadline and rewrites its join record (so a
/// Redis that lost its data is repopulated within one interval). Returns
/// `{previous status or "", now}`: a previous `offline` means it came back.
pub(crate) const BEAT: &str = concat!(
    now_ms!(),
    r"
local agent = ARGV[1]
local prev = redis.call('HGET', KEYS[1], agent)
redis.call('HSET', KEYS[1], agent, 'online')
redis.call('HSET', KEYS[2], agent, string.format('%d', now))
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[2]), agent)
redis.call('HSET', KEYS[4], agent, ARGV[4])
for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[3]) end
if not prev then prev = '' end
return {prev, string.format('%d', now)}
"
);

/// The liveness check. KEYS: presence hash, heartbeat hash, deadline zset. Takes every agent
/// whose deadline has passed out of the zset and flips it from online to offline. Returns
/// `{agent, last heartbeat ms, ...}` for the agents this call flipped: one script runs at a
/// time, so of all the monitors exactly one sees each flip.
pub(crate) const LIVENESS: &str = concat!(
    now_ms!(),
    r"
local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 1000)
local out = {}
for _, agent in ipairs(due) do
  redis.call('ZREM', KEYS[3], agent)
  if redis.call('HGET', KEYS[1], agent) == 'online' then
    redis.call('HSET', KEYS[1], agent, 'offline')
    local last = redis.call('HGET', KEYS[2], agent)
    if not last then last = '0' end
    table.insert(out, agent)
    table.insert(out, last)
  end
end
return out
"
);

/// A vote, or (with an empty agent) a look at the round. KEYS: round hash, ballot hash.
/// ARGV: strategy, threshold, quorum, deadline ms, agent, approve (`1`/`0`), confidence,
/// signed ballot, retention ms.
///
/// Returns `{code, decided_now, status, for, against, weight_for, weight_against}` with code
/// `counted`, `duplicate`, `closed`, `expired` or `state`, or `{mismatch}` when the round
/// exists with other parameters. The rule is the one of `swarm_coord::tally`, step for step.
pub(crate) const VOTE: &str = concat!(
    now_ms!(),
    r"
local strategy, threshold, quorum, deadline = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local spec = ARGV[1] .. '|' .. ARGV[2] .. '|' .. ARGV[3] .. '|' .. ARGV[4]
local stored = redis.call('HGET', KEYS[1], 'spec')
if not stored then
  redis.call('HSET', KEYS[1], 'spec', spec, 'status', 'open', 'seq', '0',
    'for', '0', 'against', '0', 'wfor', '0', 'wagainst', '0')
  redis.call('PEXPIRE', KEYS[1], string.format('%d', math.max(deadline - now, 0) + tonumber(ARGV[9])))
elseif stored ~= spec then
  return {'mismatch'}
end
local function reply(code, decided)
  local r = redis.call('HMGET', KEYS[1], 'status', 'for', 'against', 'wfor', 'wagainst')
  return {code, decided, r[1], r[2], r[3], r[4], r[5]}
end
local agent = ARGV[5]
local status = redis.call('HGET', KEYS[1], 'status')
if agent ~= '' then
  if redis.call('HEXISTS', KEYS[2], agent) == 1 then return reply('duplicate', '0') end
  if status ~= 'open' then return reply('closed', '0') end
end
if status == 'open' and now >= deadline then
  redis.call('HSET', KEYS[1], 'status', 'expired', 'decided_at', string.format('%d', now))
  if agent == '' then return reply('state', '1') end
  return reply('expired', '1')
end
if agent == '' then return reply('state', '0') end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('HSET', KEYS[2], agent, seq .. ' ' .. ARGV[8])
redis.call('PEXPIRE', KEYS[2], string.format('%d', math.max(deadline - now, 0) + tonumber(ARGV[9])))
local r = redis.call('HMGET', KEYS[1], 'for', 'against', 'wfor', 'wagainst')
local vf, va, wf, wa = tonumber(r[1]), tonumber(r[2]), tonumber(r[3]), tonumber(r[4])
local c = tonumber(ARGV[7])
if ARGV[6] == '1' then vf = vf + 1; wf = wf + c else va = va + 1; wa = wa + c end
local cast = vf + va
local outcome = 'open'
if cast < quorum then
  if strategy == 'unanimous' and va > 0 then outcome = 'failed' end
else
  local ok
  if strategy == 'majority' then ok = 2 * vf > cast
  elseif strategy == 'threshold' then ok = vf >= threshold * cast
  elseif strategy == 'weighted' then
    local total = wf + wa
    ok = total > 0 and wf >= threshold * total
  else ok = va == 0 end
  if ok then outcome = 'achieved' else outcome = 'failed' end
end
redis.call('HSET', KEYS[1], 'for', string.format('%d', vf), 'against', string.format('%d', va),
  'wfor', string.format('%.17g', wf), 'wagainst', string.format('%.17g', wa), 'status', outcome)
if outcome ~= 'open' then
  redis.call('HSET', KEYS[1], 'decided_at', string.format('%d', now))
  return reply('counted', '1')
end
return reply('counted', '0')
"
);
