/* History and Audit views of the admin console (docs/api.md "History and audit").
 *
 * Loaded after app.js, whose helpers it uses through window.SegmentConsole (api, h, say, ...).
 * History: a user's membership changes, or a segment's with its size over time (a small plain
 * SVG chart, no library); Audit: every command with who, when, what, the decision and its
 * impact. Server data is only ever inserted as text.
 */
"use strict";
(function () {
  const C = window.SegmentConsole;
  if (!C) return;
  const { api, h, say, sitePath, segName, fmtTime, errText, enc, $, state } = C;
  const SVG = "http://www.w3.org/2000/svg";
  const PAGE = 50;
  const view = { mode: null, user: "", segment: "", since: "", until: "", cursor: null, seq: 0 };
  const audit = { cursor: null, seq: 0 };

  function svg(tag, attrs, ...kids) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    for (const c of kids) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return e;
  }

  function cause(c) {
    const who = c.actor ? " by " + c.actor.user_id : "";
    return [h("span", { text: c.cause_kind + who }), h("br"), h("code", { class: "hint", text: c.cause_id })];
  }

  function values(c) {
    if (c.evidence === null || c.evidence === undefined) return h("span", { class: "hint", text: "not recorded" });
    const keys = Object.keys(c.evidence).sort();
    if (!keys.length) return h("span", { class: "hint", text: "none read" });
    return keys.map((k, i) => [i ? ", " : "", h("code", { text: k + " = " + c.evidence[k] })]);
  }

  function changeRow(c) {
    return h("tr", { "data-change": c.change_id, class: "change-" + c.change.toLowerCase() },
      h("td", { text: fmtTime(c.emitted_at) }),
      h("td", {}, h("button", { type: "button", class: "link", onclick: () => showUser(c.user_id) }, c.user_id)),
      h("td", { text: segName(c.segment_id) }),
      h("td", {}, h("span", { class: "badge " + (c.change === "ADDED" ? "on" : "off"), text: c.change })),
      h("td", {}, cause(c)),
      h("td", {}, (c.matched_rule_ids || []).map((id, i) => [i ? ", " : "", h("code", { text: id })])),
      h("td", {}, values(c)));
  }

  // The segment's size at the end of each day: a polyline over the window, with its extremes.
  function chart(series, name) {
    const box = $("#history-chart");
    if (!series.length) { box.replaceChildren(); return; }
    const W = 640, H = 160, L = 44, R = 10, T = 12, B = 26;
    const sizes = series.map((p) => p.size);
    const max = Math.max(1, ...sizes), min = Math.min(0, ...sizes);
    const x = (i) => L + (series.length === 1 ? (W - L - R) / 2 : i * (W - L - R) / (series.length - 1));
    const y = (v) => T + (H - T - B) * (1 - (v - min) / (max - min || 1));
    const first = series[0], last = series[series.length - 1];
    const label = "Size of " + name + " by day, " + first.date + " to " + last.date + ": from " + first.size
      + " to " + last.size + " members (lowest " + Math.min(...sizes) + ", highest " + Math.max(...sizes) + ")";
    const g = svg("svg", { viewBox: "0 0 " + W + " " + H, width: W, height: H, role: "img",
      "aria-label": label, id: "history-size-chart", "data-last-size": last.size },
      svg("title", {}, label),
      svg("line", { x1: L, y1: y(min), x2: W - R, y2: y(min), stroke: "#8f959e" }),
      svg("line", { x1: L, y1: T, x2: L, y2: H - B, stroke: "#8f959e" }),
      svg("text", { x: L - 6, y: y(max) + 4, "text-anchor": "end", "font-size": 11, fill: "#5b6470" }, max),
      svg("text", { x: L - 6, y: y(min) + 4, "text-anchor": "end", "font-size": 11, fill: "#5b6470" }, min),
      svg("text", { x: L, y: H - 8, "font-size": 11, fill: "#5b6470" }, first.date),
      svg("text", { x: W - R, y: H - 8, "text-anchor": "end", "font-size": 11, fill: "#5b6470" }, last.date),
      svg("polyline", { points: series.map((p, i) => x(i) + "," + y(p.size)).join(" "), fill: "none",
        stroke: "#0f6cbf", "stroke-width": 2 }),
      ...series.filter((p) => p.added || p.removed).map((p) => svg("circle", {
        cx: x(series.indexOf(p)), cy: y(p.size), r: 3, fill: "#0f6cbf" },
      svg("title", {}, p.date + ": " + p.size + " (+" + p.added + " −" + p.removed + ")"))));
    box.replaceChildren(g, h("p", { class: "hint", text: "Now " + last.size + " member(s); +"
      + series.reduce((n, p) => n + p.added, 0) + " added, −" + series.reduce((n, p) => n + p.removed, 0)
      + " removed in this window (days in UTC)." }));
  }

  async function load(more) {
    const v = view;
    if (!more) v.cursor = null;
    const seq = ++v.seq;
    const q = ["limit=" + PAGE];
    if (v.cursor) q.push("cursor=" + enc(v.cursor));
    let path;
    if (v.mode === "user") {
      path = sitePath("/users/" + enc(v.user) + "/history?" + q.join("&"));
    } else {
      if (v.since) q.push("since=" + enc(v.since));
      if (v.until) q.push("until=" + enc(v.until));
      path = sitePath("/segments/" + enc(v.segment) + "/history?" + q.join("&"));
    }
    const r = await api("GET", path);
    if (seq !== v.seq) return;
    if (r.status !== 200) { if (r.status !== 401) say("Could not load the history: " + errText(r.data), "bad"); return; }
    const d = r.data;
    const body = $("#history-table tbody");
    const rows = d.changes.map(changeRow);
    if (more) body.append(...rows);
    else body.replaceChildren(...(rows.length ? rows : [h("tr", {}, h("td", { colspan: 7, class: "empty",
      text: v.mode === "user" ? "No membership change of this user is kept." : "No change in this window." }))]));
    v.cursor = d.next_cursor;
    $("#history-more").hidden = !v.cursor;
    if (!more) {
      const name = v.mode === "user" ? v.user : segName(v.segment);
      $("#history-title").textContent = v.mode === "user" ? "History of " + name
        + (d.pruned ? " (older changes were let go by the retention)" : "") : "History of " + name;
      $("#history-table caption").textContent = "Membership changes of " + name;
      if (v.mode === "segment") chart(d.series, name); else chart([], name);
      const box = $("#history-result");
      box.hidden = false;
      box.focus();
    }
  }

  function showUser(user) {
    $("#history-user").value = user;
    Object.assign(view, { mode: "user", user });
    if ($("#panel-history").hidden) C.selectTab("history", false);
    load(false);
  }

  function fillSegments() {
    const sel = $("#history-segment");
    const keep = sel.value;
    sel.replaceChildren(...state.segments.map((s) => h("option", { value: s.segment_id, text: s.name + " (" + s.segment_id + ")" })));
    if (keep && state.segments.some((s) => s.segment_id === keep)) sel.value = keep;
  }

  async function onShowHistory() {
    if (!state.segments.length) {
      const r = await api("GET", sitePath("/segments"));
      if (r.status === 200) state.segments = r.data.segments;
    }
    fillSegments();
  }

  // ------------------------------------------------------------------- audit
  function auditRow(a) {
    const result = a.status + (a.code ? " " + a.code : "");
    return h("tr", { "data-command-id": a.command_id },
      h("td", { text: fmtTime(a.processed_at) }),
      h("td", { text: a.actor.user_id }),
      h("td", {}, h("span", { text: a.summary }), h("br"), h("code", { class: "hint", text: a.type + " " + a.command_id })),
      h("td", {}, h("span", { class: "badge " + (a.status === "ACCEPTED" ? "accepted" : "rejected"), text: result }),
        a.message ? h("span", { class: "msg", text: " " + a.message }) : null),
      h("td", { class: "num added", text: "+" + a.impact.added }),
      h("td", { class: "num removed", text: "−" + a.impact.removed }));
  }

  async function loadAudit(more) {
    if (!state.token) return;
    if (!more) audit.cursor = null;
    const seq = ++audit.seq;
    const r = await api("GET", sitePath("/audit?limit=" + PAGE + (audit.cursor ? "&cursor=" + enc(audit.cursor) : "")));
    if (seq !== audit.seq) return;
    if (r.status !== 200) { if (r.status !== 401) say("Could not load the audit log: " + errText(r.data), "bad"); return; }
    const body = $("#audit-table tbody");
    const rows = r.data.commands.map(auditRow);
    if (more) body.append(...rows);
    else body.replaceChildren(...(rows.length ? rows : [h("tr", {}, h("td", { colspan: 6, class: "empty", text: "No command yet." }))]));
    audit.cursor = r.data.next_cursor;
    $("#audit-more").hidden = !audit.cursor;
  }

  // -------------------------------------------------------------------- init
  $("#history-user-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const user = $("#history-user").value.trim();
    if (!user) { say("Enter a user id.", "bad"); $("#history-user").focus(); return; }
    showUser(user);
  });
  $("#history-segment-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const segment = $("#history-segment").value;
    if (!segment) { say("No segment to show.", "bad"); return; }
    Object.assign(view, { mode: "segment", segment, since: $("#history-since").value, until: $("#history-until").value });
    load(false);
  });
  $("#history-more").addEventListener("click", () => load(true));
  $("#audit-refresh").addEventListener("click", () => loadAudit(false));
  $("#audit-more").addEventListener("click", () => loadAudit(true));
  C.addTab("history", onShowHistory);
  C.addTab("audit", () => loadAudit(false));
})();
