"""`lora-nb report`: execute notebooks/05_report.ipynb with papermill, then export HTML (code hidden) and PDF."""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import LoraNbError
from ..paths import repo_root

REPORT_NOTEBOOK = "05_report.ipynb"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PAGE_MARGIN_MM = 14  # the printed page's margin on every side (A4 portrait); tests read the PDF against it
OMIT_TAG = "omit-if-empty"  # a Markdown cell with this tag is left out when its section's code shows nothing
PRINT_CSS = """<style>
@page { size: A4 portrait; margin: %(m)smm; }
:root { --jp-content-font-size1: 14px; --jp-ui-font-size1: 13px; --jp-content-line-height: 1.45; }
@media print { :root { --jp-content-font-size1: 10.5px; --jp-ui-font-size1: 10px; } }
@media screen { body { max-width: 1000px; margin: 0 auto !important; padding: 1em 2em !important; } }
.jp-Notebook { padding: 0 !important; }
.jp-Cell { padding: 0 !important; }
.jp-OutputPrompt, .jp-InputPrompt, .anchor-link { display: none !important; }
.jp-OutputArea, .jp-OutputArea-child, .jp-OutputArea-output, .jp-Cell-outputWrapper, .jp-Cell-inputWrapper,
.jp-InputArea, .jp-RenderedMarkdown { display: block !important; overflow: visible !important;
  break-inside: auto !important; }
.jp-OutputArea-output, .jp-RenderedHTMLCommon, .jp-RenderedHTML { overflow: visible !important;
  padding-left: 0 !important; padding-right: 0 !important; width: auto !important; }
.jp-RenderedHTMLCommon p { margin: 0 0 0.5em !important; }
.jp-RenderedHTMLCommon ul { margin: 0.2em 0 0.6em !important; }
h1 { font-size: 1.75em !important; margin: 0 0 0.4em !important; }
h2 { font-size: 1.4em !important; margin: 1.1em 0 0.45em !important; border-bottom: 1px solid #ccc;
  padding-bottom: 0.1em; }
h3 { font-size: 1.15em !important; margin: 0.9em 0 0.35em !important; }
h1, h2, h3, h4, .jp-MarkdownCell, .jp-OutputArea-child:has(.jp-RenderedMarkdown) { break-after: avoid;
  page-break-after: avoid; }
h2[id^="Appendix"] { margin-top: 2em !important; border-bottom: 2px solid #888; }
.jp-RenderedHTMLCommon table { font-size: 0.88em !important; border-collapse: collapse; margin: 0.2em 0 0 !important;
  table-layout: auto !important; max-width: 100%%; }
.jp-RenderedHTMLCommon th, .jp-RenderedHTMLCommon td { padding: 2px 5px !important; vertical-align: top !important;
  line-height: 1.3 !important; }
.jp-RenderedHTMLCommon thead th { border-bottom: 1px solid #888; vertical-align: bottom !important; }
.jp-RenderedHTMLCommon caption { caption-side: top; text-align: left; font-weight: bold; color: #000;
  padding: 0 0 0.25em; }
.table-block { margin: 0.4em 0 0.9em; }
.keep, figure, img { break-inside: avoid; page-break-inside: avoid; }
thead { display: table-header-group; }
tr { break-inside: avoid; page-break-inside: avoid; }
figure { margin: 0.4em 0 0.9em !important; }
img { max-width: 100%%; height: auto; display: block; }
.caption, .footnote { font-size: 0.88em; color: #444; margin: 0.25em 0 0 !important; line-height: 1.35; }
</style>""" % {"m": PAGE_MARGIN_MM}


def report_notebook() -> Path:
    """notebooks/05_report.ipynb beside the lora_nb_utils folder (a source checkout)."""
    path = repo_root() / "notebooks" / REPORT_NOTEBOOK
    if not path.is_file():
        raise LoraNbError(f"Report notebook not found at {path}: `lora-nb report` needs a source checkout "
                          "(the notebooks folder beside lora_nb_utils).")
    return path


