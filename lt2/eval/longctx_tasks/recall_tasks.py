"""Scoring of the Based / JRT document-grounded recall tasks: lm-eval's `contains` (swde, fda, squad_completion)."""

from __future__ import annotations

import re


def contains(prediction: str, answers: list[str]) -> int:
    """1 when any gold answer occurs in the prediction, case-insensitively (lm-eval's swde `contains_score`)."""
    return max(int(bool(re.search(re.escape(a.strip()), prediction, re.IGNORECASE))) for a in answers)


def process_results(doc: dict, results: list[str]) -> dict[str, int]:
    return {"contains": contains(results[0], list(doc["answers"]))}
