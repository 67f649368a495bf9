"""The demo pages, the dashboard and the embeddable widget in a real browser.

Debian's Chromium and ChromeDriver, driven by Selenium, load pages from a
Daphne server that Channels' ChannelsLiveServerTestCase runs in a child
process. Two things make that work here:

- The child cannot see the suite's in-memory SQLite database, so each
  class points the default connection at a SQLite file of its own, and
  the child opens the same file.
- The child is spawned, not forked. A fork copies this process with the
  thread pools and locks that earlier tests left behind, without their
  threads, and its sockets then hang waiting on them. A spawned child
  starts clean and reads its settings from the environment like any
  server: RTREC_VAR_DIR (so the database file) and RTREC_MODEL_DIR.

Every wait has an explicit timeout. The MovieLens class saves screenshots
into test-artifacts/.
"""

import io
import json
import multiprocessing
import os
import shutil
import subprocess
import tempfile
import time
import unittest
from contextlib import contextmanager
from functools import cache, partial
from pathlib import Path
from unittest import mock

from channels.testing import ChannelsLiveServerTestCase
from channels.testing.live import make_application
from daphne.testing import DaphneProcess
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS, connections
from django.test import Client, override_settings
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from websockets.sync.client import connect as websocket_connect

from events.models import Interaction
from events.tokens import make_ws_token
from recommendations.training import TrainingSettings, train_model
from tests.conftest import make_catalog

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
)
# Long enough for a slow machine, short enough that a hang fails the test.
WAIT = 20
# Reconnecting waits out the widget's backoff, up to 8 s after a short outage.
RECONNECT_WAIT = 45


@cache
def chromium_problem():
    """None when Chromium and its driver are installed (installing them
    with apt-get if this runs as root), else why they are not."""
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "not root, or no apt-get, so they cannot be installed here"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        for command in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"],
        ):
            subprocess.run(
                command, env=env, check=True, timeout=900, capture_output=True
            )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"apt-get failed: {exc}"
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return None
    return "apt-get ran but the binaries are not there"


def start_chromium(profile_parent, width=1280, height=1000):
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(dir=profile_parent)}")
    options.add_argument(f"--window-size={width},{height}")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT)
    driver.set_script_timeout(WAIT)
    return driver


@contextmanager
def spawning():
    """New processes start in a fresh interpreter while this lasts.

    The start method is switched for the moment rather than subclassing
    the process: a spawned child unpickles the process object, and a
    class of this module would make it import Django models before
    Django is set up.
    """
    previous = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method("spawn", force=True)
    try:
        yield
    finally:
        multiprocessing.set_start_method(previous, force=True)


def server_process(host, get_application, setup=None, port=None):
    """Channels' server process without its setup, which renames the
    database as a forked child needs; a spawned one finds its database
    from RTREC_VAR_DIR."""
    return DaphneProcess(host, get_application, port=port)


def server_environment(workdir, model_dir):
    """What the spawned server reads its settings from."""
    return {
        "RTREC_VAR_DIR": str(workdir),
        "RTREC_MODEL_DIR": str(model_dir),
        "ALLOWED_HOSTS": ",".join({*settings.ALLOWED_HOSTS, "localhost"}),
    }


class SqliteFile:
    """Points the default connection at a SQLite file, then back.

    Only when the suite runs on in-memory SQLite: closing that connection
    would drop its database, so it is put aside and given back instead.
    """

    def __init__(self, path):
        self.path = str(path)
        self.saved = None

    def __enter__(self):
        connection = connections[DEFAULT_DB_ALIAS]
        if connection.vendor != "sqlite" or not connection.is_in_memory_db():
            return self
        self.saved = (connection.connection, connection.settings_dict["NAME"])
        connection.connection = None
        connection.settings_dict["NAME"] = self.path
        call_command("migrate", verbosity=0, interactive=False)
        connection.close()
        return self

    def __exit__(self, *exc_info):
        if self.saved is None:
            return
        connection = connections[DEFAULT_DB_ALIAS]
        connection.close()
        raw, name = self.saved
        connection.settings_dict["NAME"] = name
        connection.connection = raw


