"""Layout statistics of a revision: sizes per package and the joints between modules.

Prints, for the working tree or any git revision (read with ``git show``, nothing checked out):

* ``.py`` files and lines per package folder, and the largest file;
* import edges between method modules: a module of one attribution method (or method family)
  importing a module of another one; shared machinery (``core``, ``zoo``, data and plotting
  helpers) is not a method;
* metric → method edges: a module of ``quantus_metrics`` importing a method module rather than
  the shared core;
* private names (``_x``) imported from another module, split into those that stay inside one
  family package or come from a private helper module of the same package (allowed), and
  those that cross from one method, metric or package to another.

Not run by the tests (it reads git)::

    python -m benchmarks.layout_stats                     # the working tree
    python -m benchmarks.layout_stats --rev 371db1c       # a revision
    python -m benchmarks.layout_stats --compare 371db1c   # before/after as one Markdown table
"""

from __future__ import annotations

import argparse
import ast
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ("captum_ext", "quantus_metrics", "captum_ext_report")
# Top-level parts of captum_ext that are shared machinery or data, not attribution methods.
REPORT_PACKAGES = ("captum_ext_report", "captum_ext.report")  # after / before the split
NOT_METHODS = {"core", "zoo", "data", "visualization", "analysis", "report", "_moved"}


@dataclass
class Stats:
    files: Counter = field(default_factory=Counter)
    lines: Counter = field(default_factory=Counter)
    largest: tuple[int, str] = (0, "")
    method_edges: set[tuple[str, str]] = field(default_factory=set)
    metric_edges: set[tuple[str, str]] = field(default_factory=set)
    private_inside: set[tuple[str, str]] = field(default_factory=set)
    private_across: set[tuple[str, str]] = field(default_factory=set)


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout


def _sources(rev: str | None) -> dict[str, str]:
    """``path -> text`` of every tracked ``.py`` file at ``rev`` (the working tree: None)."""
    if rev is None:
        paths = _git("ls-files", "*.py").split()
        return {p: (ROOT / p).read_text() for p in paths if (ROOT / p).exists()}
    paths = [p for p in _git("ls-tree", "-r", "--name-only", rev).split() if p.endswith(".py")]
    return {p: _git("show", f"{rev}:{p}") for p in paths}


def _module(path: str) -> str:
    parts = path[:-3].split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _method_unit(module: str) -> str | None:
    """``captum_ext.<part>`` for a method module (``captum_ext.lrp``, ``captum_ext.rectgrad``)."""
    parts = module.split(".")
    if parts[0] != "captum_ext" or len(parts) < 2 or parts[1] in NOT_METHODS:
        return None
    return ".".join(parts[:2])


def _package(module: str, is_package: bool) -> str:
    return module if is_package else module.rpartition(".")[0]


