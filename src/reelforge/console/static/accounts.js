/* reelforge console: the admin audit log and the account's own data (export, activity, deletion). */
(function () {
  "use strict";
  const RF = (window.RF = window.RF || {});
  const pages = (RF.pages = RF.pages || {});
  const $ = (sel, root) => (root || document).querySelector(sel);
  const enc = encodeURIComponent;

  function details(e) {
    const d = e.details || {};
    return Object.keys(d).map((k) => k + "=" + (typeof d[k] === "object" ? JSON.stringify(d[k]) : d[k])).join(" ");
  }

  function isoOf(local) {
    // <input type=datetime-local> gives local time without a zone: send it as UTC.
    return local ? new Date(local).toISOString() : "";
  }

  pages["admin-audit"] = async function () {
    const body = $("#audit");
    const more = $("#audit-more");
    let query = "";
    let cursor = null;
    const load = async (append) => {
      const url = "/v1/admin/audit?limit=50" + query + (append && cursor ? "&cursor=" + enc(cursor) : "");
      const page = await RF.get(url);
      const rows = (page.data || []).map((e) => Object.assign({}, e, { _details: details(e) }));
      if (!append) RF.renderInto(body, "tpl-audit-row", rows, { empty: "tpl-audit-empty" });
      else rows.forEach((r) => body.append(RF.render("tpl-audit-row", r)));
      cursor = page.next_cursor;
      more.hidden = !cursor;
    };
    RF.onSubmit("#audit-filters", async (v) => {
      const params = [];
      for (const k of ["action", "actor", "target"]) if (v[k]) params.push(k + "=" + enc(v[k]));
      for (const k of ["since", "until"]) if (v[k]) params.push(k + "=" + enc(isoOf(v[k])));
      query = params.length ? "&" + params.join("&") : "";
      await load(false);
    });
    more.addEventListener("click", () => load(true).catch((e) => RF.toast(e.message, "bad")));
    await load(false);
  };

  pages["account-data"] = async function () {
    const exportBtn = $("#export-btn");
    exportBtn.addEventListener("click", async () => {
      exportBtn.disabled = true;
      try {
        const r = await RF.fetch("GET", "/v1/account/export");
        if (!r.ok) throw new RF.ApiError(r.status, await r.json().catch(() => ({})));
        const blob = await r.blob();
        const a = document.createElement("a");
        a.href = URL.createObjectURL(blob);
        a.download = "reelforge-export.zip";
        document.body.append(a);
        a.click();
        a.remove();
        setTimeout(() => URL.revokeObjectURL(a.href), 10000);
        RF.toast("Export downloaded");
      } catch (e) {
        RF.toast("Export failed: " + e.message, "bad");
      } finally {
        exportBtn.disabled = false;
      }
    });
    const confirmBox = $("#delete-confirm");
    confirmBox.addEventListener("change", () => { $("#delete-btn").disabled = !confirmBox.checked; });
    RF.onSubmit("#delete-form", async (v) => {
      const token = RF.auth.load() && RF.auth.load().access;
      const body = v.password ? { password: v.password } : { token: token };
      await RF.api("DELETE", "/v1/account", body);
      RF.auth.clear();
      location.assign("/signin?deleted=1");
    });
    const page = await RF.get("/v1/account/audit?limit=50");
    RF.renderInto("#my-audit", "tpl-my-audit-row", page.data || [], { empty: "tpl-my-audit-empty" });
  };
})();
