"""ember.util on a real node: ActorPool and the actor-backed Queue."""

from __future__ import annotations

import asyncio
import pickle
import queue as std_queue
import time

import ember
import pytest
from ember.util import ActorPool
from ember.util.queue import Empty, Full, Queue


@ember.remote
class Worker:
    def double(self, v):
        return 2 * v

    def slow(self, seconds):
        time.sleep(seconds)
        return seconds


def _double(actor, v):
    return actor.double.remote(v)


def _slow(actor, v):
    return actor.slow.remote(v)


@pytest.fixture(scope="module")
def workers(cluster):
    actors = [Worker.remote() for _ in range(2)]
    yield actors
    for a in actors:
        ember.kill(a)


def test_map_and_map_unordered(workers):
    pool = ActorPool(workers)
    assert list(pool.map(_double, [1, 2, 3, 4, 5])) == [2, 4, 6, 8, 10]
    assert sorted(pool.map_unordered(_double, range(6))) == [0, 2, 4, 6, 8, 10]
    # Results come back as they finish.
    assert list(pool.map_unordered(_slow, [1.0, 0.05])) == [0.05, 1.0]
    assert not pool.has_next()


def test_submit_get_next_and_pending_submits(workers):
    pool = ActorPool(workers)
    for v in range(5):  # more submissions than actors: the rest wait in the pool
        pool.submit(_double, v)
    assert pool.has_next() and not pool.has_free()
    assert [pool.get_next() for _ in range(5)] == [0, 2, 4, 6, 8]
    assert not pool.has_next()
    with pytest.raises(StopIteration):
        pool.get_next()
    with pytest.raises(StopIteration):
        pool.get_next_unordered()

    pool.submit(_slow, 1.0)
    pool.submit(_slow, 0.05)
    assert pool.get_next_unordered(timeout=30) == 0.05
    assert pool.get_next_unordered(timeout=30) == 1.0
    pool.submit(_slow, 0.5)
    pool.submit(_double, 1)
    assert pool.get_next_unordered(timeout=30) == 2
    with pytest.raises(ValueError):
        pool.get_next()  # the next in order was taken out of order
    while pool.has_next():
        pool.get_next_unordered()


def test_get_next_timeout(workers):
    pool = ActorPool(workers)
    pool.submit(_slow, 1.0)
    with pytest.raises(TimeoutError):
        pool.get_next(timeout=0.05)
    assert pool.get_next(timeout=30) == 1.0
    pool.submit(_slow, 1.0)
    with pytest.raises(TimeoutError):
        pool.get_next(timeout=0.05, ignore_if_timedout=True)
    assert not pool.has_next() and pool.has_free()
    pool.submit(_slow, 1.0)
    with pytest.raises(TimeoutError):
        pool.get_next_unordered(timeout=0.05)
    assert pool.get_next_unordered() == 1.0


def test_pop_idle_and_push(workers):
    pool = ActorPool(list(workers))
    assert pool.has_free()
    a = pool.pop_idle()
    b = pool.pop_idle()
    assert {a, b} == set(workers)
    assert not pool.has_free() and pool.pop_idle() is None
    pool.submit(_double, 21)  # waits: no actor
    pool.push(a)  # runs the waiting submission at once
    assert pool.get_next(timeout=30) == 42
    pool.push(b)
    with pytest.raises(ValueError):
        pool.push(b)
    assert sorted(pool.map(_double, [1, 2])) == [2, 4]


@ember.remote
def produce(q, n):
    for i in range(n):
        q.put(i)
    return n


@ember.remote
class Consumer:
    def consume(self, q, n):
        return [q.get(timeout=30) for _ in range(n)]


def test_queue_shared_by_a_producer_task_and_a_consumer_actor(cluster):
    q = Queue()
    consumer = Consumer.remote()
    got = consumer.consume.remote(q, 20)  # blocks until items arrive
    time.sleep(0.2)
    assert ember.get(produce.remote(q, 20), timeout=60) == 20
    assert ember.get(got, timeout=60) == list(range(20))
    assert q.empty() and q.qsize() == 0 and len(q) == 0
    # The Queue object pickles to the same actor.
    q2 = pickle.loads(pickle.dumps(q))
    q2.put("x")
    assert q.get(timeout=10) == "x"
    ember.kill(consumer)
    q.shutdown()


def test_queue_empty_full_and_batches(cluster):
    q = Queue(maxsize=2)
    with pytest.raises(Empty):
        q.get(timeout=0.2)
    with pytest.raises(Empty):
        q.get(block=False)
    with pytest.raises(std_queue.Empty):
        q.get_nowait()
    q.put(1)
    q.put_nowait(2)
    assert q.full() and q.size() == 2
    with pytest.raises(Full):
        q.put(3, timeout=0.2)
    with pytest.raises(Full):
        q.put(3, block=False)
    with pytest.raises(std_queue.Full):
        q.put_nowait(3)
    with pytest.raises(ValueError):
        q.put(3, timeout=-1)
    assert [q.get(), q.get()] == [1, 2]

    with pytest.raises(Full):
        q.put_nowait_batch([1, 2, 3])
    q.put_nowait_batch([7, 8])
    with pytest.raises(Empty):
        q.get_nowait_batch(3)
    assert q.get_nowait_batch(2) == [7, 8]
    with pytest.raises(TypeError):
        q.put_nowait_batch(5)
    with pytest.raises(TypeError):
        q.get_nowait_batch("2")
    q.shutdown(force=True)

    big = Queue(actor_options={"num_cpus": 0})
    big.put_nowait_batch(range(100))
    assert big.qsize() == 100
    assert big.get_nowait_batch(100) == list(range(100))

    async def roundtrip():
        await big.put_async("a")
        return await big.get_async(timeout=10)

    assert asyncio.run(roundtrip()) == "a"
    big.shutdown()
