/*
 * rtrec's own demo pages: the catalog and item pages send their events
 * through the widget's connection (window.rtrec), so a page holds one
 * socket and every event waits in the same queue while offline.
 */
(function () {
  "use strict";

  var SIMILAR_N = 8;
  var DONE = {
    click: "Clicked",
    view: "Viewed",
    like: "Liked",
    dislike: "Marked as not for you",
    add_to_cart: "Added to cart",
    rate: "Rated"
  };

  function setUpCatalog(connection) {
    var grid = document.getElementById("catalog");
    if (!grid) {
      return;
    }
    grid.addEventListener("click", function (click) {
      var button = click.target.closest("button[data-event]");
      if (!button) {
        return;
      }
      connection.track("click", button.getAttribute("data-item"));
      button.setAttribute("aria-pressed", "true");
      button.closest(".card").classList.add("picked");
    });
  }

  function setUpItem(connection) {
    var article = document.getElementById("item");
    if (!article) {
      return;
    }
    var itemId = article.getAttribute("data-item");
    var recommendationId = article.getAttribute("data-recommendation-id");
    var status = document.getElementById("action-status");
    var waiting = {};

    function send(kind, value) {
      var eventId = connection.track(kind, itemId, {
        value: value,
        recommendationId: recommendationId
      });
      waiting[eventId] = kind;
      if (kind !== "view") {
        status.textContent = connection.state === "open"
          ? "Sending…"
          : "Saved here; it is sent when the connection is back.";
      }
    }

    connection.on("ack", function (ack) {
      var kind = waiting[ack.event_id];
      delete waiting[ack.event_id];
      if (kind && kind !== "view") {
        status.textContent = DONE[kind] + ". Your recommendations are updated.";
      }
    });
    connection.on("rejected", function (error) {
      status.textContent = "Not saved: " + (error.message || "the server refused it");
    });

    article.querySelectorAll("button[data-event]").forEach(function (button) {
      button.addEventListener("click", function () {
        send(button.getAttribute("data-event"));
      });
    });
    document.getElementById("rating-form").addEventListener("submit", function (submit) {
      submit.preventDefault();
      var choice = submit.target.querySelector("input[name=value]:checked");
      send("rate", Number(choice ? choice.value : 5));
    });

    send("view");
    setUpSimilar(connection, itemId);
  }

  // The similar row came with the page; it is asked for again whenever
  // the socket opens or a new model is served, so it stays current.
  function setUpSimilar(connection, itemId) {
    var list = document.getElementById("similar");
    var linkTemplate = list.getAttribute("data-item-url");

    function show(message) {
      if (!message.items.length) {
        return;
      }
      list.replaceChildren.apply(list, message.items.map(function (item) {
        var entry = document.createElement("li");
        var link = document.createElement("a");
        entry.setAttribute("data-item", item.id);
        link.href = linkTemplate.replace("%7Bid%7D", encodeURIComponent(item.id));
        link.textContent = item.title;
        entry.appendChild(link);
        return entry;
      }));
      list.setAttribute("data-model", message.model || "");
    }

    function load() {
      connection.request({ type: "similar", item: itemId, n: SIMILAR_N })
        .then(show, function () {
          // The row from the page stays.
        });
    }

    connection.on("open", load);
    connection.on("model_updated", load);
    if (connection.state === "open") {
      load();
    }
  }

  function start() {
    if (!window.rtrec) {
      return;
    }
    var connection = window.rtrec.connect();
    setUpCatalog(connection);
    setUpItem(connection);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
