"""Drives the status page (issue 29) in Debian's headless Chromium through
Selenium and chromedriver, one browser for every case; run by
tests/integration/status_page.rs, which starts the relays and upstreams
and passes their ports, spools and message ids as JSON in argv[1].

Every check raises on failure (exit status 1 with the reason); figures go
to stdout as one JSON line at the end."""

import http.server
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

CONFIG = json.loads(sys.argv[1])
SHOTS = CONFIG["screenshots"]
FIGURES = {}


def fail(why):
    raise AssertionError(why)


def wait(what, check, limit=20.0):
    """Polls check() every 100 ms until it is true; fails after limit s."""
    end = time.monotonic() + limit
    while True:
        try:
            value = check()
        except Exception as e:  # an element not there yet
            value = None
            last = e
        if value:
            return value
        if time.monotonic() > end:
            fail("timed out waiting for " + what)
        time.sleep(0.1)


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    profile = tempfile.mkdtemp(prefix="status-chromium-")
    for arg in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--user-data-dir=" + profile,
                "--window-size=1200,1500"]:
        options.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def shot(driver, name):
    path = os.path.join(SHOTS, name + ".png")
    # The whole page: as tall as its content.
    height = driver.execute_script("return document.documentElement.scrollHeight")
    width = driver.get_window_size()["width"]
    driver.set_window_size(width, max(600, min(height + 140, 4000)))
    driver.save_screenshot(path)


def text(driver, css):
    return driver.find_element(By.CSS_SELECTOR, css).text


def route(driver, state):
    """The text of the route whose state is `state`, once there is one."""
    return wait("a route in state " + state,
                lambda: text(driver, 'li[data-state="%s"]' % state))


def spool_has(spool, name):
    return os.path.exists(os.path.join(spool, name))


def sink_has(sink_dir, subject):
    for name in os.listdir(sink_dir):
        try:
            with open(os.path.join(sink_dir, name), errors="replace") as f:
                if "Subject: " + subject in f.read():
                    return True
        except OSError:
            pass
    return False


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    fail("no VmRSS for %d" % pid)


def rows(driver):
    return driver.find_elements(By.CSS_SELECTOR, "#queue tbody tr")


def click_action(driver, message_id, action):
    """Clicks a row's button. The page redraws the table on every poll, so
    a row found a moment ago can be gone by the click: a stale element
    raises before anything is clicked, and the row is looked up again."""
    def find_and_click():
        row = driver.find_element(By.CSS_SELECTOR, 'tr[data-id="%s"]' % message_id)
        row.find_element(By.CSS_SELECTOR, 'button[data-action="%s"]' % action).click()
        return True
    wait("the %s button of %s" % (action, message_id), find_and_click)


