// The dashboard's one script. Pages are whole without it; it adds two things:
// 1. Live updates: /live sends "change" events naming topics; when this page's topic moved,
//    fetch the page again (?fragment=1: only <main>) and swap it in. One fetch at a time,
//    at most about three a second.
// 2. "Sync now" without leaving the page: the form is posted with fetch (same origin, the
//    form's CSRF token) and the answer shown in the notice line.
(function () {
  "use strict";
  var topic = document.body.getAttribute("data-topics");
  var badge = document.getElementById("live");
  var main = document.getElementById("main");
  var notice = document.getElementById("notice");
  var form = document.getElementById("sync-form");

  function say(text) {
    if (!notice) { return; }
    notice.textContent = text;
    notice.hidden = false;
  }

  if (form && window.fetch) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var button = document.getElementById("sync-now");
      if (button) { button.disabled = true; }
      fetch("/sync", {method: "POST", credentials: "same-origin", body: new URLSearchParams(new FormData(form)),
                      headers: {"Accept": "application/json"}})
        .then(function (r) { return r.json().then(function (body) { return {ok: r.ok, body: body}; }); })
        .then(function (answer) {
          var commit = answer.body && answer.body.commit;
          if (!answer.ok) { say("Sync refused: " + ((answer.body && answer.body.message) || "error")); }
          else { say(commit ? "Sync requested: the branch head is " + commit.slice(0, 12) + "." : "Sync requested."); }
        })
        .catch(function () { say("Sync failed: the daemon did not answer."); })
        .then(function () { if (button) { button.disabled = false; } });
    });
  }

  if (!topic || !main || !window.EventSource) { return; }
  var busy = false, again = false;

  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    var url = window.location.pathname + "?fragment=1";
    fetch(url, {credentials: "same-origin", headers: {"Accept": "text/html"}})
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) { if (html !== null) { main.innerHTML = html; } })
      .catch(function () {})
      .then(function () {
        setTimeout(function () { busy = false; if (again) { again = false; refresh(); } }, 300);
      });
  }

  var source = new EventSource("/live");
  source.addEventListener("open", function () { badge.className = "live on"; refresh(); });
  source.addEventListener("error", function () { badge.className = "live off"; });
  source.addEventListener("change", function (event) {
    var topics = [];
    try { topics = JSON.parse(event.data).topics || []; } catch (e) { return; }
    if (topics.indexOf(topic) >= 0) { refresh(); }
  });
})();
