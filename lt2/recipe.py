"""Recipes: one paper row, its model with the data and training settings, loaded and checked in one place.

    recipe = load_recipe("config/recipes/tiny/looped_hybrid_gdn_4to1.yaml", ["train.steps=10"])

A recipe YAML may name `base: <file>` (relative to itself); the layers resolve as lt2.config.resolve does:
dataclass defaults -> base YAMLs -> the recipe -> dot-list overrides. `validate_recipe` runs on every load.

The recipe composes the settings of its components (ModelArgs from lt2.config, DataArgs from lt2.data.args,
TrainArgs from lt2.train.args), so it sits above all three and below the commands that run it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from lt2.config import ModelArgs, resolve, validate_model
from lt2.data.args import DataArgs
from lt2.train.args import AC_MODES, DTYPES, TrainArgs


@dataclass
class Recipe:
    """One paper row: the model and how it is trained. YAML files under config/recipes/{scale}/."""

    name: str = ""
    scale: str = "tiny"  # tiny | 600M | 1B
    model: ModelArgs = field(default_factory=ModelArgs)
    data: DataArgs = field(default_factory=DataArgs)
    train: TrainArgs = field(default_factory=TrainArgs)


def validate_recipe(recipe: Recipe) -> None:
    """Every cross-field check of a recipe, in one place, run by `load_recipe`: the model's (validate_model),
    the training run's and the data's. ValueError naming the key and the valid choices, so `lt2 train`,
    `model-info`, `bench` and `eval` reject a bad recipe alike, before building anything."""
    validate_model(recipe.model)
    train, data = recipe.train, recipe.data
    if train.activation_checkpointing not in AC_MODES:
        raise ValueError(
            f"train.activation_checkpointing={train.activation_checkpointing!r}; valid: {', '.join(AC_MODES)}"
        )
    if train.dtype not in DTYPES:
        raise ValueError(f"train.dtype={train.dtype!r}; valid: {', '.join(DTYPES)}")
    minimum = {  # key -> (value, smallest valid value)
        "train.steps": (train.steps, 1),
        "train.grad_accum": (train.grad_accum, 1),
        "train.log_every": (train.log_every, 1),
        "train.checkpoint.every": (train.checkpoint.every, 1),
        "train.checkpoint.keep": (train.checkpoint.keep, 1),
        "data.seq_len": (data.seq_len, 1),
        "data.batch_size": (data.batch_size, 1),
        "train.val_every": (train.val_every, 0),
        "train.val_tokens": (train.val_tokens, 0),
        "train.loss_chunk": (train.loss_chunk, 0),
        "train.optim.warmup_steps": (train.optim.warmup_steps, 0),
        "train.optim.grad_clip": (train.optim.grad_clip, 0),
        "train.optim.weight_decay": (train.optim.weight_decay, 0),
        "data.streams": (data.streams, 0),
        "data.prefetch": (data.prefetch, 0),
    }
    for key, (value, smallest) in minimum.items():
        if value < smallest:
            raise ValueError(f"{key}={value} must be >= {smallest}")
    if train.optim.lr <= 0:
        raise ValueError(f"train.optim.lr={train.optim.lr} must be > 0")
    if not 0 <= train.optim.lr_min_ratio <= 1:
        raise ValueError(f"train.optim.lr_min_ratio={train.optim.lr_min_ratio} must be in [0, 1]")
    if train.optim.warmup_steps > train.steps:
        raise ValueError(
            f"train.optim.warmup_steps={train.optim.warmup_steps} exceeds train.steps={train.steps}: "
            "the cosine phase would never start; lower the warmup"
        )
    if data.seq_len > recipe.model.max_seqlen:
        raise ValueError(f"data.seq_len={data.seq_len} exceeds model.max_seqlen={recipe.model.max_seqlen}")


def recipe_files(path: str | Path) -> list[Path]:
    """The recipe file and every `base` it names, base first: what a recipe's provenance must hash."""
    path = Path(path)
    base = (OmegaConf.to_container(OmegaConf.load(path)) or {}).get("base") if path.is_file() else None
    return ([*recipe_files(path.parent / base)] if base else []) + [path]


def recipes_with_bases(paths: list[str | Path]) -> list[Path]:
    """Every file that the recipes at `paths` read, each once, bases before the recipes that name them."""
    return list(dict.fromkeys(f for path in paths for f in recipe_files(path)))


def scale_recipes(root: str | Path, scale: str) -> list[Path]:
    """The recipes of one scale, `<root>/<scale>/*.yaml` sorted, without the shared bases (`_*.yaml`)."""
    return [p for p in sorted(Path(root, scale).glob("*.yaml")) if not p.name.startswith("_")]


def recipe_layers(path: str | Path) -> list[dict]:
    """The YAML layers of a recipe, base first: a file may name `base: <file>` (relative to itself), so
    that the rows of one scale share their dimensions and training settings instead of copying them."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"recipe {str(path)!r} does not exist")
    data = OmegaConf.to_container(OmegaConf.load(path)) or {}
    if not isinstance(data, dict):
        raise ValueError(f"recipe {str(path)!r} must hold a mapping, got {type(data).__name__}")
    base = data.pop("base", None)
    return ([*recipe_layers(path.parent / base)] if base else []) + [data]


def load_recipe(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Resolve a recipe: defaults -> base YAMLs -> YAML at `path` -> dot-list overrides (`train.steps=10`)."""
    layers = recipe_layers(path) if path is not None else []
    recipe = resolve(Recipe, *layers, overrides=overrides)
    if not recipe.name and path is not None:
        recipe.name = Path(path).stem
    validate_recipe(recipe)
    return recipe
