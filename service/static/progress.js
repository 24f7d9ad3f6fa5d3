// Live progress of a submission waiting for its grade: polls the page's status.json every second
// (the worker stores a run's progress within 0.2 s of each cell; a stream would hold a web thread
// per waiting student, so the page polls), updates queue position and cell progress, and
// reloads the page when the run's state changes (the server then renders the running view, or the
// feedback). Without JavaScript the page refreshes itself through <noscript><meta
// http-equiv=refresh>.
"use strict";

(function () {
  const panel = document.querySelector("[data-status-url]");
  if (!panel) return;
  const PERIOD_MS = 1000;
  const texts = panel.dataset;
  const shownState = panel.dataset.state;
  const field = (name) => panel.querySelector(`[data-${name}]`);

  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, (whole, key) => (key in values ? values[key] : whole));
  }

  function update(state) {
    const queue = field("queue");
    if (queue && state.queue_position) {
      queue.textContent = fill(texts.tQueue, { position: state.queue_position });
    }
    const progress = state.progress || {};
    const cell = field("cell");
    if (cell) {
      cell.textContent = progress.position && progress.count
        ? fill(texts.tCell, { position: progress.position, count: progress.count })
        : texts.tStarting;
    }
    const bar = field("bar");
    if (bar && progress.count) {
      bar.max = progress.count;
      bar.value = progress.position || 0;
    }
    const elapsed = field("elapsed");
    if (elapsed && typeof progress.elapsed === "number") {
      elapsed.textContent = fill(texts.tElapsed, { seconds: Math.floor(progress.elapsed) });
    }
    const box = field("output-box");
    if (box) {
      box.hidden = !progress.text;
      field("output").textContent = progress.text || "";
    }
  }

  async function poll() {
    try {
      const response = await fetch(panel.dataset.statusUrl, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
        cache: "no-store",
      });
      if (response.status === 401 || response.status === 404) {
        window.location.reload();
        return;
      }
      if (response.ok) {
        const state = await response.json();
        if (state.state !== shownState) {
          window.location.reload();
          return;
        }
        update(state);
      }
    } catch (error) {
      // The network or the server hiccuped: keep polling.
    }
    window.setTimeout(poll, PERIOD_MS);
  }

  window.setTimeout(poll, PERIOD_MS);
})();