def healthy(driver):
    """A healthy route, a chart that moves as swaks sends, the failures
    view with headers on request, retry, delete and unfail."""
    h = CONFIG["healthy"]
    driver.get("http://127.0.0.1:%d/" % h["http"])
    wait("the overview", lambda: text(driver, "#queued") not in ("", "–"))
    before = int(wait("the hour chart", lambda: driver.find_element(
        By.ID, "chart-hour").get_attribute("data-received")))
    for n in range(3):
        subprocess.run(["swaks", "--silent", "2", "--server", "127.0.0.1:%d" % h["smtp"],
                        "--from", "printer@example.com", "--to", "admin@example.org",
                        "--header", "Subject: chart %d" % n], check=True, timeout=30)
    started = time.monotonic()

    def moved():
        chart = driver.find_element(By.ID, "chart-hour")
        return (int(chart.get_attribute("data-received")) >= before + 3 and
                int(chart.get_attribute("data-forwarded")) >= 3)
    wait("the hour chart to show 3 received and forwarded", moved, 30)
    FIGURES["chart_moved_after_s"] = round(time.monotonic() - started, 1)
    bars = driver.find_elements(By.CSS_SELECTOR, "#chart-hour rect.received")
    if not bars:
        fail("no bars of received mail drawn")
    state = route(driver, "sending")
    if not re.search(r"Sending: [1-9]\d* message\(s\) in the last hour", state):
        fail("healthy route reads: " + state)
    verdict = text(driver, "#verdict")
    if "3 message(s) failed" not in verdict:
        fail("verdict with three failed messages: " + verdict)
    shot(driver, "overview")

    # The failures, and one's headers on request: never its body.
    driver.find_element(By.ID, "tab-failed").click()
    wait("three failed messages", lambda: len(rows(driver)) == 3)
    page = driver.page_source
    if "BODY-SECRET" in page:
        fail("a message body is on the page")
    for subject in ("Toner low", "Paper jam", "Scan to mail"):
        if subject not in page:
            fail("no subject %r in the failures view" % subject)
    if "550 mailbox unavailable" not in page:
        fail("no failure reason in the failures view")
    click_action(driver, h["ids"]["toner"], "headers")
    headers = wait("the headers", lambda: text(driver, "#headers-text"))
    if "Subject: Toner low" not in headers or "BODY-SECRET" in headers:
        fail("headers shown: " + headers)
    if "BODY-SECRET" in driver.page_source:
        fail("a message body is on the page after asking for headers")
    shot(driver, "failures")
    driver.find_element(By.ID, "headers-close").click()

    spool, sink = h["spool"], h["sink"]
    toner, jam, scan = h["ids"]["toner"], h["ids"]["jam"], h["ids"]["scan"]
    # Retry now: the failed message goes back in the queue and is sent.
    click_action(driver, toner, "retry")
    wait("the page to reload the failures after the retry",
         lambda: text(driver, "#queue-note").startswith(toner + ": "))
    wait("the retried message at the sink", lambda: sink_has(sink, "Toner low"), 30)
    wait("the retried message to leave the spool", lambda: not any(
        spool_has(spool, toner + s) for s in (".envelope.bad", ".envelope", ".content")))
    # Delete: confirmed in the browser's dialogue; both files go.
    click_action(driver, jam, "delete")
    wait("the confirmation", lambda: driver.switch_to.alert).accept()
    wait("the deleted message's files to go", lambda: not any(
        spool_has(spool, jam + s) for s in (".envelope.bad", ".content")))
    wait("the page to say so", lambda: "deleted" in text(driver, "#queue-note"))
    if sink_has(sink, "Paper jam"):
        fail("the deleted message was sent")
    # Unfail: back in the queue; the next poll sends it.
    click_action(driver, scan, "unfail")
    wait("the unfailed message at the sink", lambda: sink_has(sink, "Scan to mail"), 30)
    if spool_has(spool, scan + ".envelope.bad"):
        fail("the unfailed message is still failed")
    wait("an empty failures view", lambda: "No failed messages" in text(driver, "#queue-note"))


def phone(driver):
    """The overview on a phone-sized screen: nothing wider than it."""
    h = CONFIG["healthy"]
    driver.set_window_size(390, 844)
    driver.get("http://127.0.0.1:%d/" % h["http"])
    wait("the overview", lambda: text(driver, "#queued") not in ("", "–"))
    wait("the route", lambda: text(driver, 'li[data-state="sending"]'))
    overflow = driver.execute_script(
        "return document.documentElement.scrollWidth - window.innerWidth")
    if overflow > 1:
        fail("the page is %d px wider than a phone's screen" % overflow)
    shot(driver, "phone")
    driver.set_window_size(1200, 1500)


def throttled(driver):
    t = CONFIG["throttled"]
    driver.get("http://127.0.0.1:%d/" % t["http"])
    state = route(driver, "waiting")
    for words in ("Waiting: 127.0.0.1:%d asked us to slow down" % t["upstream"],
                  "Next attempt at", "Last answer: 432 4.3.2 STOREDRV.ClientSubmit"):
        if words not in state:
            fail("throttled route lacks %r: %s" % (words, state))
    verdict = driver.find_element(By.ID, "verdict")
    if "warn" not in verdict.get_attribute("class") or "Mail is delayed" not in verdict.text:
        fail("verdict for a throttled route: " + verdict.text)
    wait("the queued messages", lambda: len(rows(driver)) == 2)
    shot(driver, "throttled")
    # The page's own origin without the token: refused.
    answer = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('status/message/%s/delete', {method: 'POST'})"
        ".then(r => r.text().then(t => done(r.status + ' ' + t)));" % t["ids"][0])
    if not answer.startswith("403 forbidden: missing or wrong page token"):
        fail("a POST without the token got: " + answer)


