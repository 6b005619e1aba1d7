//! The operator's status page: one HTML document that fetches the deployment's overview
//! (`/api/v1/deployment`) every two seconds and shows it: problems first, then each site's
//! pools with their nodes up or down, what each holds and leads and its witness lease, groups without a leader
//! or quorum, replication per direction against the RPO target, the CMS's ownership and
//! epochs. A single node (no overview) shows its `/status`. Nothing is loaded from elsewhere.

/// The page served at `/`.
pub const STATUS_PAGE: &str = r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Roster</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
:root{--ok:#1a7f37;--bad:#cf222e;--warn:#9a6700;--muted:#57606a;--line:#d0d7de;--bg:#f6f8fa}
*{box-sizing:border-box}
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1f2328;background:#fff}
header{display:flex;flex-wrap:wrap;align-items:center;gap:.8em;padding:.7em 1.2em;background:#24292f;color:#fff}
header h1{font-size:18px;margin:0}
header a{color:#9ecbff}
header .meta{color:#c9d1d9;font-size:13px}
main{padding:1em 1.2em}
.badge{display:inline-block;padding:.1em .6em;border-radius:1em;font-weight:600;font-size:12px;color:#fff}
.badge.ok{background:var(--ok)}.badge.bad{background:var(--bad)}.badge.warn{background:var(--warn)}
#problems{border:1px solid var(--bad);background:#ffebe9;border-radius:6px;padding:.5em 1em;margin-bottom:1em}
#problems:empty{display:none}
#problems li{margin:.2em 0}
#stale{color:var(--bad);font-weight:600}
.sites{display:flex;flex-wrap:wrap;gap:1em}
.site{flex:1 1 560px;min-width:0}
.site h2{font-size:15px;margin:.2em 0 .5em;color:var(--muted);text-transform:uppercase;letter-spacing:.05em}
.pool{border:1px solid var(--line);border-radius:6px;margin-bottom:1em;overflow:hidden}
.pool h3{margin:0;padding:.5em .8em;background:var(--bg);border-bottom:1px solid var(--line);font-size:15px}
.facts{display:flex;flex-wrap:wrap;gap:.4em 1.4em;padding:.5em .8em;border-bottom:1px solid var(--line)}
.facts b{font-size:16px}
.facts span{color:var(--muted)}
.alert{padding:.3em .8em;color:var(--bad);font-weight:600}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.3em .6em;border-bottom:1px solid #eaeef2;white-space:nowrap}
th{font-size:12px;color:var(--muted);font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tr.down td{background:#fff5f5}
.scroll{overflow-x:auto}
section{margin:1em 0}
section h2{font-size:16px;margin:.3em 0}
details{padding:.3em .8em}
details table{font-size:12px}
pre{background:var(--bg);padding:1em;overflow:auto}
</style></head><body>
<header><h1>Roster <span id="deployment"></span></h1><span id="health" class="badge warn">loading</span>
<span class="meta" id="meta"></span><span id="stale"></span>
<span class="meta">raw JSON: <a href="/api/v1/deployment">deployment</a> · <a href="/status">this node</a> · <a href="/metrics">metrics</a> · <a href="/health">health</a></span></header>
<main>
<ul id="problems"></ul>
<div class="sites" id="sites"></div>
<section><h2>Replication (backup service)</h2><div id="replication">…</div></section>
<section><h2>CMS: ownership and epochs</h2><div id="cms">…</div></section>
<pre id="single" hidden></pre>
</main>
<script>
"use strict";
const $ = id => document.getElementById(id);
const esc = v => String(v ?? "").replace(/[&<>"']/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c]));
const num = v => v == null ? "–" : Number(v).toLocaleString("en");
const ms = v => v == null ? "–" : v < 1000 ? v + " ms" : (v / 1000).toFixed(1) + " s";
let last = 0;

function pill(ok, yes, no) { return `<span class="badge ${ok ? "ok" : "bad"}">${ok ? yes : no}</span>`; }

function nodeRow(n) {
  const leads = ["routing", "backup", "cms"].map(k => num((n.leads || {})[k] || 0)).join(" / ");
  return `<tr class="${n.up ? "up" : "down"}" data-node="${esc(n.id)}" data-up="${n.up}" title="${esc(n.error || "")}">
    <td>node ${esc(n.id)}</td><td>${pill(n.up, "UP", "DOWN")}</td><td>${esc(n.version || "")}</td>
    <td>${esc(n.sip || "")}</td><td class="num">${n.up ? num(n.replicas) : "–"}</td>
    <td class="num">${n.up ? leads : "–"}</td><td class="num">${n.up ? num(n.bindings) : "–"}</td>
    <td class="num">${n.up ? num(n.apply_lag_entries) : "–"}</td><td>${n.up ? witnessCell(n.witness) : "–"}</td></tr>`;
}

function witnessCell(w) {
  if (!w) return "none";
  const heard = w.heard_ms_ago == null ? "never heard" : "heard " + ms(w.heard_ms_ago) + " ago";
  return w.self_fenced ? `${pill(false, "", "FENCED")} ${esc(heard)}`
    : `${esc(w.witness)}: lease ${ms(w.lease_left_ms)}, ${esc(heard)}`;
}

function poolCard(p) {
  const alerts = [];
  if (p.groups_without_quorum.length) alerts.push(`no quorum: ${p.groups_without_quorum.map(esc).join(", ")}`);
  const leaderless = p.groups_without_leader.filter(g => !p.groups_without_quorum.includes(g));
  if (leaderless.length) alerts.push(`no leader: ${leaderless.map(esc).join(", ")}`);
  const up = p.nodes.filter(n => n.up).length;
  const groups = p.group_table.map(g => `<tr><td>${esc(g.key)}</td><td class="num">${esc(g.leader ?? "none")}</td>
    <td class="num">${num(g.term)}</td><td class="num">${num(g.committed)}</td>
    <td>${g.replicas.map(r => `${esc(r.node)}:${esc(r.state)}@${num(r.applied)}`).join(" ")}</td>
    <td class="num">${num(g.aors)}</td></tr>`).join("");
  return `<div class="pool" data-pool="${esc(p.name)}">
    <h3>pool ${esc(p.name)} <span style="color:var(--muted);font-weight:400">(id ${esc(p.id)}${p.partner ? ", partner " + esc(p.partner) : ""})</span>
      ${pill(up === p.nodes.length, up + "/" + p.nodes.length + " nodes up", up + "/" + p.nodes.length + " nodes up")}</h3>
    <div class="facts"><div><span>registrations</span> <b>${num(p.aors)}</b> <span>AORs,</span> <b>${num(p.bindings)}</b> <span>bindings</span></div>
      <div><span>users homed</span> <b>${num(p.users)}</b></div>
      <div><span>served by</span> <b>${esc(p.owner ?? "–")}</b> <span>epoch</span> <b>${esc(p.epoch ?? "–")}</b></div>
      <div><span>routing groups</span> <b>${num(p.groups)}</b></div></div>
    ${alerts.map(a => `<div class="alert">${a}</div>`).join("")}
    <div class="scroll"><table><thead><tr><th>node</th><th>state</th><th>version</th><th>SIP</th><th class="num">replicas</th>
      <th class="num" title="groups this node leads: routing groups / backup copies / CMS">leads r / b / c</th>
      <th class="num">bindings</th><th class="num" title="entries committed, not yet applied (worst replica)">apply lag</th>
      <th title="the witness this node sends heartbeats to: its lease left, when it last answered; FENCED: no lease, the node answers its users' writes 503">witness</th></tr></thead>
      <tbody>${p.nodes.map(nodeRow).join("")}</tbody></table></div>
    <details><summary>${p.group_table.length} groups on this pool's nodes</summary>
      <table><thead><tr><th>group</th><th class="num">leader</th><th class="num">term</th><th class="num">committed</th>
      <th>replicas (node:state@applied)</th><th class="num">AORs</th></tr></thead><tbody>${groups}</tbody></table></details></div>`;
}

function render(o) {
  $("deployment").textContent = o.deployment;
  const problems = o.problems || [];
  const health = $("health");
  health.className = "badge " + (o.healthy ? "ok" : "bad");
  health.textContent = o.healthy ? "HEALTHY" : problems.length + (problems.length === 1 ? " PROBLEM" : " PROBLEMS");
  $("meta").textContent = `seen by node ${o.seen_by} · ${new Date(o.generated_ms).toLocaleTimeString()}`;
  $("problems").innerHTML = problems.map(p => `<li>${esc(p)}</li>`).join("");
  const pools = Object.fromEntries(o.pools.map(p => [p.name, p]));
  $("sites").innerHTML = o.sites.map(s => `<div class="site"><h2>site ${esc(s.name)}</h2>
    ${s.pools.map(name => poolCard(pools[name])).join("")}</div>`).join("");
  $("replication").innerHTML = o.replication.length === 0 ? "no paired pools" :
    `<table><thead><tr><th>direction</th><th class="num">streams</th><th class="num">steady</th><th class="num">behind</th>
     <th class="num">stopped</th><th class="num">largest lag</th><th class="num">entries</th><th>RPO ${ms(o.rpo_target_ms)}</th></tr></thead><tbody>` +
    o.replication.map(d => `<tr data-direction="${esc(d.from)}-${esc(d.to)}"><td>${esc(d.from)} → ${esc(d.to)}</td>
      <td class="num">${num(d.streams)}</td><td class="num">${num(d.steady)}</td><td class="num">${num(d.behind)}</td>
      <td class="num">${num(d.stopped)}</td><td class="num">${ms(d.lag_ms_max)}</td><td class="num">${num(d.lag_entries_max)}</td>
      <td>${pill(d.within_rpo, "within", o.backup ? "at risk" : "unknown")}</td></tr>`).join("") + "</tbody></table>" +
    (o.backup && o.backup.unreachable.length ? `<p class="alert">not asked: ${o.backup.unreachable.map(esc).join("; ")}</p>` : "");
  $("cms").innerHTML = !o.cms ? "this node holds no copy of the CMS" :
    `<p>CMS on pool <b>${esc(o.cms.pool)}</b>: ${num(o.cms.users)} users; this node's copy at index ${num(o.cms.applied)}</p>
     <table><thead><tr><th>users of pool</th><th>served by</th><th class="num">epoch</th></tr></thead><tbody>` +
    o.cms.ownership.map(w => `<tr><td>${esc(w.pool)}</td><td>${esc(w.owner)}</td><td class="num">${esc(w.epoch)}</td></tr>`).join("") +
    "</tbody></table>";
}

async function fetchJson(path) {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), 8000);
  try { return await fetch(path, {signal: abort.signal, cache: "no-store"}); } finally { clearTimeout(timer); }
}

async function refresh() {
  try {
    const answer = await fetchJson("/api/v1/deployment");
    if (answer.status === 404) {
      const status = await (await fetchJson("/status")).json();
      $("single").hidden = false;
      $("single").textContent = JSON.stringify(status, null, 2);
      $("health").className = "badge ok"; $("health").textContent = "single node";
    } else {
      const overview = await answer.json();
      if (overview.error) throw new Error(overview.error);
      render(overview);
    }
    last = Date.now();
    $("stale").textContent = "";
  } catch (error) {
    $("stale").textContent = "this node did not answer: " + error + (last ? ` (showing ${new Date(last).toLocaleTimeString()})` : "");
  }
}
refresh(); setInterval(refresh, 2000);
</script></body></html>
"##;
