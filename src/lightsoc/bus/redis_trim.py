"""Trimming and measuring the Redis bus's stream (`bus.redis`).

Bounded, never lossy: the stream holds at most `maxlen` entries. A publish that
finds it full first trims the entries every group has acknowledged (`XTRIM
MINID` up to the oldest entry that some group still has pending or has not
been delivered yet, from `XINFO GROUPS` last-delivered-id and `XPENDING` of
each group; with no group yet nothing is trimmed), then waits until there is
room (backpressure on the collector). `XADD MAXLEN` is never used: it drops
unread batches. The length check and `XADD` are one Lua script, so concurrent
publishers never overshoot `maxlen`.

Plain functions of a redis-py client and the stream's name, apart from
`RedisBus` (which counts, retries and backs off around them) because they
are the stream's bookkeeping, not the bus's: the Lua script, the trim, and a
group's depth from the same `XINFO GROUPS` figures. redis-py is imported
lazily (the CLI imports every module).
"""

from __future__ import annotations

from typing import Any

#: XADD only below `maxlen` entries, atomically (nil when full)
ADD_IF_ROOM = """
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return false end
return redis.call('XADD', KEYS[1], '*', 'b', ARGV[2])
"""

Id = tuple[int, int]


def _parse_id(value: bytes | str) -> Id:
    text = value.decode() if isinstance(value, bytes) else value
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _text(value: Any) -> str:
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)


def trim_acknowledged(client: Any, stream: str) -> int:
    """XTRIM MINID the entries every group has acknowledged; how many went."""
    import redis

    try:
        groups = client.xinfo_groups(stream)
    except redis.ResponseError as exc:
        if "no such key" in str(exc).lower():
            return 0
        raise
    if not groups:  # nobody has read anything: everything is unread
        return 0
    pipe = client.pipeline(transaction=False)
    for g in groups:
        pipe.xpending(stream, g["name"])
    summaries = pipe.execute()
    keep: Id | None = None
    for g, summary in zip(groups, summaries, strict=True):
        # XINFO was read first: a delivery since only moves the real bound up
        ms, seq = _parse_id(g["last-delivered-id"])
        first = (ms, seq + 1)  # the first entry not delivered to this group
        if summary["pending"] and summary["min"] is not None:
            first = min(first, _parse_id(summary["min"]))
        keep = first if keep is None else min(keep, first)
    assert keep is not None
    return int(client.xtrim(stream, minid=f"{keep[0]}-{keep[1]}", approximate=False))


def group_depth(client: Any, stream: str, group: str) -> int:
    """Entries of `group` not acknowledged yet (pending + lag); redis errors propagate."""
    depth = None
    for g in client.xinfo_groups(stream):
        if _text(g["name"]) == group:
            lag = g.get("lag")
            # lag is nil after XDEL inside the unread range: count the stream
            unread = int(lag) if lag is not None else int(client.xlen(stream))
            depth = int(g["pending"]) + unread
    if depth is None:  # no group yet: nothing was ever read
        depth = int(client.xlen(stream))
    return depth