def cross_site(driver):
    """A page on another origin posts a form to delete a message: refused,
    and the message is still there."""
    t = CONFIG["throttled"]
    target = t["ids"][1]
    form = ("<!DOCTYPE html><html><body><form id='f' method='POST' "
            "action='http://127.0.0.1:%d/status/message/%s/delete'>"
            "<input name='x' value='1'></form>"
            "<script>document.getElementById('f').submit()</script></body></html>"
            % (t["http"], target)).encode()

    class Evil(http.server.BaseHTTPRequestHandler):
        timeout = 5

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(form)))
            self.end_headers()
            self.wfile.write(form)

        def log_message(self, *args):
            pass

    # Threaded: a connection Chromium opens ahead and leaves idle must not
    # hold up the server's shutdown.
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Evil)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        started = time.monotonic()
        driver.get("http://localhost:%d/" % server.server_address[1])
        FIGURES["cross_site_get_s"] = round(time.monotonic() - started, 1)
        body = wait("the relay's refusal", lambda: "forbidden" in text(driver, "body")
                    and text(driver, "body"))
        if "forbidden: cross-origin request" not in body:
            fail("the cross-site post got: " + body)
    finally:
        server.shutdown()
    for suffix in (".envelope", ".content"):
        if not spool_has(t["spool"], target + suffix):
            fail("the cross-site post removed " + target + suffix)


def paused(driver):
    p = CONFIG["paused"]
    driver.get("http://127.0.0.1:%d/" % p["http"])
    state = route(driver, "paused")
    for words in ("Paused: 127.0.0.1:%d refused our password since " % p["upstream"],
                  "Check the user name and password in the client secrets file",
                  "Mail is kept", "Last answer: 535"):
        if words not in state:
            fail("paused route lacks %r: %s" % (words, state))
    verdict = text(driver, "#verdict")
    if not verdict.startswith("Mail is held: 127.0.0.1:%d refused our password" % p["upstream"]):
        fail("verdict for a paused route: " + verdict)
    shot(driver, "paused")


def big(driver):
    """200,000 queued messages: pages and a search, with the relay's
    resident memory measured before and after."""
    b = CONFIG["big"]
    driver.get("http://127.0.0.1:%d/" % b["http"])
    wait("the count", lambda: text(driver, "#queued") == str(b["count"]), 60)
    wait("the first page", lambda: len(rows(driver)) == 50, 60)
    before = rss_kb(b["pid"])
    timings = []
    for page in range(2, 12):
        started = time.monotonic()
        driver.find_element(By.ID, "next").click()
        wait("page %d" % page, lambda: text(driver, "#queue-note").startswith(
            "Page %d: 50 message(s)" % page), 60)
        timings.append(time.monotonic() - started)
    first_id = rows(driver)[0].get_attribute("data-id")
    if not first_id.endswith(".%d" % (10 * 50 + 1)):
        fail("page 11 starts at %s, not message 501" % first_id)
    driver.find_element(By.ID, "search").send_keys("scanner")
    started = time.monotonic()
    driver.find_element(By.CSS_SELECTOR, "#search-form button").click()
    wait("the search", lambda: "matching “scanner”" in text(driver, "#queue-note"), 60)
    FIGURES["big_search_s"] = round(time.monotonic() - started, 2)
    found = rows(driver)
    note = text(driver, "#queue-note")
    FIGURES["big_search_note"] = note
    # Every hundredth message matches: a full page, or as many as the
    # search's time budget reached (the page then says so).
    if len(found) != 50 and "the search stopped after" not in note:
        fail("search found %d rows: %s" % (len(found), note))
    if not found or not found[0].get_attribute("data-id").endswith(".100"):
        fail("the first match is not message 100")
    for row in found:
        if "scanner@example.com" not in row.text:
            fail("search row without the term: " + row.text)
    shot(driver, "big-spool")
    after = rss_kb(b["pid"])
    FIGURES["big_page_s_max"] = round(max(timings), 2)
    FIGURES["big_page_s_median"] = round(sorted(timings)[len(timings) // 2], 2)
    FIGURES["big_rss_kb"] = [before, after]
    if after - before > b["rss_growth_kb"]:
        fail("the relay grew from %d kB to %d kB paging a big spool" % (before, after))


def main():
    started = time.monotonic()
    driver = browser()
    FIGURES["browser_start_s"] = round(time.monotonic() - started, 1)
    try:
        for case in (healthy, phone, throttled, cross_site, paused, big):
            t0 = time.monotonic()
            try:
                case(driver)
            except Exception:
                shot(driver, "failed-" + case.__name__)
                raise
            FIGURES[case.__name__ + "_s"] = round(time.monotonic() - t0, 1)
    finally:
        driver.quit()
    print(json.dumps(FIGURES))


main()
