/* Admin console: the Catalog tab and the large-change dialog (docs/api.md "Guarded changes").
 *
 * Uses what app.js exposes as window.SegmentConsole (loaded first). Like app.js: plain
 * JavaScript, the documented API only, server data inserted as text, never as HTML.
 *
 * - hooks.confirmLargeChange: a write answered 409 LARGE_CHANGE shows its impact (members now,
 *   would remove, would add, the people in the sample); it resolves {removed: N} (send it again
 *   confirmed) or null (nothing is changed).
 * - hooks.showCatalog: the Catalog tab: create, rename and delete segments, import a CSV file of
 *   segments (a result per line), declare, change and delete custom profile fields, the site's
 *   large-change threshold.
 */
"use strict";
(function () {
  const C = window.SegmentConsole;
  if (!C) return;
  const { h, api, say, sitePath, enc, state } = C;
  const $ = (sel, root) => (root || document).querySelector(sel);
  const TYPE_WORD = { TEXT: "Text", TEXTAREA: "Text area", MENU: "Menu", MULTISELECT: "Multi-select",
    CHECKBOX: "Checkbox", DATETIME: "Date/time", NUMBER: "Number" };
  let settings = null;

  // -------------------------------------------------------------- large changes
  function who(p) {
    const extra = [p.name, p.email].filter((x) => x).join(", ");
    return extra ? p.user_id + " (" + extra + ")" : p.user_id;
  }

  function impactNode(d) {
    const imp = d.impact;
    const rows = imp.segments.map((s) => h("tr", { "data-impact-segment": s.segment_id, class: s.large ? "large" : null },
      h("th", { scope: "row", text: s.name + (s.large ? " — large" : "") }),
      h("td", { class: "num impact-members", text: String(s.members) }),
      h("td", { class: "num impact-removed", text: String(s.removed) }),
      h("td", { class: "num impact-added", text: String(s.added) })));
    const people = (title, list, total, id) => list.length ? h("div", {},
      h("h4", { text: title + (total > list.length ? " (first " + list.length + " of " + total + ")" : "") }),
      h("ul", { id, class: "people" }, list.map((p) => h("li", { text: who(p) })))) : null;
    const removed = imp.segments.flatMap((s) => s.sample_removed);
    const added = imp.segments.flatMap((s) => s.sample_added);
    return h("div", { id: "large-change" },
      d.confirmed !== null && d.confirmed !== undefined
        ? h("p", { class: "notice", id: "large-changed", text: "The count changed since you confirmed it: "
          + d.confirm.removed + " people now (you confirmed " + d.confirmed + ")." }) : null,
      h("table", { class: "grid impact" },
        h("caption", { class: "sr-only", text: "Impact per segment" }),
        h("thead", {}, h("tr", {}, h("th", { scope: "col", text: "Segment" }), h("th", { scope: "col", text: "Members now" }),
          h("th", { scope: "col", text: "Would remove" }), h("th", { scope: "col", text: "Would add" }))),
        h("tbody", {}, rows)),
      people("People who would be removed", removed, imp.removed, "large-sample-removed"),
      people("People who would be added", added, imp.added, "large-sample-added"));
  }

  async function confirmLargeChange(d, label) {
    const imp = d.impact;
    const t = d.threshold;
    const names = imp.segments.filter((s) => s.large).map((s) => "“" + s.name + "”").join(", ");
    const res = await C.confirmDialog({
      title: "This change removes " + imp.removed + " people",
      body: [label + " would remove " + imp.removed + " of the " + imp.members + " member(s) of " + names
        + " and add " + imp.added + ".",
      "The site asks before any change that removes at least " + t.large_change_min_removed + " people and more than "
        + (t.large_change_ratio * 100) + "% of a segment. Through cohort sync, removed people may lose access to "
        + "their courses. Check who they are before you apply it."],
      extra: impactNode(d),
      ok: "Remove " + imp.removed + " people", danger: true,
    });
    return res.ok ? { removed: d.confirm.removed } : null;
  }

  // ------------------------------------------------------------------ catalog
  async function showCatalog() {
    renderSegments();
    await Promise.all([C.loadSegments(), loadFields(), loadSettings()]);
  }

  function renderSegments() {
    const body = $("#catalog-segments tbody");
    if (!state.segments.length) {
      body.replaceChildren(h("tr", {}, h("td", { colspan: 4, class: "empty", text: "No segments yet." })));
      return;
    }
    body.replaceChildren(...state.segments.map((s) => h("tr", { "data-catalog-segment": s.segment_id },
      h("td", {}, h("code", { text: s.segment_id })),
      h("td", { class: "name" }, h("span", { text: s.name })),
      h("td", { class: "num", text: String(s.member_count) }),
      h("td", { class: "nowrap" },
        h("button", { type: "button", "aria-label": "Rename segment " + s.name, text: "Rename",
          onclick: (e) => renameForm(e.target.closest("tr"), s) }), " ",
        h("button", { type: "button", class: "danger", "aria-label": "Delete segment " + s.name, text: "Delete",
          onclick: () => deleteSegment(s) })))));
  }

  function renameForm(tr, s) {
    const cell = $("td.name", tr);
    const id = "rename-" + s.segment_id;
    const input = h("input", { id, value: s.name, autocomplete: "off" });
    const form = h("form", { class: "inline-pair", onsubmit: async (e) => {
      e.preventDefault();
      const name = input.value.trim();
      if (!name) { input.setAttribute("aria-invalid", "true"); input.focus(); return; }
      const out = await C.submitCommand("PUT", sitePath("/segments/" + enc(s.segment_id)), { name },
        "Rename segment " + s.segment_id);
      if (!out.queued) say("Could not rename: " + C.errText(out.response.data), "bad");
      await C.loadSegments();
    } }, h("label", { for: id, class: "sr-only", text: "New name for " + s.name }), input,
    h("button", { type: "submit", text: "Save name" }),
    h("button", { type: "button", text: "Cancel", onclick: () => renderSegments() }));
    cell.replaceChildren(form);
    input.focus();
  }

  async function deleteSegment(s) {
    const res = await C.confirmDialog({
      title: "Delete segment “" + s.name + "”?",
      body: ["Its " + s.rule_count + " rule(s) are deleted and its " + s.member_count + " member(s) removed.",
        "This cannot be undone."],
      ok: "Delete segment", danger: true,
    });
    if (!res.ok) return;
    const out = await C.submitCommand("DELETE", sitePath("/segments/" + enc(s.segment_id)), undefined,
      "Delete segment " + s.segment_id);
    if (!out.queued && !out.cancelled) say("Could not delete: " + C.errText(out.response.data), "bad");
    await C.loadSegments();
  }

  function showError(id, msg) {
    const p = $("#" + id);
    p.textContent = msg || "";
    p.hidden = !msg;
  }

  async function createSegment(e) {
    e.preventDefault();
    const id = $("#new-segment-id").value.trim();
    const name = $("#new-segment-name").value.trim() || id;
    const bad = C.idProblem(id);
    showError("new-segment-error", bad ? bad.replace(/rule id/g, "segment id") : "");
    $("#new-segment-id").setAttribute("aria-invalid", bad ? "true" : "false");
    if (bad) { $("#new-segment-id").focus(); return; }
    if (state.segments.some((s) => s.segment_id === id)) {
      showError("new-segment-error", "A segment “" + id + "” already exists: rename it in the table below.");
      return;
    }
    const out = await C.submitCommand("PUT", sitePath("/segments/" + enc(id)), { name }, "Create segment " + id);
    if (!out.queued) { showError("new-segment-error", C.errText(out.response.data)); return; }
    $("#new-segment-id").value = "";
    $("#new-segment-name").value = "";
    await C.loadSegments();
  }

  // A CSV file as rows of cells (RFC 4180: quoted cells may hold commas, quotes and line breaks),
  // each with the line it starts on.
  function parseCsv(text) {
    const rows = [];
    let row = [], cell = "", quoted = false, line = 1, start = 1, i = 0;
    if (text.charCodeAt(0) === 0xfeff) i = 1;
    for (; i < text.length; i++) {
      const c = text[i];
      if (quoted) {
        if (c === '"' && text[i + 1] === '"') { cell += '"'; i++; } else if (c === '"') quoted = false;
        else { if (c === "\n") line++; cell += c; }
      } else if (c === '"') quoted = true;
      else if (c === ",") { row.push(cell); cell = ""; }
      else if (c === "\n" || c === "\r") {
        if (c === "\r" && text[i + 1] === "\n") i++;
        row.push(cell); rows.push({ line: start, cells: row });
        row = []; cell = ""; line++; start = line;
      } else cell += c;
    }
    if (cell !== "" || row.length) { row.push(cell); rows.push({ line: start, cells: row }); }
    return rows.filter((r) => r.cells.some((x) => x.trim() !== ""));
  }

  const TRUE = ["true", "yes", "1", "y", "on"], FALSE = ["false", "no", "0", "n", "off"];

  async function importCsv(e) {
    e.preventDefault();
    const file = $("#bulk-file").files[0];
    const report = $("#bulk-report");
    if (!file) { say("Choose a CSV file to import.", "bad"); return; }
    const all = parseCsv(await file.text());
    const header = (all.shift() || { cells: [] }).cells.map((x) => x.trim().toLowerCase());
    const col = (n) => header.indexOf(n);
    if (col("id") < 0 || col("name") < 0 || header.some((x) => !["id", "name", "managed"].includes(x))) {
      say("The file's first line must name the columns id, name and optionally managed.", "bad");
      return;
    }
    const local = [], sent = [];
    for (const r of all) {
      const m = col("managed") >= 0 ? (r.cells[col("managed")] || "").trim().toLowerCase() : "";
      const seg = (r.cells[col("id")] || "").trim();
      if (r.cells.length > header.length) {
        local.push({ line: r.line, segment_id: seg, status: "REJECTED", code: "INVALID_ROW",
          message: r.cells.length + " cells but " + header.length + " columns (a name with a comma must be quoted)" });
      } else if (m && !TRUE.includes(m) && !FALSE.includes(m)) {
        local.push({ line: r.line, segment_id: seg, status: "REJECTED", code: "INVALID_FIELD",
          message: "managed must be true or false (yes/no, 1/0; empty: leave automation as it is), not “" + m + "”" });
      } else {
        sent.push({ line: r.line, row: { segment_id: seg, name: (r.cells[col("name")] || "").trim(),
          managed: m ? TRUE.includes(m) : null } });
      }
    }
    const results = local.slice();
    for (let i = 0; i < sent.length; i += 1000) {
      const chunk = sent.slice(i, i + 1000);
      const r = await api("POST", sitePath("/segments:bulk"), { segments: chunk.map((x) => x.row) });
      if (r.status !== 200) { say("Import failed: " + C.errText(r.data), "bad"); return; }
      for (const x of r.data.results) results.push(Object.assign({ line: chunk[x.index].line }, x));
    }
    results.sort((a, b) => a.line - b.line);
    const failed = results.filter((x) => x.status === "REJECTED").length;
    report.replaceChildren(h("table", { class: "grid", id: "bulk-results" },
      h("caption", { text: file.name + ": " + results.length + " line(s), " + failed + " failed" }),
      h("thead", {}, h("tr", {}, ["Line", "Segment", "Result", "Why"].map((t) => h("th", { scope: "col", text: t })))),
      h("tbody", {}, results.map((x) => h("tr", { class: x.status.toLowerCase(), "data-line": x.line },
        h("td", { class: "num", text: String(x.line) }), h("td", { text: x.segment_id || "–" }),
        h("td", { text: x.status === "QUEUED" ? (x.action === "create" ? "created" : "updated")
          : x.status === "UNCHANGED" ? "unchanged" : "failed" }),
        h("td", { text: x.code ? x.code + ": " + x.message : "" }))))));
    say("Import: " + (results.length - failed) + " line(s) done, " + failed + " failed.", failed ? "bad" : "ok");
    setTimeout(C.loadSegments, 800);
  }

  async function loadFields() {
    const r = await api("GET", sitePath("/fields"));
    if (r.status !== 200) return;
    C.takeFields(r.data);
    const custom = r.data.fields.filter((f) => f.custom);
    const body = $("#catalog-fields tbody");
    if (!custom.length) {
      body.replaceChildren(h("tr", {}, h("td", { colspan: 5, class: "empty", text: "No custom profile fields." })));
      return;
    }
    body.replaceChildren(...custom.map((f) => h("tr", { "data-field": f.shortname },
      h("td", {}, h("code", { text: f.shortname })), h("td", { text: f.label }),
      h("td", { text: TYPE_WORD[f.type] || f.type }), h("td", { text: f.options.join(", ") }),
      h("td", { class: "nowrap" },
        h("button", { type: "button", "aria-label": "Edit field " + f.shortname, text: "Edit", onclick: () => {
          $("#field-shortname").value = f.shortname;
          $("#field-name").value = f.label;
          $("#field-datatype").value = f.type;
          $("#field-options").value = f.options.join("\n");
          $("#field-name").focus();
        } }), " ",
        h("button", { type: "button", class: "danger", "aria-label": "Delete field " + f.shortname, text: "Delete",
          onclick: () => deleteField(f) })))));
  }

  async function saveField(e) {
    e.preventDefault();
    const shortname = $("#field-shortname").value.trim();
    const datatype = $("#field-datatype").value;
    const options = $("#field-options").value.split("\n").map((x) => x.trim()).filter((x) => x);
    if (!/^[A-Za-z0-9_]+$/.test(shortname)) {
      showError("field-error", "A short name is letters, digits and _ only.");
      $("#field-shortname").focus();
      return;
    }
    if (datatype === "MENU" && !options.length) {
      showError("field-error", "A menu needs at least one option (one per line).");
      $("#field-options").focus();
      return;
    }
    showError("field-error", "");
    const body = { datatype, options: datatype === "MENU" || datatype === "MULTISELECT" ? options : [] };
    const name = $("#field-name").value.trim();
    if (name) body.name = name;
    const out = await C.submitCommand("PUT", sitePath("/fields/" + enc(shortname)), body, "Save field " + shortname);
    if (!out.queued) { showError("field-error", C.errText(out.response.data)); return; }
    if (out.command && out.command.status === "REJECTED") showError("field-error", out.command.message || "");
    await loadFields();
  }

  async function deleteField(f) {
    const res = await C.confirmDialog({
      title: "Delete field “" + f.shortname + "”?",
      body: ["Rules that use profile_field_" + f.shortname + " stop matching (they are marked broken) and the "
        + "people only they matched leave their segments."],
      ok: "Delete field", danger: true,
    });
    if (!res.ok) return;
    const out = await C.submitCommand("DELETE", sitePath("/fields/" + enc(f.shortname)), undefined,
      "Delete field " + f.shortname);
    if (!out.queued && !out.cancelled) say("Could not delete: " + C.errText(out.response.data), "bad");
    await loadFields();
  }

  async function loadSettings() {
    const r = await api("GET", sitePath("/settings"));
    if (r.status !== 200) return;
    settings = r.data;
    $("#guard-min").value = String(settings.large_change_min_removed);
    $("#guard-pct").value = String(Math.round(settings.large_change_ratio * 1e6) / 1e4);
  }

  async function saveSettings(e) {
    e.preventDefault();
    const min = Number($("#guard-min").value), pct = Number($("#guard-pct").value);
    if (!Number.isInteger(min) || min < 0) { say("“At least” is a whole number of people, 0 or more.", "bad"); return; }
    if (!(pct >= 0 && pct <= 100)) { say("“More than” is a percentage from 0 to 100.", "bad"); return; }
    const out = await C.submitCommand("PUT", sitePath("/settings"),
      { large_change_min_removed: min, large_change_ratio: pct / 100 }, "Large-change guard: " + min + " people, " + pct + "%");
    if (!out.queued) say("Could not save: " + C.errText(out.response.data), "bad");
    await loadSettings();
  }

  C.hooks.confirmLargeChange = confirmLargeChange;
  C.hooks.showCatalog = showCatalog;
  C.hooks.onSegments = renderSegments;
  $("#segment-form").addEventListener("submit", createSegment);
  $("#bulk-form").addEventListener("submit", importCsv);
  $("#field-form").addEventListener("submit", saveField);
  $("#settings-form").addEventListener("submit", saveSettings);
})();
