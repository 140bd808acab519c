"""The dashboard in a real headless Chromium (Debian's, through chromedriver) against a live
`ridgerider dashboard`: a job submitted from the form grows in the tree view while it runs, a
wide tree of 401 points keeps its ride labels apart and folds, unfolds and zooms to a subtree,
the page loads with no console error, the solutions table filters (and points at a bad filter's
token), a Pareto choice downloads an archive that opens, and another key sees none of the jobs.
Screenshots are kept in test-artifacts/dashboard/."""

from __future__ import annotations

import json
import re
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from storage.database import Database
from storage.keys import LOCAL_OWNER
from storage.synthetic import synthetic_tree
from tests.api.server import serving
from tests.api.test_cli import ridgerider
from tests.conftest import REPOSITORY

SCREENSHOTS = REPOSITORY / "test-artifacts" / "dashboard"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WIDE = (16, 4, 6)  # the start's 16 rides (8 ridges, one eigenvalue), then 4, then 6 a point
WIDE_POINTS = 1 + 16 + 16 * 4 + 16 * 4 * 5  # at the last depth a ridge's two rides meet


def until(condition: Callable[[], Any], seconds: float = 60, every: float = 0.2) -> Any:
    """`condition()`'s first truthy value, asked every `every` seconds for `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(every)


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory) -> Iterator[dict[str, Any]]:
    """A folder whose database holds job 1 (the three-class net, run on the command line; the
    tiny net's minima are copies of one function, merged by its inferred `align`) and job 2 (a
    stored tree of WIDE_POINTS points, `WIDE`), a key for bob, and `ridgerider dashboard` over
    it: its URL and the keys."""
    folder = tmp_path_factory.mktemp("dashboard")
    (folder / "spec.toml").write_text("max_nodes = 24\nmax_depth = 4\n")
    run = ridgerider(
        "run", "--problem", "tests.problems:three_class_net", "--spec", "spec.toml", cwd=folder
    )
    assert run.returncode == 0, run.stderr
    db = Database(folder / "ridgerider.db")
    assert synthetic_tree(db, WIDE, owner=LOCAL_OWNER) == 2
    db.dispose()
    bob = ridgerider("keys", "create", "bob", cwd=folder).stdout.strip()
    with serving(folder, "dashboard") as (url, log):
        local = next(word for word in log.read_text().split() if word.startswith("rr_"))
        yield {"url": url, "local": local, "bob": bob, "folder": folder}


def chromium() -> WebDriver:
    """Debian's headless Chromium, through its chromedriver."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1400,1100")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, for errors
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


@pytest.fixture(scope="module")
def browser(dashboard, tmp_path_factory) -> Iterator[WebDriver]:
    driver = chromium()
    downloads = tmp_path_factory.mktemp("downloads")
    driver.execute_cdp_cmd(
        "Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    driver.downloads = downloads
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver.get(dashboard["url"])
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver: WebDriver, name: str) -> None:
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def sign_in(driver: WebDriver, key: str) -> None:
    driver.find_element(By.ID, "key").send_keys(key)
    driver.find_element(By.CSS_SELECTOR, "#login-form button").click()
    until(lambda: driver.find_element(By.ID, "app").is_displayed())
    assert key not in driver.current_url


def api(dashboard: dict[str, Any], path: str, key: str = "local") -> httpx.Response:
    headers = {"Authorization": f"Bearer {dashboard[key]}"}
    return httpx.get(f"{dashboard['url']}{path}", headers=headers, timeout=60)


def job_rows(driver: WebDriver) -> list[str]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#jobs tbody tr')].map((row) => row.dataset.job)"
    )


def field(driver: WebDriver, name: str):
    return driver.find_element(By.CSS_SELECTOR, f'#submit-form [name="{name}"]')


def set_value(element, value: str) -> None:
    element.clear()
    element.send_keys(value)


