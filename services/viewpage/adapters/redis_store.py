"""The board's read model in Redis: Lua scripts for atomic, order-safe applies and one-trip reads.

Keys (`P` is the configured prefix, `N` a generation number):

- `P:live` the live generation, `P:building` the one a rebuild is filling (if any),
  `P:generation` the last generation number handed out (never reused).
- `P:gN:movies`, `P:gN:screenings`, `P:gN:reservations`: hashes of id -> JSON document
  `{"f": {field: value}, "v": {field: version}}` (fields merged by version, see domain.projection).
- `P:gN:taken` (screening -> seats held), `P:gN:reviews` (`<movie>:n`, `<movie>:sum`): counters,
  sums of the contributions in `P:gN:contrib` (aggregate -> JSON list of shares).
- `P:gN:versions`: aggregate -> highest applied version.
- `P:gN:cust:<customer>` (sorted set of reservation ids by first-seen time),
  `P:gN:movie_screenings:<movie>` (set of screening ids), `P:gN:meta` (`as_of` in ms).
- Channel `P:changes` (Pub/Sub, not a key): `{"movie_id": ..., "screening_id": ...}` after each
  applied event that changed the public board (`RedisChangeFeed`); the web page's live updates.

Every script resolves the generation *inside* Redis, so an apply, a read or the switch is one
atomic step: a check-and-apply cannot interleave with another replica's (Redis runs one script
at a time), and no read sees two generations or a half-deleted one. The scripts touch keys they
compute themselves, which a single Redis (or a replica set) allows; a Redis Cluster would need
every key of a script declared and in one slot (hash tags per generation) — not supported here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any, cast

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from services.kit import errors
from services.viewpage.domain.projection import BoardChange, Plan, review_count_field, review_sum_field
from services.viewpage.service_layer.ports import (
    BoardDocuments,
    CustomerPage,
    Document,
    MovieDocuments,
    Outcome,
)

log = logging.getLogger(__name__)

# Resolves the generations to write: the one asked for, or the live one plus a rebuild's.
_GENERATIONS = """
local prefix = ARGV[1]
local gens = {}
if ARGV[2] ~= '' then
  gens[1] = ARGV[2]
else
  gens[1] = redis.call('GET', prefix .. ':live') or '1'
  local building = redis.call('GET', prefix .. ':building')
  if building and building ~= gens[1] then gens[2] = building end
