// floe-egress status page: filter the cards, and swap in the live part every few
// seconds (no full reload; paused while the tab is hidden). Nothing here talks to
// anything but this daemon.
"use strict";

(function () {
  const live = document.getElementById("live");
  const nameBox = document.getElementById("filter-name");
  const stateBox = document.getElementById("filter-state");
  const updated = document.getElementById("updated");
  const every = 1000 * Number(document.body.dataset.refresh || 5);
  let busy = false;

  function applyFilter() {
    const name = nameBox.value.trim().toLowerCase();
    const state = stateBox.value;
    const cards = live.querySelectorAll("article.dest");
    let shown = 0;
    cards.forEach(function (card) {
      const match = card.dataset.name.toLowerCase().includes(name) &&
        (!state || card.dataset.state === state);
      card.hidden = !match;
      if (match) shown += 1;
    });
    const count = document.getElementById("shown");
    if (count) count.textContent = shown === cards.length ? "" : "showing " + shown + " of " + cards.length;
    const none = document.getElementById("none");
    if (none) none.hidden = shown !== 0 || cards.length === 0;
    live.querySelectorAll(".chip").forEach(function (chip) {
      chip.setAttribute("aria-pressed", String(chip.dataset.state === state));
    });
    const query = new URLSearchParams();
    if (name) query.set("name", nameBox.value.trim());
    if (state) query.set("state", state);
    const search = query.toString();
    history.replaceState(null, "", search ? "?" + search : location.pathname);
  }

  function openDetails() {
    const open = new Map();
    live.querySelectorAll("details[data-key]").forEach(function (d) {
      open.set(d.dataset.key, d.open);
    });
    return open;
  }

  async function refresh() {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const response = await fetch("/ui/live", { credentials: "same-origin", cache: "no-store" });
      if (response.status === 401) {
        location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search));
        return;
      }
      if (!response.ok) throw new Error("HTTP " + response.status);
      const html = await response.text();
      const open = openDetails();
      const fresh = document.createElement("template");
      fresh.innerHTML = html;
      fresh.content.querySelectorAll("details[data-key]").forEach(function (d) {
        if (open.has(d.dataset.key)) d.open = open.get(d.dataset.key);
      });
      live.replaceChildren(fresh.content);
      applyFilter();
      updated.classList.remove("stale");
      updated.textContent = "as of " + new Date().toLocaleTimeString();
    } catch (err) {
      updated.classList.add("stale");
      updated.textContent = "not updated since " + new Date().toLocaleTimeString() +
        " (" + err.message + ")";
    } finally {
      busy = false;
    }
  }

  nameBox.addEventListener("input", applyFilter);
  stateBox.addEventListener("change", applyFilter);
  document.querySelector("form.filters").addEventListener("submit", function (e) {
    e.preventDefault();
    applyFilter();
  });
  live.addEventListener("click", function (e) {
    const chip = e.target.closest(".chip");
    if (!chip) return;
    stateBox.value = stateBox.value === chip.dataset.state ? "" : chip.dataset.state;
    applyFilter();
  });
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) refresh();
  });
  applyFilter();
  setInterval(refresh, every);
})();
