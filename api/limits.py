"""What one API key may consume: jobs in flight and submissions a minute (counted in the
database, so they hold across server processes), and event streams open at once (per server
process, which holds them). Beyond a limit the answer is 429 with `Retry-After`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from api.problems_json import ProblemError
from workers.settings import env_integer

SUBMISSION_WINDOW_SECONDS = 60


@dataclass(frozen=True)
class Limits:
    """Attributes (each from its `RIDGERIDER_*` variable):
    active_jobs: jobs of one key queued or running at once (`MAX_ACTIVE_JOBS`, 20).
    submissions_per_minute: jobs one key may submit a minute (`SUBMISSIONS_PER_MINUTE`, 60).
    streams_per_key: event streams one key may hold open on a server process
        (`STREAMS_PER_KEY`, 8).
    streams: event streams a server process holds open in all (`STREAMS`, 256).
    stream_seconds: an event stream ends after this; the client reconnects (`STREAM_SECONDS`,
        3600).
    exports_waiting: exports queued on a server process, one built at a time
        (`EXPORTS_WAITING`, 4).
    """

    active_jobs: int = 20
    submissions_per_minute: int = 60
    streams_per_key: int = 8
    streams: int = 256
    stream_seconds: int = 3600
    exports_waiting: int = 4

    @classmethod
    def from_environment(cls) -> Limits:
        """The limits the environment sets.

        Raises:
            ValueError: a variable is not an integer in its range (named).
        """
        return cls(
            active_jobs=env_integer("RIDGERIDER_MAX_ACTIVE_JOBS", cls.active_jobs, 100_000),
            submissions_per_minute=env_integer(
                "RIDGERIDER_SUBMISSIONS_PER_MINUTE", cls.submissions_per_minute, 100_000
            ),
            streams_per_key=env_integer("RIDGERIDER_STREAMS_PER_KEY", cls.streams_per_key, 10_000),
            streams=env_integer("RIDGERIDER_STREAMS", cls.streams, 100_000),
            stream_seconds=env_integer("RIDGERIDER_STREAM_SECONDS", cls.stream_seconds, 86_400),
            exports_waiting=env_integer("RIDGERIDER_EXPORTS_WAITING", cls.exports_waiting, 1_000),
        )


def too_many(detail: str, retry_after: int) -> ProblemError:
    return ProblemError(
        429, "Too Many Requests", detail, headers={"Retry-After": str(max(1, retry_after))}
    )


def check_submission(limits: Limits, active: int, recent: int, oldest_age: float) -> None:
    """Refuse a submission over the key's limits, given its jobs in flight, its submissions in
    the last minute and the age in seconds of the oldest of those.

    Raises:
        ProblemError: 429, saying which limit and when to retry.
    """
    if active >= limits.active_jobs:
        raise too_many(
            f"this key has {active} jobs queued or running, the most allowed "
            f"(RIDGERIDER_MAX_ACTIVE_JOBS = {limits.active_jobs}); retry when one ends",
            30,
        )
    if recent >= limits.submissions_per_minute:
        raise too_many(
            f"this key submitted {recent} jobs in the last minute, the most allowed "
            f"(RIDGERIDER_SUBMISSIONS_PER_MINUTE = {limits.submissions_per_minute})",
            int(SUBMISSION_WINDOW_SECONDS - oldest_age) + 1,
        )


@dataclass
class StreamSlots:
    """The event streams this server process holds open, by key. Used from the event loop's
    thread only, so no lock."""

    limits: Limits
    held: Counter[str] = field(default_factory=Counter)

    def take(self, owner: str) -> None:
        """Take a slot for a stream of `owner`'s.

        Raises:
            ProblemError: 429 if the key or the process holds the most streams allowed.
        """
        if self.held[owner] >= self.limits.streams_per_key:
            raise too_many(
                f"this key holds {self.held[owner]} event streams open, the most allowed "
                f"(RIDGERIDER_STREAMS_PER_KEY = {self.limits.streams_per_key})",
                5,
            )
        if self.held.total() >= self.limits.streams:
            raise too_many("the server holds the most event streams it allows", 5)
        self.held[owner] += 1

    def give_back(self, owner: str) -> None:
        self.held[owner] -= 1
        if self.held[owner] <= 0:
            del self.held[owner]
