"""`lt2 audit FILE`: follow a result's provenance back to its data and config, re-hashing everything.

Starting from FILE, every node is checked in depth-first order (inputs in the order they were recorded):

    - the node's own sidecar exists, and its recorded output hash equals the file's hash now;
    - every recorded input exists and hashes to what was recorded;
    - an input that had a sidecar when it was recorded must still have one, and is audited in turn;
      inputs without one (recipes, the paper's CSVs, the workflow config) are leaves;
    - an input recorded outside the repository (a GPU machine's unpacked evaluation data, say) is checked
      when it is present here and otherwise listed as external with its recorded hash: this tree cannot
      hold it, so its absence is not a problem.

The first problem found names the file that was changed or removed; `AuditReport.first_problem` is what
the CLI prints last and exits non-zero on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lt2.report import provenance


@dataclass
class Problem:
    path: str
    what: str  # "missing" | "tampered" | "no provenance"
    detail: str

    def __str__(self) -> str:
        return f"{self.what}: {self.path} ({self.detail})"


@dataclass
class Node:
    path: str
    depth: int
    command: str | None  # None for a leaf (a source file without a sidecar)
    config_sha256: str | None
    ok: bool
    external: str | None = None  # recorded sha256 of an input outside the repository that is absent here


@dataclass
class AuditReport:
    target: str
    nodes: list[Node] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def add(self, problem: Problem) -> None:
        """Record a problem once per file: a changed input shows up in every record that used it."""
        if all(p.path != problem.path for p in self.problems):
            self.problems.append(problem)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_problem(self) -> Problem | None:
        return self.problems[0] if self.problems else None

    def format(self) -> str:
        lines = [f"audit of {self.target}:"]
        for node in self.nodes:
            mark = "ok " if node.ok else "BAD"
            how = f"  <- {node.command}" if node.command else "  (source)"
            if node.external:
                mark, how = "ext", f"  (outside the repository, not here; recorded sha256 {node.external[:12]}…)"
            lines.append(f"  {mark} {'  ' * node.depth}{node.path}{how}")
        if self.problems:
            lines.append(f"{len(self.problems)} problem(s):")
            lines.extend(f"  {p}" for p in self.problems)
        else:
            external = sum(node.external is not None for node in self.nodes)
            checked = f"all {len(self.nodes) - external} files match their recorded sha256"
            lines.append(checked + (f"; {external} external input(s) not checked here" if external else ""))
        return "\n".join(lines)


def _check_hash(path: Path, recorded: str, report: AuditReport, role: str) -> bool:
    if not path.exists():
        report.add(Problem(path.as_posix(), "missing", f"recorded as {role}"))
        return False
    now = provenance.sha256_path(path)
    if now != recorded:
        report.add(Problem(path.as_posix(), "tampered", f"{role}: recorded sha256 {recorded[:12]}…, now {now[:12]}…"))
        return False
    return True


def _outside_repository(path: Path) -> bool:
    """Records name inputs relative to the repository root: absolute or `..` paths lie outside it."""
    return path.is_absolute() or (bool(path.parts) and path.parts[0] == "..")


def _visit(path: Path, depth: int, report: AuditReport, seen: set[str]) -> None:
    key = path.as_posix()
    if key in seen:
        return
    seen.add(key)
    if not path.exists():
        report.add(Problem(key, "missing", "the file is gone"))
        report.nodes.append(Node(key, depth, None, None, ok=False))
        return
    if not provenance.sidecar(path).is_file():
        report.add(Problem(key, "no provenance", f"{provenance.sidecar(path).name} is missing"))
        report.nodes.append(Node(key, depth, None, None, ok=False))
        return
    rec = provenance.read_provenance(path)
    node = Node(key, depth, rec.get("command"), rec.get("config_sha256"), ok=True)
    report.nodes.append(node)
    node.ok = _check_hash(path, rec["output"]["sha256"], report, "output of its own record")
    for entry in rec.get("inputs", []):
        child = Path(entry["path"])
        if _outside_repository(child) and not child.exists():
            if child.as_posix() not in seen:
                seen.add(child.as_posix())
                report.nodes.append(Node(child.as_posix(), depth + 1, None, None, ok=True, external=entry["sha256"]))
            continue
        if not _check_hash(child, entry["sha256"], report, f"input of {key}"):
            node.ok = False
            seen.add(child.as_posix())  # already reported; do not report it again as a node
            continue
        if entry.get("has_provenance"):
            _visit(child, depth + 1, report, seen)
        elif child.as_posix() not in seen:
            seen.add(child.as_posix())
            report.nodes.append(Node(child.as_posix(), depth + 1, None, None, ok=True))


def audit(target: str | Path) -> AuditReport:
    """Audit `target` and everything it was made from. Paths in records are relative to the repository
    root, so run this from there (as the workflow does)."""
    target = Path(target)
    report = AuditReport(target.as_posix())
    _visit(target, 0, report, set())
    return report