def _as_shown(path, repo: Path) -> str:
    """The path relative to the repository when inside it (the report prints it; no machine's absolute path)."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(repo))
    except ValueError:
        return str(path)


def execute_report(results_root, out_dir, analysis_dir=None, **parameters) -> Path:
    """Run the report notebook on `results_root` (Section 7 outputs from `analysis_dir`, default: the folder
    `analysis` beside results_root); writes and returns out_dir/report.ipynb."""
    import papermill
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = out / "report.ipynb"
    nb = report_notebook()
    repo = nb.parent.parent
    analysis_dir = analysis_dir or Path(results_root).resolve().parent / "analysis"
    params = {"results_root": _as_shown(results_root, repo), "analysis_dir": _as_shown(analysis_dir, repo),
              **parameters}
    from ..runs.runner import kernel_config  # encrypted kernel sockets: no plain-TCP warning on the terminal
    papermill.execute_notebook(str(nb), str(target), parameters=params, cwd=str(repo),
                               kernel_name="python3", progress_bar=False, config=kernel_config())
    return target


def omit_empty_sections(nb) -> None:
    """Drop the Markdown cells tagged OMIT_TAG whose section shows nothing: every code cell after them, up to the
    next Markdown cell, has no output (the notebook's code shows nothing for a section without data)."""
    keep = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown" and OMIT_TAG in cell.get("metadata", {}).get("tags", []):
            rest = []
            for nxt in nb.cells[i + 1:]:
                if nxt.cell_type == "markdown":
                    break
                rest.append(nxt)
            if not any(c.get("outputs") for c in rest if c.cell_type == "code"):
                continue
        keep.append(cell)
    nb.cells = keep


def report_title(nb) -> str:
    """The report's title: the first level-1 heading the notebook displays (the `title` parameter)."""
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            text = out.get("data", {}).get("text/markdown", "")
            hit = re.match(r"\s*#\s+(.+)", "".join(text) if isinstance(text, list) else text)
            if hit:
                return hit.group(1).strip()
        if cell.cell_type == "markdown":
            hit = re.match(r"\s*#\s+(.+)", cell.source)
            if hit:
                return hit.group(1).strip()
    return "Report"


def export_html(notebook, html_path) -> Path:
    """Code-free, self-contained HTML: inputs hidden, images embedded, no JavaScript loaded from the network, the
    sections without data left out, and <title> the report's title (which Chromium's print makes the PDF's)."""
    import html

    import nbformat
    from nbconvert import HTMLExporter
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True,
                            embed_images=True)
    nb = nbformat.read(str(notebook), as_version=4)
    for cell in nb.cells:  # warnings printed to stderr are not part of the report
        if cell.cell_type == "code":
            cell["outputs"] = [o for o in cell.get("outputs", []) if o.get("name") != "stderr"]
    omit_empty_sections(nb)
    title = report_title(nb)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    body = re.sub(r"<script[^>]*\bsrc=[\"']https?://[^>]*>\s*</script>", "", body)  # require.js, MathJax CDN
    body = re.sub(r"<title>.*?</title>", lambda _: f"<title>{html.escape(title)}</title>", body, count=1,
                  flags=re.S)
    body = body.replace("</head>", PRINT_CSS + "\n</head>", 1)
    Path(html_path).write_text(body, encoding="utf-8")
    return Path(html_path)


def find_chromium() -> str | None:
    return next((shutil.which(n) for n in CHROMIUM_NAMES if shutil.which(n)), None)


def html_to_pdf(html_path, pdf_path, timeout: float = 180) -> Path:
    """Print the HTML to PDF with headless Chromium."""
    exe = find_chromium()
    if exe is None:
        raise LoraNbError(f"Chromium is needed for the PDF (the HTML is written: {html_path}). Install it with "
                          "`apt-get install chromium`, or pass --no-pdf.")
    pdf_path = Path(pdf_path).resolve()
    pdf_path.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
               f"--user-data-dir={profile}", f"--print-to-pdf={pdf_path}", "--no-pdf-header-footer",
               Path(html_path).resolve().as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if not pdf_path.is_file() or pdf_path.stat().st_size == 0:
        raise LoraNbError(f"Chromium did not write {pdf_path} (exit {proc.returncode}): {proc.stderr[-500:]}")
    return pdf_path


def build_report(results_root, out_dir, pdf: bool = True, **parameters) -> dict:
    """Notebook, HTML and (unless pdf=False) PDF for the runs under `results_root`."""
    if not Path(results_root).is_dir():
        raise LoraNbError(f"Results root {str(results_root)!r} is not a folder. Fix: give a folder of run "
                          "directories, e.g. report/cpu_minilm/runs.")
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise LoraNbError(f"--out {str(out_dir)!r} is a file. Fix: give a folder for the report's files.")
    from ..runs.results import collect_results
    collect_results(results_root, strict=True)  # a truncated manifest / metrics.json fails here, naming the run
    out = Path(out_dir)
    notebook = execute_report(results_root, out, **parameters)
    files = {"notebook": notebook, "html": export_html(notebook, out / "report.html")}
    if pdf:
        files["pdf"] = html_to_pdf(files["html"], out / "report.pdf")
    return files
