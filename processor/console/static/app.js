/* Segment automation admin console.
 *
 * Plain JavaScript, no dependencies, no build step. Talks only to the documented admin
 * HTTP API on the same origin (docs/api.md); the bearer token the admin pastes is kept
 * in sessionStorage (this tab only). Server data is only ever inserted as text
 * (textContent), never as HTML.
 */
"use strict";
(function () {
  const TOKEN_KEY = "segment-automation.console.token";
  const COMMANDS_KEY = "segment-automation.console.commands";  // + ":" + site: the Commands panel
  const MEMBERS_SEGMENT_KEY = "segment-automation.console.members-segment";  // + ":" + site: last used
  const NAME_MAX = 255;  // the API's limit of a rule name
  const ID_MAX = 255;  // processor/contract/ids.py: ids of the contract
  const SLUG_MAX = 60;  // a rule id generated from the name
  const ID_CHAR = /[^\p{L}\p{N}_.-]/u;  // letters, digits, "_", "-", "." (as processor/contract/ids.py)
  const TABS = ["segments", "editor", "rules", "members", "catalog"];
  const DEFAULT_OP = { TEXT: "equals", TEXTAREA: "contains", MENU: "equals", MULTISELECT: "any_of",
    CHECKBOX: "is_checked", DATETIME: "within_last", NUMBER: "equals" };
  const TYPE_WORD = { TEXT: "text", TEXTAREA: "text area", MENU: "menu", MULTISELECT: "multi-select",
    CHECKBOX: "checkbox", DATETIME: "date/time", NUMBER: "number" };
  const OP_LABEL = {
    equals: "equals", not_equals: "does not equal", in: "is one of", not_in: "is not one of",
    contains: "contains", not_contains: "does not contain", starts_with: "starts with",
    not_starts_with: "does not start with", ends_with: "ends with", not_ends_with: "does not end with",
    matches: "matches regular expression", not_matches: "does not match regular expression",
    is_empty: "is empty", is_not_empty: "is not empty", is_defined: "has a value (even blank)",
    is_not_defined: "has no value", any_of: "has any of", all_of: "has all of", none_of: "has none of",
    is_checked: "is checked", is_not_checked: "is not checked", lt: "is less than", lte: "is at most",
    gt: "is greater than", gte: "is at least", between: "is between", before: "is before", after: "is after",
    on: "is on (calendar day)", in_past: "is in the past", in_future: "is in the future",
    within_last: "is within the last", more_than_ago: "is more than … ago",
  };
  const DURATION_UNITS = [["M", "minutes"], ["H", "hours"], ["D", "days"], ["W", "weeks"]];

  const state = {
    token: null, site: null, sub: null, exp: null,
    fields: [], fieldMap: new Map(), operators: {},
    segments: [], users: 0, rules: [],
    editor: { editing: null, idTouched: false, mode: "form", root: null, errors: new Map(), lastMap: null },
    members: { segment: "", cursors: [""], page: 0, next: null },
    commands: [],
  };
  let nodeSeq = 0;
  let leafCounter = 0;
  let refreshTimers = [];
  const tabHooks = {};  // tab name -> called when the tab is shown (views in their own files)
  const latest = { segments: 0, rules: 0, members: 0 };  // only the newest answer of each list is shown
  // Hooks other console files fill (manage.js: the Catalog tab, the large-change dialog).
  const hooks = { confirmLargeChange: null, showCatalog: null, onSegments: null };
  const P = window.ConsoleProgress;  // progress.js: a command's backfill, a segment's "current as of"

  // ------------------------------------------------------------------ helpers
  const $ = (sel, root) => (root || document).querySelector(sel);
  const enc = encodeURIComponent;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  function h(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (k === "value" && (tag === "input" || tag === "textarea" || tag === "select")) e.value = v;
      else if (v === true) e.setAttribute(k, "");
      else e.setAttribute(k, String(v));
    }
    for (const c of kids.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }

  function say(message, kind) {
    const s = $("#status");
    s.className = "status " + (kind || "info");
    s.textContent = message;
  }

  function sessionGet(key) {
    try { return sessionStorage.getItem(key); } catch (e) { return null; }
  }
  function sessionSet(key, value) {
    try { sessionStorage.setItem(key, value); } catch (e) { /* storage full or disabled: not kept */ }
  }

  // Why ``v`` is not a valid rule id (processor/contract/ids.py, kind NAME), or null.
  function idProblem(v) {
    if (!v) return "Enter a rule id.";
    if (v.length > ID_MAX) return "The rule id is " + v.length + " characters long; at most " + ID_MAX + ".";
    if (v === "." || v === "..") return "A rule id cannot be “" + v + "”.";
    const m = ID_CHAR.exec(v);
    if (m) {
      const what = m[0] === " " ? "a space" : "“" + m[0] + "”";
      return "A rule id may contain only letters, digits, -, _ and . — " + what + " at position " + (m.index + 1)
        + " is not allowed.";
    }
    return null;
  }

  function nameProblem(v) {
    return v.length > NAME_MAX ? "The name is " + v.length + " characters long; at most " + NAME_MAX
      + " are kept by the server: shorten it." : null;
  }

  function sitePath(rest) {
    return "/sites/" + enc(state.site) + rest;
  }

  function segName(id) {
    const s = state.segments.find((x) => x.segment_id === id);
    return s ? s.name : id;
  }

  function fmtTime(ms) {
    if (ms === null || ms === undefined) return "–";
    try { return new Date(ms).toLocaleString(); } catch (e) { return String(ms); }
  }

  function errText(d) {
    if (!d) return "no answer";
    return (d.message || "error") + (d.code ? " (" + d.code + ")" : "");
  }

  // Python's json.dumps(value, ensure_ascii=False): the text form prints values this way.
  function pyJson(v) {
    if (Array.isArray(v)) return "[" + v.map(pyJson).join(", ") + "]";
    if (v && typeof v === "object") {
      return "{" + Object.entries(v).map(([k, x]) => JSON.stringify(k) + ": " + pyJson(x)).join(", ") + "}";
    }
    return JSON.stringify(v);
  }

  // ---------------------------------------------------------------- API calls
  async function api(method, path, body, opts) {
    const o = opts || {};
    const headers = { Accept: "application/json" };
    if (state.token) headers.Authorization = "Bearer " + state.token;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let resp;
    try {
      resp = await fetch(path, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store", credentials: "omit", redirect: "error",
      });
    } catch (e) {
      return { status: 0, data: { code: "NETWORK", message: "the server could not be reached (" + e.message + ")" } };
    }
    const text = await resp.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = { code: "BAD_RESPONSE", message: text.slice(0, 200) }; }
    if (resp.status === 401 && !o.signingIn) {
      signOut("Signed out: " + errText(data));
    }
    return { status: resp.status, data };
  }

  // -------------------------------------------------------------- sign in/out
  function decodeJwt(token) {
    const parts = token.split(".");
    if (parts.length !== 3) throw new Error("this is not a JWT (expected three parts separated by dots)");
    let b = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    b += "===".slice((b.length + 3) % 4);
    const bytes = Uint8Array.from(atob(b), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  }

  function showSigninError(msg) {
    const p = $("#signin-error");
    p.textContent = msg;
    p.hidden = !msg;
    $("#token").setAttribute("aria-invalid", msg ? "true" : "false");
  }

  async function signIn(token, restoring) {
    token = (token || "").trim();
    showSigninError("");
    let claims;
    try {
      claims = decodeJwt(token);
    } catch (e) {
      showSigninError("The token cannot be read: " + e.message + ".");
      return false;
    }
    if (typeof claims.site_id !== "string" || !claims.site_id) {
      showSigninError("The token has no site_id claim; ask for an admin token for your site.");
      return false;
    }
    if (typeof claims.exp === "number" && claims.exp * 1000 < Date.now()) {
      showSigninError("The token has expired; get a new one.");
      return false;
    }
    state.token = token;
    state.site = claims.site_id;
    state.sub = claims.sub;
    state.exp = claims.exp;
    const r = await api("GET", sitePath("/fields"), undefined, { signingIn: true });
    if (r.status !== 200) {
      state.token = null;
      sessionStorage.removeItem(TOKEN_KEY);
      showSigninError("The server refused the token: " + errText(r.data));
      if (restoring) say("Your saved session ended; sign in again.", "bad");
      return false;
    }
    takeFields(r.data);
    sessionStorage.setItem(TOKEN_KEY, token);
    $("#token").value = "";
    $("#signin-screen").hidden = true;
    $("#app-screen").hidden = false;
    $("#whoami").hidden = false;
    $("#whoami-text").textContent = "Site " + state.site + " · " + (state.sub || "?")
      + (state.exp ? " · token expires " + new Date(state.exp * 1000).toLocaleTimeString() : "");
    await Promise.all([loadSegments(), loadRules()]);
    resetEditor();
    restoreCommands();
    selectTab("segments", false);
    say("Signed in to site " + state.site + ".", "ok");
    $("#tab-segments").focus();
    return true;
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    if (state.site) sessionStorage.removeItem(COMMANDS_KEY + ":" + state.site);
    state.token = null;
    state.site = null;
    state.commands = [];
    refreshTimers.forEach(clearTimeout);
    refreshTimers = [];
    const dlg = $("#confirm");
    if (dlg.open) dlg.close("cancel");
    $("#command-list").replaceChildren();
    $("#app-screen").hidden = true;
    $("#whoami").hidden = true;
    $("#signin-screen").hidden = false;
    say(message || "Signed out.", message ? "bad" : "info");
    $("#token").focus();
  }

  async function devLogin() {
    const site = $("#dev-site").value.trim() || "demo";
    const r = await fetch("/console/dev-token?site=" + enc(site), { cache: "no-store", credentials: "omit" });
    if (r.status !== 200) {
      showSigninError("Dev login is not available on this worker (" + r.status + ").");
      return;
    }
    const body = await r.json();
    await signIn(body.token, false);
  }

  // --------------------------------------------------------------------- tabs
  function selectTab(name, focus) {
    if (currentTab() !== name) say("", "info");  // a banner belongs to the tab it was shown on
    for (const t of TABS) {
      const tab = $("#tab-" + t);
      const on = t === name;
      tab.setAttribute("aria-selected", on ? "true" : "false");
      tab.tabIndex = on ? 0 : -1;
      $("#panel-" + t).hidden = !on;
    }
    if (focus) $("#tab-" + name).focus();
    if (tabHooks[name]) tabHooks[name]();  // a view in its own file (history.js), see window.SegmentConsole
    if (name === "segments") loadSegments();
    else if (name === "rules") loadRules();
    else if (name === "members") loadMembers(false);
    else if (name === "catalog" && hooks.showCatalog) hooks.showCatalog();
  }

  function currentTab() {
    return TABS.find((t) => $("#tab-" + t).getAttribute("aria-selected") === "true");
  }

  function onTabKey(e) {
    const i = TABS.indexOf(currentTab());
    let j = null;
    if (e.key === "ArrowRight") j = (i + 1) % TABS.length;
    else if (e.key === "ArrowLeft") j = (i + TABS.length - 1) % TABS.length;
    else if (e.key === "Home") j = 0;
    else if (e.key === "End") j = TABS.length - 1;
    if (j === null) return;
    e.preventDefault();
    selectTab(TABS[j], true);
  }

  // ------------------------------------------------------------ confirm dialog
  function confirmDialog(o) {
    const dlg = $("#confirm");
    const back = document.activeElement;
    $("#confirm-title").textContent = o.title;
    $("#confirm-body").replaceChildren(...o.body.map((p) => h("p", { text: p })));
    const extra = $("#confirm-extra");
    extra.replaceChildren();
    let cb = null;
    if (o.checkbox) {
      cb = h("input", { type: "checkbox", id: "confirm-checkbox" });
      extra.append(h("p", { class: "check" }, cb, " ", h("label", { for: "confirm-checkbox", text: o.checkbox })));
    }
    if (o.extra) extra.append(o.extra);  // a node of the caller's (the large-change impact)
    const ok = $("#confirm-ok");
    ok.textContent = o.ok;
    ok.className = o.danger ? "primary danger" : "primary";
    dlg.returnValue = "";
    return new Promise((resolve) => {
      dlg.addEventListener("close", () => {
        resolve({ ok: dlg.returnValue === "ok", checked: !!(cb && cb.checked) });
        if (back && back.isConnected) back.focus();
      }, { once: true });
      dlg.showModal();
      (o.danger ? $("#confirm-cancel") : ok).focus();
    });
  }

  // ----------------------------------------------------------------- commands
  function renderCommands() {
    if (state.site) sessionSet(COMMANDS_KEY + ":" + state.site, JSON.stringify(state.commands.slice(0, 20)));
    const list = $("#command-list");
    list.replaceChildren(...state.commands.slice(0, 20).map((c) => {
      const kind = c.status.toLowerCase();
      const label = { PENDING: "pending…", ACCEPTED: "accepted", REJECTED: "rejected" }[c.status] || c.status.toLowerCase();
      return h("li", { class: "command " + kind, "data-command-id": c.id, "data-state": c.state || c.status },
        h("span", { text: c.label }), " ",
        h("span", { class: "badge " + kind, text: label }),
        c.status === "REJECTED" ? h("span", { class: "msg", text: (c.code ? c.code + ": " : "") + (c.message || "") }) : null,
        P ? P.commandExtra(c) : null);
    }));
  }

  // The Commands panel of this tab and site survives a reload (sessionStorage); pending ones are
  // polled again.
  function restoreCommands() {
    let saved = [];
    try { saved = JSON.parse(sessionGet(COMMANDS_KEY + ":" + state.site) || "[]"); } catch (e) { saved = []; }
    state.commands = Array.isArray(saved) ? saved.filter((c) => c && c.id && c.poll && c.label) : [];
    renderCommands();
    for (const c of state.commands) {
      if (c.status === "PENDING") pollCommand(c);
      else if (P && P.unfinished(c)) P.follow(c, api, renderCommands, onApplied);
    }
  }

  async function pollCommand(cmd) {
    const started = Date.now();
    let delay = 150;
    for (;;) {
      const p = await api("GET", cmd.poll);
      if (!state.token) return false;
      if (p.status === 200 && p.data && p.data.status !== "PENDING") {
        cmd.status = p.data.status;
        cmd.code = p.data.code;
        cmd.message = p.data.message;
        cmd.state = p.data.state || null;
        cmd.progress = p.data.progress || null;
        renderCommands();
        // accepted: follow its backfill until APPLIED (progress.js), then refresh the lists
        if (P && P.unfinished(cmd)) P.follow(cmd, api, renderCommands, onApplied);
        return true;
      }
      if (p.status === 410) {  // decided long ago and no longer tracked (COMMAND_EXPIRED)
        cmd.status = "EXPIRED";
        cmd.message = p.data && p.data.message;
        renderCommands();
        return true;
      }
      await sleep(delay);
      delay = Math.min(delay * 1.5, Date.now() - started > 30000 ? 3000 : 800);
    }
  }

  // Send a write (202 + poll URL), show it as pending, poll until accepted or rejected.
  async function submitCommand(method, path, body, label) {
    let r = await api(method, path, body);
    // A large change (409 LARGE_CHANGE) is shown with its impact and sent again, confirmed with the
    // count shown, only if the admin agrees (manage.js); again if the count changed meanwhile.
    while (r.status === 409 && r.data && r.data.code === "LARGE_CHANGE" && hooks.confirmLargeChange) {
      const confirm = await hooks.confirmLargeChange(r.data, label);
      if (!confirm) {
        say(label + ": not applied — nothing was changed.", "info");
        return { queued: false, cancelled: true, response: r };
      }
      body = Object.assign({}, body || {}, { confirm });
      r = await api(method, path, body);
    }
    if (r.status !== 202) return { queued: false, response: r };
    const cmd = { id: r.data.command_id, poll: r.data.poll, label, status: "PENDING", code: null, message: null };
    state.commands.unshift(cmd);
    renderCommands();
    say(label + ": pending…", "info");
    if (!await pollCommand(cmd)) return { queued: true, command: cmd };
    if (cmd.status === "ACCEPTED") {
      say(label + ": accepted.", "ok");
      scheduleRefresh();
    } else {
      say(label + (cmd.status === "EXPIRED" ? ": no longer tracked — " : ": rejected — ")
        + (cmd.message || cmd.code || ""), "bad");
    }
    return { queued: true, command: cmd };
  }

  // Every partition finished the command's backfill (progress.js follows it): say so, refresh the lists.
  function onApplied(cmd) {
    say(cmd.label + ": applied — its segments are current.", "ok");
    scheduleRefresh();
  }

  // Accepted commands change members through a backfill that runs just after: refresh a few times.
  function scheduleRefresh() {
    refreshTimers.forEach(clearTimeout);
    refreshTimers = [0, 700, 2000, 4500].map((ms) => setTimeout(() => {
      if (!state.token) return;
      loadSegments();
      if (ms === 0) loadRules();
      if (currentTab() === "members") loadMembers(false);
    }, ms));
  }

  // ----------------------------------------------------------------- segments
  async function loadSegments() {
    if (!state.token) return;
    const seq = ++latest.segments;
    const r = await api("GET", sitePath("/segments"));
    if (seq !== latest.segments) return;
    if (r.status !== 200) { if (r.status !== 401) say("Could not load segments: " + errText(r.data), "bad"); return; }
    state.segments = r.data.segments;
    state.users = r.data.users;
    renderSegments();
    renderSegmentSelects();
    if (hooks.onSegments) hooks.onSegments();  // the Catalog tab's table (manage.js)
  }

  function renderSegments() {
    const body = $("#segments-table tbody");
    $("#users-stored").textContent = state.users + " users stored for site " + state.site + ".";
    if (!state.segments.length) {
      body.replaceChildren(h("tr", {}, h("td", { colspan: 4, class: "empty",
        text: "No segments yet: segments come from the LMS (UpsertSegment commands)." })));
      return;
    }
    body.replaceChildren(...state.segments.map((s) => {
      const sw = h("input", {
        type: "checkbox", role: "switch", id: "manage-" + s.segment_id, checked: s.managed,
        "aria-label": "Automation for " + s.name,
        onclick: (e) => { e.preventDefault(); toggleAutomation(s); },
      });
      return h("tr", { "data-segment": s.segment_id, "data-managed": s.managed ? "1" : "0" },
        h("td", {}, h("strong", { text: s.name }), h("br"), h("code", { text: s.segment_id }),
          P ? P.segmentLine(s) : null),
        h("td", {}, h("label", { class: "switch", for: "manage-" + s.segment_id }, sw,
          h("span", { class: "badge " + (s.managed ? "on" : "off"), text: s.managed ? "Managed" : "Not managed" }))),
        h("td", { class: "num members", text: String(s.member_count) }),
        h("td", { class: "num rules", text: String(s.rule_count) }));
    }));
  }

  function fillSelect(sel, options, keep) {
    const old = keep !== undefined ? keep : sel.value;
    sel.replaceChildren(...options.map(([v, t]) => h("option", { value: v, text: t })));
    if (options.some(([v]) => v === old)) sel.value = old;
  }

  function renderSegmentSelects() {
    const segs = state.segments;
    const rs = $("#rule-segment");
    const keep = rs.value || (segs.find((s) => s.managed) || {}).segment_id;
    fillSelect(rs, segs.map((s) => [s.segment_id, s.managed ? s.name : s.name + " (automation off)"]), keep);
    renderSegmentNote();
    const ms = $("#members-segment");
    // the segment last looked at, else one with members (a managed one first)
    const remembered = sessionGet(MEMBERS_SEGMENT_KEY + ":" + state.site);
    const mkeep = (segs.some((s) => s.segment_id === ms.value) && ms.value)
      || (segs.some((s) => s.segment_id === remembered) && remembered)
      || (segs.find((s) => s.managed && s.member_count > 0) || segs.find((s) => s.member_count > 0)
        || segs.find((s) => s.managed) || segs[0] || {}).segment_id;
    fillSelect(ms, segs.map((s) => [s.segment_id, s.name + (s.managed ? "" : " (not managed)")]), mkeep);
  }

  // Under the rule editor's segment: automation off means a rule changes nobody; offer to turn it on.
  function renderSegmentNote() {
    const note = $("#rule-segment-note");
    const seg = state.segments.find((s) => s.segment_id === $("#rule-segment").value);
    if (!seg || seg.managed) {
      note.hidden = true;
      note.replaceChildren();
      return;
    }
    note.replaceChildren(
      h("span", { text: "Automation is off for “" + seg.name + "”: its rules change nobody until it is turned on." }),
      h("button", { type: "button", id: "rule-segment-enable", onclick: () => toggleAutomation(seg) },
        "Turn on automation for " + seg.name));
    note.hidden = false;
  }

  async function toggleAutomation(seg) {
    if (!seg.managed) {
      const res = await confirmDialog({
        title: "Enable automation for “" + seg.name + "”?",
        body: ["All " + state.users + " stored users are re-evaluated against the segment's " + seg.rule_count
          + " rule(s): users who match join the segment, members who do not match leave it.",
        "From then on, every user change updates the segment within milliseconds."],
        ok: "Enable automation",
      });
      if (!res.ok) return;
      await submitCommand("POST", sitePath("/segments/" + enc(seg.segment_id) + "/automation"), { enabled: true },
        "Enable automation for " + seg.name);
    } else {
      const res = await confirmDialog({
        title: "Disable automation for “" + seg.name + "”?",
        body: ["Rules stop applying to this segment. Its " + seg.member_count
          + " current member(s) stay in it unless you remove them now."],
        checkbox: "Also remove the " + seg.member_count + " member(s) automation added",
        ok: "Disable automation", danger: true,
      });
      if (!res.ok) return;
      await submitCommand("POST", sitePath("/segments/" + enc(seg.segment_id) + "/automation"),
        { enabled: false, remove_members: res.checked },
        "Disable automation for " + seg.name + (res.checked ? " and remove members" : ""));
    }
  }

  // -------------------------------------------------------------------- rules
  async function loadRules() {
    if (!state.token) return;
    const seq = ++latest.rules;
    const r = await api("GET", sitePath("/rules"));
    if (seq !== latest.rules) return;
    if (r.status !== 200) { if (r.status !== 401) say("Could not load rules: " + errText(r.data), "bad"); return; }
    state.rules = r.data.rules;
    renderRules();
  }

  function conditionText(tree) {
    try { return toText(tree); } catch (e) { return JSON.stringify(tree); }
  }

  function renderRules() {
    const body = $("#rules-table tbody");
    if (!state.rules.length) {
      body.replaceChildren(h("tr", {}, h("td", { colspan: 5, class: "empty", text: "No rules yet." })));
      return;
    }
    body.replaceChildren(...state.rules.map((r) => h("tr", { "data-rule": r.rule_id },
      h("td", {}, h("strong", { text: r.name }), h("br"), h("code", { text: r.rule_id })),
      h("td", { text: segName(r.segment_id) }),
      h("td", {}, h("code", { class: "cond", text: conditionText(r.condition) })),
      h("td", {}, h("span", { class: "badge " + r.status, text: r.status }),
        r.broken_reason ? h("p", { class: "error reason", text: r.broken_reason }) : null),
      h("td", { class: "nowrap" },
        h("button", { type: "button", "aria-label": "Edit rule " + r.name, text: "Edit", onclick: () => editRule(r) }), " ",
        h("button", { type: "button", class: "danger", "aria-label": "Delete rule " + r.name, text: "Delete",
          onclick: () => deleteRule(r) })))));
  }

  async function deleteRule(rule) {
    const seg = state.segments.find((s) => s.segment_id === rule.segment_id);
    const name = segName(rule.segment_id);
    const body = seg && seg.managed
      ? ["Users who are in “" + name + "” only because of this rule will be removed from the segment; "
        + "members matched by another rule of the segment stay.", "This cannot be undone."]
      : ["Automation is off for “" + name + "”, so its members do not change now.", "This cannot be undone."];
    const res = await confirmDialog({ title: "Delete rule “" + rule.name + "”?", body, ok: "Delete rule", danger: true });
    if (!res.ok) return;
    const out = await submitCommand("DELETE", sitePath("/rules/" + enc(rule.rule_id)), undefined, "Delete rule " + rule.rule_id);
    if (!out.queued && !out.cancelled) say("Could not delete: " + errText(out.response.data), "bad");
    if (out.command && out.command.status === "ACCEPTED" && state.editor.editing === rule.rule_id) resetEditor();
  }

  // ------------------------------------------------------------- field catalog
  function takeFields(d) {
    state.fields = d.fields;
    state.operators = d.operators;
    state.fieldMap = new Map(d.fields.map((f) => [f.key, f]));
  }

  function takesValue(op) {
    const info = state.operators[op];
    return info ? info.takes_value : true;
  }

  // Which input a (field, operator) pair needs.
  function valueKind(field, op) {
    if (!op || !takesValue(op)) return "none";
    if (!field) return "raw";
    const t = field.type;
    if (t === "DATETIME") {
      if (op === "within_last" || op === "more_than_ago") return "duration";
      if (op === "between") return "date-range";
      return "date";
    }
    if (t === "NUMBER") return op === "between" ? "number-range" : "number";
    if (t === "MENU") return op === "in" || op === "not_in" ? "options-list" : "menu";
    if (t === "MULTISELECT") return field.options.length ? "options-list" : "list";
    if (t === "TEXT" || t === "TEXTAREA") {
      if (op === "in" || op === "not_in") return "list";
      if (op === "matches" || op === "not_matches") return "regex";
      return "text";
    }
    return "raw";
  }

  function defaultValue(kind) {
    switch (kind) {
      case "none": return undefined;
      case "list": case "options-list": return [];
      case "date-range": case "number-range": return ["", ""];
      case "duration": return "P30D";
      default: return "";
    }
  }

  const DATE_RE = /^\d{4}-\d{2}-\d{2}$/;
  // "P30D" -> {n: "30", unit: "D"}. A negative or fractional number is kept (the input shows what
  // was typed, with an error next to it) rather than falling back to a raw JSON box.
  function parseDuration(v) {
    if (typeof v !== "string") return null;
    let m = /^P(-?\d+(?:\.\d+)?)([DW])$/.exec(v);
    if (m) return { n: m[1], unit: m[2] };
    m = /^PT(-?\d+(?:\.\d+)?)([HM])$/.exec(v);
    if (m) return { n: m[1], unit: m[2] };
    return null;
  }

  // A value for ``newKind`` that keeps what was chosen for ``oldKind`` where it still fits
  // (equals "Sales" -> is one of ["Sales"], a date -> the start of a range, ...).
  function convertValue(oldKind, newKind, v, field) {
    if (oldKind === newKind) return v;
    const first = Array.isArray(v) ? v[0] : v;
    const text = (x) => typeof x === "string" && x !== "";
    const options = field ? field.options : [];
    switch (newKind) {
      case "list": return Array.isArray(v) ? v.filter(text) : (text(v) ? [v] : []);
      case "options-list": return (Array.isArray(v) ? v : (text(v) ? [v] : [])).filter((x) => options.includes(x));
      case "text": case "regex": return text(first) ? first : "";
      case "menu": return text(first) && options.includes(first) ? first : "";
      case "number": return typeof first === "number" ? first : "";
      case "number-range": return [typeof first === "number" ? first : "", ""];
      case "date": return text(first) && DATE_RE.test(first) ? first : "";
      case "date-range": return [text(first) && DATE_RE.test(first) ? first : "", ""];
      default: return defaultValue(newKind);
    }
  }

  // What is wrong with a leaf's value before it is sent (null: nothing), in the admin's words.
  function valueProblem(leaf) {
    const field = state.fieldMap.get(leaf.field) || null;
    const kind = valueKind(field, leaf.op);
    const v = leaf.value;
    const label = field ? field.label.toLowerCase() : leaf.field;
    const empty = (x) => x === undefined || x === null || x === "";
    switch (kind) {
      case "text":
        if (!empty(v)) return null;
        if (leaf.op === "equals") return "An empty value matches only users whose " + label + " is empty: for "
          + "that, choose the condition “is empty”; otherwise enter a value.";
        if (leaf.op === "not_equals") return "An empty value: to match users whose " + label + " is set, choose the "
          + "condition “is not empty”; otherwise enter a value.";
        return "Enter a value.";
      case "regex": return empty(v) ? "Enter a regular expression." : null;
      case "menu": return empty(v) ? "Choose one of the options (or the condition “is empty”)." : null;
      case "list": case "options-list": return !Array.isArray(v) || !v.length ? "Add at least one value." : null;
      case "number":
        if (empty(v)) return "Enter a number.";
        return typeof v === "number" ? null : "“" + v + "” is not a number.";
      case "number-range": case "date-range":
        return !Array.isArray(v) || v.some(empty) ? "Enter both ends of the range." : null;
      case "date": return empty(v) ? "Choose a date." : null;
      case "duration": {
        const d = parseDuration(v);
        if (empty(v) || !d) return "Enter a number of " + "days, weeks, hours or minutes.";
        return /^\d+$/.test(d.n) && Number(d.n) >= 1 ? null
          : "Enter a whole number of at least 1 (“" + d.n + "” is not): e.g. 30 days.";
      }
      default: return null;
    }
  }

  function representable(kind, v, field) {
    const strs = (a) => Array.isArray(a) && a.every((x) => typeof x === "string");
    switch (kind) {
      case "text": case "regex": case "menu": return v === undefined || typeof v === "string";
      case "list": return v === undefined || strs(v);
      case "options-list": return v === undefined || (strs(v) && v.every((x) => field.options.includes(x)));
      case "number": return v === undefined || v === "" || typeof v === "number";
      case "number-range": return Array.isArray(v) && v.length === 2 && v.every((x) => x === "" || typeof x === "number");
      case "date": return v === undefined || v === "" || (typeof v === "string" && DATE_RE.test(v));
      case "date-range": return Array.isArray(v) && v.length === 2 && v.every((x) => x === "" || (typeof x === "string" && DATE_RE.test(x)));
      case "duration": return v === undefined || parseDuration(v) !== null;
      default: return true;
    }
  }

  // ------------------------------------------------------------- rule editor
  function newLeaf(field) {
    return { kind: "leaf", id: ++nodeSeq, field: field || "", op: "", value: undefined, cs: false, missing: "" };
  }
  function newGroup(op, children) {
    return { kind: "group", id: ++nodeSeq, op: op || "all", not: false, children: children || [] };
  }

  function fromTree(t) {
    if (!t || typeof t !== "object" || Array.isArray(t)) throw new Error("not a condition");
    const keys = Object.keys(t);
    for (const k of ["all", "any"]) {
      if (keys.length === 1 && Array.isArray(t[k])) return newGroup(k, t[k].map(fromTree));
    }
    if (keys.length === 1 && "not" in t) {
      const inner = fromTree(t.not);
      if (inner.kind === "group" && !inner.not) { inner.not = true; return inner; }
      const g = newGroup("all", [inner]);
      g.not = true;
      return g;
    }
    if ("field" in t) {
      const leaf = newLeaf(String(t.field));
      leaf.op = String(t.op || "");
      if ("value" in t) leaf.value = t.value;
      leaf.cs = t.case_sensitive === true;
      leaf.missing = typeof t.missing === "string" ? t.missing : "";
      return leaf;
    }
    throw new Error("unsupported condition node");
  }

  function rootFromTree(t) {
    const n = fromTree(t);
    return n.kind === "leaf" ? newGroup("all", [n]) : n;
  }

  function leafJson(leaf) {
    const o = { field: leaf.field, op: leaf.op };
    if (takesValue(leaf.op)) o.value = leaf.value === undefined ? "" : leaf.value;
    if (leaf.cs) o.case_sensitive = true;
    if (leaf.missing) o.missing = leaf.missing;
    return o;
  }

  // Editor tree -> JSON condition; ``map`` records which editor node each JSON path came from,
  // so errors (which carry a JSON path) land on the right condition.
  function toTree(node, path, map) {
    map.set(path, node);
    if (node.kind === "leaf") return leafJson(node);
    const corePath = node.not ? path + ".not" : path;
    let core;
    if (node.children.length === 1) core = toTree(node.children[0], corePath, map);
    else core = { [node.op]: node.children.map((c, i) => toTree(c, corePath + "." + node.op + "[" + i + "]", map)) };
    return node.not ? { not: core } : core;
  }

  // Problems the form can see without the server; ``values``: also each value (before a preview or a
  // save; switching to the text form can show an incomplete value).
  function localProblems(node, out, values) {
    if (node.kind === "group") {
      if (!node.children.length) out.push([node, "Add at least one condition to this group, or remove it.", ""]);
      node.children.forEach((c) => localProblems(c, out, values));
    } else if (!node.field) {
      out.push([node, "Choose a profile field.", "field"]);
    } else if (!node.op) {
      out.push([node, "Choose a condition.", "op"]);
    } else if (values) {
      const why = valueProblem(node);
      if (why) out.push([node, why, "value"]);
    }
    return out;
  }

  function isPristine(node) {
    return node.kind === "leaf" ? !node.field : node.children.every(isPristine);
  }

  // The condition to send: {value, map} or null when the form has local problems (shown inline).
  function buildCondition() {
    const ed = state.editor;
    if (ed.mode === "text") {
      const text = $("#cond-textarea").value;
      if (!text.trim()) { showTextError("Write a condition.", null); return null; }
      return { value: text, map: null };
    }
    const problems = localProblems(ed.root, [], true);
    if (problems.length) {
      for (const [node, message, part] of problems) addError(node, { message, part });
      renderCondForm();
      say("Complete the highlighted conditions.", "bad");
      focusFirstError();
      return null;
    }
    const map = new Map();
    const value = toTree(ed.root, "$", map);
    ed.lastMap = map;
    return { value, map };
  }

  function addError(node, err) {
    const list = state.editor.errors.get(node.id) || [];
    list.push(err);
    state.editor.errors.set(node.id, list);
  }

  function clearErrors() {
    state.editor.errors = new Map();
    const fe = $("#form-errors");
    fe.hidden = true;
    fe.replaceChildren();
    for (const id of ["rule-name", "rule-id", "rule-segment"]) {
      $("#" + id).removeAttribute("aria-invalid");
      const p = $("#" + id + "-error");
      p.hidden = true;
      p.textContent = "";
    }
    showTextError("", null);
  }

  function showTextError(msg, col) {
    const p = $("#cond-text-error");
    p.textContent = msg;
    p.hidden = !msg;
    const ta = $("#cond-textarea");
    ta.setAttribute("aria-invalid", msg ? "true" : "false");
    if (msg && col !== null && col !== undefined) {
      ta.focus();
      ta.setSelectionRange(col, Math.min(col + 1, ta.value.length));
    }
  }

  function fieldError(id, msg) {
    const p = $("#" + id + "-error");
    p.textContent = msg;
    p.hidden = false;
    $("#" + id).setAttribute("aria-invalid", "true");
  }

  // Put server errors ({code, path, message}) where they belong: a condition, a rule field, the text.
  function showErrors(errors, map) {
    const ed = state.editor;
    const loose = [];
    for (const e of errors) {
      const msg = (e.message || "invalid") + (e.code ? " (" + e.code + ")" : "");
      let path = e.path || "";
      const col = /text\[col (\d+)\]/.exec(path);
      if (col) {
        if (ed.mode === "text") showTextError(msg + " — at column " + col[1], Number(col[1]));
        else loose.push(msg);
        continue;
      }
      path = path.replace(/^\$\.payload\.condition_json/, "$").replace(/^\$\.condition(?=$|[.[])/, "$");
      const top = /^\$(?:\.payload)?\.(rule_id|segment_id)$/.exec(e.path || "");
      if (top) { fieldError(top[1] === "rule_id" ? "rule-id" : "rule-segment", msg); continue; }
      if (ed.mode === "text" && (e.path || "").match(/^\$\.(payload\.condition_json|condition)/)) {
        showTextError(msg + (path && path !== "$" ? " — at " + path : ""), null);
        continue;
      }
      const node = map ? nodeForPath(map, path) : null;
      if (node) {
        const rest = path.slice(keyForNode(map, node, path).length);
        const part = (/^\.(field|op|value|case_sensitive|missing)/.exec(rest) || [])[1] || "";
        addError(node, { message: msg, part });
      } else {
        loose.push(msg);
      }
    }
    if (ed.mode === "form") renderCondForm();
    if (loose.length) {
      const fe = $("#form-errors");
      fe.replaceChildren(...loose.map((m) => h("p", { text: m })));
      fe.hidden = false;
    }
    focusFirstError();
  }

  function nodeForPath(map, path) {
    let best = null;
    let bestLen = -1;
    for (const [key, node] of map) {
      const ok = path === key || path.startsWith(key + ".") || path.startsWith(key + "[");
      if (ok && key.length >= bestLen) { best = node; bestLen = key.length; }
    }
    return best;
  }
  function keyForNode(map, node, path) {
    let best = "$";
    for (const [key, n] of map) {
      if (n === node && (path === key || path.startsWith(key + ".") || path.startsWith(key + "[")) && key.length >= best.length) best = key;
    }
    return best;
  }

  function focusFirstError() {
    const bad = document.querySelector("#panel-editor [aria-invalid=true]");
    if (bad) (bad.matches("fieldset") ? bad.querySelector("input") || bad : bad).focus();
  }

  function touched(node) {
    if (state.editor.errors.delete(node.id)) {
      const el = document.getElementById("n" + node.id);
      if (el) {
        el.classList.remove("invalid");
        const p = document.getElementById("n" + node.id + "-error");
        if (p) { p.hidden = true; p.textContent = ""; }
        el.querySelectorAll("[aria-invalid=true]").forEach((x) => x.removeAttribute("aria-invalid"));
      }
    }
    $("#preview").hidden = true;
  }

  function renderCondForm() {
    const active = document.activeElement && document.activeElement.id;
    leafCounter = 0;
    $("#cond-form").replaceChildren(renderGroup(state.editor.root, null));
    if (active) {
      const e = document.getElementById(active);
      if (e) e.focus();
    }
  }

  function errorBlock(node) {
    const errs = state.editor.errors.get(node.id) || [];
    return h("div", { id: "n" + node.id + "-error", class: "error node-error", role: errs.length ? "alert" : null, hidden: !errs.length },
      errs.map((e) => h("p", { text: e.message })));
  }

  function renderGroup(g, parent) {
    const id = "n" + g.id;
    const errs = state.editor.errors.get(g.id) || [];
    const opSel = h("select", { id: id + "-op", onchange: (e) => { g.op = e.target.value; touched(g); } },
      h("option", { value: "all", selected: g.op === "all" }, "all of these conditions (AND)"),
      h("option", { value: "any", selected: g.op === "any" }, "any of these conditions (OR)"));
    const notCb = h("input", { type: "checkbox", id: id + "-not", checked: g.not,
      onchange: (e) => { g.not = e.target.checked; touched(g); renderCondForm(); } });
    const items = g.children.map((c) => h("li", {}, c.kind === "leaf" ? renderLeaf(c, g) : renderGroup(c, g)));
    return h("fieldset", { class: "group" + (g.not ? " negated" : "") + (errs.length ? " invalid" : ""), id,
      "aria-describedby": id + "-error" },
    h("legend", { text: parent ? "Group of conditions" : "Users match when" }),
    h("div", { class: "group-head" },
      h("label", { for: id + "-op" }, "Match"), opSel,
      h("span", {}, notCb, " ", h("label", { for: id + "-not" }, "Negate (NOT): match users who do not match this group"))),
    h("ol", { class: "children" }, items),
    errorBlock(g),
    h("div", { class: "actions" },
      h("button", { type: "button", id: id + "-add-leaf", onclick: () => {
        const leaf = newLeaf();
        g.children.push(leaf);
        touched(g);
        renderCondForm();
        document.getElementById("n" + leaf.id + "-field").focus();
      } }, "Add condition"),
      h("button", { type: "button", id: id + "-add-group", onclick: () => {
        const leaf = newLeaf();
        g.children.push(newGroup(g.op === "all" ? "any" : "all", [leaf]));
        touched(g);
        renderCondForm();
        document.getElementById("n" + leaf.id + "-field").focus();
      } }, "Add group"),
      parent ? h("button", { type: "button", class: "danger", id: id + "-remove", onclick: () => {
        parent.children.splice(parent.children.indexOf(g), 1);
        touched(parent);
        renderCondForm();
        document.getElementById("n" + parent.id + "-add-leaf").focus();
      } }, "Remove group") : null));
  }

  function fieldOptions(leaf) {
    const groups = new Map();
    for (const f of state.fields) {
      const label = f.custom ? "Custom profile fields" : "Standard fields: " + f.group;
      if (!groups.has(label)) groups.set(label, []);
      groups.get(label).push(h("option", { value: f.key, selected: f.key === leaf.field },
        f.label + " · " + (TYPE_WORD[f.type] || f.type) + (f.custom ? " (" + f.key + ")" : "")));
    }
    const out = [h("option", { value: "", selected: !leaf.field }, "— choose a profile field —")];
    if (leaf.field && !state.fieldMap.has(leaf.field)) {
      out.push(h("option", { value: leaf.field, selected: true }, leaf.field + " (unknown field)"));
    }
    const std = [...groups.keys()].filter((k) => !k.startsWith("Custom"));
    const custom = [...groups.keys()].filter((k) => k.startsWith("Custom"));
    for (const k of [...custom, ...std]) out.push(h("optgroup", { label: k }, groups.get(k)));
    return out;
  }

  function renderLeaf(leaf, parent) {
    const n = ++leafCounter;
    const id = "n" + leaf.id;
    const field = state.fieldMap.get(leaf.field) || null;
    const errs = state.editor.errors.get(leaf.id) || [];
    const bad = (part) => errs.some((e) => e.part === part) ? "true" : null;
    const sr = () => h("span", { class: "sr-only", text: " (condition " + n + ")" });

    const fieldSel = h("select", { id: id + "-field", "aria-invalid": bad("field"), "aria-describedby": id + "-error",
      onchange: (e) => {
        const before = state.fieldMap.get(leaf.field);
        leaf.field = e.target.value;
        const f = state.fieldMap.get(leaf.field);
        if (f && !f.operators.includes(leaf.op)) leaf.op = f.operators.includes(DEFAULT_OP[f.type]) ? DEFAULT_OP[f.type] : f.operators[0];
        if (!before || !f || before.type !== f.type || before.options.join("\n") !== f.options.join("\n")
            || !representable(valueKind(f, leaf.op), leaf.value, f)) {
          leaf.value = defaultValue(valueKind(f, leaf.op));
        }
        touched(leaf);
        renderCondForm();
      } }, fieldOptions(leaf));

    const ops = field ? field.operators : (leaf.op ? [leaf.op] : []);
    const opSel = h("select", { id: id + "-op", "aria-invalid": bad("op"), "aria-describedby": id + "-error",
      disabled: !leaf.field,
      onchange: (e) => {
        const oldKind = valueKind(field, leaf.op);
        leaf.op = e.target.value;
        const kind = valueKind(field, leaf.op);
        // a condition without a value (is empty, ...) keeps the last one for when a value is needed again
        if (kind === "none" && oldKind !== "none") leaf.stash = { kind: oldKind, value: leaf.value };
        const from = oldKind === "none" && leaf.stash ? leaf.stash : { kind: oldKind, value: leaf.value };
        const kept = convertValue(from.kind, kind, from.value, field);
        leaf.value = kind !== "none" && representable(kind, kept, field) ? kept : defaultValue(kind);
        touched(leaf);
        renderCondForm();
      } },
    h("option", { value: "", selected: !leaf.op }, "— choose a condition —"),
    ops.map((o) => h("option", { value: o, selected: o === leaf.op, title: (state.operators[o] || {}).description },
      OP_LABEL[o] || o)));

    const showCase = field && ["TEXT", "TEXTAREA", "MENU", "MULTISELECT"].includes(field.type) && takesValue(leaf.op);
    const opts = leaf.op ? h("div", { class: "opts" },
      showCase ? h("span", {},
        h("input", { type: "checkbox", id: id + "-cs", checked: leaf.cs, onchange: (e) => { leaf.cs = e.target.checked; touched(leaf); } }),
        " ", h("label", { for: id + "-cs" }, "Case sensitive", sr())) : null,
      h("span", {}, h("label", { for: id + "-missing" }, "If the user has no value", sr()), " ",
        h("select", { id: id + "-missing", "aria-invalid": bad("missing"),
          onchange: (e) => { leaf.missing = e.target.value; touched(leaf); } },
        h("option", { value: "", selected: !leaf.missing }, "operator default"),
        h("option", { value: "match", selected: leaf.missing === "match" }, "match"),
        h("option", { value: "no_match", selected: leaf.missing === "no_match" }, "do not match")))) : null;

    return h("div", { class: "leaf" + (errs.length ? " invalid" : ""), id, role: "group", "aria-labelledby": id + "-title",
      "data-condition": n },
    h("div", { class: "leaf-head" },
      h("span", { class: "leaf-title", id: id + "-title", text: "Condition " + n }),
      h("button", { type: "button", class: "danger small", id: id + "-remove",
        "aria-label": "Remove condition " + n, onclick: () => {
          parent.children.splice(parent.children.indexOf(leaf), 1);
          touched(parent);
          renderCondForm();
          document.getElementById("n" + parent.id + "-add-leaf").focus();
        } }, "Remove")),
    h("div", { class: "row" },
      h("div", { class: "field" }, h("label", { for: id + "-field" }, "1. Profile field", sr()), fieldSel),
      h("div", { class: "field" }, h("label", { for: id + "-op" }, "2. Condition", sr()), opSel),
      renderValue(leaf, field, id, sr, bad("value"))),
    opts,
    errorBlock(leaf));
  }

  function renderValue(leaf, field, id, sr, invalid) {
    let kind = valueKind(field, leaf.op);
    if (kind === "none") return null;
    if (!representable(kind, leaf.value, field)) kind = "raw";
    const common = { id: id + "-value", "aria-invalid": invalid, "aria-describedby": id + "-error" };
    const wrap = (label, ...controls) => h("div", { class: "field value" },
      h("label", { for: id + "-value" }, label, sr()), ...controls);
    const set = (v) => { leaf.value = v; touched(leaf); };
    const v = leaf.value;
    switch (kind) {
      case "text":
      case "regex":
        return wrap(kind === "regex" ? "Regular expression (RE2)" : "Value",
          h("input", { ...common, type: "text", autocomplete: "off", value: v === undefined ? "" : v,
            oninput: (e) => set(e.target.value) }));
      case "list":
        return wrap("Values (one per line)",
          h("textarea", { ...common, rows: 3, value: (v || []).join("\n"),
            oninput: (e) => set(e.target.value.split("\n").map((x) => x.trim()).filter((x) => x)) }));
      case "menu":
        return wrap("Value",
          h("select", { ...common, onchange: (e) => set(e.target.value) },
            h("option", { value: "", selected: !v }, "— choose an option —"),
            field.options.map((o) => h("option", { value: o, selected: o === v }, o))));
      case "options-list": {
        const chosen = new Set(v || []);
        const boxes = field.options.map((o, i) => h("label", { for: id + "-opt-" + i },
          h("input", { type: "checkbox", id: id + "-opt-" + i, value: o, checked: chosen.has(o),
            onchange: (e) => {
              if (e.target.checked) chosen.add(o); else chosen.delete(o);
              set(field.options.filter((x) => chosen.has(x)));
            } }), " " + o));
        return h("fieldset", { class: "field values", id: id + "-value", "aria-invalid": invalid,
          "aria-describedby": id + "-error" }, h("legend", {}, "Values", sr()), boxes);
      }
      case "number":
        return wrap("Value", h("input", { ...common, type: "number", step: "any", value: v === undefined ? "" : String(v),
          oninput: (e) => set(numberOrText(e.target.value)) }));
      case "number-range":
      case "date-range": {
        const type = kind === "date-range" ? "date" : "number";
        const pair = Array.isArray(v) ? v.slice() : ["", ""];
        const conv = (x) => (type === "number" ? numberOrText(x) : x);
        return h("div", { class: "field value" },
          h("label", { for: id + "-value" }, "From", sr()),
          h("input", { ...common, type, step: type === "number" ? "any" : null, value: String(pair[0]),
            oninput: (e) => { pair[0] = conv(e.target.value); set(pair.slice()); } }),
          h("label", { for: id + "-value-to" }, "To (included)", sr()),
          h("input", { id: id + "-value-to", type, step: type === "number" ? "any" : null, value: String(pair[1]),
            "aria-invalid": invalid, oninput: (e) => { pair[1] = conv(e.target.value); set(pair.slice()); } }));
      }
      case "date":
        return wrap(leaf.op === "on" ? "Day (UTC)" : "Date (UTC midnight)",
          h("input", { ...common, type: "date", value: v || "", oninput: (e) => set(e.target.value) }));
      case "duration": {
        const d = parseDuration(v) || { n: "", unit: "D" };
        const compose = () => {
          const num = $("#" + id + "-value").value.trim();
          const unit = $("#" + id + "-unit").value;
          set(num === "" ? "" : (unit === "H" || unit === "M" ? "PT" : "P") + num + unit);
        };
        return h("div", { class: "field value" },
          h("label", { for: id + "-value" }, "Duration", sr()),
          h("div", { class: "inline-pair" },
            h("input", { ...common, type: "number", min: 1, step: 1, value: d.n, oninput: compose }),
            h("label", { for: id + "-unit", class: "sr-only" }, "Unit", sr()),
            h("select", { id: id + "-unit", onchange: compose },
              DURATION_UNITS.map(([u, label]) => h("option", { value: u, selected: u === d.unit }, label)))));
      }
      default:
        return wrap("Value (JSON)", h("input", { ...common, type: "text", autocomplete: "off",
          value: v === undefined ? "" : JSON.stringify(v),
          oninput: (e) => { let x; try { x = JSON.parse(e.target.value); } catch (err) { x = e.target.value; } set(x); } }));
    }
  }

  function numberOrText(s) {
    if (s === "") return "";
    const n = Number(s);
    return Number.isFinite(n) ? n : s;
  }

  function setMode(mode) {
    state.editor.mode = mode;
    for (const r of document.querySelectorAll("input[name=cond-mode]")) r.checked = r.value === mode;
    $("#cond-form").hidden = mode !== "form";
    $("#cond-text").hidden = mode !== "text";
  }

  function onModeChange(e) {
    const want = e.target.value;
    const ed = state.editor;
    if (want === ed.mode) return;
    clearErrors();
    if (want === "text") {
      let text = "";
      if (!isPristine(ed.root)) {
        const problems = localProblems(ed.root, []);
        if (problems.length) {
          setMode("form");
          for (const [node, message, part] of problems) addError(node, { message, part });
          renderCondForm();
          say("Complete or remove the highlighted conditions before switching to the text form.", "bad");
          return;
        }
        text = toText(toTree(ed.root, "$", new Map()));
      }
      $("#cond-textarea").value = text;
      setMode("text");
      $("#cond-textarea").focus();
    } else {
      const text = $("#cond-textarea").value;
      try {
        ed.root = text.trim() ? rootFromTree(parseText(text)) : newGroup("all", [newLeaf()]);
      } catch (err) {
        setMode("text");
        showTextError("The text cannot be shown as a form: " + err.message
          + (err.col !== undefined ? " — at column " + err.col : ""), err.col);
        return;
      }
      setMode("form");
      renderCondForm();
    }
    $("#preview").hidden = true;
  }

  function resetEditor() {
    const ed = state.editor;
    ed.editing = null;
    ed.idTouched = false;
    ed.root = newGroup("all", [newLeaf()]);
    clearErrors();
    $("#editor-title").textContent = "Add a rule";
    $("#rule-name").value = "";
    const rid = $("#rule-id");
    rid.value = "";
    rid.readOnly = false;
    $("#rule-enabled").checked = true;
    $("#rule-id-help").textContent = ID_HELP;
    const managed = state.segments.find((s) => s.managed);
    if (managed) $("#rule-segment").value = managed.segment_id;
    renderSegmentNote();
    $("#cond-textarea").value = "";
    setMode("form");
    renderCondForm();
    $("#preview").hidden = true;
  }

  function editRule(rule) {
    resetEditor();
    const ed = state.editor;
    ed.editing = rule.rule_id;
    $("#editor-title").textContent = "Edit rule “" + rule.name + "”";
    $("#rule-name").value = rule.name;
    const rid = $("#rule-id");
    rid.value = rule.rule_id;
    rid.readOnly = true;
    $("#rule-segment").value = rule.segment_id;
    renderSegmentNote();
    $("#rule-enabled").checked = !!rule.enabled;
    try {
      ed.root = rootFromTree(rule.condition);
      setMode("form");
      renderCondForm();
    } catch (e) {
      $("#cond-textarea").value = conditionText(rule.condition);
      setMode("text");
    }
    selectTab("editor", false);
    $("#rule-name").focus();
    if (rule.status === "broken") say("This rule is broken: " + (rule.broken_reason || "") + ". Fix it and save.", "bad");
  }

  // A rule id from a name: lower case ASCII words joined by "-", at most SLUG_MAX characters, cut at
  // a word boundary (never a trailing "-"). ``cut`` says it was shortened.
  function slug(s) {
    const full = s.toLowerCase().normalize("NFKD").replace(/[\u0300-\u036f]/g, "")
      .replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "");
    if (full.length <= SLUG_MAX) return { id: full, cut: false };
    let id = full.slice(0, SLUG_MAX);
    const dash = id.lastIndexOf("-");
    if (full[SLUG_MAX] !== "-" && dash >= SLUG_MAX / 2) id = id.slice(0, dash);
    return { id: id.replace(/-+$/, ""), cut: true };
  }

  const ID_HELP = "Letters, digits, -, _ and . (no spaces). Cannot change after creation.";

  function onNameInput() {
    const ed = state.editor;
    const name = $("#rule-name").value;
    const bad = nameProblem(name.trim());
    if (bad) fieldError("rule-name", bad); else clearFieldError("rule-name");
    if (!ed.editing && !ed.idTouched) {
      const g = slug(name);
      $("#rule-id").value = g.id;
      clearFieldError("rule-id");
      $("#rule-id-help").textContent = ID_HELP + (g.cut ? " Generated from the name and shortened to "
        + g.id.length + " characters (at most " + SLUG_MAX + ", cut between words)." : "");
    }
  }

  function onIdInput() {
    state.editor.idTouched = true;
    $("#rule-id-help").textContent = ID_HELP;
    const bad = $("#rule-id").value ? idProblem($("#rule-id").value.trim()) : null;
    if (bad) fieldError("rule-id", bad); else clearFieldError("rule-id");
  }

  function clearFieldError(id) {
    const p = $("#" + id + "-error");
    p.hidden = true;
    p.textContent = "";
    $("#" + id).removeAttribute("aria-invalid");
  }

  async function preview() {
    clearErrors();
    const cond = buildCondition();
    if (!cond) return;
    const seg = $("#rule-segment").value;
    if (!seg) { fieldError("rule-segment", "Choose a segment."); return; }
    const body = { segment_id: seg, condition: cond.value };
    if (state.editor.editing) body.rule_id = state.editor.editing;
    const btn = $("#preview-btn");
    btn.disabled = true;
    say("Previewing…", "info");
    try {
      const r = await api("POST", sitePath("/rules/preview"), body);
      if (r.status === 200) {
        renderPreview(r.data, seg);
        say(r.data.managed === false
          ? "Preview ready: nothing would change while automation is off for " + segName(seg) + "."
          : "Preview ready: " + r.data.added + " would be added, " + r.data.removed + " removed.", "ok");
      } else if (r.status === 422 || r.status === 400) {
        showErrors(errorsOf(r.data), cond.map);
        say("The rule has errors: see the highlighted conditions.", "bad");
      } else if (r.status !== 401) {
        say("Preview failed: " + errText(r.data), "bad");
      }
    } finally {
      btn.disabled = false;
    }
  }

  function errorsOf(d) {
    if (d && Array.isArray(d.errors) && d.errors.length) return d.errors;
    if (d && d.code) return [{ code: d.code, message: d.message, path: d.path || "" }];
    return [{ code: "ERROR", message: "unexpected answer from the server", path: "" }];
  }

  function renderPreview(d, seg) {
    const off = d.managed === false;
    const sample = (title, ids, total, id, users) => h("div", {},  // users: the same ids with name, e-mail
      h("h4", { text: title + (total > ids.length ? " (first " + ids.length + " of " + total + ")" : "") }),
      ids.length ? h("ul", { id, class: "sample" }, ids.map((u, i) => h("li", {}, h("code", { text: u }),
        users && users[i] && (users[i].name || users[i].email)
          ? " " + [users[i].name, users[i].email].filter((x) => x).join(" · ") : null)))
        : h("p", { class: "hint", text: "none" }));
    $("#preview-body").replaceChildren(
      off ? h("p", { class: "unmanaged", id: "preview-unmanaged", text: "Not managed: nothing would change until "
        + "automation is turned on for “" + segName(seg) + "”. With automation on, this rule would:" }) : null,
      h("p", { class: "counts" },
        h("span", {}, (off ? "Add " : "Would add "), h("strong", { id: "preview-added", text: String(d.added) })),
        h("span", {}, (off ? "Remove " : "Would remove "), h("strong", { id: "preview-removed", text: String(d.removed) })),
        h("span", {}, "Users evaluated ", h("strong", { id: "preview-evaluated", text: String(d.evaluated) }))),
      h("p", { class: "hint", id: "preview-note", text: "Compared with the current members of “" + segName(seg)
        + "”, with the segment's other rules still applying. Nothing has changed yet: “Save changes” applies it." }),
      sample("Users added", d.sample_added, d.added, "preview-sample-added", d.sample_added_users),
      sample("Users removed", d.sample_removed, d.removed, "preview-sample-removed", d.sample_removed_users));
    $("#preview").hidden = false;
  }

  async function save(e) {
    e.preventDefault();
    clearErrors();
    const ed = state.editor;
    const id = ed.editing || $("#rule-id").value.trim();
    // every problem the form can see shows at once: the name, the id and each condition
    const badName = nameProblem($("#rule-name").value.trim());
    if (badName) fieldError("rule-name", badName);
    const badId = ed.editing ? null : idProblem(id);
    if (badId) fieldError("rule-id", badId);
    const cond = buildCondition();
    if (badName || badId) {
      say("The rule was not saved: " + (badName || badId), "bad");
      $(badName ? "#rule-name" : "#rule-id").focus();
      return;
    }
    if (!cond) return;
    const seg = $("#rule-segment").value;
    if (!seg) { fieldError("rule-segment", "Choose a segment."); return; }
    const name = $("#rule-name").value.trim() || id;
    const body = { segment_id: seg, name, condition: cond.value, enabled: $("#rule-enabled").checked };
    let method = "POST";
    let path = sitePath("/rules");
    if (ed.editing) { method = "PUT"; path = sitePath("/rules/" + enc(id)); } else body.rule_id = id;
    const btn = $("#save-btn");
    btn.disabled = true;
    try {
      say("Checking the rule…", "info");
      const check = await api(method, path + "?dry_run=true", body);
      if (check.status !== 200) {
        if (check.status === 401) return;
        showErrors(errorsOf(check.data), cond.map);
        say("The rule was not saved: fix the highlighted problems.", "bad");
        return;
      }
      const label = (ed.editing ? "Update rule " : "Create rule ") + id;
      const out = await submitCommand(method, path, body, label);
      if (out.cancelled) return;  // a large change the admin did not confirm
      if (!out.queued) {
        showErrors(errorsOf(out.response.data), cond.map);
        say("The rule was not saved: " + errText(out.response.data), "bad");
        return;
      }
      const c = out.command;
      if (c.status === "ACCEPTED") {
        ed.editing = id;
        $("#rule-id").readOnly = true;
        $("#editor-title").textContent = "Edit rule “" + name + "”";
        const note = document.getElementById("preview-note");
        if (note && !$("#preview").hidden) {  // the preview above was just applied
          note.textContent = "Saved at " + new Date().toLocaleTimeString() + ": this change is being applied; "
            + "members update within seconds (User segment members).";
          note.className = "applied";
        }
        say("Rule “" + name + "” saved (command accepted); members are being updated.", "ok");
      } else if (c.status === "REJECTED") {
        const fe = $("#form-errors");
        fe.replaceChildren(h("p", { text: "Rejected: " + (c.message || "") + (c.code ? " (" + c.code + ")" : "") }));
        fe.hidden = false;
      }
    } finally {
      btn.disabled = false;
    }
  }

  // ------------------------------------------------------------------ members
  async function loadMembers(reset) {
    if (!state.token) return;
    const seg = $("#members-segment").value;
    const m = state.members;
    if (!seg) {
      $("#members-summary").textContent = "No segments.";
      $("#members-table tbody").replaceChildren();
      return;
    }
    if (reset || seg !== m.segment) Object.assign(m, { segment: seg, cursors: [""], page: 0, next: null });
    const limit = Number($("#members-page-size").value);
    const cursor = m.cursors[m.page];
    const seq = ++latest.members;
    const people = window.SegmentConsolePeople;  // people.js: the search box and the export
    const q = people ? people.query() : "";
    const [r] = await Promise.all([  // the count in the summary comes from a fresh segment list
      api("GET", sitePath("/segments/" + enc(seg) + "/members?limit=" + limit + (cursor ? "&cursor=" + enc(cursor) : "")
        + (q ? "&q=" + enc(q) : ""))),
      loadSegments()]);
    if (seq !== latest.members || m.segment !== seg) return;
    if (r.status !== 200) { if (r.status !== 401) say("Could not load members: " + errText(r.data), "bad"); return; }
    m.next = r.data.next_cursor;
    const s = state.segments.find((x) => x.segment_id === seg);
    const name = segName(seg);
    const body = $("#members-table tbody");
    if (!r.data.members.length) {
      body.replaceChildren(h("tr", {}, h("td", { colspan: 5, class: "empty",
        text: q ? "No member matches “" + q + "”." : "No members on this page." })));
    } else {
      body.replaceChildren(...r.data.members.map((u) => h("tr", { "data-user": u.user_id },
        h("td", {}, h("button", { type: "button", class: "link", "aria-label": "Explain " + u.user_id + " in " + name,
          onclick: () => explain(u.user_id, seg) }, u.user_id)),
        h("td", { class: "name", text: u.name || "–" }), h("td", { class: "email", text: u.email || "–" }),
        h("td", {}, (u.matched_rule_ids || []).map((id, i) => [i ? ", " : "", h("code", { text: id })])),
        h("td", { text: fmtTime(u.since) }))));
    }
    $("#members-summary").textContent = name + ": " + (s ? s.member_count : "?") + " member(s)"
      + (s && !s.managed ? " (automation off)" : "") + "." + (q ? people.searchNote(q, r.data.members.length, m) : "");
    $("#members-page").textContent = "Page " + (m.page + 1);
    $("#members-prev").disabled = m.page === 0;
    $("#members-next").disabled = !m.next;
    $("#members-table caption").textContent = "Members of " + name;
  }

  async function explain(user, seg) {
    const r = await api("GET", sitePath("/users/" + enc(user) + "/segments/" + enc(seg) + "/explain"));
    const box = $("#explain");
    if (r.status === 404 && r.data && r.data.code === "UNKNOWN_USER") {
      $("#explain-title").textContent = "No stored user “" + user + "”";
      $("#explain-body").replaceChildren(h("p", { text: "The processor holds no user with this id for site "
        + state.site + ": check the id (it is the id the LMS sends, e.g. a Moodle user id or username)." }));
      box.hidden = false;
      box.focus();
      return;
    }
    if (r.status !== 200) { if (r.status !== 401) say("Could not explain: " + errText(r.data), "bad"); return; }
    const d = r.data;
    const name = segName(seg);
    $("#explain-title").textContent = "Why is " + user + (d.member ? " in " : " not in ") + "“" + name + "”?";
    const facts = [
      "Member: " + (d.member ? "yes" : "no"),
      "automation " + (d.managed ? "on" : "off"),
      d.suspended ? "suspended (suspended users are never members)" : "not suspended",
      d.deleted ? "deleted" : null,
      "rules matching now: " + (d.would_match.length ? d.would_match.join(", ") : "none"),
    ].filter((x) => x);
    $("#explain-body").replaceChildren(
      d.name || d.email ? h("p", { id: "explain-person", text: [d.name, d.email].filter((x) => x).join(" · ") }) : null,
      h("p", { text: facts.join(" · ") }),
      ...(d.rules.length ? d.rules : [null]).map((rule) => rule === null
        ? h("p", { class: "hint", text: "This segment has no rules." }) : h("div", { class: "explain-rule", "data-rule": rule.rule_id },
        h("h4", {}, rule.name + " ", h("code", { text: rule.rule_id }), " ",
          h("span", { class: "badge " + rule.status, text: rule.status }), " ",
          "result" in rule ? resultMark(rule.result) : h("span", { class: "hint", text: "(not evaluated)" })),
        rule.tree ? h("ul", { class: "tree" }, treeNode(rule.tree)) : null)));
    box.hidden = false;
    box.focus();
  }

  function resultMark(ok) {
    return h("span", { class: ok ? "res-true" : "res-false", text: ok ? "✓ matches" : "✗ does not match" });
  }

  function treeNode(t) {
    for (const k of ["all", "any"]) {
      if (Array.isArray(t[k])) {
        return h("li", {}, resultMark(t.result), " " + (k === "all" ? "ALL of:" : "ANY of:"),
          h("ul", {}, t[k].map(treeNode)));
      }
    }
    if (t.not) return h("li", {}, resultMark(t.result), " NOT:", h("ul", {}, treeNode(t.not)));
    const label = t.field + " " + (OP_LABEL[t.op] || t.op) + ("value" in t ? " " + pyJson(t.value) : "");
    return h("li", { class: "leaf-result" }, resultMark(t.result), " ", h("code", { text: label }),
      " — user's value: ", t.missing ? h("em", { text: "missing" }) : h("code", { text: pyJson(t.actual) }));
  }

  // --------------------------------------------------------- text form (both ways)
  // Mirrors processor/rules/text.py: the canonical printer and a parser of the same grammar.
  function toText(t, operand) {
    if (!t || typeof t !== "object") throw new Error("not a condition");
    const keys = Object.keys(t);
    if (keys.length === 1 && "not" in t) return "not " + toText(t.not, true);
    for (const k of ["all", "any"]) {
      if (keys.length === 1 && Array.isArray(t[k])) {
        if (t[k].length === 1) return k + "(" + toText(t[k][0], false) + ")";
        const s = t[k].map((c) => toText(c, true)).join(k === "all" ? " and " : " or ");
        return operand ? "(" + s + ")" : s;
      }
    }
    const parts = [t.field, t.op];
    if ("value" in t) parts.push(pyJson(t.value));
    if ("case_sensitive" in t) parts.push(t.case_sensitive ? "case_sensitive" : "case_insensitive");
    if ("missing" in t) parts.push("missing " + t.missing);
    return parts.join(" ");
  }

  function parseText(text) {
    const n = text.length;
    let pos = 0;
    const WORD = /[A-Za-z_][A-Za-z0-9_]*/y;
    const NUM = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
    const DUR = /[Pp](?=[0-9Tt])(?:[0-9]+(?:\.[0-9]+)?[A-Za-z])*(?:[Tt](?:[0-9]+(?:\.[0-9]+)?[A-Za-z])+)?(?![A-Za-z0-9_.])/y;
    const SUGAR = [["==", "equals"], ["!=", "not_equals"], ["<=", "lte"], [">=", "gte"], ["<", "lt"], [">", "gt"]];
    const KW = new Set(["and", "or", "not"]);
    const fail = (msg, at) => { const e = new Error(msg); e.col = at === undefined ? pos : at; throw e; };
    const ws = () => { while (pos < n && " \t\r\n".includes(text[pos])) pos++; };
    const wordAt = (p) => { WORD.lastIndex = p === undefined ? pos : p; const m = WORD.exec(text); return m ? m[0] : null; };
    const found = () => (pos >= n ? "end of input" : JSON.stringify(wordAt() || text[pos]));

    function chain(kw, key, operand) {
      ws();
      const items = [operand()];
      for (;;) {
        ws();
        const w = wordAt();
        if (!w || w.toLowerCase() !== kw) break;
        pos += kw.length;
        items.push(operand());
      }
      return items.length === 1 ? items[0] : { [key]: items };
    }
    const orExpr = () => chain("or", "any", andExpr);
    const andExpr = () => chain("and", "all", unary);
    function close(start, what) {
      ws();
      if (text[pos] !== ")") fail("expected 'and', 'or' or ')' to close " + what + " at col " + start + ", found " + found());
      pos++;
    }
    function unary() {
      ws();
      const start = pos;
      if (pos >= n) fail("expected a condition, found end of input");
      const w = wordAt();
      const low = w ? w.toLowerCase() : null;
      if (low === "not") { pos += 3; return { not: unary() }; }
      if (text[pos] === "(") { pos++; const node = orExpr(); close(start, "'('"); return node; }
      if (low === "all" || low === "any") {
        let p = start + w.length;
        while (p < n && " \t\r\n".includes(text[p])) p++;
        if (text[p] === "(") { pos = p + 1; const c = orExpr(); close(start, "'" + w + "('"); return { [low]: [c] }; }
      }
      if (!w || KW.has(low)) fail("expected a condition (a field name, 'not', '(', 'all(' or 'any('), found " + found());
      return leaf(w);
    }
    function leaf(field) {
      pos += field.length;
      ws();
      let op = null;
      let sugar = null;
      for (const [s, name] of SUGAR) if (text.startsWith(s, pos)) { op = name; sugar = s; pos += s.length; break; }
      if (!op) {
        const w = wordAt();
        if (!w || KW.has(w.toLowerCase())) fail("expected an operator after field '" + field + "', found " + found());
        op = w;
        pos += w.length;
      }
      const node = { field, op };
      ws();
      if (valueAhead()) node.value = value();
      else if (sugar) fail("expected a value after '" + sugar + "', found " + found());
      for (;;) {
        ws();
        const w = wordAt();
        const low = w ? w.toLowerCase() : null;
        if (low === "case_sensitive" || low === "case_insensitive") {
          if ("case_sensitive" in node) fail("expected at most one case modifier per condition");
          pos += w.length;
          node.case_sensitive = low === "case_sensitive";
        } else if (low === "missing") {
          if ("missing" in node) fail("expected at most one 'missing' modifier per condition");
          pos += w.length;
          ws();
          const c = wordAt();
          const cl = c ? c.toLowerCase() : null;
          if (cl !== "match" && cl !== "no_match") fail("expected 'match' or 'no_match' after 'missing', found " + found());
          pos += c.length;
          node.missing = cl;
        } else break;
      }
      return node;
    }
    function valueAhead() {
      if (pos >= n) return false;
      if ('"[{-0123456789'.includes(text[pos])) return true;
      const w = wordAt();
      if (w === "true" || w === "false" || w === "null") return true;
      DUR.lastIndex = pos;
      return DUR.test(text);
    }
    function scan(p) {
      const c = text[p];
      if (c === '"') {
        for (let i = p + 1; i < n; i++) {
          if (text[i] === "\\") i++;
          else if (text[i] === '"') return i + 1;
        }
        fail("expected a closing '\"' for the string that starts at col " + p, n);
      }
      if (c === "[" || c === "{") {
        let depth = 0;
        for (let i = p; i < n;) {
          const ch = text[i];
          if (ch === '"') { i = scan(i); continue; }
          if (ch === "[" || ch === "{") depth++;
          else if (ch === "]" || ch === "}") { depth--; if (depth === 0) return i + 1; }
          i++;
        }
        fail("expected a closing bracket for the value that starts at col " + p, n);
      }
      NUM.lastIndex = p;
      const m = NUM.exec(text);
      if (m) return p + m[0].length;
      const w = wordAt(p);
      if (w === "true" || w === "false" || w === "null") return p + w.length;
      fail("expected a value, found " + found(), p);
      return p;
    }
    function value() {
      DUR.lastIndex = pos;
      const d = DUR.exec(text);
      if (d) { pos += d[0].length; return d[0]; }
      const end = scan(pos);
      let v;
      try { v = JSON.parse(text.slice(pos, end)); } catch (e) { fail("expected a valid JSON value"); }
      pos = end;
      return v;
    }
    const node = orExpr();
    ws();
    if (pos < n) fail("expected 'and', 'or' or end of input, found " + found());
    return node;
  }

  // ------------------------------------ for the views in their own files (people.js)
  window.SegmentConsole = Object.assign(window.SegmentConsole || {},
    { api, h, say, sitePath, state, loadMembers, errText, signOut });

  // --------------------------------------------------------------------- init
  function init() {
    if (document.documentElement.dataset.devLogin === "1") $("#dev-login").hidden = false;
    $("#signin-form").addEventListener("submit", (e) => { e.preventDefault(); signIn($("#token").value, false); });
    $("#dev-login-btn").addEventListener("click", devLogin);
    $("#signout").addEventListener("click", () => signOut(null));
    for (const t of TABS) $("#tab-" + t).addEventListener("click", () => selectTab(t, false));
    $(".tabs").addEventListener("keydown", onTabKey);
    $("#segments-refresh").addEventListener("click", loadSegments);
    $("#rules-refresh").addEventListener("click", loadRules);
    $("#rules-add").addEventListener("click", () => { resetEditor(); selectTab("editor", false); $("#rule-name").focus(); });
    $("#new-rule-btn").addEventListener("click", () => { resetEditor(); $("#rule-name").focus(); });
    $("#members-refresh").addEventListener("click", () => loadMembers(false));
    $("#members-segment").addEventListener("change", () => {
      sessionSet(MEMBERS_SEGMENT_KEY + ":" + state.site, $("#members-segment").value);
      $("#explain").hidden = true;
      loadMembers(true);
    });
    $("#explain-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const user = $("#explain-user").value.trim();
      const seg = $("#members-segment").value;
      if (!user) { say("Enter a user id to explain.", "bad"); $("#explain-user").focus(); return; }
      if (seg) explain(user, seg);
    });
    $("#members-page-size").addEventListener("change", () => loadMembers(true));
    $("#members-next").addEventListener("click", () => {
      const m = state.members;
      if (!m.next) return;
      m.cursors[m.page + 1] = m.next;
      m.page += 1;
      loadMembers(false);
    });
    $("#members-prev").addEventListener("click", () => {
      const m = state.members;
      if (m.page > 0) { m.page -= 1; loadMembers(false); }
    });
    $("#rule-form").addEventListener("submit", save);
    $("#preview-btn").addEventListener("click", preview);
    $("#rule-name").addEventListener("input", onNameInput);
    $("#rule-id").addEventListener("input", onIdInput);
    $("#rule-segment").addEventListener("change", () => { $("#preview").hidden = true; renderSegmentNote(); });
    $("#cond-textarea").addEventListener("input", () => { $("#preview").hidden = true; showTextError("", null); });
    for (const r of document.querySelectorAll("input[name=cond-mode]")) r.addEventListener("change", onModeChange);
    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) signIn(saved, true);
    else $("#token").focus();
  }

  // What other console files (manage.js) use: read-only helpers and the hooks they fill.
  // (added to, not replaced: people.js reads loadMembers and signOut set above)
  Object.assign(window.SegmentConsole, { h, api, say, sitePath, enc, state, hooks, submitCommand, confirmDialog,
    loadSegments, loadRules, takeFields, errText, segName, idProblem });
  // history.js: more helpers, and addTab to register a tab of index.html shown by selectTab
  Object.assign(window.SegmentConsole, {
    fmtTime, pyJson, $, selectTab,
    addTab(name, onShow) { TABS.push(name); tabHooks[name] = onShow; $("#tab-" + name).addEventListener("click", () => selectTab(name, false)); },
  });
  init();
})();
