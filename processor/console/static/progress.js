/* Command progress in the admin console (docs/api.md, "Command progress").
 *
 * An accepted command is followed until every users partition finished its backfill: the
 * Commands panel shows a bar (partitions done of total) with the users evaluated, added and
 * removed so far, then "applied". Each managed segment says when it became current
 * (GET /sites/{site}/segments: current_as_of), or that it is updating while a command's
 * backfill of it runs. app.js calls these through window.ConsoleProgress (a few named hooks);
 * server data is only ever inserted as text.
 */
"use strict";
(function () {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const num = (n) => Number(n || 0).toLocaleString();

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else e.setAttribute(k, String(v));
    }
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function when(ms) {
    return new Date(ms).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
  }

  // A command's progress in words: "3 of 8 partitions · 1,234 users evaluated · +12 −3".
  function summary(p) {
    return p.partitions_done + " of " + p.partitions_total + " partitions · " + num(p.users_evaluated)
      + " users evaluated · +" + num(p.users_added) + " −" + num(p.users_removed);
  }

  // What the backfill of an accepted command is at: accepted (no partition reported yet),
  // applying…, applied, or stuck (a partition's backfill failed and waits for an operator).
  function stateLabel(c) {
    if (c.progress && c.progress.code) return "applying — stuck";
    return { ACCEPTED: "waiting for the backfill", APPLYING: "applying…", APPLIED: "applied" }[c.state] || null;
  }

  // What goes under an accepted command in the Commands panel (its decision badge stays app.js's):
  // the backfill's state, its bar (partitions done of total) and counts.
  function commandExtra(c) {
    const p = c.progress;
    const label = c.status === "ACCEPTED" ? stateLabel(c) : null;
    if (!label) return null;
    const box = el("div", { class: "progress " + c.state.toLowerCase(), "data-state": c.state });
    box.append(el("span", { class: "badge state " + (p && p.code ? "stuck" : c.state.toLowerCase()) }, label));
    if (p && p.partitions_total) {
      box.append(el("progress", { max: p.partitions_total, value: p.partitions_done,
        "aria-label": "Backfill of " + c.label + ": partitions done" }), el("span", { class: "counts" }, summary(p)));
    }
    if (p && p.code) box.append(el("span", { class: "msg" }, p.code + ": " + (p.message || "")));
    else if (c.state === "APPLIED" && p && p.applied_at) box.append(el("span", { class: "when" }, "applied " + when(p.applied_at)));
    return box;
  }

  // The line under a managed segment's name: updating (a command's backfill of it runs), or
  // current as of the end of the last one.
  function segmentLine(s) {
    if (!s.managed) return null;
    const applying = s.applying || [];
    if (applying.length) {
      const a = applying[0];
      return el("span", { class: "currency updating", "data-command-id": a.command_id },
        "Updating: " + a.partitions_done + " of " + a.partitions_total + " partitions done, "
        + num(a.users_evaluated) + " users evaluated" + (applying.length > 1 ? " (+" + (applying.length - 1) + " more)" : ""));
    }
    if (s.current_as_of) return el("span", { class: "currency current" }, "Segment is current as of " + when(s.current_as_of));
    return null;
  }

  // A followed command's progress also moves the lines of the segments it touches, without
  // reloading the segment list (that gathers member counts from every worker).
  function updateSegments(c) {
    const p = c.progress;
    if (!p || !p.segments || c.state === "APPLIED") return;
    for (const seg of p.segments) {
      const row = document.querySelector('#segments-table tr[data-segment="' + CSS.escape(seg) + '"]');
      if (!row || row.dataset.managed !== "1") continue;
      const old = row.querySelector(".currency");
      const line = segmentLine({ managed: true, applying: [{ command_id: c.id, ...p }] });
      if (old) old.replaceWith(line); else row.querySelector("td").append(line);
    }
  }

  // After the decision: poll until the command is applied (or rejected, or a partition's
  // backfill failed and waits for an operator). ``api`` and ``render`` are app.js's.
  async function follow(c, api, render, onApplied) {
    if (c.following) return;
    c.following = true;
    let delay = 250;
    try {
      for (;;) {
        const r = await api("GET", c.poll);
        if (!r || r.status !== 200 || !r.data) return;  // signed out, or no longer tracked
        c.state = r.data.state || null;
        c.progress = r.data.progress || null;
        render();
        updateSegments(c);
        if (!c.state || c.state === "APPLIED" || c.state === "REJECTED" || (c.progress && c.progress.code)) {
          if (c.state === "APPLIED" && onApplied) onApplied(c);
          return;
        }
        await sleep(delay);
        delay = Math.min(delay * 1.4, 2000);
      }
    } finally {
      c.following = false;
    }
  }

  // Commands restored after a reload that were not applied yet are followed again.
  function unfinished(c) {
    return c.status === "ACCEPTED" && c.state !== "APPLIED" && !(c.progress && c.progress.code);
  }

  window.ConsoleProgress = { follow, commandExtra, segmentLine, unfinished };
})();
