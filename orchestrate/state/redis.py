"""The Redis back-end (``redis://``, ``rediss://``): state shared by every process.

The only module that imports the `redis` client (``pip install
'orchestrate[redis]'``); its errors become `StateUnavailableError` here.

Each operation is **one Lua script**, and Redis runs a script alone, start to
end, with no other command in between: the check of every tier (or of a
budget) and the booking are one atomic step across all processes, in one
round trip. Time is the Redis server's own clock (``TIME``), so machines whose
clocks disagree still share one window; a test may pass its own clock instead.

Keys, under the namespace ``NS``, hash-tagged per limiter key or budget scope
(so a Redis Cluster keeps each script's keys on one node):

- ``NS:rl:{KEY}:<tier>``: the tier's log, a sorted set of starts scored by
  time (members ``lease`` or ``lease:tokens``); ``...:<tier>:sum`` the tokens in it;
- ``NS:rl:{KEY}:pace`` the earliest next start; ``NS:rl:{KEY}:pause`` the end
  of a pause; ``NS:rl:{KEY}:slots`` concurrency leases scored by expiry;
- ``NS:budget:{SCOPE}`` a hash (limit, spent, reserved), its fields created
  set-if-absent when the ceiling is set (never seeded by an increment);
  ``...:leases`` reservations scored by expiry; ``...:amounts`` their amounts;
  ``...:op:<ID>`` what a reservation or booking id was answered (fields ``r``,
  ``s``) for a day, so that a script run again with the same id (a client
  retrying after a lost reply) changes nothing and answers as the first time;
- ``NS:cache:<digest>`` cached answers, with a TTL.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from orchestrate.errors import UserInputError
from orchestrate.state.base import BudgetState, RateAnswer, SharedState, TierLimits

try:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise UserInputError("a redis:// state or cache needs the Redis client: pip install 'orchestrate[redis]'") from exc

__all__ = ["RedisState"]

ANSWER_SECONDS = 86_400  # how long a reservation or booking id is remembered (a retry comes within seconds)

_NOW = """
local function fmt(x) return string.format('%.17g', x) end
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
"""

# KEYS: per window (log, sum), then pace, pause, slots.
# ARGV: now|'', lease, tokens, interval, slack, concurrent, lease_seconds, n, then per window name, limit, span, weighted.
_ACQUIRE = (
    _NOW
    + """
local lease, tokens = ARGV[2], tonumber(ARGV[3])
local interval, slack = tonumber(ARGV[4]), tonumber(ARGV[5])
local concurrent, lease_s, n = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local pace_key, pause_key, slots_key = KEYS[2*n+1], KEYS[2*n+2], KEYS[2*n+3]
local longest, tier = 0, ''
local paused = tonumber(redis.call('GET', pause_key) or '')
if paused and paused - now > longest then longest, tier = paused - now, 'paused' end
local nxt = tonumber(redis.call('GET', pace_key) or '')
if interval > 0 and nxt and nxt - now > longest then longest, tier = nxt - now, 'requests_per_minute' end
local function units(member) return tonumber(string.match(member, ':([^:]+)$')) end
local windows = {}
for i = 1, n do
  local b = 8 + 4 * (i - 1)
  local w = {log = KEYS[2*i-1], sum = KEYS[2*i], name = ARGV[b+1], limit = tonumber(ARGV[b+2]),
             span = tonumber(ARGV[b+3]), weighted = ARGV[b+4] == '1'}
  w.amount = 1
  if w.weighted then w.amount = math.min(tokens, w.limit) end
  windows[i] = w
  local horizon = fmt(now - w.span)
  local used
  if w.weighted then
    local gone = redis.call('ZRANGEBYSCORE', w.log, '-inf', horizon)
    if #gone > 0 then
      local freed = 0
      for _, m in ipairs(gone) do freed = freed + units(m) end
      redis.call('ZREMRANGEBYSCORE', w.log, '-inf', horizon)
      redis.call('INCRBYFLOAT', w.sum, fmt(-freed))
    end
    if redis.call('ZCARD', w.log) == 0 then redis.call('DEL', w.sum) end
    used = tonumber(redis.call('GET', w.sum) or '0')
  else
    redis.call('ZREMRANGEBYSCORE', w.log, '-inf', horizon)
    used = redis.call('ZCARD', w.log)
  end
  local excess = used + w.amount - w.limit
  if excess > 1e-9 then
    local free_at
    if w.weighted then
      local entries = redis.call('ZRANGE', w.log, 0, -1, 'WITHSCORES')
      for j = 1, #entries, 2 do
        excess = excess - units(entries[j])
        if excess <= 1e-9 then free_at = tonumber(entries[j+1]) + w.span; break end
      end
    else
      local k = used - w.limit
      free_at = tonumber(redis.call('ZRANGE', w.log, k, k, 'WITHSCORES')[2]) + w.span
    end
    if free_at and free_at - now > longest then longest, tier = free_at - now, w.name end
  end
