//! The Lua scripts the bridge runs in Redis, where a decision needs the state and the write at
//! once (an append only if the stream has room; a claim with the delivery counts). Redis keeps
//! them by their SHA1 (`EVALSHA`; the bridge loads a script again after a restart). A script
//! call costs Redis some 8 µs beyond its commands, so the command path (queueing, responses,
//! leases) uses plain pipelines instead.

use std::sync::LazyLock;

use redis::Script;

/// The trimming policy, used by [`EMIT`]: a stream keeps every entry a durable
/// consumer group has not acknowledged — its oldest pending entry, or everything after the last
/// one it was given — and, for best-effort readers, the last `retain` ms. With `all_unneeded`
/// set the retention is ignored: only what durable groups still need is kept.
///
/// Returns the new length and the durable group holding the oldest needed entry ('' if none).
const TRIM_FUNCTION: &str = r#"
local function id_parts(id)
  local dash = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
end
local function older(a, b)
  local ams, aseq = id_parts(a)
  local bms, bseq = id_parts(b)
  return ams < bms or (ams == bms and aseq < bseq)
end
local function trim(key, retain, all_unneeded)
  local keep, holder = nil, ''
  if all_unneeded then
    local last = redis.call('XINFO', 'STREAM', key)
    for i = 1, #last, 2 do
      if last[i] == 'last-generated-id' then
        local ms, seq = id_parts(last[i + 1])
        keep = ms .. '-' .. (seq + 1)
      end
    end
  else
    local now = redis.call('TIME')
    keep = (tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - retain) .. '-0'
  end
  for _, group in ipairs(redis.call('XINFO', 'GROUPS', key)) do
    local name, pending, delivered
    for i = 1, #group, 2 do
      if group[i] == 'name' then name = group[i + 1]
      elseif group[i] == 'pending' then pending = group[i + 1]
      elseif group[i] == 'last-delivered-id' then delivered = group[i + 1] end
    end
    if string.sub(name, 1, 1) ~= '~' then
      local needed
      if pending > 0 then
        needed = redis.call('XPENDING', key, name)[2]
      else
        local ms, seq = id_parts(delivered)
        needed = ms .. '-' .. (seq + 1)
      end
      if older(needed, keep) then keep, holder = needed, name end
    end
  end
  redis.call('XTRIM', key, 'MINID', '~', keep)
  return redis.call('XLEN', key), holder
end
"#;

/// Appends an event to its stream unless the stream is full of entries durable groups still need.
///
/// KEYS: the stream. ARGV: the envelope's JSON, the stream's maximum length, how many appends
/// between trims, the best-effort retention (ms). Returns `{'ok', id}`, or `{'full', length,
/// the durable group holding the oldest entry}`.
pub static EMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"{TRIM_FUNCTION}
local max_len, every, retain = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local length = redis.call('XLEN', KEYS[1])
if length >= max_len then
  local holder
  length, holder = trim(KEYS[1], retain, true)
  if length >= max_len then return {{'full', length, holder}} end
end
local id = redis.call('XADD', KEYS[1], '*', 'm', ARGV[1])
if (length + 1) % every == 0 then trim(KEYS[1], retain, false) end
return {{'ok', id}}
"#
    ))
});

/// Claims a durable group's deliveries that have been idle at least the claim time (their
/// consumer died or lost its connection), with their delivery counts, and forgets consumers long
/// gone that hold nothing.
///
/// KEYS: the stream. ARGV: the group, this consumer, the claim idle time (ms), how many to claim,
/// the idle time after which an empty consumer is forgotten (ms). Returns `{entries, deleted}`:
/// each entry `{id, delivery count, field-value list}`; `deleted` counts pending entries that
/// were trimmed away before they could be claimed.
pub static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local claimed = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], '0-0', 'COUNT', ARGV[4])
local out = {}
for _, entry in ipairs(claimed[2]) do
  local pending = redis.call('XPENDING', KEYS[1], ARGV[1], entry[1], entry[1], 1, ARGV[2])
  local count = 1
  if pending[1] then count = pending[1][4] end
  out[#out + 1] = {entry[1], count, entry[2]}
end
local forget_after = tonumber(ARGV[5])
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local name, pending, idle
  for i = 1, #consumer, 2 do
    if consumer[i] == 'name' then name = consumer[i + 1]
    elseif consumer[i] == 'pending' then pending = consumer[i + 1]
    elseif consumer[i] == 'idle' then idle = consumer[i + 1] end
  end
  if pending == 0 and idle > forget_after and name ~= ARGV[2] then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
  end
end
return {out, #claimed[3]}
"#,
    )
});

/// `EVALSHA` of `script` on `keys`; the caller adds the arguments. Sent with [`eval`].
pub(crate) fn evalsha(script: &Script, keys: &[&str]) -> redis::Cmd {
    let mut command = redis::cmd("EVALSHA");
    command.arg(script.get_hash()).arg(keys.len()).arg(keys);
    command
}

/// Runs a script call made by [`evalsha`], loading the script first if Redis does not have it
/// (a new or restarted server).
pub(crate) async fn eval<T: redis::FromRedisValue>(
    connection: &mut impl redis::aio::ConnectionLike,
    script: &Script,
    command: &redis::Cmd,
) -> redis::RedisResult<T> {
    match command.query_async(connection).await {
        Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
            script.prepare_invoke().load_async(connection).await?;
            command.query_async(connection).await
        }
        outcome => outcome,
    }
}
