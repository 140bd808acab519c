"""How responsive the dashboard's solutions view is on a job of 10,000 solutions, in headless
Chromium against `ridgerider dashboard`, beside the API call it makes (the peer).

    python bench/dashboard.py [--solutions 10000] [--repeats 5]

Measured, each the median over repeats, from the click to the table drawn: opening the job's
solutions (first page of 50), the next page, and a sort on a metric (a new first page); and
what the browser holds: the rows drawn and the bytes it fetched for them, against the whole
set's size. Needs Debian's chromium and chromium-driver (`make test` installs them).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from common import print_table
from selenium.webdriver.common.by import By

from storage.database import Database
from storage.schema import ensure_schema
from storage.synthetic import synthetic_job
from tests.api.server import serving
from tests.api.test_dashboard import chromium, sign_in, until

DRAWN = "return document.querySelectorAll('#solutions tbody tr').length"
FIRST_ID = "return document.querySelector('#solutions tbody tr')?.dataset.solution"
SORT_HEADER = "//table[@id='solutions']//th[text()='test_accuracy']"
FETCHED = (
    "return performance.getEntriesByType('resource').filter((e) => e.name.includes("
    "'/solutions?')).map((e) => e.decodedBodySize)"
)


def timed(action, done) -> float:
    """Milliseconds from `action()` until `done()` holds."""
    started = time.perf_counter()
    action()
    until(done, seconds=120, every=0.005)
    return (time.perf_counter() - started) * 1000


def new_page(driver, action) -> float:
    """Milliseconds from `action()` until the table shows another first row."""
    first = driver.execute_script(FIRST_ID)
    return timed(action, lambda: driver.execute_script(FIRST_ID) != first)


def measure(url: str, key: str, repeats: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"open": [], "next": [], "sort": [], "api": []}
    driver = chromium()
    try:
        driver.get(url)
        sign_in(driver, key)
        until(lambda: driver.find_elements(By.CSS_SELECTOR, '#jobs tr[data-job="1"]'))
        driver.find_element(By.CSS_SELECTOR, '#jobs tr[data-job="1"] button').click()
        driver.find_element(By.CSS_SELECTOR, '#tabs button[data-tab="solutions"]').click()
        for _ in range(repeats):
            driver.execute_script("document.querySelector('#solutions tbody').replaceChildren()")
            open_job = driver.find_element(By.CSS_SELECTOR, '#jobs tr[data-job="1"] button')
            times["open"].append(timed(open_job.click, lambda: driver.execute_script(DRAWN) == 50))
            times["next"].append(new_page(driver, driver.find_element(By.ID, "next-page").click))
            header = driver.find_element(By.XPATH, SORT_HEADER)
            times["sort"].append(new_page(driver, header.click))
            with httpx.Client(headers={"Authorization": f"Bearer {key}"}) as http:
                started = time.perf_counter()
                http.get(f"{url}/jobs/1/solutions", params={"limit": 50}).raise_for_status()
                times["api"].append((time.perf_counter() - started) * 1000)
        times["bytes"] = driver.execute_script(FETCHED)
        times["drawn"] = [driver.execute_script(DRAWN)]
    finally:
        driver.quit()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--solutions", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        db = Database(Path(folder) / "ridgerider.db")
        ensure_schema(db)
        synthetic_job(db, args.solutions)
        db.dispose()
        with serving(Path(folder), "dashboard") as (url, log):
            key = next(word for word in log.read_text().split() if word.startswith("rr_"))
            times = measure(url, key, args.repeats)
            whole = httpx.get(
                f"{url}/jobs/1/solutions",
                params={"limit": 1000},
                headers={"Authorization": f"Bearer {key}"},
            ).content
    page_bytes = statistics.median(times["bytes"])
    print(f"dashboard, job of {args.solutions:,} solutions, median of {args.repeats} (ms)")
    labels = {
        "open": "open the job's solutions (page of 50)",
        "next": "next page",
        "sort": "sort by a metric (new first page)",
        "api": "peer: GET /jobs/1/solutions?limit=50 alone",
    }
    print_table(
        ["what", "ms"],
        "lr",
        ([label, f"{statistics.median(times[name]):.1f}"] for name, label in labels.items()),
    )
    print(
        f"rows in the browser: {times['drawn'][0]}; bytes a page: {page_bytes:,.0f}; "
        f"the whole set would be about {len(whole) * args.solutions / 1000:,.0f} bytes"
    )


if __name__ == "__main__":
    main()
