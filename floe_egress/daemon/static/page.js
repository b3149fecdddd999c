// floe-egress status page: filter the cards, show times relative to the daemon's
// clock, and swap in the live part every few seconds when it changed (no full reload;
// paused while the tab is hidden or text on it is selected). Nothing here talks to
// anything but this daemon.
"use strict";

(function () {
  const live = document.getElementById("live");
  const nameBox = document.getElementById("filter-name");
  const stateBox = document.getElementById("filter-state");
  const updated = document.getElementById("updated");
  const every = 1000 * Number(document.body.dataset.refresh || 5);
  // The daemon's clock minus this browser's, so that "12 s ago" is the daemon's.
  let skew = Number(document.body.dataset.now || Date.now()) - Date.now();
  let etag = null;
  let busy = false;

  function span(seconds) {
    const s = Math.round(seconds);
    if (s < 1) return null;
    if (s < 120) return s + " s";
    if (s < 7200) return Math.round(s / 60) + " min";
    if (s < 172800) return (s / 3600).toFixed(1) + " h";
    return (s / 86400).toFixed(1) + " d";
  }

  function relativeTimes() {
    const now = Date.now() + skew;
    live.querySelectorAll("time[data-rel]").forEach(function (t) {
      const at = Date.parse(t.dateTime);
      if (Number.isNaN(at)) return;
      const rel = t.dataset.rel;
      const gap = (rel === "in" ? at - now : now - at) / 1000;
      const text = span(gap);
      if (rel === "ago") t.textContent = text ? text + " ago" : "just now";
      else if (rel === "in") t.textContent = text ? "in " + text : "due now";
      else t.textContent = (text || "0 s") + " behind";
    });
  }

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

  // What has the keyboard focus inside the live part, as a selector that finds the
  // same control in the fresh copy.
  function focused() {
    const el = document.activeElement;
    if (!el || !live.contains(el)) return null;
    const details = el.closest("details[data-key]");
    if (el.tagName === "SUMMARY" && details) return 'details[data-key="' + CSS.escape(details.dataset.key) + '"] > summary';
    if (el.classList.contains("chip")) return '.chip[data-state="' + CSS.escape(el.dataset.state) + '"]';
    const card = el.closest("article.dest");
    if (el.classList.contains("json") && card) return 'article[data-name="' + CSS.escape(card.dataset.name) + '"] a.json';
    return null;
  }

  function selecting() {
    const selection = window.getSelection();
    return selection && !selection.isCollapsed && live.contains(selection.anchorNode);
  }

  async function refresh() {
    relativeTimes();
    if (busy || document.hidden || selecting()) return;
    busy = true;
    const abort = new AbortController();
    const timer = setTimeout(function () { abort.abort(); }, every);
    try {
      const headers = etag ? { "If-None-Match": etag } : {};
      const response = await fetch("/ui/live", {
        credentials: "same-origin", cache: "no-store", headers: headers, signal: abort.signal,
      });
      if (response.status === 401) {
        location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search));
        return;
      }
      const served = Date.parse(response.headers.get("Date") || "");
      if (!Number.isNaN(served)) skew = served - Date.now();
      if (response.status !== 304) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        const html = await response.text();
        etag = response.headers.get("ETag");
        swap(html);
      }
      updated.classList.remove("stale");
      updated.textContent = "as of " + new Date().toLocaleTimeString();
    } catch (err) {
      updated.classList.add("stale");
      const why = err.name === "AbortError" ? "no answer" : err.message;
      updated.textContent = "not updated since " + new Date().toLocaleTimeString() + " (" + why + ")";
    } finally {
      clearTimeout(timer);
      busy = false;
    }
  }

  function swap(html) {
    const open = new Map();
    live.querySelectorAll("details[data-key]").forEach(function (d) {
      open.set(d.dataset.key, d.open);
    });
    const focus = focused();
    const fresh = document.createElement("template");
    fresh.innerHTML = html;
    fresh.content.querySelectorAll("details[data-key]").forEach(function (d) {
      if (open.has(d.dataset.key)) d.open = open.get(d.dataset.key);
    });
    live.replaceChildren(fresh.content);
    applyFilter();
    relativeTimes();
    if (focus) {
      const again = live.querySelector(focus);
      if (again) again.focus({ preventScroll: true });
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
  relativeTimes();
  setInterval(refresh, every);
})();
