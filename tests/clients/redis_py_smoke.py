#!/usr/bin/env python3
"""Smoke test of a ballot node with redis-py and its default settings.

redis-py 8 opens every connection with HELLO 3 (RESP3), then CLIENT SETINFO
LIB-NAME/LIB-VER and CLIENT MAINT_NOTIFICATIONS (an error it tolerates); this
script checks ballot answers all of it and that the usual commands read back what
they wrote. Point it at a follower to exercise forwarding to the leader:

    python3 tests/clients/redis_py_smoke.py 7001

Needs `pip install redis`. Exits 0 when every check passes, 1 on the first failed
check (printing it), 2 on bad usage.
"""

import sys
import uuid

import redis


class CheckFailed(Exception):
    """A reply differed from what ballot should have sent."""


def check(condition, message):
    if not condition:
        raise CheckFailed(message)


def expect(actual, expected, what):
    check(actual == expected, f"{what}: expected {expected!r}, got {actual!r}")


def run(port):
    client = redis.Redis(host="127.0.0.1", port=port)
    # Keys unique to this run, so it can be repeated against the same cluster.
    prefix = f"redis-py-smoke:{uuid.uuid4().hex}:"
    key = lambda name: prefix + name

    expect(client.ping(), True, "PING")

    # The handshake redis-py did on connect, and what the server recorded of it.
    connection = client.connection_pool.get_connection()
    try:
        hello = connection.handshake_metadata or {}
        protocol = connection.protocol
    finally:
        client.connection_pool.release(connection)
    print(f"redis-py {redis.__version__} negotiated protocol {protocol}")
    if int(redis.__version__.split(".")[0]) >= 8:
        expect(int(protocol), 3, "redis-py 8's default protocol")
    if int(protocol) == 3:
        expect(hello.get(b"proto"), 3, "HELLO's proto")
        expect(hello.get(b"server"), b"ballot", "HELLO's server")
    info = client.client_info()
    expect(info.get("lib-name"), "redis-py", "CLIENT INFO lib-name")
    expect(info.get("lib-ver"), redis.__version__, "CLIENT INFO lib-ver")
    expect(info.get("resp"), str(protocol), "CLIENT INFO resp")
    expect(int(info.get("id")), client.client_id(), "CLIENT INFO id")

    # Strings, counters, deletes.
    expect(client.set(key("greeting"), "hello"), True, "SET")
    expect(client.get(key("greeting")), b"hello", "GET")
    expect(client.get(key("missing")), None, "GET of a missing key")
    expect(client.incr(key("counter")), 1, "INCR")
    expect(client.incrby(key("counter"), 41), 42, "INCRBY")
    expect(client.decr(key("counter")), 41, "DECR")
    expect(client.append(key("greeting"), " world"), 11, "APPEND")
    expect(client.strlen(key("greeting")), 11, "STRLEN")
    expect(client.exists(key("greeting"), key("missing"), key("counter")), 2, "EXISTS")
    expect(
        client.mget(key("greeting"), key("missing"), key("counter")),
        [b"hello world", None, b"41"],
        "MGET",
    )
    expect(client.mset({key("a"): "1", key("b"): "2"}), True, "MSET")
    try:
        client.incr(key("greeting"))
        raise CheckFailed("INCR of a non-integer succeeded")
    except redis.ResponseError as error:
        check("not an integer" in str(error), f"INCR error: {error}")

    # A pipeline: all commands written before any reply is read.
    pipe = client.pipeline(transaction=False)
    pipe.set(key("piped"), "1").incr(key("piped")).get(key("piped")).mget(key("piped"), key("nowhere"))
    expect(pipe.execute(), [True, 2, b"2", [b"2", None]], "pipeline")

    # Connection commands.
    expect(client.client_setname("smoke"), True, "CLIENT SETNAME")
    expect(client.client_getname(), "smoke", "CLIENT GETNAME")  # redis-py decodes names
    expect(client.execute_command("SELECT", 0), True, "SELECT 0")
    try:
        client.execute_command("SELECT", 1)
        raise CheckFailed("SELECT 1 succeeded")
    except redis.ResponseError as error:
        check("DB index is out of range" in str(error), f"SELECT 1 error: {error}")
    expect(client.config_get("appendonly"), {"appendonly": "yes"}, "CONFIG GET appendonly")
    check(client.command_count() > 10, "COMMAND COUNT")
    role = client.info().get("role")
    check(role in ("leader", "follower", "candidate"), f"INFO role: {role!r}")
    print(f"node {port} is a {role}")

    expect(
        client.delete(key("greeting"), key("counter"), key("a"), key("b"), key("piped"), key("missing")),
        5,
        "DEL",
    )
    expect(client.get(key("greeting")), None, "GET after DEL")


def main(argv):
    if len(argv) != 2 or not argv[1].isdigit():
        print(f"usage: {argv[0]} PORT", file=sys.stderr)
        return 2
    try:
        run(int(argv[1]))
    except (CheckFailed, redis.RedisError) as error:
        print(f"FAILED: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print("redis-py smoke test: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