class BrowserTestCase(ChannelsLiveServerTestCase):
    ProtocolServerProcess = staticmethod(server_process)
    window = (1280, 1000)
    # Environment variables for the server process, beside its folders.
    server_settings = {}

    @classmethod
    def setUpClass(cls):
        problem = chromium_problem()
        if problem:
            raise unittest.SkipTest(
                f"BROWSER TESTS NOT RUN: Chromium and ChromeDriver are missing "
                f"({problem}); install the Debian packages chromium and "
                f"chromium-driver"
            )
        # Selenium must not look for a browser or driver online.
        os.environ.setdefault("SE_OFFLINE", "true")
        cls.workdir = Path(tempfile.mkdtemp(prefix="rtrec-browser-"))
        cls.model_dir = cls.workdir / "models"
        # The file the server's settings name when RTREC_VAR_DIR is set.
        cls.database = SqliteFile(cls.workdir / "rtrec.sqlite3").__enter__()
        cls.server_env = mock.patch.dict(
            os.environ,
            {
                **server_environment(cls.workdir, cls.model_dir),
                **cls.server_settings,
            },
        )
        cls.server_env.start()
        try:
            with spawning():
                super().setUpClass()
        except BaseException:
            cls.server_env.stop()
            cls.database.__exit__(None, None, None)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.server_env.stop()
            cls.database.__exit__(None, None, None)
            shutil.rmtree(cls.workdir, ignore_errors=True)

    def setUp(self):
        # The suite's autouse fixture gave this test a model folder of its
        # own; the server process reads the class's.
        self.enterContext(
            override_settings(RTREC={**settings.RTREC, "MODEL_DIR": self.model_dir})
        )
        self.driver = start_chromium(self.workdir, *self.window)
        self.addCleanup(self.driver.quit)

    # Helpers

    def open(self, path):
        self.driver.get(self.live_server_url + path)

    def wait(self, condition, timeout=WAIT, message=""):
        return WebDriverWait(self.driver, timeout, poll_frequency=0.05).until(
            lambda driver: condition(), message
        )

    def find(self, selector):
        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def finds(self, selector):
        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    def widget(self, selector="[data-rtrec-widget]"):
        return self.find(selector)

    def shown_ids(self, selector="[data-rtrec-widget]"):
        # In one script: the list may be replaced between two calls.
        return self.driver.execute_script(
            "return Array.from(document.querySelectorAll(arguments[0]))"
            ".map(function (entry) { return entry.dataset.item; });",
            f"{selector} .rtrec-item",
        )

    def wait_for_live_widget(self, selector="[data-rtrec-widget]", state="open"):
        self.wait(
            lambda: (
                self.widget(selector).get_attribute("data-state") == state
                and self.shown_ids(selector)
            ),
            message=f"the widget never showed recommendations while {state}",
        )

    def sign_in_as_staff(self):
        staff = User.objects.create_user("operator", password="pw-12345", is_staff=True)
        client = Client()
        client.force_login(staff)
        cookie = client.cookies[settings.SESSION_COOKIE_NAME]
        self.open("/healthz")
        self.driver.add_cookie(
            {"name": settings.SESSION_COOKIE_NAME, "value": cookie.value, "path": "/"}
        )

    def stop_server(self):
        process = type(self)._server_process
        process.terminate()
        process.join(10)

    def start_server_again(self):
        """A new server process on the same port, as after a restart."""
        cls = type(self)
        with spawning():
            process = server_process(
                cls.host,
                partial(make_application, static_wrapper=cls.static_wrapper),
                port=cls._port,
            )
            process.start()
        cls._server_process = process
        if not process.ready.wait(WAIT) or process.port.value != cls._port:
            raise AssertionError("the server did not start again on its port")

    def train_small_model(self):
        make_catalog()
        train_model(TrainingSettings(feedback="explicit", factors=8, epochs=15))


class PagesInTheBrowserTest(BrowserTestCase):
    def setUp(self):
        super().setUp()
        self.train_small_model()

    def test_clicking_an_item_changes_for_you_in_place(self):
        self.open("/")
        self.wait_for_live_widget("#for-you")
        before = self.shown_ids("#for-you")
        on_this_page = [
            item for item in before if self.finds(f'#catalog [data-item="{item}"]')
        ]
        clicked = on_this_page[0]
        self.driver.execute_script("window.sameDocument = true;")

        self.find(f'#catalog button[data-item="{clicked}"]').click()

        self.wait(
            lambda: self.shown_ids("#for-you") not in ([], before),
            message="the for-you list did not change after the click",
        )
        after = self.shown_ids("#for-you")
        assert clicked not in after
        assert self.driver.execute_script("return window.sameDocument === true;")
        card = self.find(f'#catalog button[data-item="{clicked}"]')
        assert card.get_attribute("aria-pressed") == "true"
        assert Interaction.objects.filter(
            kind="click", item__external_id=clicked
        ).exists()

    def test_dashboard_shows_an_event_within_a_second(self):
        self.sign_in_as_staff()
        self.open("/dashboard/")
        self.wait(lambda: self.find("#dashboard").get_attribute("data-live") == "ok")

        url = f"{self.live_server_ws_url}/ws/recommendations/"
        token = make_ws_token("dashboard-watcher", 60)
        event = {"type": "event", "event": "like", "item": "7", "event_id": "d-1"}
        with websocket_connect(f"{url}?token={token}", open_timeout=WAIT) as socket:
            socket.send(json.dumps(event))
            ack = json.loads(socket.recv(timeout=WAIT))
            sent = time.monotonic()
            assert ack["event_id"] == "d-1"
            stored = Interaction.objects.get(event_id="d-1")

            self.wait(
                lambda: self.finds(f'#feed tr[data-event-id="{stored.pk}"]'),
                timeout=1.0,
                message="the event was not on the dashboard within a second",
            )
        assert time.monotonic() - sent < 1.0
        row = self.find(f'#feed tr[data-event-id="{stored.pk}"]')
        assert "liked" in row.text and "Item 7" in row.text


