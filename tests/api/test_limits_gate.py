"""The fair gate behind the concurrency limits: timeouts and cancellations leave no slot."""

from __future__ import annotations

import asyncio

from api.limits import Gate


def test_timeouts_and_cancellations_give_every_slot_back() -> None:
    async def scenario() -> None:
        gate = Gate(capacity=2)
        assert await gate.acquire(1, limit=2, timeout=1, max_queued=10)
        assert await gate.acquire(1, limit=2, timeout=1, max_queued=10)
        assert not await gate.acquire(1, limit=2, timeout=0.01, max_queued=10)  # timed out
        waiting = asyncio.ensure_future(gate.acquire(2, limit=2, timeout=10, max_queued=10))
        await asyncio.sleep(0.01)
        waiting.cancel()  # the client went away while queued
        await asyncio.gather(waiting, return_exceptions=True)
        assert not await gate.acquire(2, limit=2, timeout=0.01, max_queued=0)  # queue full
        gate.release(1)
        gate.release(1)
        assert gate.active == 0 and gate.running(1) == 0 and gate.running(2) == 0
        assert await gate.acquire(2, limit=1, timeout=1, max_queued=10)
        assert not await gate.acquire(2, limit=1, timeout=0.01, max_queued=10)  # per consumer
        assert await gate.acquire(3, limit=1, timeout=1, max_queued=10)  # another consumer
        assert gate.peak == {1: 2, 2: 1, 3: 1}

    asyncio.run(scenario())


def test_a_free_slot_goes_to_the_consumer_served_least_recently() -> None:
    async def scenario() -> list[int]:
        gate = Gate(capacity=1)
        assert await gate.acquire(1, limit=1, timeout=1, max_queued=10)
        order: list[int] = []

        async def ask(consumer: int) -> None:
            assert await gate.acquire(consumer, limit=1, timeout=5, max_queued=10)
            order.append(consumer)
            await asyncio.sleep(0.01)
            gate.release(consumer)

        tasks = [asyncio.ensure_future(ask(c)) for c in (1, 1, 2)]
        await asyncio.sleep(0.01)
        gate.release(1)
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(scenario()) == [2, 1, 1]
