"""What one API key may consume: jobs in flight and submissions a minute (counted in the
database, so they hold across server processes), and event streams open at once (per server
process, which holds them). Beyond a limit the answer is 429 with `Retry-After`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from api.problems_json import ProblemError
from workers.settings import Settings

SUBMISSION_WINDOW_SECONDS = 60


def too_many(detail: str, retry_after: int) -> ProblemError:
    return ProblemError(
        429, "Too Many Requests", detail, headers={"Retry-After": str(max(1, retry_after))}
    )


def check_submission(settings: Settings, active: int, recent: int, oldest_age: float) -> None:
    """Refuse a submission over the key's limits, given its jobs in flight, its submissions in
    the last minute and the age in seconds of the oldest of those.

    Raises:
        ProblemError: 429, saying which limit and when to retry.
    """
    if active >= settings.max_active_jobs:
        raise too_many(
            f"this key has {active} jobs queued or running, the most allowed "
            f"(RIDGERIDER_MAX_ACTIVE_JOBS = {settings.max_active_jobs}); retry when one ends",
            30,
        )
    if recent >= settings.submissions_per_minute:
        raise too_many(
            f"this key submitted {recent} jobs in the last minute, the most allowed "
            f"(RIDGERIDER_SUBMISSIONS_PER_MINUTE = {settings.submissions_per_minute})",
            int(SUBMISSION_WINDOW_SECONDS - oldest_age) + 1,
        )


@dataclass
class StreamSlots:
    """The event streams this server process holds open, by key. Used from the event loop's
    thread only, so no lock."""

    settings: Settings
    held: Counter[str] = field(default_factory=Counter)

    def take(self, owner: str) -> None:
        """Take a slot for a stream of `owner`'s.

        Raises:
            ProblemError: 429 if the key or the process holds the most streams allowed.
        """
        if self.held[owner] >= self.settings.streams_per_key:
            raise too_many(
                f"this key holds {self.held[owner]} event streams open, the most allowed "
                f"(RIDGERIDER_STREAMS_PER_KEY = {self.settings.streams_per_key})",
                5,
            )
        if self.held.total() >= self.settings.streams:
            raise too_many("the server holds the most event streams it allows", 5)
        self.held[owner] += 1

    def give_back(self, owner: str) -> None:
        self.held[owner] -= 1
        if self.held[owner] <= 0:
            del self.held[owner]
