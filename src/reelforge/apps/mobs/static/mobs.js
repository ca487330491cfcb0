/* Video understanding ("mobs") console pages: feed with infinite scroll, video page, mobs, upload, admin.
 * Every value comes from /v1; user text is only ever set through textContent. */
(function () {
  "use strict";
  const RF = window.RF;
  const page = document.body.dataset.page || "";
  const $ = (sel) => document.querySelector(sel);
  const el = (tag, attrs, text) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) e.setAttribute(k, v);
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  };
  const pct = (x) => (x === null || x === undefined ? "–" : (100 * x).toFixed(0) + "%");

  function card(v, score) {
    const a = el("a", { href: "/mobs/videos/" + encodeURIComponent(v.id), class: "video-card" });
    if (v.thumbnail_url) a.append(el("img", { src: v.thumbnail_url, alt: "", loading: "lazy", width: "160" }));
    a.append(el("span", { class: "small" }, v.caption || v.filename || v.id.slice(0, 8)));
    a.append(el("span", { class: "badge" }, score !== undefined ? "sim " + score.toFixed(2) : pct(v.score)));
    return a;
  }

  async function feedPage() {
    const grid = $("#feed-grid"), chips = $("#mob-chips"), end = $("#feed-end");
    let cursor = null, mob = null, loading = false, done = false;
    const order = $("#feed-order");
    async function more() {
      if (loading || done) return;
      loading = true;
      const q = new URLSearchParams({ order: order.value });
      if (mob) q.set("mobId", mob);
      if (cursor) q.set("cursor", cursor);
      const gen = generation;
      try {
        const r = await RF.get("/v1/feed?" + q.toString());
        if (gen !== generation) return;  // a chip or the order changed meanwhile
        r.data.forEach((v) => grid.append(card(v)));
        cursor = r.next_cursor; done = !cursor; end.hidden = !done;
      } finally { if (gen === generation) loading = false; }
      // Keep filling while the end of the grid is still on screen (the observer only reports changes).
      if (!done && sentinel.getBoundingClientRect().top < window.innerHeight) more();
    }
    let generation = 0;
    const sentinel = $("#feed-sentinel");
    function reset() {
      generation += 1; grid.replaceChildren(); cursor = null; done = false; loading = false; end.hidden = true; more();
    }
    order.addEventListener("change", reset);
    const mobs = await RF.get("/v1/mobs");
    const pick = (btn, id) => {
      chips.querySelectorAll(".chip").forEach((c) => c.classList.toggle("active", c === btn));
      mob = id; reset();
    };
    const all = el("button", { type: "button", class: "chip active" }, "All");
    all.addEventListener("click", () => pick(all, null));
    chips.append(all);
    const wanted = new URLSearchParams(location.search).get("mob");
    mobs.data.forEach((m) => {
      const b = el("button", { type: "button", class: "chip" }, m.name + " (" + m.count + ")");
      b.addEventListener("click", () => pick(b, m.id));
      chips.append(b);
      if (wanted === m.id) { b.classList.add("active"); all.classList.remove("active"); mob = m.id; }
    });
    new IntersectionObserver((es) => { if (es.some((e) => e.isIntersecting)) more(); }).observe(sentinel);
    more();
  }

  async function videoPage() {
    const id = $("#video-page").dataset.videoId;
    const v = await RF.get("/v1/videos/" + encodeURIComponent(id));
    $("#video-title").textContent = v.caption || v.filename || "Video";
    $("#video-status").textContent = v.status;
    if (v.video_url || v.playback_url) $("#player").src = v.video_url || v.playback_url;
    if (v.thumbnail_url) $("#player").poster = v.thumbnail_url;
    $("#video-score").textContent = pct(v.score);
    if (v.scores) {
      $("#video-threshold").textContent = "threshold " + pct(v.scores.threshold);
      (v.scores.reasons || []).forEach((r) => $("#video-reasons").append(el("li", {}, r)));
    }
    if (v.analysis) {
      (v.analysis.ocr_text || []).forEach((t) => $("#video-ocr").append(el("li", {}, t)));
      $("#video-transcript").textContent = v.analysis.transcript || "(no speech)";
    }
    if (v.mob) { $("#video-mob").textContent = v.mob.name; $("#video-mob").href = "/mobs?focus=" + v.mob.id; }
    if (v.status === "validated") {
      const s = await RF.get("/v1/search/similar?videoId=" + encodeURIComponent(id) + "&k=8");
      s.data.forEach((h) => $("#similar-grid").append(card(h.video, h.score)));
    }
  }

  async function mobsPage() {
    const r = await RF.get("/v1/mobs");
    r.data.forEach((m) => {
      const box = el("article", { class: "card mob-card" });
      box.append(el("h3", {}, m.name));
      box.append(el("p", { class: "muted small" }, m.count + " videos · " + (m.top_terms || []).join(", ")));
      const row = el("div", { class: "row" });
      (m.thumbnail_urls || []).forEach((u) => row.append(el("img", { src: u, alt: "", width: "96", loading: "lazy" })));
      box.append(row);
      const link = el("a", { href: "/mobs/feed?mob=" + m.id, class: "btn btn-sm btn-ghost" }, "Videos");
      box.append(link);
      $("#mob-grid").append(box);
    });
  }

  function uploadPage() {
    const form = $("#video-upload-form"), bar = $("#video-progress"), state = $("#video-upload-state");
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const file = $("#video-file").files[0];
      if (!file) { state.textContent = "Choose a video first."; return; }
      try {
        let sub = null;
        // The video's own routes create and complete the upload; the bytes go as every console upload's do.
        await RF.upload(file, {
          create: async (signal) => {
            sub = await RF.post("/v1/videos/submit", {
              filename: file.name, content_type: file.type || "video/mp4", size: file.size,
              caption: $("#video-caption").value, visibility: $("#video-visibility").value,
            }, { signal });
            const u = sub.upload;
            // A single signed PUT today; part URLs, should the route hand them out, go up the same way.
            return { id: u.id, put: u.parts ? null : { url: u.url, method: u.method, headers: u.headers },
                     parts: u.parts || null, part_size: u.part_size || null };
          },
          complete: (upload, parts, signal) => RF.post(sub.upload.complete_url, parts ? { parts } : {}, { signal }),
          onCreated: () => { bar.hidden = false; state.textContent = "Uploading…"; },
          onProgress: (sent, total) => {
            const p = (100 * sent) / (total || 1);
            bar.value = p;
            state.textContent = "Uploading… " + Math.floor(p) + "%";
          },
        });
        state.textContent = "Uploaded; the analysis has started.";
        window.location.href = "/mobs/videos/" + sub.video.id;
      } catch (err) { state.textContent = String(err.message || err); }
    });
  }

  async function adminVideos() {
    let cursor = null;
    const body = $("#admin-videos"), moreBtn = $("#admin-videos-more");
    async function more() {
      const r = await RF.get("/v1/admin/videos?limit=50" + (cursor ? "&cursor=" + encodeURIComponent(cursor) : ""));
      r.data.forEach((v) => {
        const tr = el("tr");
        const a = el("a", { href: "/mobs/videos/" + v.id }, v.caption || v.id.slice(0, 8));
        const td = el("td"); td.append(a); tr.append(td);
        [v.owner_id.slice(0, 8), v.status, pct(v.score), v.mob_id ? v.mob_id.slice(0, 8) : "–", v.created_at]
          .forEach((t) => tr.append(el("td", {}, t)));
        const del = el("button", { type: "button", class: "btn btn-sm btn-danger" }, "Delete");
        del.addEventListener("click", async () => {
          if (!window.confirm("Delete this video, its files, vector and mob membership?")) return;
          await RF.api("DELETE", "/v1/admin/videos/" + v.id); tr.remove();
        });
        const tdd = el("td"); tdd.append(del); tr.append(tdd);
        body.append(tr);
      });
      cursor = r.next_cursor; moreBtn.hidden = !cursor;
    }
    moreBtn.addEventListener("click", more);
    more();
  }

  async function adminStats() {
    const s = await RF.get("/v1/admin/videos/stats");
    const dl = $("#video-stats");
    const add = (k, v) => { dl.append(el("dt", {}, k)); dl.append(el("dd", {}, v)); };
    Object.entries(s.videos).forEach(([k, v]) => add(k, v));
    add("validation rate", pct(s.validation_rate));
    add("active mobs", s.mobs.active);
    add("analysis p50 (s)", s.analysis_seconds.p50.toFixed(1));
    (s.recluster_runs || []).forEach((r) => {
      const tr = el("tr");
      [r.started_at, r.status, r.videos, r.k, r.score === null ? "–" : r.score.toFixed(3)]
        .forEach((t) => tr.append(el("td", {}, t)));
      $("#recluster-rows").append(tr);
    });
    $("#recluster-now").addEventListener("click", async () => { await RF.post("/v1/admin/mobs/recluster", {}); location.reload(); });
    const u = await RF.get("/v1/admin/usage-stats?days=14");
    const byDay = {}, keys = [];
    u.data.forEach((r) => {
      const tr = el("tr");
      [r.date, r.task, r.model, r.invocations, r.errors, r.units.toFixed(0) + " " + (r.unit || "")]
        .forEach((t) => tr.append(el("td", {}, t)));
      $("#usage-rows").append(tr);
      const key = r.task + "/" + r.model;
      if (!keys.includes(key)) keys.push(key);
      // "11\u201128" (a non-breaking hyphen): the chart draws it as written; anything Date() parses would be
      // drawn as a time of day.
      const row = (byDay[r.date] = byDay[r.date] || { day: r.date.slice(5).replace("-", "\u2011") });
      row[key] = (row[key] || 0) + r.invocations;
    });
    const rows = Object.keys(byDay).sort().map((d) => byDay[d]);
    RF.barChart($("#usage-chart"), rows, "day",
      keys.map((k, i) => ({ key: k, label: k, color: "var(--c" + ((i % 6) + 1) + ")" })),
      { legend: true, empty: "No model runs in the last 14 days" });
  }

  const pages = { "mobs-feed": feedPage, "mobs-video": videoPage, "mobs-list": mobsPage, "mobs-upload": uploadPage,
                  "mobs-admin-videos": adminVideos, "mobs-admin-stats": adminStats };
  if (pages[page] && RF) {
    const run = () => Promise.resolve(pages[page]()).catch((e) => { console.error(e); if (RF.toast) RF.toast(String(e.message || e), "bad"); });
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", run); else run();
  }
})();
