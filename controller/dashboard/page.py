"""The dashboard's HTML shell: inline CSS and a few lines of script, no resource from anywhere else.

The sections arrive already rendered (``render.py``); the script only opens the server-sent event stream
and swaps in each section whose HTML changed, so the page updates without a reload.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from drover.controller.dashboard.render import esc

_CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#f4f5f8}
header{background:#1d2a44;color:#fff;padding:10px 20px;display:flex;gap:24px;align-items:baseline}
header h1{font-size:18px;margin:0}header a{color:#cfe0ff}#live{margin-left:auto;font-size:12px;color:#9fe0a8}
main{padding:8px 20px 40px}h2{font-size:15px;margin:22px 0 8px}
nav a{margin-right:14px}
table{border-collapse:collapse;width:100%;background:#fff;box-shadow:0 1px 2px #0001}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #eceef3;vertical-align:top}
th{font-size:12px;text-transform:uppercase;color:#667;background:#fafbfc}
.muted{color:#889}.msg{white-space:pre-wrap;word-break:break-word}
.bar{position:relative;min-width:140px;height:18px;background:#e8ebf2;border-radius:3px;overflow:hidden}
.bar .fill{position:absolute;left:0;top:0;bottom:0;background:#7fb0ff}.bar.warn .fill{background:#f2a35e}
.bar span{position:relative;padding-left:6px;font-size:12px;line-height:18px}
.st{padding:1px 6px;border-radius:8px;font-size:12px;background:#e8ebf2}
.st-available,.st-ready,.st-running,.st-succeeded{background:#d5f2dc;color:#17612b}
.st-progressing,.st-starting,.st-pending,.st-draining{background:#dde8fd;color:#1e4aa0}
.st-degraded,.st-rolling-back,.st-rolled-back,.st-cordoned{background:#fdebd3;color:#8a4b00}
.st-failed,.st-lost,.st-crash-loop,.st-exited{background:#fbd9d9;color:#8d1c1c}
.rd{font-weight:600;font-variant-numeric:tabular-nums}
.chart{background:#fff;max-width:100%}
.error{background:#fbd9d9;color:#8d1c1c;padding:6px 10px}
"""

_SCRIPT = """
(function(){
  var live=document.getElementById('live');
  var es=new EventSource(document.body.getAttribute('data-stream'));
  es.onmessage=function(m){
    var d=JSON.parse(m.data);
    for(var id in d){var el=document.getElementById(id); if(el && el.innerHTML!==d[id]) el.innerHTML=d[id];}
    live.textContent='live \\u25cf '+new Date().toLocaleTimeString();
  };
  es.onerror=function(){live.textContent='reconnecting\\u2026';};
})();
"""


_ACTIONS = """
(function(){
  var creds='', note=document.getElementById('act-note');
  document.getElementById('act-creds').addEventListener('change',function(e){
    var f=e.target.files[0]; if(!f) return; var r=new FileReader();
    r.onload=function(){creds=r.result; note.textContent='credentials loaded ('+f.name+')';}; r.readAsText(f);
  });
  document.addEventListener('click',function(e){
    var b=e.target.closest('button.act'); if(!b) return;
    var verb=b.dataset.verb, body={}, what;
    if(b.dataset.name){body.name=b.dataset.name;} if(b.dataset.node){body.node=b.dataset.node;}
    if(verb==='scale'){
      var n=prompt('Scale '+body.name+' to how many replicas?', b.dataset.replicas); if(n===null) return;
      body.replicas=parseInt(n,10); what='scale '+body.name+' to '+body.replicas;
    } else { what=verb.replace('rollout_','rollout ')+' '+(body.name||body.node); }
    if(!creds){note.textContent='choose your client credentials file first'; return;}
    if(!confirm('Really '+what+'?')) return;
    fetch('/api/action',{method:'POST',headers:{'Content-Type':'application/json','X-Drover-Confirm':'yes'},
      body:JSON.stringify({verb:verb,body:body,credentials:creds})})
      .then(function(r){return r.json();})
      .then(function(d){note.textContent=(d.ok?'done: ':'failed: ')+what+(d.error?' \u2014 '+d.error:'');});
  });
})();
"""


def page(title: str, cluster: str, stream: str, sections: Mapping[str, str], layout: list[tuple[str, str]],
         *, home: str = "/", actions: bool = False) -> str:
    """A full page: ``layout`` is ``[(section id, heading)]`` in order; ``sections`` their HTML."""
    body = "".join(
        f'<h2 id="h-{esc(sid)}">{esc(heading)}</h2><section id="{esc(sid)}">{sections.get(sid, "")}</section>'
        for sid, heading in layout
    )
    nav = " ".join(f'<a href="#h-{esc(sid)}">{esc(heading)}</a>' for sid, heading in layout)
    return (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
        # Nothing but this origin, so the page works air-gapped and leaks nothing to third parties.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'self'; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'; img-src 'self' data:\">"
        '<link rel="icon" href="data:,">'
        f"<title>{esc(title)} · drover</title><style>{_CSS}</style></head>"
        f'<body data-stream="{esc(stream)}"><header><h1><a href="{esc(home)}">drover</a></h1>'
        f"<span>cluster <b>{esc(cluster)}</b></span><span>{esc(title)}</span>"
        '<span><a href="/">overview</a> · <a href="/nodes">nodes</a> · <a href="/events">events</a></span>'
        '<span id="live">loading…</span></header>'
        f"<main><nav>{nav}</nav>{_actions_bar() if actions else ''}{body}</main>"
        f"<script>{_SCRIPT}{_ACTIONS if actions else ''}</script></body></html>"
    )


def _actions_bar() -> str:
    return (
        '<p class="actions">Actions run with your own client credentials (never sent anywhere but this '
        'controller, kept in this tab only): <input type="file" id="act-creds"> <span id="act-note"></span></p>'
    )


def sse(sections: Mapping[str, str]) -> bytes:
    """One server-sent event carrying every section's HTML."""
    return f"data: {json.dumps(sections, separators=(',', ':'))}\n\n".encode()