def test_a_job_from_the_form_grows_in_the_tree_while_it_runs(dashboard, browser):
    sign_in(browser, dashboard["local"])
    until(lambda: job_rows(browser) == ["2", "1"])
    browser.find_element(By.ID, "new-job").click()
    Select(field(browser, "problem-name")).select_by_visible_text("digits-mlp")
    set_value(field(browser, "parameter:hidden"), "4")
    set_value(field(browser, "max_nodes"), "0")
    browser.find_element(By.CSS_SELECTOR, "#submit-form button[type=submit]").click()
    refusal = until(
        lambda: browser.find_element(By.CSS_SELECTOR, '[data-field="max_nodes"] .field-error').text
    )
    assert "greater than or equal to 1" in refusal
    shot(browser, "submit-error")
    set_value(field(browser, "max_nodes"), "10")
    browser.find_element(By.CSS_SELECTOR, "#submit-form button[type=submit]").click()
    until(lambda: browser.find_element(By.ID, "job-title").text == "Job 3")

    seen = []
    while api(dashboard, "/jobs/3").json()["status"] not in ("finished", "failed"):
        seen.append(
            int(browser.find_element(By.ID, "tree-summary").get_attribute("data-nodes") or 0)
        )
        time.sleep(0.3)
    assert api(dashboard, "/jobs/3").json()["status"] == "finished"
    nodes = len(api(dashboard, "/jobs/3/graph").json()["nodes"])
    assert len({n for n in seen if 0 < n < nodes}) >= 2, seen  # it grew while the job ran
    until(
        lambda: (
            browser.find_element(By.ID, "tree-summary").get_attribute("data-nodes") == str(nodes)
        )
    )
    assert f"{nodes} critical points" in browser.find_element(By.ID, "tree-summary").text

    depth = until(lambda: open_a_minimum(browser))[0]
    details = until(lambda: browser.find_element(By.ID, "node-details").text)
    assert "gradient norm" in details and "fingerprint" in details and "test_accuracy" in details
    highlighted = "return document.querySelectorAll('#tree .node.path, #tree .edge.path').length"
    assert browser.execute_script(highlighted) == 2 * depth + 1  # the points and rides to it
    shot(browser, "tree")


def open_a_minimum(driver: WebDriver) -> tuple[int] | None:
    """Click a minimum in the tree: its depth, or None where the tree was redrawn meanwhile
    (the job's last records arrive after it finished)."""
    try:
        minimum = driver.find_element(By.CSS_SELECTOR, "#tree .node.minimum")
        depth = int(minimum.get_attribute("data-depth"))
        driver.execute_script("arguments[0].scrollIntoView()", minimum)
        minimum.find_element(By.TAG_NAME, "circle").click()
    except StaleElementReferenceException:
        return None
    return (depth,)


LABELS = """
const shown = [...document.querySelectorAll('#tree .edge-label')]
  .filter((label) => getComputedStyle(label).display !== 'none');
const boxes = shown.map((label) => [label.textContent, label.getBoundingClientRect()]);
const meeting = [];
boxes.forEach(([a, one], i) => boxes.slice(i + 1).forEach(([b, other]) => {
  if (one.left < other.right && other.left < one.right && one.top < other.bottom
      && other.top < one.bottom) meeting.push([a, b]);
}));
return {texts: boxes.map(([text]) => text), meeting,
  empty: boxes.filter(([, box]) => !(box.width > 0 && box.height > 0)).length};
"""


def labels(driver: WebDriver) -> list[str]:
    """The texts of the ride labels shown (drawn, not hidden as too small to read), after
    checking that each has a box and that no two meet."""
    shown = driver.execute_script(LABELS)
    assert shown["empty"] == 0
    assert shown["meeting"] == [], shown["meeting"][:5]
    return shown["texts"]


def drawn(driver: WebDriver) -> int:
    return int(driver.find_element(By.ID, "tree-summary").get_attribute("data-drawn"))


def circle(driver: WebDriver, node: str) -> dict[str, float]:
    return driver.find_element(By.CSS_SELECTOR, f'#tree .node[data-node="{node}"] circle').rect


def click_toggle(driver: WebDriver, node: str) -> None:
    driver.find_element(By.CSS_SELECTOR, f'#tree [data-toggle="{node}"]').click()


