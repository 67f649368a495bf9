/*
 * rtrec widget: live recommendations on any page, in this one file.
 *
 *   <script src="https://rtrec.example.com/static/rtrec/widget.js" defer></script>
 *   <div data-rtrec-widget
 *        data-server="https://rtrec.example.com"
 *        data-token="a ws_token your back end got for the reader"
 *        data-count="5" data-genre="Comedy"></div>
 *
 * Attributes of the div, all optional:
 *   data-server     where rtrec runs; default: where this file was loaded from
 *   data-token      a ws_token (POST /api/ws-tokens/); without one the
 *                   browser's rtrec session is used (rtrec's own pages)
 *   data-count      how many items, 1 to 100; default 5
 *   data-genre      only items of this genre
 *   data-item-url   a link for each item, with {id} and {rec} filled in;
 *                   without it each item is a button that records a click
 *   data-title      the heading; default "Recommended for you"
 *   data-transport  "rest" to skip the WebSocket
 *   data-style      "none" to leave all styling to the page
 *
 * window.rtrec.track(kind, itemId, {value, recommendationId}) sends an
 * event. Events wait in a queue (kept in sessionStorage) until the server
 * acknowledges them; after a dropped connection they are sent again with
 * the same event_id, so the server stores each one once.
 *
 * A socket the server closed for being idle (4408) stays closed until the
 * page sends an event or a request, or the tab is shown again. One closed
 * for too many sockets or messages (4429) is tried again slowly. One
 * refused (4401, 4403) is not tried again with the same token: listen for
 * "refused" on rtrec.widgets[0].connection and hand it a fresh token with
 * connection.useToken(token).
 */
