// Dashboard enhancements; every page works without them.
"use strict";

// Dense tables print times as <time data-short>: shown in the reader's time zone as month,
// day and time only (the full moment stays in the tooltip).
document.addEventListener("DOMContentLoaded", () => {
  const lang = document.documentElement.lang || undefined;
  for (const node of document.querySelectorAll("time[data-short]")) {
    const moment = new Date(node.getAttribute("datetime"));
    if (Number.isNaN(moment.getTime())) continue;
    node.title = moment.toLocaleString(lang, {
      year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
    });
    node.textContent = moment.toLocaleString(lang, {
      month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false,
    });
  }
});