def _imports(tree: ast.AST, module: str, is_package: bool) -> list[tuple[str, list[str]]]:
    """``(imported module, names)`` of every import, relative ones resolved."""
    out: list[tuple[str, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = _package(module, is_package).split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            out.append((base, [alias.name for alias in node.names]))
    return out


def collect(rev: str | None) -> Stats:
    sources = _sources(rev)
    known = {_module(p) for p in sources}
    stats = Stats()
    for path, text in sources.items():
        folder = str(Path(path).parent)
        n_lines = text.count("\n")
        stats.files[folder] += 1
        stats.lines[folder] += n_lines
        if path.split("/")[0] in LIBRARY and n_lines > stats.largest[0]:
            stats.largest = (n_lines, path)
        if path.split("/")[0] not in LIBRARY:
            continue
        module, is_package = _module(path), path.endswith("__init__.py")
        try:
            tree = ast.parse(text)
        except SyntaxError:  # pragma: no cover - a broken revision
            continue
        own_unit = _method_unit(module)
        own_package = _package(module, is_package)
        for target, names in _imports(tree, module, is_package):
            if target.split(".")[0] not in LIBRARY:
                continue
            # "from pkg import mod" imports a module, not a name
            targets = [f"{target}.{n}" if f"{target}.{n}" in known else target for n in names]
            for full in targets or [target]:
                unit = _method_unit(full)
                if unit and own_unit and unit != own_unit:
                    stats.method_edges.add((own_unit, unit))
                if unit and module.startswith("quantus_metrics"):
                    stats.metric_edges.add((module, unit))
            for name in names:
                if not name.startswith("_") or name.startswith("__"):
                    continue
                if f"{target}.{name}" in known or target == module:
                    continue  # a private module, or the module itself
                pair = (module, f"{target}.{name}")
                if _internal(target, own_package, _is_pkg(target, sources)):
                    stats.private_inside.add(pair)
                else:
                    stats.private_across.add(pair)
    return stats


def _internal(source: str, own_package: str, source_is_package: bool) -> bool:
    """Whether a private name of ``source`` stays inside the importer's package.

    Inside: both in one family subpackage (``captum_ext.lrp``, ``captum_ext.noise``, ...), or
    the source is a private module of the importer's package (``quantus_metrics._base``), or
    both are in the report. A flat top-level package holds unrelated methods or metrics, so
    their private names cross.
    """
    for report in REPORT_PACKAGES:  # the report is one application, not a set of methods
        if source.startswith(report + ".") and own_package.startswith(report):
            return True
    package = source if source_is_package else source.rpartition(".")[0]
    if package != own_package:
        return False
    return package.count(".") >= 1 or source.rpartition(".")[2].startswith("_")


def _is_pkg(module: str, sources: dict[str, str]) -> bool:
    return module.replace(".", "/") + "/__init__.py" in sources


def _rows(stats: Stats) -> dict[str, str]:
    rows: dict[str, str] = {}
    for folder in sorted(stats.files):
        if folder.split("/")[0] in (*LIBRARY, "tests", "benchmarks", "examples"):
            rows[f"`{folder}/`: files / lines"] = f"{stats.files[folder]} / {stats.lines[folder]}"
    library = [f for f in stats.files if f.split("/")[0] in LIBRARY]
    rows["library total: files / lines"] = (
        f"{sum(stats.files[f] for f in library)} / {sum(stats.lines[f] for f in library)}"
    )
    rows["largest library file"] = f"`{stats.largest[1]}` ({stats.largest[0]} lines)"
    rows["import edges between method modules"] = str(len(stats.method_edges))
    rows["metric → method imports"] = str(len(stats.metric_edges))
    rows["private names imported across methods/packages"] = str(len(stats.private_across))
    rows["private names imported inside a family"] = str(len(stats.private_inside))
    return rows


def report(rev: str | None) -> str:
    stats = collect(rev)
    lines = [f"{k}: {v}" for k, v in _rows(stats).items()]
    for title, items in (
        ("method → method", sorted(stats.method_edges)),
        ("metric → method", sorted(stats.metric_edges)),
        ("private names across methods/packages", sorted(stats.private_across)),
    ):
        lines += [f"\n{title}:"] + [f"  {a} -> {b}" for a, b in items]
    return "\n".join(lines)


def compare(base: str) -> str:
    before, after = _rows(collect(base)), _rows(collect(None))
    folders = sorted({k for k in [*before, *after] if k.startswith("`")})
    keys = folders + [k for k in after if not k.startswith("`")]
    lines = [f"| | {base} | this tree |", "|---|---|---|"]
    lines += [f"| {k} | {before.get(k, '—')} | {after.get(k, '—')} |" for k in keys]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--rev", help="a git revision (default: the working tree)")
    group.add_argument("--compare", metavar="BASE", help="Markdown table: BASE vs the tree")
    args = parser.parse_args()
    print(compare(args.compare) if args.compare else report(args.rev))


if __name__ == "__main__":
    main()