end
"""

_APPLY_BODY = """
local function apply(g, plan)
  local agg = plan.aggregate
  local version = plan.version
  local prev = tonumber(redis.call('HGET', g .. 'versions', agg) or '0')
  local newer = version > prev
  if newer then redis.call('HSET', g .. 'versions', agg, version) end
  for _, m in ipairs(plan.merges) do
    local key = g .. m.collection
    local raw = redis.call('HGET', key, m.id)
    local doc
    if raw then doc = cjson.decode(raw) else doc = {f = {}, v = {}} end
    local changed = false
    for name, value in pairs(m.fields) do
      local current = doc.v[name]
      if current == nil or m.version > current then
        doc.f[name] = value
        doc.v[name] = m.version
        changed = true
      end
    end
    if changed then redis.call('HSET', key, m.id, cjson.encode(doc)) end
  end
  if plan.contribution and newer then
    local ckey = g .. 'contrib'
    local old = redis.call('HGET', ckey, agg)
    local deltas = {}
    local order = {}
    local function add(share, sign)
      local k = share[1] .. '\\0' .. share[2]
      if deltas[k] == nil then deltas[k] = 0; order[#order + 1] = share end
      deltas[k] = deltas[k] + sign * share[3]
    end
    if old then for _, share in ipairs(cjson.decode(old)) do add(share, -1) end end
    for _, share in ipairs(plan.contribution) do add(share, 1) end
    for _, share in ipairs(order) do
      local d = deltas[share[1] .. '\\0' .. share[2]]
      if d ~= 0 then
        local n = redis.call('HINCRBY', g .. share[1], share[2], d)
        if n == 0 then redis.call('HDEL', g .. share[1], share[2]) end
      end
    end
    if #plan.contribution > 0 then
      redis.call('HSET', ckey, agg, cjson.encode(plan.contribution))
    else
      redis.call('HSET', ckey, agg, '[]')
    end
  end
  for _, member in ipairs(plan.members) do
    if member[1] == 'zset' then
      redis.call('ZADD', g .. member[2], 'LT', member[4], member[3])
    else
      redis.call('SADD', g .. member[2], member[3])
    end
  end
  local as_of = tonumber(redis.call('HGET', g .. 'meta', 'as_of') or '0')
  if plan.time > as_of then redis.call('HSET', g .. 'meta', 'as_of', plan.time) end
  return newer
end
"""

APPLY = (
    _GENERATIONS
    + _APPLY_BODY
    + """
local plan = cjson.decode(ARGV[3])
local outcome = 'stale'
for i, gen in ipairs(gens) do
  local newer = apply(prefix .. ':g' .. gen .. ':', plan)
  if i == 1 and newer then outcome = 'applied' end
end
return outcome
"""
)

# The replay's path: many plans, in order, to one generation, in one call.
APPLY_MANY = (
    _GENERATIONS
    + _APPLY_BODY
    + """
local g = prefix .. ':g' .. gens[1] .. ':'
for i = 3, #ARGV do apply(g, cjson.decode(ARGV[i])) end
return #ARGV - 2
"""
)

_LIVE = """
local prefix = ARGV[1]
local g = prefix .. ':g' .. (redis.call('GET', prefix .. ':live') or '1') .. ':'
"""

READ_BOARD = (
    _LIVE
    + """
return {
  redis.call('HGETALL', g .. 'movies'),
  redis.call('HGETALL', g .. 'screenings'),
  redis.call('HGETALL', g .. 'taken'),
  redis.call('HGETALL', g .. 'reviews'),
  redis.call('HGET', g .. 'meta', 'as_of') or '0',
}
"""
)

READ_MOVIE = (
    _LIVE
    + """
local movie_id = ARGV[2]
local movie = redis.call('HGET', g .. 'movies', movie_id)
if not movie then return false end
local ids = redis.call('SMEMBERS', g .. 'movie_screenings:' .. movie_id)
local docs, taken = {}, {}
if #ids > 0 then
  docs = redis.call('HMGET', g .. 'screenings', unpack(ids))
  taken = redis.call('HMGET', g .. 'taken', unpack(ids))
end
for i = 1, #ids do
  docs[i] = docs[i] or ''
  taken[i] = taken[i] or '0'
end
local reviews = redis.call('HMGET', g .. 'reviews', ARGV[3], ARGV[4])
return {movie, ids, docs, taken, reviews[1] or '0', reviews[2] or '0'}
"""
)

READ_CUSTOMER = (
    _LIVE
    + """
local first = tonumber(ARGV[3])
local ids = redis.call('ZREVRANGE', g .. 'cust:' .. ARGV[2], first, first + tonumber(ARGV[4]))
if #ids == 0 then return {ids, {}} end
local docs = redis.call('HMGET', g .. 'reservations', unpack(ids))
for i = 1, #ids do docs[i] = docs[i] or '' end
return {ids, docs}
"""
)

BEGIN = """
local prefix = ARGV[1]
local building = redis.call('GET', prefix .. ':building')
if building and ARGV[2] ~= 'force' then return -tonumber(building) end
local live = tonumber(redis.call('GET', prefix .. ':live') or '1')
local n = redis.call('INCR', prefix .. ':generation')
if n <= live then
  redis.call('SET', prefix .. ':generation', live + 1)
  n = live + 1
end
redis.call('SET', prefix .. ':building', n)
return n
"""

SWITCH = """
local prefix = ARGV[1]
if redis.call('GET', prefix .. ':building') ~= ARGV[2] then return -1 end
local old = redis.call('GET', prefix .. ':live') or '1'
redis.call('SET', prefix .. ':live', ARGV[2])
redis.call('DEL', prefix .. ':building')
return tonumber(old)
"""

ABANDON = """
local prefix = ARGV[1]
if redis.call('GET', prefix .. ':building') == ARGV[2] then redis.call('DEL', prefix .. ':building') end
return 1
"""


def _document(raw: bytes | str | None) -> Document | None:
    if not raw:
        return None
    fields = json.loads(raw)["f"]
    return fields if isinstance(fields, dict) else {}  # cjson writes an empty object as {}


def _pairs(flat: Sequence[bytes]) -> dict[str, bytes]:
    return {flat[i].decode(): flat[i + 1] for i in range(0, len(flat), 2)}


class RedisReadModel:
    """The `ReadModelStore` port on Redis (redis.asyncio; one script call per operation)."""

    def __init__(self, client: aioredis.Redis, prefix: str = "viewpage") -> None:
        self._r = client
        self.prefix = prefix
        self._apply: AsyncScript = client.register_script(APPLY)
        self._apply_many: AsyncScript = client.register_script(APPLY_MANY)
        self._read_board: AsyncScript = client.register_script(READ_BOARD)
        self._read_movie: AsyncScript = client.register_script(READ_MOVIE)
        self._read_customer: AsyncScript = client.register_script(READ_CUSTOMER)
        self._begin: AsyncScript = client.register_script(BEGIN)
        self._switch: AsyncScript = client.register_script(SWITCH)
        self._abandon: AsyncScript = client.register_script(ABANDON)

    async def _call(self, script: AsyncScript, *args: Any) -> Any:
        try:
            return await script(keys=[], args=[self.prefix, *args])
        except (ConnectionError, TimeoutError, aioredis.ConnectionError, aioredis.TimeoutError) as exc:
            raise errors.Unavailable(f"the board store is unreachable: {exc}", retry_after_s=1.0) from exc

    async def ensure_initialised(self) -> None:
        """Make generation 1 live on a fresh Redis (a no-op when a generation is live)."""
        await self._r.set(f"{self.prefix}:live", 1, nx=True)

    async def apply(self, plan: Plan, generation: int | None = None) -> Outcome:
        target = "" if generation is None else str(generation)
        outcome = await self._call(self._apply, target, json.dumps(plan.as_json()))
        return cast(Outcome, outcome.decode() if isinstance(outcome, bytes) else outcome)

    async def apply_many(self, plans: Sequence[Plan], generation: int) -> None:
        if plans:
            await self._call(self._apply_many, str(generation), *(json.dumps(p.as_json()) for p in plans))

    async def board_documents(self) -> BoardDocuments:
        movies, screenings, taken, reviews, as_of = await self._call(self._read_board)
        return BoardDocuments(
            movies={k: d for k, v in _pairs(movies).items() if (d := _document(v)) is not None},
            screenings={k: d for k, v in _pairs(screenings).items() if (d := _document(v)) is not None},
            taken={k: int(v) for k, v in _pairs(taken).items()},
            reviews={k: int(v) for k, v in _pairs(reviews).items()},
            as_of_ms=int(as_of),
        )

    async def movie_documents(self, movie_id: str) -> MovieDocuments | None:
        found = await self._call(self._read_movie, movie_id, review_count_field(movie_id), review_sum_field(movie_id))
        if not found:
            return None
        movie, ids, docs, taken, count, rating_sum = found
        screenings: dict[str, Document] = {}
        counts: dict[str, int] = {}
        for sid, raw, held in zip(ids, docs, taken, strict=True):
            doc = _document(raw)
            if doc is not None:
                screenings[sid.decode()] = doc
                counts[sid.decode()] = int(held)
        return MovieDocuments(_document(movie) or {}, screenings, counts, int(count), int(rating_sum))

    async def customer_page(self, customer_id: str, offset: int, limit: int) -> CustomerPage:
        # One more than asked tells whether another page follows.
        ids, docs = await self._call(self._read_customer, customer_id, offset, limit)
        entries = [(rid.decode(), _document(raw) or {}) for rid, raw in zip(ids, docs, strict=True)]
        return CustomerPage(entries[:limit], more=len(entries) > limit)

    async def live_generation(self) -> int:
        return int(await self._r.get(f"{self.prefix}:live") or 1)

    async def building_generation(self) -> int | None:
        value = await self._r.get(f"{self.prefix}:building")
        return int(value) if value is not None else None

    async def begin_generation(self, *, force: bool = False) -> int:
        generation = int(await self._call(self._begin, "force" if force else ""))
        if generation < 0:
            raise errors.FailedPrecondition(
                f"a rebuild into generation {-generation} is under way (or died: rerun with --force)",
                reason="REBUILD_IN_PROGRESS",
            )
        await self.drop_generation(generation)  # fresh, whatever a crashed attempt left
        return generation

    async def switch_to(self, generation: int) -> int:
        replaced = int(await self._call(self._switch, str(generation)))
        if replaced < 0:
            raise errors.FailedPrecondition(
                f"generation {generation} is no longer the one being built (a forced rebuild took over)",
                reason="REBUILD_SUPERSEDED",
            )
        return replaced

    async def abandon(self, generation: int) -> None:
        await self._call(self._abandon, str(generation))
        await self.drop_generation(generation)

    async def drop_generation(self, generation: int) -> int:
        deleted = 0
        batch: list[bytes] = []
        async for key in self._r.scan_iter(match=f"{self.prefix}:g{generation}:*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += await self._r.unlink(*batch)
                batch.clear()
        if batch:
            deleted += await self._r.unlink(*batch)
        return deleted

    async def dump(self, generation: int | None = None) -> dict[str, Any]:
        """A generation's whole content, decoded (for comparing two models; not for serving)."""
        gen = generation if generation is not None else await self.live_generation()
        base = f"{self.prefix}:g{gen}:"
        r: Any = self._r  # the client returns bytes (no decode_responses); the stubs say bytes | str
        model: dict[str, Any] = {}
        async for key in r.scan_iter(match=base + "*", count=1000):
            name = key.decode()[len(base) :]
            kind = (await r.type(key)).decode()
            if kind == "hash":
                model[name] = {
                    k.decode(): json.loads(v) if v[:1] in (b"{", b"[") else v.decode()
                    for k, v in (await r.hgetall(key)).items()
                }
            elif kind == "zset":
                model[name] = [(m.decode(), s) for m, s in await r.zrange(key, 0, -1, withscores=True)]
            elif kind == "set":
                model[name] = sorted(m.decode() for m in await r.smembers(key))
        return model


def changes_channel(prefix: str) -> str:
    """The Pub/Sub channel of the board's changes (the web service subscribes to it)."""
    return f"{prefix}:changes"


class RedisChangeFeed:
    """The `BoardChangeFeed` port on Redis Pub/Sub: one small JSON message per applied change.

    Best effort by design: a lost message only delays a page's refresh (pages refetch when they
    reconnect), so a Redis hiccup here must not fail the event's handler and redeliver it.
    """

    def __init__(self, client: aioredis.Redis, prefix: str = "viewpage") -> None:
        self._r = client
        self.channel = changes_channel(prefix)

    async def publish(self, change: BoardChange) -> None:
        message = json.dumps({"movie_id": change.movie_id, "screening_id": change.screening_id})
        try:
            await self._r.publish(self.channel, message)
        except (ConnectionError, TimeoutError, aioredis.ConnectionError, aioredis.TimeoutError) as exc:
            log.warning("board change not announced: %s", exc, extra={"channel": self.channel})
