"""`lt2 <command>`: the one entry point that workflow rules, SLURM jobs and people call.

Every command is a thin entry: parse, resolve the config, call one package function. Commands live in
alphabetical sections below; each imports its package module lazily so `lt2 --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys


def _recipe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="recipe YAML (config/recipes/<scale>/<row>.yaml)")
    p.add_argument("overrides", nargs="*", help="dot-list overrides, e.g. model.loop_count=2 train.steps=100")


# ------------------------------------------------------------------ model-info
def cmd_model_info(a: argparse.Namespace) -> int:
    from lt2.config import load_recipe
    from lt2.model.costs import format_model_info, model_info

    recipe = load_recipe(a.recipe, a.overrides)
    info = model_info(recipe.model, seq_len=a.seq_len or recipe.data.seq_len)
    print(info.to_json() if a.json else format_model_info(recipe.name, info))
    return 0


def _add_model_info(sub) -> None:
    p = sub.add_parser("model-info", help="parameters, effective depth, mixer map, FLOPs and cache bytes per token")
    _recipe_args(p)
    p.add_argument("--seq-len", type=int, default=None, help="context for the FLOPs/cache formulas (default: recipe)")
    p.add_argument("--json", action="store_true", help="print one JSON record instead of the table")
    p.set_defaults(func=cmd_model_info)


# -------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lt2", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="<command>")
    _add_model_info(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as err:  # a user error: one clear line, no traceback
        print(f"lt2 {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
