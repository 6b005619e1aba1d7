//! The status page: one HTML document that fetches `/status` every two seconds and shows it.

/// The page served at `/`.
pub const STATUS_PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Roster node</title>
<style>body{font:14px system-ui,sans-serif;margin:2em}pre{background:#f4f4f4;padding:1em}</style>
</head><body><h1>Roster node</h1><p><a href="/metrics">metrics</a> · <a href="/health">health</a> · <a href="/status">status (JSON)</a></p>
<pre id="status">loading…</pre>
<script>
async function refresh(){try{const r=await fetch('/status');document.getElementById('status').textContent=JSON.stringify(await r.json(),null,2)}catch(e){document.getElementById('status').textContent='unreachable: '+e}}
refresh();setInterval(refresh,2000);
</script></body></html>
"#;