def test_a_wide_tree_keeps_its_labels_apart_folds_and_zooms_with_no_console_error(
    dashboard, browser
):
    browser.get_log("browser")  # what earlier tests logged (a refused filter's 422) is dropped
    browser.get(dashboard["url"])
    if browser.find_element(By.ID, "login").is_displayed():
        sign_in(browser, dashboard["local"])
    until(lambda: "2" in job_rows(browser))
    browser.find_element(By.CSS_SELECTOR, '#jobs tr[data-job="2"] button').click()
    summary = browser.find_element(By.ID, "tree-summary")
    until(lambda: summary.get_attribute("data-nodes") == str(WIDE_POINTS))
    assert drawn(browser) == 17  # a tree this large opens folded below the start's rides
    assert sorted(labels(browser)) == sorted(
        f"{ridge}{sign} λ=-0.2405" for ridge in range(8) for sign in "+-"
    )
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
    icon = httpx.get(f"{dashboard['url']}/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"
    shot(browser, "tree-folded")

    ride = browser.find_elements(By.CSS_SELECTOR, '#tree .node[data-depth="1"]')[3]
    node = ride.get_attribute("data-node")
    click_toggle(browser, node)
    until(lambda: drawn(browser) == 17 + 4)
    assert len(labels(browser)) == 20
    click_toggle(browser, node)
    until(lambda: drawn(browser) == 17)

    browser.find_element(By.CSS_SELECTOR, f'#tree .node[data-node="{node}"] circle').click()
    until(lambda: browser.find_element(By.ID, "zoom-subtree")).click()
    until(lambda: drawn(browser) == 17 + 4)
    frame = browser.find_element(By.ID, "tree").rect
    below = [
        e.get_attribute("data-node")
        for e in browser.find_elements(By.CSS_SELECTOR, '#tree .node[data-depth="2"]')
    ]
    boxes = [circle(browser, n) for n in [node, *below]]
    for box in boxes:  # the subtree fills the frame
        assert frame["x"] <= box["x"] and box["x"] + box["width"] <= frame["x"] + frame["width"]
        assert frame["y"] <= box["y"] and box["y"] + box["height"] <= frame["y"] + frame["height"]
    spread = max(b["x"] + b["width"] for b in boxes) - min(b["x"] for b in boxes)
    assert spread > frame["width"] / 2
    before = circle(browser, below[1])
    click_toggle(browser, below[1])
    until(lambda: drawn(browser) == 17 + 4 + 5)
    after = circle(browser, below[1])  # the point unfolded stays where it was clicked
    assert abs(after["x"] - before["x"]) < 1 and abs(after["y"] - before["y"]) < 1
    assert len(labels(browser)) == 25
    shot(browser, "tree-subtree")

    browser.find_element(By.ID, "tree-unfold").click()  # at this zoom: every label shown
    until(lambda: drawn(browser) == WIDE_POINTS)
    texts = labels(browser)
    assert len(texts) == WIDE_POINTS - 1
    assert sum("±" in text for text in texts) == 16 * 4  # both rides of a ridge met
    shot(browser, "tree-unfolded")
    browser.find_element(By.ID, "tree-fit").click()  # 320 leaves in 900 px: too small to read
    until(lambda: labels(browser) == [])
    shot(browser, "tree-whole")
    browser.find_element(By.ID, "tree-fold").click()
    until(lambda: drawn(browser) == 17)
    assert len(labels(browser)) == 16


def open_solutions(driver: WebDriver, job: int) -> None:
    driver.find_element(By.CSS_SELECTOR, f'#jobs tr[data-job="{job}"] button').click()
    until(lambda: driver.find_element(By.ID, "job-title").text == f"Job {job}")
    driver.find_element(By.CSS_SELECTOR, '#tabs button[data-tab="solutions"]').click()


def table_ids(driver: WebDriver, table: str = "solutions") -> list[int]:
    return driver.execute_script(
        f"return [...document.querySelectorAll('#{table} tbody tr')]"
        ".map((row) => Number(row.dataset.solution))"
    )


def test_a_filter_narrows_the_table_and_a_bad_one_points_at_the_token(dashboard, browser):
    open_solutions(browser, 1)
    everything = api(dashboard, "/jobs/1/solutions").json()["solutions"]
    until(lambda: table_ids(browser) == [s["id"] for s in everything])
    levels = sorted({s["metrics"]["sharpness"] for s in everything})
    where = f"sharpness >= {levels[len(levels) // 2]}"
    expected = [
        s["id"] for s in api(dashboard, f"/jobs/1/solutions?filter={where}").json()["solutions"]
    ]
    assert 0 < len(expected) < len(everything)
    set_value(browser.find_element(By.ID, "filter"), where)
    browser.find_element(By.CSS_SELECTOR, "#filter-form button").click()
    until(lambda: table_ids(browser) == expected)
    shot(browser, "solutions")

    set_value(browser.find_element(By.ID, "filter"), "test_acuracy > 0.9")
    browser.find_element(By.CSS_SELECTOR, "#filter-form button").click()
    error = until(lambda: browser.find_element(By.ID, "filter-error").text)
    assert "unknown metric 'test_acuracy'" in error
    assert "  test_acuracy > 0.9\n  ^" in error
    shot(browser, "filter-error")
    set_value(browser.find_element(By.ID, "filter"), "")
    browser.find_element(By.CSS_SELECTOR, "#filter-form button").click()
    until(lambda: not browser.find_element(By.ID, "filter-error").text)


def test_a_pareto_choice_shows_its_set_and_downloads_an_archive_that_opens(dashboard, browser):
    Select(browser.find_element(By.ID, "x-metric")).select_by_visible_text("test_accuracy")
    Select(browser.find_element(By.ID, "y-metric")).select_by_visible_text("sharpness")
    Select(browser.find_element(By.ID, "y-direction")).select_by_visible_text("min")
    browser.find_element(By.CSS_SELECTOR, '#tabs button[data-tab="choose"]').click()
    browser.find_element(By.CSS_SELECTOR, "#choose-form button[type=submit]").click()
    body = {"pareto": [{"name": "test_accuracy"}, {"name": "sharpness", "direction": "min"}]}
    front = httpx.post(
        f"{dashboard['url']}/jobs/1/select",
        json=body,
        headers={"Authorization": f"Bearer {dashboard['local']}"},
    ).json()
    until(lambda: table_ids(browser, "chosen") == [s["id"] for s in front["solutions"]])
    until(lambda: "ensemble test accuracy" in browser.find_element(By.ID, "set-metrics").text, 120)
    cells = browser.find_elements(By.CSS_SELECTOR, "#heatmap rect")
    assert len(cells) == len(front["solutions"]) ** 2
    shot(browser, "choose")

    browser.find_element(By.ID, "download").click()
    archive = until(lambda: next(iter(browser.downloads.glob("*.tar.gz")), None), 120)
    until(lambda: not list(browser.downloads.glob("*.crdownload")))
    with tarfile.open(archive) as opened:
        names = opened.getnames()
    assert "ridgerider-job-1/MODEL_CARD.md" in names
    weights = [n for n in names if n.startswith("ridgerider-job-1/weights/solution-")]
    assert len(weights) == len(front["solutions"])


def test_another_key_sees_none_of_the_first_keys_jobs(dashboard, browser):
    browser.find_element(By.ID, "logout").click()
    until(lambda: browser.find_element(By.ID, "login").is_displayed())
    assert browser.find_element(By.ID, "jobs").get_attribute("data-loaded") is None
    assert browser.execute_script("return sessionStorage.length") == 0
    sign_in(browser, dashboard["bob"])
    until(lambda: browser.find_element(By.ID, "jobs").get_attribute("data-loaded"))
    assert job_rows(browser) == []
    assert api(dashboard, "/jobs/1", key="bob").status_code == 404
    shot(browser, "another-key")


def test_retaken_climbs_are_drawn_with_their_sign_doubled(dashboard, browser):
    """Tree MDP depth 4, seed 2018: climbs that turned off their direction are retaken once all
    other work is done, their sign doubled in the path (`5++`); the tree draws and labels them
    like any ride, with no console error."""
    problem = "tree-mdp:depth=4,seed=2018"
    run = ridgerider("run", "--problem", problem, "--json", cwd=dashboard["folder"])
    assert run.returncode == 0, run.stderr
    job = str(json.loads(run.stdout)["job"]["id"])
    graph = api(dashboard, f"/jobs/{job}/graph").json()
    assert any(re.search(r"(\+\+|--)$", n["fingerprint"]) for n in graph["nodes"])
    browser.get_log("browser")
    browser.get(dashboard["url"])
    if browser.find_element(By.ID, "login").is_displayed():
        sign_in(browser, dashboard["local"])
    else:
        browser.find_element(By.ID, "logout").click()
        until(lambda: browser.find_element(By.ID, "login").is_displayed())
        sign_in(browser, dashboard["local"])
    until(lambda: job in job_rows(browser))
    browser.find_element(By.CSS_SELECTOR, f'#jobs tr[data-job="{job}"] button').click()
    summary = browser.find_element(By.ID, "tree-summary")
    until(lambda: summary.get_attribute("data-nodes") == str(len(graph["nodes"])))
    browser.find_element(By.ID, "tree-unfold").click()
    until(lambda: drawn(browser) == len(graph["nodes"]))
    every = "return [...document.querySelectorAll('#tree .edge-label')].map((l) => l.textContent)"
    assert any(re.search(r"\d(\+\+|--|±±) λ=", text) for text in browser.execute_script(every))
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
    shot(browser, "tree-retaken")