(function () {
  "use strict";

  if (window.rtrec && window.rtrec.version) {
    return;
  }

  var SCRIPT = document.currentScript;
  var BASE_DELAY = 500;
  var MAX_DELAY = 30000;
  // Over a cap, asking again soon cannot help: start later, wait longer.
  var CROWDED_BASE_DELAY = 5000;
  var CROWDED_MAX_DELAY = 120000;
  var CLOSE_IDLE = 4408;
  var CLOSE_TOO_MANY = 4429;
  // Failed connection attempts in a row before the REST endpoint is used.
  var FALLBACK_AFTER = 2;
  var POLL_EVERY = 20000;
  var REQUEST_TIMEOUT = 10000;
  var OUTBOX_LIMIT = 200;
  var OUTBOX_MAX_AGE = 24 * 60 * 60 * 1000;
  var REFUSALS = { 4401: "not signed in", 4403: "not allowed from this site" };
  // Error codes that sending the same event again cannot fix.
  var HOPELESS = ["invalid_json", "invalid_message", "unknown_type",
                  "unknown_item", "too_large", "forbidden"];
  var REASONS = {
    personal: "Picked from your history",
    foldin: "Updated from what you just did",
    trending: "Trending right now",
    popular: "Popular with everyone",
    content: "Like what you looked at"
  };

  function scriptOrigin() {
    try {
      return new URL(SCRIPT.src, location.href).origin;
    } catch (error) {
      return location.origin;
    }
  }

  function newEventId() {
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return "w-" + Array.prototype.map.call(bytes, function (byte) {
      return (byte + 256).toString(16).slice(1);
    }).join("");
  }

  // Exponential, capped, and spread out ("equal jitter") so that a
  // restarted server is not met by every page at the same moment.
  function backoff(failures, base, most) {
    var ceiling = Math.min(most, base * Math.pow(2, failures - 1));
    return Math.round(ceiling / 2 + Math.random() * ceiling / 2);
  }

  function readOutbox(key) {
    try {
      var stored = JSON.parse(window.sessionStorage.getItem(key) || "[]");
      var oldest = Date.now() - OUTBOX_MAX_AGE;
      return stored.filter(function (entry) {
        return entry && entry.message && entry.queuedAt > oldest;
      }).map(function (entry) {
        return { message: entry.message, queuedAt: entry.queuedAt, sentOn: 0 };
      });
    } catch (error) {
      return [];
    }
  }

  function writeOutbox(key, outbox) {
    try {
      var kept = outbox.map(function (entry) {
        return { message: entry.message, queuedAt: entry.queuedAt };
      });
      window.sessionStorage.setItem(key, JSON.stringify(kept));
    } catch (error) {
      // Storage off or full: the queue still lives as long as the page.
    }
  }

  /* One connection per server and credentials, shared by every widget. */
  function Connection(server, token, transport) {
    this.server = server.replace(/\/+$/, "");
    this.token = token || "";
    this.restOnly = transport === "rest";
    this.socket = null;
    this.generation = 0;
    this.state = "idle";
    this.failures = 0;
    this.retryTimer = null;
    this.pollTimer = null;
    this.listeners = {};
    this.pending = {};
    this.posting = {};
    this.sequence = 0;
    this.storageKey = "rtrec-outbox " + this.server + (token ? " token" : " session");
    this.outbox = readOutbox(this.storageKey);

    var self = this;
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "visible") {
        self.wake();
      }
    });
  }

  Connection.prototype.on = function (type, handler) {
    (this.listeners[type] = this.listeners[type] || []).push(handler);
    return this;
  };

  Connection.prototype.off = function (type, handler) {
    this.listeners[type] = (this.listeners[type] || []).filter(function (known) {
      return known !== handler;
    });
    return this;
  };

  Connection.prototype.emit = function (type, data) {
    (this.listeners[type] || []).forEach(function (handler) {
      try {
        handler(data);
      } catch (error) {
        window.setTimeout(function () { throw error; });
      }
    });
  };

  Connection.prototype.setState = function (state, detail) {
    this.state = state;
    this.stateDetail = detail;
    this.emit("state", { state: state, detail: detail, queued: this.outbox.length });
  };

  Connection.prototype.start = function () {
    if (this.state !== "idle") {
      return this;
    }
    if (this.restOnly || typeof window.WebSocket !== "function") {
      this.degrade();
    } else {
      this.open();
    }
    return this;
  };

  Connection.prototype.socketUrl = function () {
    var url = this.server.replace(/^http/, "ws") + "/ws/recommendations/";
    return this.token ? url + "?token=" + encodeURIComponent(this.token) : url;
  };

  Connection.prototype.open = function () {
    var self = this;
    var socket;
    this.retryTimer = null;
    if (this.state !== "fallback") {
      this.setState("connecting");
    }
    try {
      socket = new window.WebSocket(this.socketUrl());
    } catch (error) {
      this.closed(1006);
      return;
    }
    this.socket = socket;
    socket.onopen = function () { self.opened(); };
    socket.onmessage = function (frame) { self.received(frame.data); };
    socket.onclose = function (event) {
      if (self.socket === socket) {
        self.socket = null;
        self.closed(event.code);
      }
    };
  };

  Connection.prototype.opened = function () {
    this.generation += 1;
    this.stopPolling();
    this.setState("open");
    this.emit("open");
    this.flush();
  };

  Connection.prototype.closed = function (code) {
    this.failPending("the connection closed");
    if (REFUSALS[code]) {
      // Asking again with the same token, by socket or by polling, would
      // be refused again.
      this.stopPolling();
      this.setState("refused", REFUSALS[code]);
      this.emit("refused", { code: code, reason: REFUSALS[code] });
      return;
    }
    if (code === CLOSE_IDLE) {
      // Reopening at once would keep a socket for a page nobody uses.
      this.failures = 0;
      this.setState("paused");
      return;
    }
    this.failures += 1;
    var delay = code === CLOSE_TOO_MANY
      ? backoff(this.failures, CROWDED_BASE_DELAY, CROWDED_MAX_DELAY)
      : backoff(this.failures, BASE_DELAY, MAX_DELAY);
    this.retryTimer = window.setTimeout(this.open.bind(this), delay);
    if (this.failures >= FALLBACK_AFTER) {
      this.degrade();
    } else {
      this.setState("offline", delay);
    }
  };

  Connection.prototype.received = function (text) {
    var message;
    try {
      message = JSON.parse(text);
    } catch (error) {
      return;
    }
    // An answer, not just an open socket, proves the server is back; an
    // error may be the refusal the server sends before it closes.
    if (message.type !== "error") {
      this.failures = 0;
    }
    if (message.type === "ack") {
      this.settle(message.event_id, "ack", message);
      return;
    }
    if (message.type === "error" && this.refused(message)) {
      return;
    }

    var waiting = message.request_id != null && this.pending[message.request_id];
    if (waiting) {
      delete this.pending[message.request_id];
      window.clearTimeout(waiting.timer);
      if (message.type === "error") {
        waiting.reject(message);
      } else {
        waiting.resolve(message);
      }
      return;
    }
    this.emit(message.type, message);
  };

  // An error about a queued event: true if it was one.
  Connection.prototype.refused = function (error) {
    var queued = this.outbox.some(function (entry) {
      return entry.message.event_id === error.request_id;
    });
    if (!queued) {
      return false;
    }
    if (error.code === "rate_limited") {
      window.setTimeout(this.flush.bind(this, true), 1000);
    } else if (HOPELESS.indexOf(error.code) >= 0) {
      this.settle(error.request_id, "rejected", error);
    }
    return true;
  };

  // An event leaves the queue once the server answered for it.
  Connection.prototype.settle = function (eventId, outcome, answer) {
    var before = this.outbox.length;
    this.outbox = this.outbox.filter(function (entry) {
      return entry.message.event_id !== eventId;
    });
    if (this.outbox.length !== before) {
      writeOutbox(this.storageKey, this.outbox);
      this.emit(outcome, answer);
      this.emit("queue", this.outbox.length);
    }
  };

  Connection.prototype.send = function (message) {
    if (!this.socket || this.socket.readyState !== 1) {
      return false;
    }
    this.socket.send(JSON.stringify(message));
    return true;
  };

  // Reopens a socket closed for being idle: true if it was.
  Connection.prototype.wake = function () {
    if (this.state !== "paused") {
      return false;
    }
    this.open();
    return true;
  };

  // A new token, for a page whose old one was refused (or will be soon).
  Connection.prototype.useToken = function (token) {
    if (!token || token === this.token) {
      return this;
    }
    this.token = token;
    if (this.state === "refused") {
      this.failures = 0;
      this.open();
    }
    return this;
  };

  Connection.prototype.whenOpen = function () {
    var self = this;
    return new Promise(function (resolve, reject) {
      function opened() {
        window.clearTimeout(timer);
        self.off("open", opened);
        resolve();
      }
      var timer = window.setTimeout(function () {
        self.off("open", opened);
        reject(new Error("not connected"));
      }, REQUEST_TIMEOUT);
      self.on("open", opened);
    });
  };

  Connection.prototype.request = function (message) {
    var self = this;
    if (this.wake()) {
      return this.whenOpen().then(function () { return self.request(message); });
    }
    return new Promise(function (resolve, reject) {
      var id = "r" + (self.sequence += 1);
      var sent = self.send(Object.assign({}, message, { request_id: id }));
      if (!sent) {
        reject(new Error("not connected"));
        return;
      }
      var timer = window.setTimeout(function () {
        delete self.pending[id];
        reject(new Error("no answer"));
      }, REQUEST_TIMEOUT);
      self.pending[id] = { resolve: resolve, reject: reject, timer: timer };
    });
  };

  Connection.prototype.failPending = function (reason) {
    var pending = this.pending;
    this.pending = {};
    Object.keys(pending).forEach(function (id) {
      window.clearTimeout(pending[id].timer);
      pending[id].reject(new Error(reason));
    });
  };

  Connection.prototype.track = function (kind, item, options) {
    options = options || {};
    var eventId = newEventId();
    var message = { type: "event", event: kind, item: String(item), event_id: eventId };
    if (options.value != null) {
      message.value = Number(options.value);
    }
    if (options.recommendationId) {
      message.recommendation_id = options.recommendationId;
    }
    // The event's own id doubles as the request id, so an error about
    // it can be matched to the queued event.
    message.request_id = eventId;

    this.outbox.push({ message: message, queuedAt: Date.now(), sentOn: 0 });
    if (this.outbox.length > OUTBOX_LIMIT) {
      this.outbox.splice(0, this.outbox.length - OUTBOX_LIMIT);
    }
    writeOutbox(this.storageKey, this.outbox);
    this.emit("queue", this.outbox.length);
    if (!this.wake()) {
      this.flush();
    }
    return eventId;
  };

  // Send what waits: each event once per socket (again after a
  // reconnect, since an ack may have been lost with the old one).
  Connection.prototype.flush = function (again) {
    var self = this;
    if (this.state === "open") {
      this.outbox.forEach(function (entry) {
        if ((again || entry.sentOn !== self.generation) && self.send(entry.message)) {
          entry.sentOn = self.generation;
        }
      });
    } else if (this.state === "fallback" && this.token) {
      this.outbox.forEach(this.post.bind(this));
    }
  };

  Connection.prototype.restUrl = function (path, params) {
    var query = new URLSearchParams(params || {});
    if (this.token) {
      query.set("token", this.token);
    }
    return this.server + path + "?" + query.toString();
  };

  Connection.prototype.fetchJson = function (url, init) {
    init = Object.assign({ credentials: this.token ? "omit" : "same-origin" }, init);
    return window.fetch(url, init).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (body) {
        return { status: response.status, body: body };
      });
    });
  };

  Connection.prototype.post = function (entry) {
    var self = this;
    var eventId = entry.message.event_id;
    if (this.posting[eventId]) {
      return;
    }
    this.posting[eventId] = true;
    var url = this.restUrl("/widget/events/");
    this.fetchJson(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(entry.message)
    }).then(function (answer) {
      if (answer.status < 300) {
        self.settle(eventId, "ack", answer.body);
        self.emit("poll");
      } else if (answer.status !== 429 && answer.status < 500) {
        var error = answer.body.error || {};
        self.settle(eventId, "rejected", { code: error.code, message: error.message });
      }
    }, function () {
      // The server is unreachable too: the event waits for the next try.
    }).then(function () {
      delete self.posting[eventId];
    });
  };

  Connection.prototype.fetchRecommendations = function (params) {
    var url = this.restUrl("/widget/recommendations/", params);
    return this.fetchJson(url).then(function (answer) {
      if (answer.status !== 200) {
        throw new Error("the server answered " + answer.status);
      }
      return answer.body;
    });
  };

  Connection.prototype.degrade = function () {
    this.setState("fallback", this.restOnly ? null : "reconnecting");
    if (!this.pollTimer) {
      this.pollTimer = window.setInterval(this.poll.bind(this), POLL_EVERY);
      this.poll();
    }
  };

  Connection.prototype.poll = function () {
    this.flush();
    this.emit("poll");
  };

  Connection.prototype.stopPolling = function () {
    window.clearInterval(this.pollTimer);
    this.pollTimer = null;
  };

  /* A list of recommendations drawn into one element of the page. */
  function Widget(element, connection, options) {
    this.element = element;
    this.connection = connection;
    this.count = options.count;
    this.genre = options.genre;
    this.itemUrl = options.itemUrl;
    this.current = null;
    this.build(options.title);

    var self = this;
    connection.on("state", function () { self.showState(); });
    connection.on("queue", function () { self.showState(); });
    connection.on("open", function () { self.refresh(); });
    connection.on("poll", function () { self.refresh(); });
    connection.on("model_updated", function () { self.refresh(); });
    connection.on("recommendations", function (message) { self.pushed(message); });
    this.showState();
  }

  Widget.prototype.build = function (title) {
    var root = this.element;
    var headingId = "rtrec-heading-" + (widgets.length + 1);
    root.classList.add("rtrec-widget");
    root.replaceChildren();

    var heading = document.createElement("h2");
    heading.className = "rtrec-title";
    heading.id = headingId;
    heading.textContent = title;

    this.list = document.createElement("ol");
    this.list.className = "rtrec-list";
    this.list.tabIndex = -1;
    this.list.setAttribute("aria-labelledby", headingId);

    // Screen readers hear one short sentence when the list changes,
    // not the whole list again.
    this.announcer = document.createElement("p");
    this.announcer.className = "rtrec-announce";
    this.announcer.setAttribute("aria-live", "polite");
    this.announcer.style.cssText = "position:absolute;width:1px;height:1px;" +
      "overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap";

    this.reason = document.createElement("p");
    this.reason.className = "rtrec-reason";

    this.status = document.createElement("p");
    this.status.className = "rtrec-status";

    root.append(heading, this.reason, this.list, this.status, this.announcer);
    this.list.addEventListener("click", this.clicked.bind(this));
    this.placeholder("Loading…");
  };

  Widget.prototype.placeholder = function (text) {
    var entry = document.createElement("li");
    entry.className = "rtrec-empty";
    entry.textContent = text;
    this.list.replaceChildren(entry);
  };

  Widget.prototype.refresh = function () {
    var self = this;
    var params = { n: this.count };
    if (this.genre) {
      params.genre = this.genre;
    }
    var state = this.connection.state;
    // A paused socket reopens for the request.
    var answer = state === "open" || state === "paused"
      ? this.connection.request(Object.assign({ type: "recommend" }, params))
      : this.connection.fetchRecommendations(params);
    answer.then(function (message) { self.render(message); }, function () {
      // Keep what is shown; the next connection or poll tries again.
    });
  };

  // Pushed lists are the default length and unfiltered: a widget that
  // wants more items or one genre asks for its own list instead.
  Widget.prototype.pushed = function (message) {
    if (this.genre || message.items.length < this.count) {
      this.refresh();
      return;
    }
    this.render(Object.assign({}, message, { items: message.items.slice(0, this.count) }));
  };

  Widget.prototype.render = function (message) {
    if (!message || !Array.isArray(message.items)) {
      return;
    }
    var hadFocus = this.list.contains(document.activeElement);
    var first = this.current === null;
    this.current = message;
    var root = this.element;
    root.setAttribute("data-recommendation-id", message.recommendation_id || "");
    root.setAttribute("data-strategy", message.strategy || "");

    if (!message.items.length) {
      this.placeholder("Nothing to recommend yet.");
    } else {
      this.list.replaceChildren.apply(this.list, message.items.map(this.entry, this));
    }
    if (!first && message.items.length) {
      this.announcer.textContent = "Recommendations updated, starting with " +
        message.items[0].title + ".";
    }
    this.reason.textContent = REASONS[message.strategy] || "";
    this.reason.title = message.model ? "model " + message.model : "no trained model";
    if (hadFocus) {
      // The focused entry was replaced: keep keyboard users in the list.
      this.list.focus();
    }
  };

  Widget.prototype.entry = function (item) {
    var entry = document.createElement("li");
    entry.className = "rtrec-item";
    entry.setAttribute("data-item", item.id);
    var control;
    if (this.itemUrl) {
      control = document.createElement("a");
      control.href = this.itemUrl
        .replace(/\{id\}|%7Bid%7D/g, encodeURIComponent(item.id))
        .replace(/\{rec\}|%7Brec%7D/g, encodeURIComponent(this.current.recommendation_id || ""));
    } else {
      control = document.createElement("button");
      control.type = "button";
    }
    control.className = "rtrec-pick";
    control.textContent = item.title;
    entry.appendChild(control);
    return entry;
  };

  Widget.prototype.clicked = function (click) {
    var control = click.target.closest(".rtrec-pick");
    if (!control || !this.current) {
      return;
    }
    var item = control.parentNode.getAttribute("data-item");
    this.connection.track("click", item, {
      recommendationId: this.current.recommendation_id
    });
    if (control.tagName === "BUTTON") {
      control.setAttribute("aria-disabled", "true");
      control.classList.add("rtrec-picked");
    }
  };

  Widget.prototype.showState = function () {
    var connection = this.connection;
    var queued = connection.outbox.length;
    var text = {
      idle: "",
      connecting: "Connecting…",
      open: "Live",
      offline: "Reconnecting…",
      paused: "Paused while idle",
      fallback: "Offline: refreshed every " + POLL_EVERY / 1000 + " s",
      refused: "Unavailable (" + connection.stateDetail + ")"
    }[connection.state];
    if (queued) {
      text += " · " + queued + " event" + (queued === 1 ? "" : "s") + " waiting to be sent";
    }
    this.status.textContent = text;
    this.element.setAttribute("data-state", connection.state);
    this.element.setAttribute("data-queued", String(queued));
  };

  var STYLE = [
    ".rtrec-widget{font:inherit;color:inherit}",
    ".rtrec-title{font-size:1.15em;margin:0 0 .2em}",
    ".rtrec-reason,.rtrec-status{font-size:.8em;opacity:.8;margin:.2em 0}",
    ".rtrec-list{margin:.4em 0;padding-left:1.6em}",
    ".rtrec-list:focus{outline:none}",
    ".rtrec-item{margin:.25em 0}",
    ".rtrec-pick{font:inherit;color:inherit;text-align:left;background:none;",
    "border:0;padding:.1em 0;cursor:pointer;text-decoration:underline}",
    ".rtrec-pick:focus-visible{outline:3px solid #1f5fbf;outline-offset:2px}",
    ".rtrec-status::before{content:'';display:inline-block;width:.6em;height:.6em;",
    "border-radius:50%;margin-right:.4em;background:#8c8c8c}",
    "[data-state=open] .rtrec-status::before{background:#1a7f37}",
    "[data-state=offline] .rtrec-status::before,",
    "[data-state=fallback] .rtrec-status::before{background:#b35900}",
    "[data-state=refused] .rtrec-status::before{background:#c62828}"
  ].join("");

  function addStyle() {
    if (document.getElementById("rtrec-widget-style")) {
      return;
    }
    var style = document.createElement("style");
    style.id = "rtrec-widget-style";
    style.textContent = STYLE;
    document.head.appendChild(style);
  }

  var connections = {};
  var widgets = [];

  function connect(server, token, transport) {
    server = (server || scriptOrigin()).replace(/\/+$/, "");
    var key = [server, token || "", transport || ""].join(" ");
    if (!connections[key]) {
      connections[key] = new Connection(server, token, transport);
    }
    return connections[key].start();
  }

  function mount(element) {
    if (element.rtrecWidget) {
      return element.rtrecWidget;
    }
    var data = element.dataset;
    var count = parseInt(data.count || "5", 10);
    var connection = connect(data.server, data.token, data.transport);
    if (data.style !== "none") {
      addStyle();
    }
    var widget = new Widget(element, connection, {
      count: Math.min(Math.max(isNaN(count) ? 5 : count, 1), 100),
      genre: data.genre || "",
      itemUrl: data.itemUrl || "",
      title: data.title || "Recommended for you"
    });
    element.rtrecWidget = widget;
    widgets.push(widget);
    if (["open", "fallback", "paused"].indexOf(connection.state) >= 0) {
      widget.refresh();
    }
    return widget;
  }

  function mountAll() {
    document.querySelectorAll("[data-rtrec-widget]").forEach(mount);
  }

  window.rtrec = {
    version: "1",
    connect: connect,
    mount: mount,
    widgets: widgets,
    // An event as the first widget's user (or this page's session).
    track: function (kind, item, options) {
      var connection = widgets.length ? widgets[0].connection : connect();
      return connection.track(kind, item, options);
    }
  };

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", mountAll);
  } else {
    mountAll();
  }
})();