end
if longest > 0 then return {0, fmt(longest), tier} end
redis.call('ZREMRANGEBYSCORE', slots_key, '-inf', fmt(now))
if redis.call('ZCARD', slots_key) >= concurrent then return {0, '0', 'concurrent_requests'} end
redis.call('ZADD', slots_key, fmt(now + lease_s), lease)
redis.call('PEXPIRE', slots_key, math.ceil(lease_s * 1000) + 60000)
for _, w in ipairs(windows) do
  local ttl = math.ceil(w.span * 1000) + 60000
  if w.weighted then
    redis.call('ZADD', w.log, fmt(now), lease .. ':' .. fmt(w.amount))
    redis.call('INCRBYFLOAT', w.sum, fmt(w.amount))
    redis.call('PEXPIRE', w.sum, ttl)
  else
    redis.call('ZADD', w.log, fmt(now), lease)
  end
  redis.call('PEXPIRE', w.log, ttl)
end
if interval > 0 then
  local base = now
  if nxt then base = math.max(nxt, now - slack) end
  redis.call('SET', pace_key, fmt(base + interval), 'PX', math.ceil(interval * 1000) + 60000)
end
return {1, '0', ''}
"""
)

# KEYS: pause. ARGV: now|''. The seconds left of a pause (0 when none), on the server's clock.
_PAUSED_FOR = (
    _NOW
    + """
local current = tonumber(redis.call('GET', KEYS[1]) or '')
if not current or current <= now then return '0' end
return fmt(current - now)
"""
)

# KEYS: pause. ARGV: now|'', seconds.
_PAUSE = (
    _NOW
    + """
local seconds = tonumber(ARGV[2])
local current = tonumber(redis.call('GET', KEYS[1]) or '')
if not current or now + seconds > current then
  redis.call('SET', KEYS[1], fmt(now + seconds), 'PX', math.ceil(seconds * 1000) + 60000)
end
return 1
"""
)

# KEYS: hash, leases, amounts. Lapsed reservations are dropped before anything else.
_EXPIRE = """
local function expire()
  local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', fmt(now))
  for _, lease in ipairs(stale) do
    local amount = tonumber(redis.call('HGET', KEYS[3], lease) or '0')
    redis.call('HDEL', KEYS[3], lease)
    redis.call('HINCRBYFLOAT', KEYS[1], 'reserved', fmt(-amount))
  end
  if #stale > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', fmt(now)) end
  if redis.call('ZCARD', KEYS[2]) == 0 and redis.call('HEXISTS', KEYS[1], 'reserved') == 1 then
    redis.call('HSET', KEYS[1], 'reserved', '0')
  end
end
local function state()
  local h = redis.call('HMGET', KEYS[1], 'limit', 'spent', 'reserved')
  return {h[1] or '', h[2] or '0', h[3] or '0', redis.call('ZCARD', KEYS[2])}
end
"""

# KEYS: hash, leases, amounts, op. ARGV: now|'', lease, amount, lease_seconds, answer_seconds.
# An id already reserved answers as the first time; a refusal changed nothing and is not kept.
_RESERVE = (
    _NOW
    + _EXPIRE
    + """
local first = redis.call('HGET', KEYS[4], 'r')
if first then return cjson.decode(first) end
expire()
local h = redis.call('HMGET', KEYS[1], 'limit', 'spent', 'reserved')
local limit = tonumber(h[1] or '')
local spent, reserved = tonumber(h[2] or '0'), tonumber(h[3] or '0')
-- A figure that is not a finite amount (nan compares false with everything; a negative spend
-- loosens the ceiling) refuses every call until it is corrected: fail closed.
local function bad(x) return x ~= x or x == math.huge or x == -math.huge end
if spent == nil or reserved == nil or bad(spent) or bad(reserved) or spent < 0
  or (h[1] and (limit == nil or bad(limit) or limit < 0)) then
  return {'corrupt', '', '0'}
end
local committed = spent + reserved
if not limit then return {'unset', '', fmt(committed)} end
local amount = tonumber(ARGV[3])
if committed + amount > limit + 1e-12 then return {'refused', h[1], fmt(committed)} end
redis.call('HINCRBYFLOAT', KEYS[1], 'reserved', fmt(amount))
redis.call('HSET', KEYS[3], ARGV[2], fmt(amount))
redis.call('ZADD', KEYS[2], fmt(now + tonumber(ARGV[4])), ARGV[2])
local answer = {'ok', h[1], fmt(committed)}
redis.call('HSET', KEYS[4], 'r', cjson.encode(answer))
redis.call('EXPIRE', KEYS[4], ARGV[5])
return answer
"""
)

# KEYS: hash, leases, amounts, op. ARGV: now|'', lease, cost, answer_seconds.
# The cost is booked even when the lease had lapsed (it was spent), and once per id.
_SETTLE = (
    _NOW
    + _EXPIRE
    + """
