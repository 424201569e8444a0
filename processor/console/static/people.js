/* Segment automation admin console: people, not ids (members tab).
 *
 * The search box (GET .../members?q=, docs/api.md "Members: names, search, CSV export") and the
 * "Export CSV" button (GET .../members.csv). Uses the helpers app.js exposes as
 * window.SegmentConsole; app.js asks this file for the search term (window.SegmentConsolePeople).
 * Server data is only ever inserted as text.
 */
"use strict";
(function () {
  const $ = (sel) => document.querySelector(sel);
  const C = () => window.SegmentConsole;
  const DEBOUNCE_MS = 300;
  let typing = null;

  function query() {
    return $("#members-search").value.trim();
  }

  // What the members summary adds while a search is on.
  function searchNote(q, shown, page) {
    return " Members that match “" + q + "”: " + (shown ? shown + " on this page" : "none")
      + (page.next ? " (more on the next page)." : ".");
  }

  // One search at a time: a search reads the whole segment on each worker (a scan, of which a
  // worker runs only SCAN_CONCURRENCY at once), so a term typed meanwhile waits for it to end.
  let running = null;
  let again = false;
  function run() {
    if (running) { again = true; return; }
    running = Promise.resolve(C().loadMembers(true)).finally(() => {
      running = null;
      if (again) { again = false; run(); }
    });
  }

  function search(now) {
    clearTimeout(typing);
    if (now) run();
    else typing = setTimeout(run, DEBOUNCE_MS);
  }

  // "attachment; filename="a.csv"; filename*=UTF-8''a%C3%A9.csv": the exact name if given.
  function fileName(disposition, fallback) {
    const star = /filename\*=UTF-8''([^;]+)/i.exec(disposition || "");
    if (star) { try { return decodeURIComponent(star[1]); } catch (e) { /* the plain one */ } }
    const plain = /filename="([^"]+)"/i.exec(disposition || "");
    return plain ? plain[1] : fallback;
  }

  // The file is fetched with the token (a plain link could not send it), then saved from memory:
  // the server streams it and never holds the list; the browser holds this one file.
  async function exportCsv() {
    const c = C();
    const seg = $("#members-segment").value;
    if (!seg || !c.state.token) return;
    const btn = $("#members-export");
    btn.disabled = true;
    c.say("Exporting the members of “" + seg + "”…", "info");
    try {
      let resp;
      try {
        resp = await fetch(c.sitePath("/segments/" + encodeURIComponent(seg) + "/members.csv"), {
          headers: { Authorization: "Bearer " + c.state.token, Accept: "text/csv" },
          cache: "no-store", credentials: "omit", redirect: "error",
        });
      } catch (e) {
        c.say("Export failed: the server could not be reached (" + e.message + ").", "bad");
        return;
      }
      if (!resp.ok) {
        let data = null;
        try { data = await resp.json(); } catch (e) { data = { code: "HTTP_" + resp.status, message: "export failed" }; }
        if (resp.status === 401) { c.signOut("Signed out: " + c.errText(data)); return; }
        c.say("Export failed: " + c.errText(data), "bad");
        return;
      }
      let blob;
      try {
        blob = await resp.blob();  // fails when the server cut the download short
      } catch (e) {
        c.say("Export failed: the download was cut short (a worker failed or partitions moved); export again.", "bad");
        return;
      }
      const name = fileName(resp.headers.get("Content-Disposition"), seg + "-members.csv");
      const url = URL.createObjectURL(blob);
      const a = c.h("a", { href: url, download: name, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
      c.say("Exported the members of “" + seg + "” to " + name + ".", "ok");
    } finally {
      btn.disabled = false;
    }
  }

  function init() {
    $("#members-search").addEventListener("input", () => search(false));
    $("#members-search-form").addEventListener("submit", (e) => { e.preventDefault(); search(true); });
    $("#members-search-clear").addEventListener("click", () => {
      $("#members-search").value = "";
      search(true);
      $("#members-search").focus();
    });
    $("#members-export").addEventListener("click", exportCsv);
  }

  window.SegmentConsolePeople = { query, searchNote };
  init();
})();
