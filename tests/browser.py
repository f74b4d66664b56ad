"""The HTML report in Debian's headless Chromium: its DOM after the inline scripts ran, a screenshot,
and a layout check measured by the browser itself (every text of a chart inside its SVG's
viewport, no two axis tick labels of a chart overlapping, no two legend entries overlapping, the segment
migration matrices inside their section)."""

from __future__ import annotations

import html as htmllib
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]

# injected into a copy of the report (the report itself ships only its drawn-marks check)
LAYOUT_SCRIPT = """
(function(){
  var problems = [], texts = 0;
  function name(t) { return '"' + t.textContent + '"'; }
  function overlap(a, b) {
    return a.left < b.right - 0.5 && b.left < a.right - 0.5 && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5;
  }
  function pairs(title, els, what) {
    var boxes = [];
    for (var i = 0; i < els.length; i++) boxes.push(els[i].getBoundingClientRect());
    for (var i = 0; i < els.length; i++) for (var j = i + 1; j < els.length; j++)
      if (boxes[i].width > 0 && boxes[j].width > 0 && overlap(boxes[i], boxes[j]))
        problems.push(title + ': ' + what + ' ' + name(els[i]) + ' overlaps ' + name(els[j]));
  }
  var svgs = document.querySelectorAll('svg.chart');
  for (var s = 0; s < svgs.length; s++) {
    var svg = svgs[s], box = svg.getBoundingClientRect(), title = svg.getAttribute('data-title');
    var all = svg.querySelectorAll('text');
    for (var i = 0; i < all.length; i++) {
      var r = all[i].getBoundingClientRect();
      if (r.width === 0) continue;
      texts++;
      if (r.left < box.left - 0.5 || r.right > box.right + 0.5 || r.top < box.top - 0.5 || r.bottom > box.bottom + 0.5)
        problems.push(title + ': ' + name(all[i]) + ' outside the chart [' + [r.left - box.left, r.right - box.left,
                      r.top - box.top, r.bottom - box.top].map(Math.round) + '] of ' + [Math.round(box.width),
                      Math.round(box.height)]);
    }
    pairs(title, svg.querySelectorAll('text.tick'), 'tick label');
    pairs(title, svg.querySelectorAll('text.legend, .legend-key'), 'legend entry');
  }
  var tables = document.querySelectorAll('table.matrix');  // the segment migration matrices
  for (var t = 0; t < tables.length; t++) {
    var tb = tables[t].getBoundingClientRect(), sec = tables[t].closest('section').getBoundingClientRect();
    texts += tables[t].querySelectorAll('td, th').length;
    if (tb.left < sec.left - 0.5 || tb.right > sec.right + 0.5)
      problems.push('matrix ' + tables[t].getAttribute('data-dimension') + ' wider than its section [' +
                    Math.round(tb.width) + ' > ' + Math.round(sec.width) + ']');
  }
  document.body.setAttribute('data-layout', JSON.stringify(problems));
  document.body.setAttribute('data-texts', String(texts));
})();
"""


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "Debian's chromium is needed (deploy/setup.sh installs it)"
    return path


def browse(html: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, html.as_uri()],
                              capture_output=True, timeout=180, check=True)


def layout_problems(report: Path, work: Path, width: int = 1300) -> tuple[list[str], int]:
    """What the layout check found in ``report`` rendered ``width`` pixels wide, and how many texts
    it measured (a check that measured nothing proves nothing)."""
    probe = work / f"layout-{width}.html"
    page = report.read_text(encoding="utf-8")
    probe.write_text(page.replace("</body>", f"<script>{LAYOUT_SCRIPT}</script></body>"), encoding="utf-8")
    dom = browse(probe, f"--window-size={width},1000", "--virtual-time-budget=5000", "--dump-dom").stdout.decode()
    found = re.search(r'data-layout="([^"]*)"', dom)
    texts = re.search(r'data-texts="(\d+)"', dom)
    assert found and texts, "the layout check did not run"
    return json.loads(htmllib.unescape(found.group(1))), int(texts.group(1))