if redis.call('HEXISTS', KEYS[4], 's') == 1 then return 0 end
expire()
local amount = tonumber(redis.call('HGET', KEYS[3], ARGV[2]) or '')
if amount then
  redis.call('HDEL', KEYS[3], ARGV[2])
  redis.call('ZREM', KEYS[2], ARGV[2])
  redis.call('HINCRBYFLOAT', KEYS[1], 'reserved', fmt(-amount))
end
redis.call('HINCRBYFLOAT', KEYS[1], 'spent', ARGV[3])
redis.call('HSET', KEYS[4], 's', ARGV[3])
redis.call('EXPIRE', KEYS[4], ARGV[4])
return 1
"""
)

# ARGV: now|'', op ('get' | 'set' | 'reset' | 'correct'), value (a limit, or what was spent).
# Setting a ceiling creates the counters set-if-absent: a scope's spend is never seeded by an increment.
_BUDGET = (
    _NOW
    + _EXPIRE
    + """
expire()
if ARGV[2] == 'set' then
  redis.call('HSET', KEYS[1], 'limit', ARGV[3])
  redis.call('HSETNX', KEYS[1], 'spent', '0')
  redis.call('HSETNX', KEYS[1], 'reserved', '0')
end
if ARGV[2] == 'reset' then redis.call('HSET', KEYS[1], 'spent', '0') end
if ARGV[2] == 'correct' then redis.call('HSET', KEYS[1], 'spent', ARGV[3]) end
return state()
"""
)

# KEYS: one sorted set of leases. ARGV: now|'', lease_seconds, leases...
_RENEW = (
    _NOW
    + """
