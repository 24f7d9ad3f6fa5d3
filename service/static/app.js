// Small enhancements of the student pages; each page works without them.
"use strict";

// Times are printed in UTC by the server; show them in the reader's own time zone.
function localTimes() {
  const lang = document.documentElement.lang || undefined;
  for (const node of document.querySelectorAll("time[data-local]")) {
    const moment = new Date(node.getAttribute("datetime"));
    if (!Number.isNaN(moment.getTime())) {
      node.title = node.textContent;
      node.textContent = moment.toLocaleString(lang, {
        year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
      });
    }
  }
}

// The upload form: a drop zone around the ordinary file input, and early checks of name and
// size so that a too-large file is refused before it is sent.
function dropZone(form) {
  const zone = form.querySelector("[data-dropzone]");
  const input = form.querySelector("input[type=file]");
  const chosen = form.querySelector("[data-chosen]");
  const problem = form.querySelector("[data-client-error]");
  const maxBytes = Number(form.dataset.maxBytes || 0);
  zone.classList.add("enhanced");

  function check() {
    const file = input.files && input.files[0];
    problem.hidden = true;
    chosen.textContent = file ? form.dataset.msgChosen.replace("{name}", file.name) : "";
    zone.classList.toggle("has-file", Boolean(file));
    if (!file) return true;
    let message = "";
    if (!file.name.toLowerCase().endsWith(".ipynb")) message = form.dataset.msgNotIpynb;
    else if (maxBytes && file.size > maxBytes) message = form.dataset.msgTooLarge;
    if (message) {
      problem.textContent = message;
      problem.hidden = false;
      return false;
    }
    return true;
  }

  input.addEventListener("change", check);
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (event) => {
      event.preventDefault();
      zone.classList.add("dragging");
    });
  }
  for (const name of ["dragleave", "dragend"]) {
    zone.addEventListener(name, () => zone.classList.remove("dragging"));
  }
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    const files = event.dataTransfer && event.dataTransfer.files;
    if (files && files.length) {
      input.files = files;
      check();
    }
  });
  form.addEventListener("submit", (event) => {
    if (!check()) event.preventDefault();
  });
}

// The upload form: the chosen exercise's dates shown, the others' hidden (the server shows the
// exercise it selected; without script, choosing another shows its dates after a refusal).
function exerciseDates(form) {
  const select = form.querySelector("[data-exercise-select]");
  if (!select) return;
  const show = () => {
    for (const block of form.querySelectorAll(".own-dates[data-exercise]")) {
      block.hidden = block.dataset.exercise !== select.value;
    }
  };
  select.addEventListener("change", show);
  show();
}

document.addEventListener("DOMContentLoaded", () => {
  localTimes();
  const form = document.querySelector("form.upload");
  if (form) {
    dropZone(form);
    exerciseDates(form);
  }
});
