/* reelforge console: the credits page's packs, checkout (a redirect to Stripe Checkout), purchases and receipts. */
(function () {
  "use strict";
  const RF = (window.RF = window.RF || {});
  const pages = (RF.pages = RF.pages || {});
  const $ = (sel, root) => (root || document).querySelector(sel);
  const STATUS = { partially_refunded: "partly refunded" };
  let purchases = [];

  function money(minor, currency) {
    try {
      const f = new Intl.NumberFormat("en-US", { style: "currency", currency: String(currency || "usd").toUpperCase() });
      return f.format(Number(minor || 0) / Math.pow(10, f.resolvedOptions().maximumFractionDigits));
    } catch (e) {
      return (Number(minor || 0) / 100).toFixed(2) + " " + String(currency || "").toUpperCase();
    }
  }

  function view(p) {
    return Object.assign({}, p, {
      _amount: money(p.amount, p.currency),
      _refunded: money(p.amount_refunded, p.currency),
      _status: STATUS[p.status] || p.status,
    });
  }

  async function loadPacks() {
    const body = await RF.get("/v1/billing/packs");
    const holder = $("#packs");
    if (!body.configured) {
      $("#billing-off").hidden = false;
      holder.hidden = true;
      holder.replaceChildren();
      return;
    }
    const data = body.data.map((p) => Object.assign({}, p, {
      _price: money(p.price, p.currency),
      _unit: money(Math.round((p.price / p.credits) * 100), p.currency) + " per 100 credits",
    }));
    RF.renderInto(holder, "tpl-pack", data);
  }

  async function loadPurchases() {
    purchases = (await RF.get("/v1/billing/purchases")).data.map(view);
    RF.renderInto("#purchases", "tpl-purchase-row", purchases, { empty: "tpl-purchase-empty" });
    return purchases;
  }

  function showNotice(text, tone) {
    const n = $("#checkout-notice");
    n.textContent = text;
    n.className = "notice " + tone;
    n.hidden = false;
  }

  // Back from Stripe Checkout: the credits come with Stripe's webhook, a moment after the browser returns.
  async function afterCheckout() {
    const q = new URLSearchParams(location.search);
    const state = q.get("checkout");
    const id = q.get("purchase");
    if (state === "cancelled") { showNotice("Checkout cancelled: nothing was charged.", "warn"); return; }
    if (state !== "success") return;
    showNotice("Payment received. Your credits arrive as soon as Stripe confirms it…", "ok");
    for (let i = 0; i < 30; i++) {
      const p = purchases.find((x) => x.id === id);
      if (p && p.status !== "pending" && p.status !== "processing") {
        showNotice(p.status === "paid" ? "Thank you! " + p.credits.toLocaleString("en-US") + " credits were added to your balance."
          : "This purchase is " + p._status + ".", p.status === "paid" ? "ok" : "warn");
        const ledger = $("#ledger");
        if (ledger && window.htmx) htmx.trigger(ledger, "refresh");
        if (RF.me) RF.me(true);
        return;
      }
      await new Promise((r) => setTimeout(r, 2000));
      await loadPurchases();
    }
  }

  function showReceipt(id) {
    const p = purchases.find((x) => x.id === id);
    if (!p) return;
    const box = $("#receipt");
    RF.renderInto(box, "tpl-receipt", p);
    box.hidden = false;
    box.scrollIntoView({ block: "nearest" });
  }

  document.addEventListener("click", async (e) => {
    const buy = e.target.closest("[data-buy-pack]");
    if (buy) {
      buy.disabled = true;
      try {
        const r = await RF.post("/v1/billing/checkout", { pack: buy.dataset.pack });
        // Only a web address: the answer is ours, but a redirect is never taken to another scheme.
        if (!/^https?:\/\//.test(r.checkout_url)) throw new Error("The checkout address is not a web address");
        location.assign(r.checkout_url);
      } catch (err) {
        RF.toast(err.message, "bad");
        buy.disabled = false;
      }
      return;
    }
    const open = e.target.closest("[data-show-receipt]");
    if (open) { showReceipt(open.dataset.id); return; }
    if (e.target.closest("[data-close-receipt]")) { $("#receipt").hidden = true; return; }
    if (e.target.closest("[data-print-receipt]")) window.print();
  });

  pages.credits = async function () {
    await Promise.all([
      loadPacks().catch((e) => RF.toast("Packs: " + e.message, "bad")),
      loadPurchases().catch((e) => RF.toast("Purchases: " + e.message, "bad")),
    ]);
    await afterCheckout();
  };
})();
