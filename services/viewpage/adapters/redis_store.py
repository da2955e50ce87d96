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
- `P:gN:entries` (movie -> its board entry, ready to serve: MessagePack `[header, [start ms, day,
  screening, screening id], ...]` where `header` is the movie's `BoardMovie` fields 1-7 and each
  `screening` a serialized `BoardScreening` framed as field 8, earliest first), `P:gN:ixm`
  (movie -> MessagePack `[member, [index keys]]`, where the movie stands in the indexes), and the
  indexes themselves: sorted sets of `<sort key>\0<movie id>` (all scores 0, ordered by member:
  title order, then id) named `ix:all`, `ix:g:<genre>`, `ix:d:<day>` and `ix:dg:<day>:<genre>`,
  plus `P:gN:days` (the days that have a movie) and `P:gN:ends` (movie of `ix:all` -> start of
  its last screening, for the prune). Every apply re-materialises the entries of the movies its
  plan touches in the same script (a reservation only its screening's seats): a read slices what
  it needs (O(page)) and never assembles the board.
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
import time
from collections.abc import Sequence
from typing import Any, cast

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from services.kit import errors
from services.viewpage.domain.projection import BoardChange, Plan, review_count_field, review_sum_field
from services.viewpage.service_layer.ports import (
    BoardDocuments,
    BoardSlice,
    CustomerPage,
    Document,
    MovieDocuments,
    Outcome,
    SalesDocuments,
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

# Protocol Buffers wire format, just what the board's entries need (cinema.viewpage.v1.BoardMovie,
# BoardScreening, google.protobuf.Timestamp, cinema.common.v1.Money): proto3 rules (a zero scalar
# is left out, a set sub-message is written even when empty), fields in number order, as the
# Python runtime writes them; tests/integration/viewpage/test_board_pages.py proves the bytes equal
# the generated classes' for the same views. Nothing on the board is negative (seats, prices,
# counts, times after 1970), so varints are unsigned here.
_PROTOBUF = """
local function pb_varint(n)
  n = math.floor(tonumber(n) or 0)
  if n < 0 then n = 0 end
  local out = {}
  while n >= 128 do
    local low = n % 128
    out[#out + 1] = string.char(low + 128)
    n = (n - low) / 128
  end
  out[#out + 1] = string.char(n)
  return table.concat(out)
end
local function pb_len(field, body) return string.char(field * 8 + 2) .. pb_varint(#body) .. body end
local function pb_str(field, s)
  if s == nil or s == '' then return '' end
  return pb_len(field, tostring(s))
end
local function pb_int(field, n)
  n = math.floor(tonumber(n) or 0)
  if n <= 0 then return '' end
  return string.char(field * 8) .. pb_varint(n)
end
local function pb_double(field, x)
  if x == 0 then return '' end
  return string.char(field * 8 + 1) .. struct.pack('<d', x)
end
"""

# Re-materialise one movie's board entry and its places in the indexes from its documents and
# counters (what services.viewpage.domain.board.movie_view decides, minus the time filter, which
# is the read's: a screening leaves the board when it starts, without an event).
_MATERIALIZE = """
local function index_change(g, key, member, add)
  local day = string.match(key, '^ix:d:(.*)$')
  if add then
    redis.call('ZADD', g .. key, 0, member)
    if day then redis.call('ZADD', g .. 'days', 0, day) end
  else
    redis.call('ZREM', g .. key, member)
    if day and redis.call('ZCARD', g .. key) == 0 then redis.call('ZREM', g .. 'days', day) end
  end
end

-- One screening as BoardMovie's field 8 (a serialized BoardScreening, framed).
local function screening_field(sid, s, taken)
  local start = math.floor(tonumber(s.start_time_ms) or 0)
  local total = math.floor(tonumber(s.total_seats) or 0)
  local free = total - (tonumber(taken) or 0)
  if free < 0 then free = 0 end
  local seconds = math.floor(start / 1000)
  local stamp = pb_int(1, seconds) .. pb_int(2, (start - seconds * 1000) * 1000000)
  local money = pb_int(1, s.price_minor) .. pb_str(2, s.currency)
  return pb_len(8, pb_str(1, sid) .. pb_str(2, s.hall) .. pb_len(3, stamp) .. pb_len(4, money)
    .. pb_int(5, free) .. pb_int(6, total))
end

local function shows(s, movie_id)
  return s.total_seats ~= nil and s.cancelled ~= true and s.movie_id == movie_id
end

local function materialize(g, movie_id, now)
  local raw = redis.call('HGET', g .. 'movies', movie_id)
  local doc = nil
  if raw then doc = cjson.decode(raw).f end
  local member = false
  local keys = {}
  local segs_last = 0
  if doc and type(doc.title) == 'string' and doc.deleted ~= true then
    local n = tonumber(redis.call('HGET', g .. 'reviews', movie_id .. ':n') or '0') or 0
    local sum = tonumber(redis.call('HGET', g .. 'reviews', movie_id .. ':sum') or '0') or 0
    local average = 0
    -- %.2f rounds the exact binary value half-even, as Python's round(x, 2) does.
    if n > 0 then average = tonumber(string.format('%.2f', sum / n)) end
    local parts = {pb_str(1, movie_id), pb_str(2, doc.title)}
    if type(doc.genres) == 'table' then
      for _, genre in ipairs(doc.genres) do parts[#parts + 1] = pb_len(3, tostring(genre)) end
    end
    parts[#parts + 1] = pb_int(4, doc.duration_minutes)
    parts[#parts + 1] = pb_str(5, doc.poster_url)
    parts[#parts + 1] = pb_int(6, n)
    parts[#parts + 1] = pb_double(7, average)
    local entry = {table.concat(parts)}
    local segs = {}
    local ids = redis.call('SMEMBERS', g .. 'movie_screenings:' .. movie_id)
    if #ids > 0 then
      local docs = redis.call('HMGET', g .. 'screenings', unpack(ids))
      local taken = redis.call('HMGET', g .. 'taken', unpack(ids))
      for i, sid in ipairs(ids) do
        if docs[i] then
          local s = cjson.decode(docs[i]).f
          if shows(s, movie_id) then
            local start = math.floor(tonumber(s.start_time_ms) or 0)
            segs[#segs + 1] = {start, sid, tostring(s.day or ''), screening_field(sid, s, taken[i])}
          end
        end
      end
      table.sort(segs, function(a, b)
        if a[1] ~= b[1] then return a[1] < b[1] end
        return a[2] < b[2]
      end)
    end
    -- Stored framed as BoardMovie's field 8: a read only picks and concatenates.
    for _, seg in ipairs(segs) do entry[#entry + 1] = {seg[1], seg[3], seg[4], seg[2]} end
    redis.call('HSET', g .. 'entries', movie_id, cmsgpack.pack(entry))
    local last = 0
    if #segs > 0 then last = segs[#segs][1] end
    segs_last = last
    if #segs > 0 then
      local sort_key = doc.sort_key
      if type(sort_key) ~= 'string' then sort_key = string.lower(doc.title) end
      member = sort_key .. '\0' .. movie_id
      -- The all-days indexes hold a movie while a screening is to come; `ends` says when that
      -- stops, and the prune (PRUNE, every minute) takes it out then. A day's index keeps it:
      -- only that day's reads walk it.
      local upcoming = last > now
      if upcoming then keys[1] = 'ix:all' end
      local genres, seen = {}, {}
      if type(doc.genre_keys) == 'table' then
        for _, gk in ipairs(doc.genre_keys) do
          gk = tostring(gk)
          if not seen[gk] then
            seen[gk] = true
            genres[#genres + 1] = gk
            if upcoming then keys[#keys + 1] = 'ix:g:' .. gk end
          end
        end
      end
      local days = {}
      for _, seg in ipairs(segs) do
        local day = seg[3]
        if day ~= '' and not seen['day:' .. day] then
          seen['day:' .. day] = true
          keys[#keys + 1] = 'ix:d:' .. day
          for _, gk in ipairs(genres) do keys[#keys + 1] = 'ix:dg:' .. day .. ':' .. gk end
        end
      end
    end
  else
    redis.call('HDEL', g .. 'entries', movie_id)
  end
  if member and keys[1] == 'ix:all' then
    redis.call('ZADD', g .. 'ends', segs_last, movie_id)
  else
    redis.call('ZREM', g .. 'ends', movie_id)
  end
  local old_member, old_keys = false, {}
  local old = redis.call('HGET', g .. 'ixm', movie_id)
  if old then
    local unpacked = cmsgpack.unpack(old)
    old_member, old_keys = unpacked[1], unpacked[2]
  end
  local now_in, was_in = {}, {}
  for _, k in ipairs(keys) do now_in[k] = true end
  for _, k in ipairs(old_keys) do was_in[k] = true end
  -- Removals first: a day key emptied and refilled by a new title stays in `days`.
  for _, k in ipairs(old_keys) do
    if member ~= old_member or not now_in[k] then index_change(g, k, old_member, false) end
  end
  for _, k in ipairs(keys) do
    if member ~= old_member or not was_in[k] then index_change(g, k, member, true) end
  end
  if member then
    redis.call('HSET', g .. 'ixm', movie_id, cmsgpack.pack({member, keys}))
  elseif old then
    redis.call('HDEL', g .. 'ixm', movie_id)
  end
end

-- Seats taken changed (a reservation): only that screening's field of its movie's entry is
-- rewritten (the movie's other screenings and its places in the indexes stay as they are).
local function refresh_seats(g, movie_id, sid, s)
  local packed = redis.call('HGET', g .. 'entries', movie_id)
  if not packed then return end
  local entry = cmsgpack.unpack(packed)
  for i = 2, #entry do
    if entry[i][4] == sid then
      entry[i][3] = screening_field(sid, s, redis.call('HGET', g .. 'taken', sid))
      redis.call('HSET', g .. 'entries', movie_id, cmsgpack.pack(entry))
      return
    end
  end
end

local function materialize_touched(g, touched, now)
  local whole = {}
  for _, t in ipairs(touched) do
    if t[1] == 'movie' and type(t[2]) == 'string' and t[2] ~= '' and not whole[t[2]] then
      whole[t[2]] = true
      materialize(g, t[2], now)
    end
  end
  local seats = {}
  for _, t in ipairs(touched) do
    if t[1] == 'screening' and not seats[t[2]] then
      seats[t[2]] = true
      local raw = redis.call('HGET', g .. 'screenings', t[2])
      if raw then
        local s = cjson.decode(raw).f
        if type(s.movie_id) == 'string' and not whole[s.movie_id] and shows(s, s.movie_id) then
          refresh_seats(g, s.movie_id, t[2], s)
        end
      end
    end
  end
end
"""

_APPLY_BODY = """
local function apply(g, plan, touched)
  local agg = plan.aggregate
  local version = plan.version
  local prev = tonumber(redis.call('HGET', g .. 'versions', agg) or '0')
  local newer = version > prev
  local any_change = newer
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
    if changed then
      redis.call('HSET', key, m.id, cjson.encode(doc))
      any_change = true
    end
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
  -- A redelivered or stale event changed nothing: its entries are as they were.
  if any_change then
    for _, t in ipairs(plan.touches or {}) do touched[#touched + 1] = t end
  end
  return newer
end
"""

APPLY = (
    _GENERATIONS
    + _PROTOBUF
    + _MATERIALIZE
    + _APPLY_BODY
    + """
local plan = cjson.decode(ARGV[3])
local now = tonumber(ARGV[4])
local outcome = 'stale'
for i, gen in ipairs(gens) do
  local g = prefix .. ':g' .. gen .. ':'
  local touched = {}
  local newer = apply(g, plan, touched)
  materialize_touched(g, touched, now)
  if i == 1 and newer then outcome = 'applied' end
end
return outcome
"""
)

# The replay's path: many plans, in order, to one generation, in one call; each touched movie is
# materialised once per call, after the batch (a replay is mostly reservations of few movies).
APPLY_MANY = (
    _GENERATIONS
    + _PROTOBUF
    + _MATERIALIZE
    + _APPLY_BODY
    + """
local g = prefix .. ':g' .. gens[1] .. ':'
local now = tonumber(ARGV[3])
local touched = {}
for i = 4, #ARGV do apply(g, cjson.decode(ARGV[i]), touched) end
materialize_touched(g, touched, now)
return #ARGV - 3
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

# Takes the movies whose last screening has started out of the all-days indexes (`ends` holds
# each movie of `ix:all` with its last start), in the live generation and one being rebuilt:
# without it those indexes would grow with every movie ever shown, and pages of "every day to
# come" would be walks over movies that show nothing. ARGV[3] now (ms), ARGV[4] at most that many.
PRUNE = (
    _GENERATIONS
    + _PROTOBUF
    + _MATERIALIZE
    + """
local now, limit, done = tonumber(ARGV[3]), tonumber(ARGV[4]), 0
for _, gen in ipairs(gens) do
  local g = prefix .. ':g' .. gen .. ':'
  for _, movie_id in ipairs(redis.call('ZRANGEBYSCORE', g .. 'ends', '-inf', now, 'LIMIT', 0, limit)) do
    materialize(g, movie_id, now)
    done = done + 1
  end
end
return done
"""
)

# A page of the board, sliced from the materialised entries: ARGV[2] the index, ARGV[3] the member
# after which to start ('' for the first page), ARGV[4] how many movies, ARGV[5] now (ms: started
# screenings are left out), ARGV[6] the day ('' for any), ARGV[7] how many index members to look
# at at most (movies whose screenings all started show nothing: the bound keeps a page O(size)),
# ARGV[8] today ('' for no `days`), ARGV[9] a movie id ('' for none), ARGV[10] at most that many
# days. Returns the page as `GetBoardResponse.movies` on the wire, its count, the last member
# looked at, whether more follow, `as_of` and the days.
READ_PAGE = (
    _LIVE
    + _PROTOBUF
    + """
local key = g .. ARGV[2]
local want, now, day, limit = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])
local function render(packed, wrap)
  if not packed then return nil end
  local entry = cmsgpack.unpack(packed)
  local parts = {entry[1]}
  for i = 2, #entry do
    local s = entry[i]
    if s[1] > now and (day == '' or s[2] == day) then parts[#parts + 1] = s[3] end
  end
  if wrap and #parts == 1 then return nil end
  local body = table.concat(parts)
  if wrap then return pb_len(1, body) end
  return body
end
local out, last, more = {}, '', 0
if ARGV[9] ~= '' then
  local placed = redis.call('HGET', g .. 'ixm', ARGV[9])
  if placed and redis.call('ZSCORE', key, cmsgpack.unpack(placed)[1]) then
    local shown = render(redis.call('HGET', g .. 'entries', ARGV[9]), true)
    if shown then out[1] = shown end
  end
else
  local cursor = '-'
  if ARGV[3] ~= '' then cursor = '(' .. ARGV[3] end
  local scanned = 0
  while #out < want and scanned < limit do
    local batch = redis.call('ZRANGEBYLEX', key, cursor, '+', 'LIMIT', 0, math.min(want - #out, limit - scanned))
    if #batch == 0 then break end
    local ids = {}
    for i, member in ipairs(batch) do ids[i] = string.match(member, '%z([^%z]*)$') end
    local packed = redis.call('HMGET', g .. 'entries', unpack(ids))
    for i, member in ipairs(batch) do
      scanned = scanned + 1
      last = member
      local shown = render(packed[i], true)
      if shown then out[#out + 1] = shown end
    end
    cursor = '(' .. last
  end
  if last ~= '' and #redis.call('ZRANGEBYLEX', key, '(' .. last, '+', 'LIMIT', 0, 1) > 0 then more = 1 end
end
local days = {}
if ARGV[8] ~= '' then
  days = redis.call('ZRANGEBYLEX', g .. 'days', '[' .. ARGV[8], '+', 'LIMIT', 0, tonumber(ARGV[10]))
end
return {table.concat(out), #out, last, more, redis.call('HGET', g .. 'meta', 'as_of') or '0', days}
"""
)

# One movie's entry as `BoardMovie` on the wire (its screenings to come), or false when the
# movie is not listed.
READ_ENTRY = (
    _LIVE
    + _PROTOBUF
    + """
local packed = redis.call('HGET', g .. 'entries', ARGV[2])
if not packed then return false end
local now = tonumber(ARGV[3])
local entry = cmsgpack.unpack(packed)
local parts = {entry[1]}
for i = 2, #entry do
  if entry[i][1] > now then parts[#parts + 1] = entry[i][3] end
end
return table.concat(parts)
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

# The manager's sales: ARGV[2] 'movie' or 'screening', ARGV[3] its id. Returns the movie document
# ('' when not asked for or unknown), then per screening [id, document, reservation documents],
# and `as_of`. A screening's reservations are read in chunks (Lua's unpack has a bounded stack).
READ_SALES = (
    _LIVE
    + """
local movie, ids = '', {}
if ARGV[2] == 'movie' then
  movie = redis.call('HGET', g .. 'movies', ARGV[3]) or ''
  ids = redis.call('SMEMBERS', g .. 'movie_screenings:' .. ARGV[3])
else
  ids = {ARGV[3]}
end
local out = {}
for _, sid in ipairs(ids) do
  local doc = redis.call('HGET', g .. 'screenings', sid)
  if doc then
    local rids = redis.call('SMEMBERS', g .. 'screening_reservations:' .. sid)
    local docs = {}
    for first = 1, #rids, 500 do
      local last = math.min(first + 499, #rids)
      local part = redis.call('HMGET', g .. 'reservations', unpack(rids, first, last))
      for i = 1, #part do docs[#docs + 1] = part[i] or '' end
    end
    out[#out + 1] = {sid, doc, docs}
  end
end
return {movie, out, redis.call('HGET', g .. 'meta', 'as_of') or '0'}
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
redis.call('SET', prefix .. ':shape', ARGV[3])
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


def _now_ms() -> int:
    # The applies decide whether a movie still has a screening to come (the all-days indexes);
    # the prune catches up with the clock later.
    return int(time.time() * 1000)


def _value(raw: bytes) -> Any:
    """A hash value for `dump`: JSON documents decoded, text as text, binary (entries) as bytes."""
    if raw[:1] in (b"{", b"["):
        return json.loads(raw)
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw


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
        self._read_page: AsyncScript = client.register_script(READ_PAGE)
        self._read_entry: AsyncScript = client.register_script(READ_ENTRY)
        self._read_sales: AsyncScript = client.register_script(READ_SALES)
        self._prune: AsyncScript = client.register_script(PRUNE)
        self._begin: AsyncScript = client.register_script(BEGIN)
        self._switch: AsyncScript = client.register_script(SWITCH)
        self._abandon: AsyncScript = client.register_script(ABANDON)

    async def _call(self, script: AsyncScript, *args: Any) -> Any:
        try:
            return await script(keys=[], args=[self.prefix, *args])
        except (ConnectionError, TimeoutError, aioredis.ConnectionError, aioredis.TimeoutError) as exc:
            raise errors.Unavailable(f"the board store is unreachable: {exc}", retry_after_s=1.0) from exc

    async def ensure_initialised(self, shape: str = "") -> bool:
        """Make generation 1 live on a fresh Redis (a no-op when a generation is live).

        `shape` names what the applies write (the model's layout and the time zone of its days):
        a fresh store takes it; the result says whether the live generation has it, i.e. whether
        it was built by code that writes what this code reads (else: rebuild, see bootstrap).
        """
        if await self._r.set(f"{self.prefix}:live", 1, nx=True):
            await self._r.set(f"{self.prefix}:shape", shape)
            return True
        current = await self._r.get(f"{self.prefix}:shape")
        return (current.decode() if isinstance(current, bytes) else current or "") == shape

    async def apply(self, plan: Plan, generation: int | None = None) -> Outcome:
        target = "" if generation is None else str(generation)
        outcome = await self._call(self._apply, target, json.dumps(plan.as_json()), _now_ms())
        return cast(Outcome, outcome.decode() if isinstance(outcome, bytes) else outcome)

    async def apply_many(self, plans: Sequence[Plan], generation: int) -> None:
        if plans:
            await self._call(self._apply_many, str(generation), _now_ms(), *(json.dumps(p.as_json()) for p in plans))

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

    async def prune(self, now_ms: int, limit: int = 500) -> int:
        return int(await self._call(self._prune, "", now_ms, limit))

    async def board_slice(
        self,
        *,
        genre: str,
        after: str,
        size: int,
        now_ms: int,
        day: str = "",
        scan_limit: int,
        today: str = "",
        movie_id: str = "",
        max_days: int = 31,
    ) -> BoardSlice:
        blob, count, last, more, as_of, days = await self._call(
            self._read_page,
            board_index(genre, day),
            after.encode(),
            size,
            now_ms,
            day,
            scan_limit,
            today,
            movie_id,
            max_days,
        )
        return BoardSlice(
            movies=bytes(blob),
            count=int(count),
            last=last.decode() if isinstance(last, bytes) else str(last),
            more=bool(more),
            as_of_ms=int(as_of),
            days=[d.decode() for d in days],
        )

    async def movie_entry(self, movie_id: str, now_ms: int) -> bytes | None:
        found = await self._call(self._read_entry, movie_id, now_ms)
        return bytes(found) if found else None

    async def customer_page(self, customer_id: str, offset: int, limit: int) -> CustomerPage:
        # One more than asked tells whether another page follows.
        ids, docs = await self._call(self._read_customer, customer_id, offset, limit)
        entries = [(rid.decode(), _document(raw) or {}) for rid, raw in zip(ids, docs, strict=True)]
        return CustomerPage(entries[:limit], more=len(entries) > limit)

    async def sales_documents(self, *, screening_id: str = "", movie_id: str = "") -> SalesDocuments:
        kind, key = ("movie", movie_id) if movie_id else ("screening", screening_id)
        movie, found, as_of = await self._call(self._read_sales, kind, key)
        screenings: dict[str, Document] = {}
        reservations: dict[str, list[Document]] = {}
        for sid, raw, docs in found:
            screenings[sid.decode()] = _document(raw) or {}
            reservations[sid.decode()] = [d for raw_doc in docs if (d := _document(raw_doc)) is not None]
        return SalesDocuments(_document(movie), screenings, reservations, int(as_of))

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

    async def switch_to(self, generation: int, shape: str = "") -> int:
        replaced = int(await self._call(self._switch, str(generation), shape))
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
                model[name] = {k.decode(): _value(v) for k, v in (await r.hgetall(key)).items()}
            elif kind == "zset":
                model[name] = [(m.decode(), s) for m, s in await r.zrange(key, 0, -1, withscores=True)]
            elif kind == "set":
                model[name] = sorted(m.decode() for m in await r.smembers(key))
        return model


# What the applies write, for `ensure_initialised`'s shape: bump it whenever a change of the
# scripts makes a generation written by the old ones unreadable or incomplete for the new ones.
LAYOUT = "entries-5"  # 5: blocked seats, payment amounts and per-screening reservations (sales)


def board_index(genre: str, day: str) -> str:
    """The ordered index a page of the board walks (the materialiser fills the same names)."""
    if genre and day:
        return f"ix:dg:{day}:{genre}"
    if genre:
        return f"ix:g:{genre}"
    if day:
        return f"ix:d:{day}"
    return "ix:all"


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
