"""How the report's tables and figures appear in the notebook and in its HTML and PDF: `show` renders a table (with
its title and footnote, verdict words coloured), a list as bullets or a paragraph; `show_figure` a figure with its
caption; blocks carry the classes the printed report's CSS uses (short tables and figures are not split across pages).

IPython, matplotlib and PIL are optional (not package dependencies): imported where used, in the notebook kernel."""
from __future__ import annotations

import base64
import html
import io

import pandas as pd

from .format import NothingToShow

KEEP_ROWS = 30  # tables up to this many rows are kept on one page
VERDICT_COLORS = {"reproduced": "#d9f2d9", "match": "#d9f2d9", "partly": "#fff0c2", "inconclusive": "#e8e8e8",
                  "not reproduced": "#f8d7d3", "below": "#f8d7d3", "above": "#dbe8fb"}


def _verdict_color(text) -> str:
    text = str(text)
    for word in ("not reproduced", "reproduced", "partly", "inconclusive", "match", "below", "above"):
        if word in text:
            return f"background-color: {VERDICT_COLORS[word]}"
    return ""


def show(obj, verdicts=None, footnote: str | None = None, title: str = "") -> None:
    """Display a table for people (its title above and footnote below, kept with it on the printed page), a list as
    bullets or a string as a paragraph. None, NothingToShow, an empty list or an empty table display nothing (a
    section without data is left out of the report). `verdicts`: the columns whose cells are coloured by their
    verdict word (default: a column named 'Verdict', or the table's attrs['verdicts'])."""
    if obj is None or isinstance(obj, NothingToShow) or len(obj) == 0:
        return
    from IPython.display import HTML, Markdown, display
    if isinstance(obj, str):
        display(Markdown(obj))
        return
    if isinstance(obj, (list, tuple)):
        display(Markdown("\n".join(f"- {line}" for line in obj)))
        return
    display(HTML(table_html(obj, verdicts, footnote, title)))


def table_html(obj: pd.DataFrame, verdicts=None, footnote: str | None = None, title: str = "") -> str:
    """The HTML of one table: caption, table and footnote in one block (class 'keep' for a short table, which the
    printed report does not split across pages)."""
    table = obj.copy()
    for c in table.columns:  # counts that pandas made float by a missing value
        if pd.api.types.is_float_dtype(table[c]) and table[c].dropna().apply(float.is_integer).all():
            table[c] = table[c].round().astype("Int64")
    styler = table.style.format(precision=1, na_rep="—", thousands=",")
    text = [c for c in table.columns if not pd.api.types.is_numeric_dtype(table[c])]
    short = [c for c in table.columns if table[c].astype(str).str.len().max() <= 24]  # kept on one line
    if short:
        styler = styler.set_properties(subset=short, **{"white-space": "nowrap"})
    if text:
        styler = styler.set_properties(subset=text, **{"text-align": "left"})
        styler = styler.set_table_styles([{"selector": f"th.col{table.columns.get_loc(c)}",
                                           "props": [("text-align", "left")]} for c in text], overwrite=False)
    verdicts = verdicts if verdicts is not None else obj.attrs.get("verdicts", ["Verdict"])
    verdicts = [c for c in verdicts if c in table.columns]
    if verdicts:
        styler = styler.map(_verdict_color, subset=verdicts)
    if isinstance(table.index, pd.RangeIndex):
        styler = styler.hide(axis="index")
    if title:
        styler = styler.set_caption(html.escape(title))
    note = footnote or obj.attrs.get("footnote")
    foot = f'<p class="footnote">{html.escape(note)}</p>' if note else ""
    kind = "keep" if len(table) <= KEEP_ROWS else "long"
    return f'<div class="table-block {kind}">{styler.to_html()}{foot}</div>'


def figure_html(fig, caption: str = "", dpi: int = 192) -> str:
    """A figure as one HTML block: the PNG (drawn at twice the screen's 96 dpi, shown at its size in inches) and its
    caption below, kept together on the printed page."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", pad_inches=0.03)
    from PIL import Image
    width = Image.open(io.BytesIO(buf.getvalue())).size[0] * 96 // dpi
    img = (f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}" '
           f'style="width: {width}px; max-width: 100%"/>')
    cap = f'<figcaption class="caption">{html.escape(caption)}</figcaption>' if caption else ""
    return f'<figure class="keep">{img}{cap}</figure>'


def show_figure(fig, caption: str = "") -> None:
    """Display a figure in the notebook with its caption below, and close it (None: nothing is displayed)."""
    if fig is None:
        return
    import matplotlib.pyplot as plt
    from IPython.display import HTML, display
    display(HTML(figure_html(fig, caption)))
    plt.close(fig)


def show_images(items) -> None:
    """PNG files side by side (two to a row) with their captions: [(caption, path)]."""
    from IPython.display import HTML, display
    cells = [f'<figure style="flex: 1 1 48%; margin: 0"><img src="data:image/png;base64,'
             f'{base64.b64encode(path.read_bytes()).decode()}" style="width: 100%"/>'
             f'<figcaption class="caption">{caption}</figcaption></figure>' for caption, path in items]
    if cells:
        display(HTML(f'<div class="keep" style="display: flex; gap: 2%">{"".join(cells)}</div>'))
