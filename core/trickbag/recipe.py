"""Recipes: TOML files validated on load into a :class:`Recipe`.

A recipe is data, never code. Every mistake becomes a one-line :class:`UserError` that names the
file and the key (with the closest valid name for typos); the CLI turns it into exit code 2.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import tomli_w
import tomllib
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from trickbag.config import DataConfig, ModelConfig, OptimizerConfig, TrainingConfig
from trickbag.errors import UserError, did_you_mean
from trickbag.plugins import Catalog, TrickOptions, load_plugins

SECTIONS = {"data": DataConfig, "model": ModelConfig, "optimizer": OptimizerConfig, "training": TrainingConfig}
TOP_KEYS = ("description", *SECTIONS, "tricks")
MOVED_TO_TRAINING = {"channels_last", "compile"}  # [model] keys of version 0.1


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    description: str = ""
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    tricks: dict[str, TrickOptions] = Field(default_factory=dict)
    name: str = Field("recipe", exclude=True)  # file stem, used for the default run folder

    def enabled_tricks(self) -> list[str]:
        return [name for name, options in self.tricks.items() if options.enabled]

    def to_dict(self) -> dict[str, Any]:
        """The resolved recipe: every default filled in, ready to save next to results."""
        out: dict[str, Any] = {"description": self.description}
        for section in SECTIONS:
            out[section] = getattr(self, section).model_dump(mode="json")
        out["tricks"] = {name: options.model_dump(mode="json") for name, options in self.tricks.items()}
        return _drop_none(out)

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())


def _drop_none(value: Any) -> Any:
    # TOML has no null: an unset optional value is simply absent
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    return value


def parse_override(text: str) -> tuple[list[str], Any]:
    """``section.key=value`` -> (["section", "key"], value). The value is read as a TOML value,
    falling back to a plain string so ``--set data.name=digits`` needs no quotes."""
    if "=" not in text:
        raise UserError(f"--set '{text}' must look like section.key=value")
    path, raw = text.split("=", 1)
    keys = [k for k in path.strip().split(".") if k]
    if len(keys) < 2:
        raise UserError(f"--set '{text}': the key must name a section and a key, e.g. training.epochs=5")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    except RecursionError:
        raise UserError(f"--set '{text[:60]}': the value is nested too deeply") from None
    return keys, value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> None:
    for text in overrides:
        keys, value = parse_override(text)
        node = raw
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise UserError(f"--set '{text}': '{key}' is a value, not a section")
            node = child
        node[keys[-1]] = value


def _format_error(where: str, prefix: str, exc: ValidationError, fields: Any) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    key = f"{prefix}.{loc}" if loc else prefix
    if err["type"] == "extra_forbidden":
        return f"{where}: unknown key '{key}'{did_you_mean(str(err['loc'][-1]), fields)}"
    got = err.get("input")
    shown = f" (got {got!r})" if got is not None and not isinstance(got, dict) else ""
    message = err["msg"].removeprefix("Value error, ")
    return f"{where}: {key}: {message}{shown}"


def build_recipe(raw: dict[str, Any], where: str = "recipe", name: str = "recipe", catalog: Catalog | None = None) -> Recipe:
    """Validate a recipe given as a dict (from TOML, from the TUI, from tests)."""
    for key in raw:
        if key not in TOP_KEYS:
            raise UserError(f"{where}: unknown section '{key}'{did_you_mean(key, TOP_KEYS)}")
    sections: dict[str, Any] = {}
    for section, model in SECTIONS.items():
        body = raw.get(section, {})
        if not isinstance(body, dict):
            raise UserError(f"{where}: '{section}' must be a table ([{section}])")
        if section == "model":
            for key in MOVED_TO_TRAINING.intersection(body):
                raise UserError(f"{where}: model.{key} moved to training.{key} (speed options live in [training])")
        try:
            sections[section] = model(**body)
        except ValidationError as exc:
            raise UserError(_format_error(where, section, exc, model.model_fields)) from None
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise UserError(f"{where}: description must be a string")
    tricks_raw = raw.get("tricks", {})
    if not isinstance(tricks_raw, dict):
        raise UserError(f"{where}: 'tricks' must hold one table per trick ([tricks.<name>])")
    tricks: dict[str, TrickOptions] = {}
    if tricks_raw:
        catalog = catalog or load_plugins()
        for trick, body in tricks_raw.items():
            if not isinstance(body, dict):
                raise UserError(f"{where}: tricks.{trick} must be a table ([tricks.{trick}])")
            options_model = catalog.get(trick).spec.options
            try:
                tricks[trick] = options_model(**body)
            except ValidationError as exc:
                raise UserError(_format_error(where, f"tricks.{trick}", exc, options_model.model_fields)) from None
    return Recipe(description=description, tricks=tricks, name=name, **sections)


#: a recipe is a few kilobytes; a bigger file is a mistake (a checkpoint, a data file)
MAX_RECIPE_BYTES = 1 << 20


def read_toml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise UserError(f"recipe '{path}' not found")
    if path.is_dir():
        raise UserError(f"recipe '{path}' is a folder, not a TOML file")
    if not path.is_file():  # a FIFO or a device would block the read forever
        raise UserError(f"recipe '{path}' is not a regular file")
    try:
        if path.stat().st_size > MAX_RECIPE_BYTES:
            raise UserError(f"recipe '{path}' is {path.stat().st_size:,} bytes: not a recipe")
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a UTF-8 text file") from None
    except RecursionError:
        raise UserError(f"{path}: arrays or tables nested too deeply") from None
    except OSError as exc:
        raise UserError(f"recipe '{path}': cannot read it ({exc.strerror or type(exc).__name__})") from None


def load_recipe(path: str | Path, overrides: list[str] | None = None, catalog: Catalog | None = None, where: str | None = None) -> Recipe:
    """Read, override (``--set``) and validate a recipe file; errors begin with ``where`` (the path)."""
    path = Path(path)
    raw = read_toml(path)
    apply_overrides(raw, overrides or [])
    return build_recipe(raw, where=where or str(path), name=path.stem, catalog=catalog)