class WidgetOnAnotherSiteTest(BrowserTestCase):
    def setUp(self):
        super().setUp()
        self.train_small_model()

    def outbox(self):
        return self.driver.execute_script(
            "return window.rtrec.widgets[0].connection.outbox"
            ".map(function (entry) { return entry.message; });"
        )

    def test_widget_reconnects_and_delivers_a_queued_event_once(self):
        self.open("/widget/demo/")
        self.wait_for_live_widget()
        demo_user = self.find('[data-testid="demo-user"]').text

        self.stop_server()
        self.wait(
            lambda: (
                self.widget().get_attribute("data-state") in ("offline", "fallback")
            ),
            message="the widget did not notice the server going away",
        )
        clicked = self.shown_ids()[0]
        self.find(f'.rtrec-item[data-item="{clicked}"] .rtrec-pick').click()
        (queued,) = self.outbox()
        assert self.widget().get_attribute("data-queued") == "1"
        assert not Interaction.objects.filter(event_id=queued["event_id"]).exists()

        self.start_server_again()
        self.wait(
            lambda: (
                self.widget().get_attribute("data-state") == "open"
                and self.widget().get_attribute("data-queued") == "0"
            ),
            timeout=RECONNECT_WAIT,
            message="the widget did not reconnect and send its queue",
        )
        stored = Interaction.objects.filter(event_id=queued["event_id"])
        assert stored.count() == 1
        event = stored.get()
        assert (event.kind, event.user.external_id) == ("click", demo_user)
        assert str(event.recommendation_id) == queued["recommendation_id"]
        self.wait(lambda: self.shown_ids() and clicked not in self.shown_ids())

        # Sent once more, as after an ack lost with a dropped socket.
        duplicate = self.driver.execute_async_script(
            """
            var done = arguments[arguments.length - 1];
            var connection = window.rtrec.widgets[0].connection;
            connection.on("ack", function (ack) { done(ack); });
            connection.outbox.push({message: arguments[0], queuedAt: Date.now()});
            connection.flush();
            """,
            queued,
        )
        assert duplicate["duplicate"] is True
        assert Interaction.objects.filter(event_id=queued["event_id"]).count() == 1

    def test_widget_falls_back_to_rest_when_sockets_are_off(self):
        self.open("/widget/demo/?transport=rest")
        self.wait_for_live_widget(state="fallback")
        demo_user = self.find('[data-testid="demo-user"]').text
        clicked = self.shown_ids()[0]

        self.find(f'.rtrec-item[data-item="{clicked}"] .rtrec-pick').click()

        self.wait(
            lambda: (
                self.widget().get_attribute("data-queued") == "0"
                and clicked not in self.shown_ids()
            ),
            message="the click was not sent over REST, or the list not refreshed",
        )
        event = Interaction.objects.get(kind="click", item__external_id=clicked)
        assert event.user.external_id == demo_user
        assert event.recommendation_id is not None


