/*
 * The staff dashboard: polls two JSON views and draws plain SVG.
 * The live view (events, rate, trending) every half second, the summary
 * (model, click-through rates, totals) every five.
 */
(function () {
  "use strict";

  var LIVE_EVERY = 500;
  var SUMMARY_EVERY = 5000;
  var FEED_ROWS = 12;
  var SVG = "http://www.w3.org/2000/svg";
  var KIND_LABELS = {
    view: "viewed",
    click: "clicked",
    add_to_cart: "added to cart",
    purchase: "bought",
    rate: "rated",
    like: "liked",
    dislike: "disliked"
  };

  var root = document.getElementById("dashboard");
  if (!root) {
    return;
  }
  var liveUrl = root.getAttribute("data-live-url");
  var summaryUrl = root.getAttribute("data-summary-url");
  var itemUrl = root.getAttribute("data-item-url");
  var status = document.getElementById("dashboard-status");
  var lastId = 0;

  function svg(name, attributes, text) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attributes || {}).forEach(function (key) {
      node.setAttribute(key, attributes[key]);
    });
    if (text != null) {
      node.textContent = text;
    }
    return node;
  }

  function html(name, attributes, text) {
    var node = document.createElement(name);
    Object.keys(attributes || {}).forEach(function (key) {
      node.setAttribute(key, attributes[key]);
    });
    if (text != null) {
      node.textContent = text;
    }
    return node;
  }

  function chart(width, height, label) {
    return svg("svg", {
      viewBox: "0 0 " + width + " " + height,
      role: "img",
      "aria-label": label,
      preserveAspectRatio: "xMinYMin meet"
    });
  }

  function shorten(text, length) {
    return text.length > length ? text.slice(0, length - 1) + "…" : text;
  }

  function percent(rate) {
    return (rate * 100).toFixed(rate < 0.1 ? 2 : 1) + "%";
  }

  function getJson(url) {
    return window.fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (!response.ok) {
          throw new Error(response.status === 403
            ? "signed out or not staff: sign in again"
            : "the server answered " + response.status);
        }
        return response.json();
      });
  }

  /* Events per second: one bar per second of the last minute. */
  function drawRate(perSecond) {
    var width = 600;
    var height = 130;
    var top = 18;
    var peak = Math.max.apply(null, perSecond.concat([1]));
    var slot = width / perSecond.length;
    var graph = chart(width, height, "Events in each of the last " +
      perSecond.length + " seconds; at most " + peak + " in one second");

    graph.appendChild(svg("line", { x1: 0, x2: width, y1: height - 16, y2: height - 16,
                                    class: "axis" }));
    perSecond.forEach(function (count, index) {
      var barHeight = (height - 16 - top) * count / peak;
      graph.appendChild(svg("rect", {
        x: index * slot + 1,
        y: height - 16 - barHeight,
        width: Math.max(slot - 2, 1),
        height: barHeight,
        class: index === perSecond.length - 1 ? "bar bar-now" : "bar"
      }));
    });
    graph.appendChild(svg("text", { x: 0, y: 12, class: "label" }, peak + " per second"));
    graph.appendChild(svg("text", { x: 0, y: height - 2, class: "label" },
                          perSecond.length + " s ago"));
    graph.appendChild(svg("text", { x: width, y: height - 2, class: "label end" }, "now"));
    document.getElementById("rate-chart").replaceChildren(graph);
  }

  /* Horizontal bars, a label above each: trending items, metrics. */
  function drawBars(container, rows, options) {
    if (!rows.length) {
      container.replaceChildren(html("p", { class: "meta" }, options.empty));
      return;
    }
    var width = 400;
    var rowHeight = 34;
    var height = rows.length * rowHeight;
    var largest = options.max || Math.max.apply(null, rows.map(function (row) {
      return row.value;
    }).concat([1e-9]));
    var graph = chart(width, height, options.label);

    rows.forEach(function (row, index) {
      var y = index * rowHeight;
      var barWidth = Math.max((width - 70) * row.value / largest, 2);
      var label = svg("text", { x: 0, y: y + 12, class: "label" }, shorten(row.label, 52));
      if (row.href) {
        var link = svg("a", { href: row.href });
        link.appendChild(label);
        graph.appendChild(link);
      } else {
        graph.appendChild(label);
      }
      graph.appendChild(svg("rect", { x: 0, y: y + 17, width: barWidth, height: 11,
                                      rx: 2, class: "bar" }));
      graph.appendChild(svg("text", { x: barWidth + 6, y: y + 27, class: "label value" },
                            row.text));
    });
    container.replaceChildren(graph);
  }

  /* Click-through rate per version: a bar and its 95% interval. */
  function drawCtr(versions) {
    var container = document.getElementById("ctr-chart");
    if (!versions.length) {
      container.replaceChildren(html("p", { class: "meta" },
        "No recommendations shown yet."));
      return;
    }
    var width = 400;
    var rowHeight = 40;
    var plot = width - 120;
    var largest = Math.max.apply(null, versions.map(function (row) {
      return row.ctr_high;
    }).concat([0.01]));
    var graph = chart(width, versions.length * rowHeight,
      "Click-through rate per model version: " + versions.map(function (row) {
        return (row.version || "no model") + " " + percent(row.ctr);
      }).join(", "));

    versions.forEach(function (row, index) {
      var y = index * rowHeight;
      var name = (row.version || "no model (popularity)") + (row.is_active ? " · active" : "");
      var scale = function (rate) { return plot * rate / largest; };
      graph.appendChild(svg("text", { x: 0, y: y + 12, class: "label" }, name));
      graph.appendChild(svg("rect", { x: 0, y: y + 18, width: Math.max(scale(row.ctr), 2),
                                      height: 12, rx: 2,
                                      class: row.is_active ? "bar bar-active" : "bar" }));
      graph.appendChild(svg("line", { x1: scale(row.ctr_low), x2: scale(row.ctr_high),
                                      y1: y + 24, y2: y + 24, class: "interval" }));
      [row.ctr_low, row.ctr_high].forEach(function (end) {
        graph.appendChild(svg("line", { x1: scale(end), x2: scale(end),
                                        y1: y + 19, y2: y + 29, class: "interval" }));
      });
      graph.appendChild(svg("text", { x: scale(row.ctr_high) + 6, y: y + 29,
                                      class: "label value" },
        percent(row.ctr) + " (" + row.clicks + "/" + row.impressions + ")"));
    });
    container.replaceChildren(graph);
  }

  function showExperiment(experiment) {
    var container = document.getElementById("experiment");
    if (!experiment) {
      container.replaceChildren();
      return;
    }
    var table = html("table", { class: "figures" });
    table.appendChild(html("caption", {}, "A/B experiment " + experiment.name));
    var head = html("tr");
    ["Arm", "Version", "Shown", "Clicks", "CTR"].forEach(function (title) {
      head.appendChild(html("th", { scope: "col" }, title));
    });
    table.appendChild(head);
    ["control", "treatment"].forEach(function (arm) {
      var figures = experiment.arms[arm];
      var row = html("tr");
      [arm, figures.version || "popularity", figures.impressions, figures.clicks,
       percent(figures.ctr)].forEach(function (value) {
        row.appendChild(html("td", {}, String(value)));
      });
      table.appendChild(row);
    });
    var verdict = html("p", { class: "meta" }, experiment.p_value == null
      ? "Not enough data to compare the arms yet."
      : "p = " + experiment.p_value.toFixed(3) + (experiment.significant
        ? ": the arms differ." : ": no difference shown yet."));
    container.replaceChildren(table, verdict);
  }

  function showModel(model) {
    var container = document.getElementById("model");
    if (!model) {
      container.replaceChildren(html("p", {}, "No model is active: recommendations " +
        "come from popularity and item metadata. Run manage.py train."));
      return;
    }
    var facts = html("dl", { class: "facts" });
    [["Version", model.version],
     ["Algorithm", model.algorithm + ", " + model.feedback + " feedback"],
     ["Trained", new Date(model.trained_at).toLocaleString()],
     ["Data", model.n_interactions.toLocaleString() + " interactions, " +
       model.n_users.toLocaleString() + " users, " + model.n_items.toLocaleString() + " items"],
     ["Training time", model.training_seconds.toFixed(1) + " s"]
    ].forEach(function (pair) {
      facts.appendChild(html("dt", {}, pair[0]));
      facts.appendChild(html("dd", {}, pair[1]));
    });

    var names = Object.keys(model.metrics).sort();
    var ranking = names.filter(function (name) { return name.indexOf("@") > 0; });
    var others = names.filter(function (name) { return name.indexOf("@") < 0; });
    var bars = html("div", { class: "chart", id: "metrics-chart" });
    drawBars(bars, ranking.map(function (name) {
      return { label: name, value: model.metrics[name],
               text: model.metrics[name].toFixed(3) };
    }), { max: 1, empty: "", label: "Offline ranking metrics of the active model" });
    var errors = html("p", { class: "meta" }, others.map(function (name) {
      return name + " " + Number(model.metrics[name]).toFixed(3);
    }).join(" · "));
    container.replaceChildren(facts, html("h3", {}, "Offline evaluation"), bars, errors);
  }

  function showTotals(totals) {
    var list = document.getElementById("totals");
    list.replaceChildren();
    [["Items on offer", totals.items], ["End users", totals.users],
     ["Interactions stored", totals.interactions]].forEach(function (pair) {
      list.appendChild(html("dt", {}, pair[0]));
      list.appendChild(html("dd", {}, pair[1].toLocaleString()));
    });
  }

  function feedRow(event, fresh) {
    var row = html("tr", { "data-event-id": String(event.id) });
    if (fresh) {
      row.className = "fresh";
    }
    var time = new Date(event.at);
    var today = time.toDateString() === new Date().toDateString();
    row.appendChild(html("td", {}, today ? time.toLocaleTimeString()
                                         : time.toLocaleDateString()));
    row.appendChild(html("td", { class: "user", title: event.user }, shorten(event.user, 18)));
    var kind = KIND_LABELS[event.kind] || event.kind;
    if (event.kind === "rate" && event.value != null) {
      kind += " " + event.value;
    }
    var kindCell = html("td", {}, kind);
    if (event.from_recommendations) {
      kindCell.appendChild(html("span", { class: "badge", title: "from a recommended list" },
                                "rec"));
    }
    row.appendChild(kindCell);
    var itemCell = html("td");
    itemCell.appendChild(html("a", { href: itemUrl.replace("%7Bid%7D",
      encodeURIComponent(event.item)) }, event.title));
    row.appendChild(itemCell);
    return row;
  }

  function showLive(data) {
    document.getElementById("events-per-second").textContent =
      data.events_per_second.toFixed(1);
    drawRate(data.per_second);

    var feed = document.getElementById("feed");
    var firstLoad = lastId === 0;
    data.events.slice().reverse().forEach(function (event) {
      feed.insertBefore(feedRow(event, !firstLoad), feed.firstChild);
    });
    while (feed.children.length > FEED_ROWS) {
      feed.removeChild(feed.lastChild);
    }
    lastId = data.last_id;

    drawBars(document.getElementById("trending-chart"), data.trending.map(function (item) {
      return { label: item.title, value: item.score, text: item.score.toFixed(1),
               href: itemUrl.replace("%7Bid%7D", encodeURIComponent(item.id)) };
    }), { empty: "Nothing has been acted on lately.",
          label: "Trending items: " + data.trending.map(function (item) {
            return item.title;
          }).join(", ") });

    status.textContent = "Live · updated " + new Date(data.now).toLocaleTimeString();
    root.setAttribute("data-live", "ok");
  }

  function showSummary(data) {
    showModel(data.model);
    drawCtr(data.versions);
    showExperiment(data.experiment);
    showTotals(data.totals);
  }

  function failed(error) {
    status.textContent = "Not updating: " + error.message;
    root.setAttribute("data-live", "error");
  }

  // Each poll starts after the previous answer, so a slow server is
  // never asked twice at once.
  function pollLive() {
    getJson(liveUrl + "?after=" + lastId).then(showLive, failed).then(function () {
      window.setTimeout(pollLive, LIVE_EVERY);
    });
  }

  function pollSummary() {
    getJson(summaryUrl).then(showSummary, failed).then(function () {
      window.setTimeout(pollSummary, SUMMARY_EVERY);
    });
  }

  pollLive();
  pollSummary();
})();
