"""snowg.pubsub on one node: every function, Phoenix's rules for duplicates, what may be broadcast."""

from __future__ import annotations

from typing import Any, List

import pytest

import snowg
import snowg.pubsub as pubsub
from snowg.testing import wait_for
from support import no_message, recv, tagged, wait_down

TIME_LIMIT = 60


def _subscriber(parent: snowg.Pid, topic: str, times: int = 1) -> None:
    """Subscribe ``times`` times, say so, forward everything as ``('got', self(), msg)`` until ``'stop'``."""
    me = snowg.self()
    for _ in range(times):
        pubsub.subscribe(topic)
    snowg.send(parent, ("subscribed", me))
    while (msg := snowg.receive()) != "stop":
        snowg.send(parent, ("got", me, msg))


def start_subscriber(me: snowg.Pid, topic: str, times: int = 1) -> snowg.Pid:
    pid = snowg.spawn(_subscriber, me, topic, times)
    recv(tagged("subscribed", pid))
    return pid


def got(pid: snowg.Pid) -> Any:
    return recv(tagged("got", pid))[2]


def test_subscribe_and_broadcast(me: snowg.Pid) -> None:
    pubsub.subscribe("news")
    other = start_subscriber(me, "news")
    pubsub.broadcast("news", {"n": 1})
    assert recv() == {"n": 1}
    assert got(other) == {"n": 1}
    no_message(lambda m: m == {"n": 1})
    assert sorted(pubsub.subscribers("news")) == sorted([me, other])
    assert sorted(pubsub.local_subscribers("news")) == sorted([me, other])


def test_a_broadcast_without_subscribers_is_nothing(me: snowg.Pid) -> None:
    pubsub.broadcast("nobody-listens", "x")
    assert pubsub.subscribers("nobody-listens") == []
    no_message()


def test_subscribing_twice_delivers_twice_and_unsubscribe_drops_both(me: snowg.Pid) -> None:
    pubsub.subscribe("t")
    pubsub.subscribe("t")
    assert pubsub.local_subscribers("t") == [me, me]
    pubsub.broadcast("t", "twice")
    assert recv() == "twice"
    assert recv() == "twice"
    no_message()
    pubsub.unsubscribe("t")
    assert pubsub.local_subscribers("t") == []
    pubsub.broadcast("t", "none")
    pubsub.unsubscribe("t")  # not subscribed: nothing happens
    pubsub.subscribe("fence")
    pubsub.broadcast("fence", "fence")
    assert recv() == "fence"  # nothing came before it


def test_unsubscribe_leaves_the_other_topics(me: snowg.Pid) -> None:
    pubsub.subscribe("a")
    pubsub.subscribe("b")
    pubsub.unsubscribe("a")
    pubsub.broadcast("a", "to a")
    pubsub.broadcast("b", "to b")
    assert recv() == "to b"
    no_message()


def test_broadcast_from_excludes_exactly_that_process(me: snowg.Pid) -> None:
    twice = start_subscriber(me, "room", times=2)
    once = start_subscriber(me, "room")
    pubsub.subscribe("room")
    pubsub.broadcast_from(twice, "room", "hi")
    assert recv(lambda m: m == "hi") == "hi"
    assert got(once) == "hi"
    pubsub.broadcast("room", "fence")
    assert recv(lambda m: m == "fence") == "fence"
    assert got(once) == "fence"
    # Both of the excluded process's subscriptions were skipped: the fence comes first.
    assert got(twice) == "fence"
    assert got(twice) == "fence"
    no_message(tagged("got"))


def test_local_broadcast_takes_any_object(me: snowg.Pid) -> None:
    pubsub.subscribe("local")
    other = start_subscriber(me, "local")
    thing = object()  # cannot cross nodes, and need not
    pubsub.local_broadcast("local", thing)
    assert recv(lambda m: m is thing) is thing
    assert got(other) is thing
    pubsub.local_broadcast_from(other, "local", "not to other")
    assert recv(lambda m: type(m) is str) == "not to other"
    pubsub.broadcast("local", "fence")
    assert got(other) == "fence"


@pytest.mark.parametrize("message", [object(), {1, 2}, [lambda: 0]])
def test_a_message_that_cannot_cross_fails_before_anything_is_delivered(me: snowg.Pid, message: Any) -> None:
    pubsub.subscribe("strict")
    with pytest.raises(TypeError, match=r"cannot (cross|send).*node"):
        pubsub.broadcast("strict", message)
    with pytest.raises(TypeError, match=r"cannot (cross|send).*node"):
        pubsub.broadcast_from(me, "strict", message)
    no_message()


@pytest.mark.parametrize("topic", [b"bytes", 1, ("a",), None])
def test_a_topic_is_a_str(me: snowg.Pid, topic: Any) -> None:
    for call in (
        lambda: pubsub.subscribe(topic),
        lambda: pubsub.unsubscribe(topic),
        lambda: pubsub.broadcast(topic, "m"),
        lambda: pubsub.broadcast_from(me, topic, "m"),
        lambda: pubsub.local_broadcast(topic, "m"),
        lambda: pubsub.subscribers(topic),
        lambda: pubsub.local_subscribers(topic),
    ):
        with pytest.raises(TypeError, match="topic is a str"):
            call()


def test_broadcast_from_needs_a_pid(me: snowg.Pid) -> None:
    with pytest.raises(TypeError, match="Pid"):
        pubsub.broadcast_from("me", "t", "m")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Pid"):
        pubsub.local_broadcast_from(None, "t", "m")  # type: ignore[arg-type]


def test_a_subscriber_that_ends_is_unsubscribed(me: snowg.Pid) -> None:
    pid = start_subscriber(me, "gone")
    assert pubsub.subscribers("gone") == [pid]
    snowg.send(pid, "stop")
    wait_down(pid)
    assert wait_for(lambda: pubsub.subscribers("gone") == [], timeout=10)


def test_one_publisher_s_messages_arrive_in_order(me: snowg.Pid) -> None:
    subs = [start_subscriber(me, "seq") for _ in range(3)]
    for i in range(1000):
        pubsub.broadcast("seq", i)
    for pid in subs:
        seen: List[int] = [got(pid) for _ in range(1000)]
        assert seen == list(range(1000))
    no_message(tagged("got"))
