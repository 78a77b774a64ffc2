"""MkDocs hook: serve the committed figures under experiments/results without copying them into docs/.

Pages link figures as ``../experiments/results/<name>.png`` (a path that also works when the Markdown is read in the
repository). MkDocs only serves files under docs_dir, so this hook adds every PNG of experiments/results to the site as
``results-figures/<name>.png`` and rewrites the pages' links to that path before they are rendered.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File

FIGURES = Path(__file__).resolve().parents[1] / "experiments" / "results"
SITE_FOLDER = "results-figures"
LINK = "../experiments/results/"


def on_files(files, config):
    for png in sorted(FIGURES.glob("*.png")):
        files.append(File.generated(config, f"{SITE_FOLDER}/{png.name}", abs_src_path=str(png)))
    return files


def on_page_markdown(markdown, page, config, files):
    depth = page.file.src_uri.count("/")  # pages in docs/api/ link ../../experiments/results/
    return markdown.replace("../" * depth + LINK, "../" * depth + SITE_FOLDER + "/")
