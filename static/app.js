// The few behaviours htmx does not cover: the live log (de-duplication and follow-scroll),
// dismissible messages, and a readable message when an answer is not one of our HTML fragments.
(function () {
  "use strict";

  var NEAR_BOTTOM_PX = 48;
  // A page keeps at most this many log lines (the server renders as many): a run printing
  // megabytes stays quick to scroll; the download has every line.
  var MAX_LINES = 10000;
  var following = true;

  function trimLog(log) {
    var extra = log.childElementCount - MAX_LINES;
    if (extra <= 0) return;
    for (var i = 0; i < extra; i++) log.removeChild(log.firstElementChild);
    var note = document.getElementById("log-trimmed");
    if (!note) {
      note = document.createElement("p");
      note.id = "log-trimmed";
      note.className = "log-note";
      log.parentNode.insertBefore(note, log);
    }
    var first = parseInt(log.firstElementChild.id.slice(1), 10);
    note.textContent = "Showing lines from " + first + " on: download the log for all of it.";
  }

  function isNearBottom(log) {
    return log.scrollHeight - log.scrollTop - log.clientHeight < NEAR_BOTTOM_PX;
  }

  function scrollToEnd(log) {
    log.scrollTop = log.scrollHeight;
  }

  function showFollowButton(show) {
    var button = document.getElementById("log-follow");
    if (button) button.hidden = !show;
  }

  function showMessage(text) {
    var region = document.getElementById("flash");
    if (!region) return;
    var alert = document.createElement("div");
    alert.className = "alert alert-error";
    alert.setAttribute("role", "alert");
    var strong = document.createElement("strong");
    strong.textContent = text;
    alert.appendChild(strong);
    region.replaceChildren(alert);
  }

  function setUpLog(root) {
    var log = root.querySelector ? root.querySelector("#log") : null;
    if (!log && root.id === "log") log = root;
    if (!log || log.dataset.ready) return;
    log.dataset.ready = "1";
    following = true;
    scrollToEnd(log);
    log.addEventListener("scroll", function () {
      following = isNearBottom(log);
      showFollowButton(!following);
    });
  }

  // The page renders the stored lines; the stream replays from line 1, so skip what is shown.
  document.addEventListener("htmx:sseBeforeMessage", function (evt) {
    var log = evt.target;
    if (log.id !== "log") return;
    var number = parseInt(evt.detail.lastEventId, 10);
    var last = parseInt(log.dataset.lastLine || "0", 10);
    if (number && number <= last) {
      evt.preventDefault();
      return;
    }
    if (number) log.dataset.lastLine = String(number);
    following = following && isNearBottom(log);
  });

  document.addEventListener("htmx:sseMessage", function (evt) {
    var log = evt.target;
    if (log.id !== "log") return;
    var count = document.getElementById("log-count");
    if (count) count.textContent = log.dataset.lastLine;
    trimLog(log);
    if (following) scrollToEnd(log);
  });

  // Error answers that are not HTML (a JSON 500, a proxy page) must not land in the page.
  document.addEventListener("htmx:beforeSwap", function (evt) {
    var xhr = evt.detail.xhr;
    if (!xhr || xhr.status < 400) return;
    var type = xhr.getResponseHeader("Content-Type") || "";
    if (type.indexOf("text/html") === 0) return;
    evt.detail.shouldSwap = false;
    var message = "The server answered " + xhr.status + ": try again, or see the server log.";
    try {
      message = JSON.parse(xhr.responseText).error.message || message;
    } catch (_ignored) {
      // not JSON: keep the generic message
    }
    showMessage(message);
  });

  document.addEventListener("htmx:sendError", function () {
    showMessage("The server did not answer: check that taskdash is running.");
  });

  document.addEventListener("click", function (evt) {
    var target = evt.target;
    if (!(target instanceof Element)) return;
    if (target.closest("[data-dismiss]")) {
      var alert = target.closest(".alert");
      if (alert) alert.remove();
    }
    if (target.id === "log-follow") {
      var log = document.getElementById("log");
      if (log) {
        following = true;
        scrollToEnd(log);
        showFollowButton(false);
        log.focus();
      }
    }
  });

  document.addEventListener("htmx:load", function (evt) {
    setUpLog(evt.target);
  });
  document.addEventListener("DOMContentLoaded", function () {
    setUpLog(document);
  });
})();
