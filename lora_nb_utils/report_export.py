"""`lora-nb report`: execute notebooks/05_report.ipynb with papermill, then export HTML (code hidden) and PDF."""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from .errors import LoraNbError

REPORT_NOTEBOOK = "05_report.ipynb"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PRINT_CSS = """<style>
@page { size: A4 landscape; margin: 12mm; }
body { font-size: 12px; }
table { font-size: 10px; border-collapse: collapse; }
img { max-width: 100%; height: auto; }
.jp-OutputArea-output { overflow: visible !important; }
.jp-Notebook { padding: 0 !important; }
.jp-OutputPrompt, .jp-InputPrompt { display: none !important; }
.jp-CodeCell, .jp-MarkdownCell { break-inside: avoid; page-break-inside: avoid; }
.jp-MarkdownCell { break-after: avoid; page-break-after: avoid; }
</style>"""


def report_notebook() -> Path:
    """notebooks/05_report.ipynb beside the lora_nb_utils folder (a source checkout)."""
    path = Path(__file__).resolve().parent.parent / "notebooks" / REPORT_NOTEBOOK
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
    papermill.execute_notebook(str(nb), str(target), parameters=params, cwd=str(repo),
                               kernel_name="python3", progress_bar=False)
    return target


def export_html(notebook, html_path) -> Path:
    """Code-free, self-contained HTML: inputs hidden, images embedded, no JavaScript loaded from the network."""
    import nbformat
    from nbconvert import HTMLExporter
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True,
                            embed_images=True)
    nb = nbformat.read(str(notebook), as_version=4)
    for cell in nb.cells:  # warnings printed to stderr are not part of the report
        cell["outputs"] = [o for o in cell.get("outputs", []) if o.get("name") != "stderr"]
    body, _ = exporter.from_notebook_node(nb)
    body = re.sub(r"<script[^>]*\bsrc=[\"']https?://[^>]*>\s*</script>", "", body)  # require.js, MathJax CDN
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
    if not Path(results_root).exists():
        raise LoraNbError(f"Results root {str(results_root)!r} does not exist.")
    out = Path(out_dir)
    notebook = execute_report(results_root, out, **parameters)
    files = {"notebook": notebook, "html": export_html(notebook, out / "report.html")}
    if pdf:
        files["pdf"] = html_to_pdf(files["html"], out / "report.pdf")
    return files
