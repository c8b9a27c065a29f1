"use strict";
// Admin page: the admin token is the URL fragment (#token), sent only as an Authorization header.
(function () {
  const token = decodeURIComponent(location.hash.slice(1));
  const $ = (id) => document.getElementById(id);
  const get = (path) => fetch(path, { headers: { Authorization: "Bearer " + token }, cache: "no-store" })
    .then((r) => { if (!r.ok) throw new Error(r.status === 403 ? "admin token required" : r.statusText); return r; });
  const fmt = (x) => (x == null ? "-" : Number(x).toFixed(2));

  function row(tbody, cells) {
    const tr = document.createElement("tr");
    cells.forEach((c) => { const td = document.createElement("td"); td.textContent = c; tr.appendChild(td); });
    tbody.appendChild(tr);
  }

  async function load() {
    const s = await (await get("/api/admin/results")).json();
    const rb = document.querySelector("#raters tbody"), mb = document.querySelector("#mos tbody");
    rb.textContent = ""; mb.textContent = "";
    s.raters.forEach((r) => row(rb, [r.id, r.name, `${r.done} / ${s.n_clips}`, r.revoked ? "yes" : ""]));
    if (s.report) {
      s.report.conditions.forEach((c) => Object.keys(s.report.mos).forEach((scale) => {
        const m = s.report.mos[scale][c];
        row(mb, [c, scale, fmt(m.mean), `${fmt(m.ci_low)} .. ${fmt(m.ci_high)}`, m.n]);
      }));
      $("alpha").textContent = "Krippendorff's alpha (interval): " + Object.entries(s.report.alpha)
        .map(([k, v]) => `${k} ${fmt(v)}`).join(", ");
    }
    $("status").textContent = "";
  }

  $("csv").addEventListener("click", async () => {
    const blob = await (await get("/api/admin/export.csv")).blob();
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob); a.download = "ratings.csv"; a.click();
  });
  $("refresh").addEventListener("click", () => load().catch((e) => { $("status").textContent = e.message; }));
  load().catch((e) => { $("status").textContent = e.message; });
})();
