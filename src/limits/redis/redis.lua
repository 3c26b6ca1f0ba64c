-- orgate's limits on Redis: the server side of src/limits/redis/.
--
-- One script, three operations (ARGV[1]); each runs atomically on the server:
--   check  : every limit of one request, checked and, if all pass, charged. One round trip.
--   replay : what responses used, from a replica's journal: tokens into the token buckets,
--            cost into the spend counters; each batch applied once.
--   renew  : extends a request's concurrency lease.
-- (and `periods`, for tests: the calendar arithmetic alone.)
--
-- The check's time is the server's (TIME), never a replica's, so replicas with skewed clocks
-- agree on rates; a replayed charge carries the second its replica made it (`at`), since one
-- kept through an outage must land in the window it was made in.
-- Times are in microseconds since the Unix epoch (below 2^53: exact in Lua's doubles).
--
-- Keys of one client key id (the {id} hash tag keeps them in one slot):
--   orgate:{id}:rate                 string: the request rate's GCRA theoretical arrival time
--   orgate:{id}:tokens               string: when the token bucket is full again
--   orgate:{id}:leases               zset:   concurrency leases, member = lease id, score = expiry (ms)
--   orgate:{id}:spend:day:<days>     string: micro-dollars spent in that UTC day (days since 1970)
--   orgate:{id}:spend:month:<months> string: micro-dollars spent in that UTC month (months since 1970-01)
--   orgate:global:rate               string: the gateway-wide rate's theoretical arrival time
-- Every key expires on its own once it no longer holds anything a limit needs.
--   orgate:journal:<writer>          string: the last journal batch applied for that replica
-- The spend counters' names depend on the time charged, so the script builds them from the
-- key's spend prefix; they share its hash tag.

-- The check's verdict: admitted, or the first limit that refuses. These values are the
-- discriminants of `Code` in verdict.rs, and a unit test there reads them here: change both.
local ADMITTED = 0
local REFUSED_BUDGET = 1
local REFUSED_TOKENS = 2
local REFUSED_CONCURRENCY = 3
local REFUSED_REQUESTS = 4
local REFUSED_GLOBAL = 5
-- A budget refusal's detail: the period whose budget is spent (read by verdict.rs too).
local BUDGET_DAY = 1
local BUDGET_MONTH = 2

if redis.replicate_commands then
  -- Redis < 5 must be told to replicate effects (TIME is not deterministic); later ones do.
  pcall(redis.replicate_commands)
end

local MINUTE = 60000000 -- µs
local SECOND = 1000000 -- µs
local DAY_SECS = 86400
-- Float slack for "exactly full": a nanosecond.
local EPS = 0.001

local function clock()
  local t = redis.call('TIME')
  local secs = tonumber(t[1])
  return secs * SECOND + tonumber(t[2]), secs
end

local function number_at(key)
  local v = redis.call('GET', key)
  if v then
    return tonumber(v) or 0
  end
  return 0
end

local function int(x)
  return string.format('%.0f', math.floor(x))
end

-- Lets a lease set live at least `ms` more; never shortens it (leases taken with a longer
-- lease_ttl, before a reload or on another replica, keep theirs).
local function keep_for(key, ms)
  if redis.call('PTTL', key) < ms then
    redis.call('PEXPIRE', key, ms)
  end
end

-- (year, month 1-12) of a day count since 1970-01-01 (H. Hinnant's algorithm, as spend.rs).
local function civil_from_days(days)
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local month
  if mp < 10 then month = mp + 3 else month = mp - 9 end
  local year = yoe + era * 400
  if month <= 2 then year = year + 1 end
  return year, month
end

-- Days since 1970-01-01 of the first of (year, month).
local function days_from_civil(year, month)
  if month <= 2 then year = year - 1 end
  local era = math.floor(year / 400)
  local yoe = year - era * 400
  local m
  if month > 2 then m = month - 3 else m = month + 9 end
  local doy = math.floor((153 * m + 2) / 5)
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

-- The UTC day and month holding `secs`: their indices and the Unix times they end.
local function periods(secs)
  local day = math.floor(secs / DAY_SECS)
  local year, month = civil_from_days(day)
  local month_index = (year - 1970) * 12 + (month - 1)
  local next_index = month_index + 1
  local month_end = days_from_civil(1970 + math.floor(next_index / 12), next_index % 12 + 1)
    * DAY_SECS
  return day, (day + 1) * DAY_SECS, month_index, month_end
end

-- A GCRA bucket of `capacity` µs that one request costs `interval` of. Returns whether the
-- request fits, the new arrival time if it does, and the µs used before (refused) or after.
local function gcra(key, now, interval, capacity)
  local tat = math.max(number_at(key), now)
  local after = tat + interval - now
  if after > capacity + EPS then
    return false, after - capacity, tat - now
  end
  return true, tat + interval, after
end

-- KEYS: rate, tokens, leases, spend prefix, global rate.
-- ARGV: 'check', requests_per_minute, burst, max_concurrent, tokens_per_minute,
--       usd_per_day and usd_per_month in micro-dollars, global_requests_per_second,
--       lease_ttl (ms), lease id. 0 = unlimited.
-- Returns {code, wait_us, detail, req_seen, req_remaining, req_reset_us, tok_seen,
--          tok_remaining, tok_reset_us}: code ADMITTED or the REFUSED_* of the refusing limit
-- (detail: BUDGET_DAY or BUDGET_MONTH for a budget, else 0). `*_seen` is 1 when that limit
-- was looked at (its remaining and reset are then meaningful), else 0.
-- The order is the in-memory backend's: budgets, tokens, concurrency, the key's rate, the
-- global rate; a request several limits refuse is refused by the first. All or nothing: a
-- refusal writes nothing.
local function check()
  local k_rate, k_tokens, k_leases, k_spend, k_global = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
  local rpm = tonumber(ARGV[2])
  local burst = tonumber(ARGV[3])
  local max_concurrent = tonumber(ARGV[4])
  local tpm = tonumber(ARGV[5])
  local day_budget = tonumber(ARGV[6])
  local month_budget = tonumber(ARGV[7])
  local global_rps = tonumber(ARGV[8])
  local lease_ttl = tonumber(ARGV[9])
  local lease = ARGV[10]

  local now, secs = clock()
  local now_ms = math.floor(now / 1000)
  local req = { 0, 0, 0 }
  local tok = { 0, 0, 0 }
  local function answer(code, wait, detail)
    return { code, math.ceil(wait), detail, req[1], req[2], math.ceil(req[3]), tok[1], tok[2],
      math.ceil(tok[3]) }
  end

  -- 1. Spend budgets: only look.
  if day_budget > 0 or month_budget > 0 then
    local day, day_end, month, month_end = periods(secs)
    if day_budget > 0 and number_at(k_spend .. ':day:' .. day) >= day_budget then
      return answer(REFUSED_BUDGET, (day_end - secs) * SECOND, BUDGET_DAY)
    end
    if month_budget > 0 and number_at(k_spend .. ':month:' .. month) >= month_budget then
      return answer(REFUSED_BUDGET, (month_end - secs) * SECOND, BUDGET_MONTH)
    end
  end

  -- 2. Tokens: room for at least one token? Only look.
  if tpm > 0 then
    local used = math.max(number_at(k_tokens) - now, 0)
    local allowed = MINUTE - math.ceil(MINUTE / tpm)
    tok = { 1, math.max(math.floor((MINUTE - used) * tpm / MINUTE), 0), used }
    if used > allowed then
      return answer(REFUSED_TOKENS, used - allowed, 0)
    end
  end

  -- 3. Concurrency: a free slot once expired leases are gone? Taken at the end.
  if max_concurrent > 0 then
    redis.call('ZREMRANGEBYSCORE', k_leases, '-inf', now_ms)
    if redis.call('ZCARD', k_leases) >= max_concurrent then
      return answer(REFUSED_CONCURRENCY, SECOND, 0)
    end
  end

  -- 4. The key's rate: `burst` requests refilled at `rpm`. Taken at the end.
  local rate_tat
  if rpm > 0 then
    local interval = MINUTE / rpm
    local fits, value, used = gcra(k_rate, now, interval, interval * burst)
    if not fits then
      req = { 1, 0, used }
      return answer(REFUSED_REQUESTS, value, 0)
    end
    req = { 1, math.max(math.floor((interval * burst - used) / interval + 1e-9), 0), used }
    rate_tat = value
  end

  -- 5. The global rate: one second's worth of burst. Taken at the end.
  local global_tat
  if global_rps > 0 then
    local interval = SECOND / global_rps
    local fits, value = gcra(k_global, now, interval, interval * global_rps)
    if not fits then
      return answer(REFUSED_GLOBAL, value, 0)
    end
    global_tat = value
  end

  -- Every limit passed: take the rate cells and the slot.
  if rate_tat then
    redis.call('SET', k_rate, int(rate_tat), 'PX', math.ceil((rate_tat - now) / 1000) + 1000)
  end
  if global_tat then
    redis.call('SET', k_global, int(global_tat), 'PX', math.ceil((global_tat - now) / 1000) + 1000)
  end
  if max_concurrent > 0 then
    redis.call('ZADD', k_leases, now_ms + lease_ttl, lease)
    keep_for(k_leases, lease_ttl + 1000)
  end
  return answer(ADMITTED, 0, 0)
end

-- Adds `micros` to the spend counters of the UTC day and month holding `secs`. Counters
-- expire a day after their period ends.
local function add_spend(k_spend, secs, micros)
  local day, day_end, month, month_end = periods(secs)
  local k_day = k_spend .. ':day:' .. day
  redis.call('INCRBY', k_day, micros)
  redis.call('EXPIREAT', k_day, day_end + DAY_SECS)
  local k_month = k_spend .. ':month:' .. month
  redis.call('INCRBY', k_month, micros)
  redis.call('EXPIREAT', k_month, month_end + DAY_SECS)
end

-- KEYS: the writer's mark, then one per entry: the key's token bucket (a minute's entry) or
-- its spend prefix (a day's).
-- ARGV: 'replay', seq, mark_ttl (ms), then four per entry: kind ('m' minute, 'd' day),
--       amount (tokens or micro-dollars), tokens_per_minute, at (Unix seconds).
-- A batch of charges from one replica's journal (journal.rs), applied once: the mark holds
-- the last seq applied for that writer, and a batch at or below it (sent again after a lost
-- reply) changes nothing. Returns 1 when applied, 0 when it already was.
-- Tokens go into the bucket as if charged at `at`: ones a minute old have refilled; the
-- bucket may be overdrawn (the requests already ran). Spend goes to the day and month of `at`.
local function replay()
  local seq = tonumber(ARGV[2])
  local mark_ttl = tonumber(ARGV[3])
  local n = #KEYS - 1
  -- Everything checked before anything is written: an error does not undo earlier writes.
  if not seq or not mark_ttl or #ARGV ~= 3 + 4 * n then
    return redis.error_reply('orgate limits script: malformed replay')
  end
  for i = 1, n do
    local b = 3 + 4 * (i - 1)
    local kind = ARGV[b + 1]
    if (kind ~= 'm' and kind ~= 'd') or not tonumber(ARGV[b + 2]) or not tonumber(ARGV[b + 3])
      or not tonumber(ARGV[b + 4]) then
      return redis.error_reply('orgate limits script: malformed replay entry ' .. i)
    end
  end
  if number_at(KEYS[1]) >= seq then
    return 0
  end
  redis.call('SET', KEYS[1], seq, 'PX', mark_ttl)
  local now = clock()
  for i = 1, n do
    local b = 3 + 4 * (i - 1)
    local key, kind = KEYS[i + 1], ARGV[b + 1]
    local amount, tpm, at = tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
    if kind == 'm' then
      if amount > 0 and tpm > 0 then
        -- Never later than now: a replica's clock ahead of the server's charges no longer.
        local full_at = math.max(number_at(key), math.min(at * SECOND, now))
          + math.ceil(amount * MINUTE / tpm)
        if full_at > now then
          redis.call('SET', key, int(full_at), 'PX', math.ceil((full_at - now) / 1000) + 1000)
        end
      end
    elseif amount > 0 then
      add_spend(key, at, ARGV[b + 2])
    end
  end
  return 1
end

-- KEYS: leases. ARGV: 'renew', lease id, lease_ttl (ms), max_concurrent.
-- Extends the lease. One that already expired (Redis was out of reach longer than the TTL)
-- comes back only if a slot is free. Returns 1 when the lease is held, 0 when it is lost.
local function renew()
  local k_leases, lease = KEYS[1], ARGV[2]
  local lease_ttl = tonumber(ARGV[3])
  local max_concurrent = tonumber(ARGV[4])
  local now = clock()
  local now_ms = math.floor(now / 1000)
  redis.call('ZREMRANGEBYSCORE', k_leases, '-inf', now_ms)
  if redis.call('ZSCORE', k_leases, lease) or redis.call('ZCARD', k_leases) < max_concurrent then
    redis.call('ZADD', k_leases, now_ms + lease_ttl, lease)
    keep_for(k_leases, lease_ttl + 1000)
    return 1
  end
  return 0
end

local op = ARGV[1]
if op == 'check' then
  return check()
elseif op == 'replay' then
  return replay()
elseif op == 'renew' then
  return renew()
elseif op == 'periods' then
  -- For tests: the UTC day and month of ARGV[2] (Unix seconds). Touches no key.
  return { periods(tonumber(ARGV[2])) }
end
return redis.error_reply('orgate limits script: unknown operation ' .. tostring(op))
