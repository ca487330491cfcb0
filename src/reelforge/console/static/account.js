/* reelforge console: account settings (e-mail, password, sessions) and the pages the mails' links open. */
(function () {
  "use strict";
  const RF = (window.RF = window.RF || {});
  const pages = (RF.pages = RF.pages || {});
  const $ = (sel, root) => (root || document).querySelector(sel);
  const enc = encodeURIComponent;

  function cell(text, cls) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text;
    return td;
  }

  function emptyRow(tbody, cols, text) {
    tbody.replaceChildren();
    const tr = document.createElement("tr");
    const td = cell(text, "empty");
    td.colSpan = cols;
    tr.append(td);
    tbody.append(tr);
  }

  /** The token of the link that opened this page (in the fragment, which no server sees), then forgotten. */
  function linkToken() {
    const token = new URLSearchParams(location.hash.slice(1)).get("token") || "";
    if (location.hash) history.replaceState(null, "", location.pathname);
    return token;
  }

  // ---- account settings ----------------------------------------------------------------------------------------
  async function loadMail() {
    const s = await RF.get("/v1/account/mail");
    $("#account-address").textContent = s.email;
    $("#email-verified").hidden = !s.verified;
    $("#email-unverified").hidden = s.verified;
    $("#verify-box").hidden = s.verified;
    const when = $("#verified-when");
    when.hidden = !s.verified_at;
    when.textContent = s.verified_at ? "Verified " + RF.fmt.date(s.verified_at) : "";
    $("#pref-job-finished").checked = s.job_finished;
    $("#pref-credits-low").checked = s.credits_low;
    $("#low-threshold").textContent = RF.fmt.num(s.credits_low_threshold) + " credits";
    $("#mail-provider").textContent = s.provider === "none" ? "This server sends no mail (no mail provider is configured)." : "";
  }

  async function loadSessions() {
    const tbody = $("#sessions");
    const { data } = await RF.get("/v1/auth/sessions");
    if (!data.length) { emptyRow(tbody, 4, "No session."); return; }
    tbody.replaceChildren();
    for (const s of data) {
      const tr = document.createElement("tr");
      tr.dataset.session = s.id;
      const started = cell(RF.fmt.ago(s.started_at), "nowrap");
      started.title = RF.fmt.date(s.started_at);
      if (s.current) {
        const b = document.createElement("span");
        b.className = "badge s-active";
        b.textContent = "this session";
        started.append(" ", b);
      }
      const expires = cell(s.expires_at ? new Date(s.expires_at).toLocaleDateString("en-GB", { day: "numeric", month: "short", year: "numeric" }) : "–", "nowrap");
      expires.title = RF.fmt.date(s.expires_at);
      const actions = cell("", "actions");
      if (!s.current) {
        const btn = document.createElement("button");
        btn.type = "button";
        btn.className = "btn btn-sm btn-danger";
        btn.textContent = "Sign out";
        btn.addEventListener("click", async () => {
          try {
            await RF.api("DELETE", "/v1/auth/sessions/" + enc(s.id));
            RF.toast("Session signed out");
            loadSessions();
          } catch (e) { RF.toast(e.message, "bad"); }
        });
        actions.append(btn);
      }
      tr.append(started, cell(RF.fmt.ago(s.last_active_at), "nowrap"), expires, actions);
      tbody.append(tr);
    }
  }

  async function loadMails() {
    const tbody = $("#mails");
    const { data } = await RF.get("/v1/account/mails?limit=10");
    if (!data.length) { emptyRow(tbody, 3, "No mail yet."); return; }
    tbody.replaceChildren();
    for (const m of data) {
      const tr = document.createElement("tr");
      const status = cell("");
      const b = document.createElement("span");
      b.className = "badge s-" + (m.status === "sent" ? "ok" : m.status === "failed" ? "failed" : m.status === "pending" ? "pending" : "cancelled");
      b.textContent = m.status === "skipped" ? "not sent" : m.status;
      status.append(b);
      tr.append(cell(m.subject), cell(RF.fmt.ago(m.sent_at || m.created_at), "nowrap"), status);
      tbody.append(tr);
    }
  }

  pages.account = async function () {
    const data = $("#account-data");
    if (data.querySelector("[data-account-actions]").children.length) data.hidden = false;
    await Promise.all([loadMail(), loadSessions(), loadMails()]);
    $("#resend-verification").addEventListener("click", async (e) => {
      e.currentTarget.disabled = true;
      try {
        await RF.post("/v1/auth/verify/resend");
        RF.toast("A new link is on its way");
        loadMails();
      } catch (err) {
        RF.toast(err.message, "bad");
      } finally { e.currentTarget.disabled = false; }
    });
    $("#mail-prefs").addEventListener("change", async (e) => {
      const body = {};
      body[e.target.name] = e.target.checked;
      try {
        await RF.api("PATCH", "/v1/account/mail", body);
        RF.toast("Saved");
      } catch (err) {
        e.target.checked = !e.target.checked;
        RF.toast(err.message, "bad");
      }
    });
    RF.onSubmit("#password-form", async (v, form) => {
      RF.auth.save(await RF.post("/v1/auth/session/password", { current_password: v.current_password, new_password: v.new_password }));
      form.reset();
      RF.toast("Password changed; your other sessions are signed out");
      loadSessions();
    });
    $("#sign-out-others").addEventListener("click", async () => {
      try {
        const r = await RF.post("/v1/auth/sessions/sign-out-others");
        RF.toast(r.ended === 1 ? "1 session signed out" : r.ended + " sessions signed out");
        loadSessions();
      } catch (e) { RF.toast(e.message, "bad"); }
    });
  };

  // ---- pages the mails' links open -------------------------------------------------------------------------------
  pages["account-verify"] = async function () {
    const status = $("#link-status");
    const token = linkToken();
    if (!token) { status.textContent = "This page needs the link from your mail."; return; }
    try {
      const r = await RF.api("POST", "/v1/auth/verify", { token }, { anonymous: true });
      status.textContent = r.email + " is confirmed. Thank you!";
      status.dataset.result = "verified";
    } catch (e) {
      status.textContent = e.message;
      status.dataset.result = e.code || "error";
    }
  };

  pages["account-reset"] = function () {
    const token = linkToken();
    RF.onSubmit("#reset-form", async (v, form) => {
      await RF.api("POST", "/v1/auth/password/reset", { token, new_password: v.new_password }, { anonymous: true });
      form.hidden = true;
      const status = $("#link-status");
      status.textContent = "Your password is changed. Sign in with it.";
      status.dataset.result = "reset";
    });
  };

  pages["account-forgot"] = function () {
    RF.onSubmit("#forgot-form", async (v, form) => {
      await RF.api("POST", "/v1/auth/password/forgot", { email: v.email }, { anonymous: true });
      form.hidden = true;
      const status = $("#link-status");
      status.textContent = "If " + v.email.trim() + " has an account, a link to choose a new password is on its way.";
      status.dataset.result = "sent";
    });
  };
})();
