"""Work off the request path in a real child process: a child that dies is reported through
`on_error`, and the next piece of work gets a new child."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures.process import BrokenProcessPool

from api.background import BackgroundProcess


def die() -> None:
    os._exit(3)


def test_a_child_that_dies_is_reported_and_replaced():
    async def main() -> tuple[list[BaseException], int, int]:
        runner = BackgroundProcess("things", 4)
        errors: list[BaseException] = []
        reported = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_error(error: BaseException) -> None:
            errors.append(error)
            loop.call_soon_threadsafe(reported.set)

        try:
            runner.start(die, on_error=on_error)
            await asyncio.wait_for(reported.wait(), 120)
            first = await runner.run(os.getpid)
            second = await runner.run(os.getpid)
        finally:
            runner.close()
        return errors, first, second

    errors, first, second = asyncio.run(main())
    assert len(errors) == 1 and isinstance(errors[0], BrokenProcessPool)
    assert first == second != os.getpid()  # a new child, kept for the next work