class WidgetAfterTheServerClosesItTest(BrowserTestCase):
    """The server closes idle sockets after three seconds, and allows one
    socket per user."""

    server_settings = {
        "RTREC_WS_IDLE_SECONDS": "3",
        "RTREC_WS_MAX_SOCKETS_PER_USER": "1",
    }

    def setUp(self):
        super().setUp()
        self.train_small_model()

    def count_sockets(self):
        """From now on, window.socketsOpened counts the page's new sockets."""
        self.driver.execute_script(
            """
            var Original = window.WebSocket;
            window.socketsOpened = 0;
            window.WebSocket = function (url, protocols) {
                window.socketsOpened += 1;
                return new Original(url, protocols);
            };
            window.WebSocket.prototype = Original.prototype;
            """
        )

    def sockets_opened(self):
        return self.driver.execute_script("return window.socketsOpened;")

    def state(self):
        return self.widget().get_attribute("data-state")

    def click_first_item(self):
        clicked = self.shown_ids()[0]
        self.find(f'.rtrec-item[data-item="{clicked}"] .rtrec-pick').click()
        return clicked

    def wait_until_sent(self, timeout=WAIT):
        self.wait(
            lambda: self.widget().get_attribute("data-queued") == "0",
            timeout=timeout,
            message="the widget did not send its queued event",
        )

    def clicks_on(self, item, user):
        return Interaction.objects.filter(
            kind="click", item__external_id=item, user__external_id=user
        ).count()

    def test_widget_stays_closed_after_an_idle_close_until_it_has_to_send(self):
        self.open("/widget/demo/")
        self.wait_for_live_widget()
        demo_user = self.find('[data-testid="demo-user"]').text
        self.count_sockets()

        self.wait(
            lambda: self.state() == "paused",
            message="the widget did not notice the idle close",
        )
        # Many times the longest delay before an ordinary reconnect.
        time.sleep(3)
        assert self.sockets_opened() == 0
        assert self.state() == "paused"

        clicked = self.click_first_item()

        self.wait_until_sent()
        assert self.sockets_opened() == 1
        assert self.clicks_on(clicked, demo_user) == 1

    def test_widget_backs_off_while_its_user_is_over_the_socket_cap(self):
        self.open("/widget/demo/")
        self.wait_for_live_widget()
        demo_user = self.find('[data-testid="demo-user"]').text
        self.count_sockets()
        self.wait(lambda: self.state() == "paused")

        url = f"{self.live_server_ws_url}/ws/recommendations/"
        token = make_ws_token(demo_user, 60)
        with websocket_connect(f"{url}?token={token}", open_timeout=WAIT) as other:
            # The reader's other tab holds the only socket allowed.
            ping_until_pong(other)
            clicked = self.click_first_item()
            watched_until = time.monotonic() + 6
            while time.monotonic() < watched_until:
                time.sleep(0.5)
                ping_until_pong(other)
            attempts = self.sockets_opened()

        # Sent over HTTP meanwhile, or over the socket once the other closed.
        self.wait_until_sent(timeout=RECONNECT_WAIT)
        self.wait(
            lambda: self.state() in ("open", "paused") and self.sockets_opened() > 2,
            timeout=RECONNECT_WAIT,
            message="the widget did not get its socket back",
        )
        # Refused at once, then again some seconds later: not every moment.
        assert 1 <= attempts <= 2
        assert self.clicks_on(clicked, demo_user) == 1


def ping_until_pong(socket):
    """Keep a socket from being idle, past any push it is sent."""
    socket.send(json.dumps({"type": "ping"}))
    while json.loads(socket.recv(timeout=WAIT))["type"] != "pong":
        pass


@unittest.skipUnless(
    Path(settings.RTREC["DATA_DIR"]).is_dir(),
    f"MovieLens 100K not in {settings.RTREC['DATA_DIR']}: no screenshots",
)
class MovieLensScreenshotsTest(BrowserTestCase):
    """The pages on real data, saved as pictures for the README."""

    window = (1280, 900)

    def setUp(self):
        super().setUp()
        out = io.StringIO()
        call_command("import_movielens", str(settings.RTREC["DATA_DIR"]), stdout=out)
        call_command("train", stdout=out)
        ARTIFACTS.mkdir(exist_ok=True)

    def screenshot(self, name, height=None):
        if height:
            self.driver.set_window_size(self.window[0], height)
        try:
            assert self.driver.save_screenshot(str(ARTIFACTS / name))
        except WebDriverException as exc:
            raise AssertionError(f"could not save {name}: {exc}") from exc

    def test_catalog_item_page_and_dashboard_on_movielens(self):
        self.open("/")
        self.wait_for_live_widget("#for-you")
        for card in self.finds("#catalog button[data-event]")[1:4]:
            before = self.shown_ids("#for-you")
            card.click()
            self.wait(lambda before=before: self.shown_ids("#for-you") != before)
        self.screenshot("catalog.png")

        link = self.find("#for-you .rtrec-item a")
        link.click()
        self.wait(lambda: self.finds("#item[data-recommendation-id]"))
        self.wait_for_live_widget("#for-you")
        self.find('button[data-event="like"]').click()
        self.wait(lambda: "Liked" in self.find("#action-status").text)
        self.wait(lambda: self.find("#similar").get_attribute("data-model"))
        self.screenshot("item.png")

        self.driver.set_window_size(390, 844)
        self.open("/?genre=Comedy")
        self.wait_for_live_widget("#for-you")
        self.screenshot("catalog-phone.png")
        self.driver.set_window_size(*self.window)

        self.open("/widget/demo/")
        self.wait_for_live_widget()
        self.screenshot("widget-demo.png")

        self.sign_in_as_staff()
        self.open("/dashboard/")
        self.wait(lambda: self.finds("#feed tr") and self.finds("#ctr-chart svg"))
        self.wait(lambda: self.finds("#model .facts") and self.finds("#rate-chart svg"))
        self.screenshot("dashboard.png", height=1500)
