// Live progress on a job's page (templates/jobs/view.html): Server-Sent Events from
// /jobs/<id>/events, and polling /jobs/<id>/progress.json when EventSource fails.
// Each message is {job: {...totals}, renders: [changed renders], cursor}; see dashboard/jobs.py.
(function () {
  "use strict";
  const root = document.getElementById("job-live");
  if (!root) return;

  const POLL_MS = 1500;
  const MAX_STREAM_ERRORS = 3;  // connection errors in a row before giving up on the stream
  const indicator = root.querySelector(".live-indicator");
  let cursor = root.dataset.cursor || "";
  let finished = root.dataset.done === "true";
  let source = null;
  let pollTimer = null;

  function pct(value) {
    return String(Math.round(Number(value) * 10) / 10);
  }

  function setBar(bar, percent) {
    if (!bar) return;
    // Whole percent, rounded down: 100 only once everything is finished (as the server renders it).
    bar.setAttribute("aria-valuenow", String(Math.floor(Number(percent))));
    bar.setAttribute("aria-valuetext", pct(percent) + "%");
    const fill = bar.querySelector("span");
    if (fill) fill.style.width = pct(percent) + "%";
  }

  function setBadge(badge, state) {
    if (!badge) return;
    badge.className = badge.className.replace(/\bstate-\S+/g, "").trim() + " state-" + state;
    badge.textContent = state;
  }

  function applyJob(job) {
    root.dataset.status = job.status;
    root.dataset.done = job.done ? "true" : "false";
    setBar(root.querySelector('[data-testid="job-progress"]'), job.percent);
    const text = root.querySelector('[data-testid="job-progress-text"]');
    if (text) text.textContent = job.finished + " / " + job.renders + " renders finished · " + pct(job.percent) + "%";
    setBadge(root.querySelector('[data-testid="job-status"]'), job.status);
    Object.keys(job.counts || {}).forEach(function (state) {
      const badge = root.querySelector('[data-count-state="' + state + '"]');
      if (!badge) return;
      badge.querySelector("b").textContent = job.counts[state];
      badge.classList.toggle("zero", !job.counts[state]);
    });
    const waiting = root.querySelector('[data-testid="waiting-reason"]');
    if (waiting) {
      waiting.hidden = !job.waiting_reason;
      waiting.querySelector(".waiting-text").textContent = job.waiting_reason || "";
    }
    root.querySelectorAll("form[data-control]").forEach(function (form) {
      form.hidden = form.dataset.statuses.split(" ").indexOf(job.status) < 0;
    });
  }

  function setThumbnail(row, render) {
    const cell = row.querySelector("td.thumb");
    if (!cell || !render.thumbnail_url || cell.querySelector("img")) return;
    const link = document.createElement("a");
    link.href = render.link_url || render.thumbnail_url;
    const img = document.createElement("img");
    img.src = render.thumbnail_url;
    img.alt = "render " + render.index;
    img.width = 64;
    img.height = 64;
    link.appendChild(img);
    cell.appendChild(link);
  }

  function applyRender(render) {
    // Only the renders on this page of the table are shown; the others count in the totals.
    const row = root.querySelector('tr[data-render-id="' + render.id + '"]');
    if (!row) return;
    row.dataset.state = render.state;
    setBadge(row.querySelector('[data-field="state"]'), render.state);
    setBar(row.querySelector('[data-testid="render-progress"]'), render.percent);
    const steps = row.querySelector('[data-field="steps"]');
    const step = render.state === "succeeded" ? render.progress_total : render.progress_step;
    if (steps) steps.textContent = step + " / " + render.progress_total;
    row.querySelector('[data-field="attempts"]').textContent = render.attempts;
    row.querySelector('[data-field="worker"]').textContent = render.worker || "";
    const errorRow = root.querySelector('tr[data-error-for="' + render.id + '"]');
    if (errorRow) {
      const note = render.error || (render.hold_reason ? "held: " + render.hold_reason : "");
      errorRow.hidden = !note;
      errorRow.querySelector('[data-field="error"]').textContent = note;
    }
    setThumbnail(row, render);
  }

  function apply(message) {
    (message.renders || []).forEach(applyRender);
    applyJob(message.job);
    cursor = message.cursor || cursor;
    if (message.job.done) stop("done");
  }

  function showMode(mode) {
    if (!indicator) return;
    indicator.classList.toggle("live", mode === "live");
    indicator.classList.toggle("polling", mode === "polling");
    indicator.textContent = mode === "done" ? "done" : mode === "live" ? "live" : mode === "polling" ? "updating" : "";
  }

  function stop(mode) {
    finished = true;
    if (source) { source.close(); source = null; }
    if (pollTimer) { clearTimeout(pollTimer); pollTimer = null; }
    showMode(mode);
  }

  function poll() {
    pollTimer = null;
    if (finished) return;
    const url = root.dataset.progressUrl + (cursor ? "?since=" + encodeURIComponent(cursor) : "");
    window.farm.fetch(url, { headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (message) { apply(message); showMode(finished ? "done" : "polling"); })
      .catch(function () { /* try again on the next tick */ })
      .then(function () { if (!finished) pollTimer = setTimeout(poll, POLL_MS); });
  }

  function startPolling() {
    if (source) { source.close(); source = null; }
    if (!finished && !pollTimer) { showMode("polling"); poll(); }
  }

  function startStream() {
    if (!window.EventSource) { startPolling(); return; }
    let errors = 0;
    source = new EventSource(root.dataset.eventsUrl + (cursor ? "?since=" + encodeURIComponent(cursor) : ""));
    source.addEventListener("open", function () { showMode("live"); });
    source.addEventListener("progress", function (event) {
      errors = 0;
      apply(JSON.parse(event.data));
    });
    source.addEventListener("error", function () {
      if (finished) return;
      errors += 1;
      // CLOSED: the server refused the stream (busy, or an error status). Otherwise the browser
      // reconnects by itself (Last-Event-ID carries the cursor); after a few failures, poll.
      if (source.readyState === EventSource.CLOSED || errors >= MAX_STREAM_ERRORS) startPolling();
    });
  }

  if (finished) { showMode("done"); return; }
  startStream();
})();