local expiry = fmt(now + tonumber(ARGV[2]))
for i = 3, #ARGV do redis.call("ZADD", KEYS[1], "XX", expiry, ARGV[i]) end
return 1
"""
)

_TIERS = ("requests_per_minute", "requests_per_hour", "requests_per_day", "tokens_per_minute")


class RedisState(SharedState):
    """Shared state in Redis; see the module docstring for the keys and scripts.

    Args:
        url: ``redis://[user:password@]host:port/db`` or ``rediss://`` (TLS).
        password: Used when the URL carries none (``REDIS_PASSWORD``).
        options: Further URL query options, passed to the client.
    """

    def __init__(
        self, url: str, *, password: str | None = None, options: dict[str, str] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(url, **kwargs)
        parts = urlsplit(url)
        query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "lease_seconds"])
        self._client_url = urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
        self._secret = parts.password or password
        extra: dict[str, Any] = {} if password is None else {"password": password}
        try:
            # A bounded pool that waits for a free connection rather than failing under load. A command
            # whose reply was lost is sent again on a new connection: every script may run twice (a budget
            # id is applied once, a rate window counts a start twice at worst: on the safe side), so a dropped reply costs a retry,
            # not the run; a store that stays away still ends the run (fail closed) within a second or so.
            pool = aioredis.BlockingConnectionPool.from_url(
                self._client_url,
                max_connections=32,
                timeout=10,
                socket_connect_timeout=3,
                socket_timeout=5,
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
                retry_on_error=[RedisConnectionError, RedisTimeoutError],
                **extra,
            )
            self._redis = aioredis.Redis.from_pool(pool)  # owns the pool: aclose closes it
        except ValueError as exc:
            raise UserInputError(f"state URL {self.url!r}: {self._scrub(str(exc))}") from exc
        self._scripts = {
            name: self._redis.register_script(body)
            for name, body in (
                ("acquire", _ACQUIRE),
                ("pause", _PAUSE),
                ("paused_for", _PAUSED_FOR),
                ("reserve", _RESERVE),
                ("settle", _SETTLE),
                ("budget", _BUDGET),
                ("renew", _RENEW),
            )
        }
        self.round_trips = 0

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def _now_arg(self) -> str:
        return "" if self.clock is None else repr(float(self.clock()))

    async def _call(self, name: str, keys: list[str], args: list[Any]) -> Any:
        self.check()
        self.round_trips += 1
        try:
            return await self._scripts[name](keys=keys, args=[self._now_arg(), *args])
        except (RedisError, OSError) as exc:
            raise self.mark_lost(self._scrub(str(exc) or type(exc).__name__)) from exc

    async def connect(self) -> None:
        self.check()
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            raise self.mark_lost(self._scrub(str(exc) or type(exc).__name__)) from exc

    async def aclose(self) -> None:
        try:
            await self._redis.aclose()
        except (RedisError, OSError):
            pass

    def _rl(self, key: str) -> str:
        return f"{self.namespace}:rl:{{{key}}}"

    def _budget_keys(self, scope: str, op: str | None = None) -> list[str]:
        base = f"{self.namespace}:budget:{{{scope}}}"
        keys = [base, f"{base}:leases", f"{base}:amounts"]
        return keys if op is None else [*keys, f"{base}:op:{op}"]

    # -- rate limits ----------------------------------------------------------------------------

    async def acquire_rate(self, key: str, limits: TierLimits, tokens: float, lease: str) -> RateAnswer:
        base = self._rl(key)
        keys: list[str] = []
        args: list[Any] = [
            lease,
            repr(float(tokens)),
            repr(limits.interval),
            repr(limits.slack),
            limits.concurrent,
            repr(self.lease_seconds),
            len(limits.windows),
        ]
        for name, limit, span in limits.windows:
            keys += [f"{base}:{name}", f"{base}:{name}:sum"]
            args += [name, repr(float(limit)), repr(span), "1" if name == "tokens_per_minute" else "0"]
        keys += [f"{base}:pace", f"{base}:pause", f"{base}:slots"]
        granted, wait, tier = await self._call("acquire", keys, args)
        return RateAnswer(bool(granted), float(wait), tier.decode() if isinstance(tier, bytes) else str(tier))

    async def release_slot(self, key: str, lease: str) -> None:
        self.check()
        self.round_trips += 1
        try:
            await self._redis.zrem(f"{self._rl(key)}:slots", lease)
        except (RedisError, OSError) as exc:
            raise self.mark_lost(self._scrub(str(exc) or type(exc).__name__)) from exc

    async def pause(self, key: str, seconds: float) -> None:
        await self._call("pause", [f"{self._rl(key)}:pause"], [repr(float(seconds))])

    async def paused_for(self, key: str) -> float:
        left = await self._call("paused_for", [f"{self._rl(key)}:pause"], [])
        return max(0.0, float(left.decode() if isinstance(left, bytes) else left))

    # -- budgets --------------------------------------------------------------------------------

    async def budget_reserve(self, scope: str, lease: str, amount: float) -> tuple[str, float | None, float]:
        verdict, limit, committed = await self._call(
            "reserve",
            self._budget_keys(scope, lease),
            [lease, repr(float(amount)), repr(self.lease_seconds), ANSWER_SECONDS],
        )
        return _text(verdict), (float(limit) if limit else None), float(committed)

    async def budget_settle(self, scope: str, lease: str, cost: float) -> None:
        await self._call("settle", self._budget_keys(scope, lease), [lease, repr(float(cost)), ANSWER_SECONDS])

    async def _budget(self, scope: str, op: str, limit: float = 0.0) -> BudgetState:
        raw, spent, reserved, leases = await self._call("budget", self._budget_keys(scope), [op, repr(limit)])
        return BudgetState(scope, float(raw) if raw else None, float(spent), max(0.0, float(reserved)), int(leases))

    async def budget_get(self, scope: str) -> BudgetState:
        return await self._budget(scope, "get")

    async def budget_set(self, scope: str, limit: float) -> BudgetState:
        return await self._budget(scope, "set", limit)

    async def budget_reset(self, scope: str) -> BudgetState:
        return await self._budget(scope, "reset")

    async def budget_correct(self, scope: str, spent: float) -> BudgetState:
        return await self._budget(scope, "correct", spent)

    # -- leases and cache -----------------------------------------------------------------------

    async def renew_leases(self, slots: dict[str, set[str]], reservations: dict[str, set[str]]) -> None:
        for key, leases in list(slots.items()):
            if leases:
                await self._call("renew", [f"{self._rl(key)}:slots"], [repr(self.lease_seconds), *leases])
        for scope, leases in list(reservations.items()):
            if leases:
                await self._call("renew", [self._budget_keys(scope)[1]], [repr(self.lease_seconds), *leases])

    async def cache_get(self, key: str) -> bytes | None:
        self.check()
        self.round_trips += 1
        try:
            value = await self._redis.get(f"{self.namespace}:cache:{key}")
        except (RedisError, OSError) as exc:
            raise self.mark_lost(self._scrub(str(exc) or type(exc).__name__)) from exc
        if value is None:
            return None
        return value if isinstance(value, bytes) else str(value).encode()

    async def cache_set(self, key: str, value: bytes, ttl: float) -> None:
        self.check()
        self.round_trips += 1
        try:
            await self._redis.set(f"{self.namespace}:cache:{key}", value, px=max(1, int(ttl * 1000)))
        except (RedisError, OSError) as exc:
            raise self.mark_lost(self._scrub(str(exc) or type(exc).__name__)) from exc


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
