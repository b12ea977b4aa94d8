"""HTML building blocks of the reports: one inline style sheet, images as data URIs."""

from __future__ import annotations

import base64
import html

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;
color:#1d2330;padding:0 1rem}
h1{margin-bottom:.2rem}.sub{color:#667;margin-top:0}
h2{border-bottom:2px solid #e3e6ee;padding-bottom:.3rem;margin-top:2.2rem}
.cards{display:flex;flex-wrap:wrap;gap:.8rem;margin:1rem 0}
.card{background:#f4f6fb;border-radius:8px;padding:.6rem 1rem;min-width:9rem}
.card b{display:block;font-size:.8rem;color:#556;font-weight:600}.card span{font-size:1.5rem}
img{max-width:100%;display:block;margin:.8rem 0}
table{border-collapse:collapse;margin:.8rem 0;font-size:.9rem}
td,th{border:1px solid #dde1ea;padding:.25rem .6rem;text-align:right}
th{background:#f4f6fb}td:first-child,th:first-child{text-align:left}
pre{background:#f4f6fb;padding:1rem;border-radius:8px;overflow:auto;font-size:.8rem}
.legend{margin:.6rem 0}.sw{display:inline-block;width:.9rem;height:.9rem;margin:0 .3rem 0 .8rem;
vertical-align:middle;border:1px solid #333}
"""

#: Records on <html data-images="loaded/total"> whether every image decoded (used by tests).
IMAGE_CHECK = """
window.addEventListener('load',function(){var i=document.images,n=0;
for(var k=0;k<i.length;k++){if(i[k].complete&&i[k].naturalWidth>0){n++}}
document.documentElement.setAttribute('data-images',n+'/'+i.length)});
"""


def esc(text: str) -> str:
    return html.escape(str(text))


def img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def section(title: str, body: str) -> str:
    return f"<section><h2>{esc(title)}</h2>{body}</section>"


def _num(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def metrics_table(metrics: dict) -> str:
    """Per-class IoU, precision, recall, F1 and support, then the macro means and OA."""
    rows = ["<tr><th>class</th><th>IoU</th><th>precision</th><th>recall</th><th>F1</th><th>pixels</th></tr>"]
    for name, m in metrics["per_class"].items():
        rows.append(f"<tr><td>{esc(name)}</td><td>{_num(m['iou'])}</td><td>{_num(m['precision'])}</td>"
                    f"<td>{_num(m['recall'])}</td><td>{_num(m['f1'])}</td><td>{m['support']:,}</td></tr>")
    rows.append(f"<tr><th>mean</th><th>{_num(metrics['miou'])}</th><th>{_num(metrics['mprecision'])}</th>"
                f"<th>{_num(metrics['mrecall'])}</th><th>{_num(metrics['mf1'])}</th>"
                f"<th>OA {_num(metrics['oa'])}</th></tr>")
    ignored = metrics.get("ignored_classes") or []
    note = f"<p>Ignored classes (not scored): {esc(', '.join(ignored))}.</p>" if ignored else ""
    return "<table>" + "".join(rows) + "</table>" + note


def page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>"
            f"<style>{STYLE}</style><script>{IMAGE_CHECK}</script></head><body>{body}</body></html>")
