"""Hardware profiles as data, and the one cost model that turns a NetworkReport into time per device.

A profile is a device plus the software stack that runs on it: peak rates per dtype, memory
bandwidth and size, per-kernel overhead, and how close real kernels get to the peaks per
kernel class. Built-in profiles live in `cnncalc/data/profiles.yaml` with a source for every
figure; users add or override them in `~/.config/cnncalc/profiles.yaml` or with `--profiles`.

The cost model (docs/hardware.md) is a roofline per layer:

    time = max(FLOPs / (peak * efficiency[class]), bytes / (bandwidth * mem_efficiency)) + overhead

summed over layers; backward costs twice the forward; the optimizer step streams the
parameters and their state once. One function serves every profile.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import functools
import math
import os
import platform
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
else:
    from ._numpy import np
import yaml

from .errors import CnnCalcError, SpecFileError
from .ir import DTYPE_ALIASES, DTYPE_BYTES, MAX_BATCH

if TYPE_CHECKING:
    from .analysis import LayerReport, NetworkReport

#: kernel classes with a cost; "reshape" ops (Flatten, Identity, Dropout at inference) launch no kernel
KERNEL_CLASSES = ("conv", "conv_winograd", "depthwise", "gemm", "pool", "elementwise", "concat")
NO_KERNEL = "reshape"
#: classes a profile may list under `fused`: pointwise epilogues and concatenations written in place
FUSABLE_CLASSES = ("elementwise", "concat")
BOUNDS = ("compute", "memory", "overhead", "none")
#: the optimizer whose step is included in train_step_s (the report's headline training memory uses it too)
TRAIN_OPTIMIZER = "sgd-momentum"

TERA, GIGA, GIB, MICRO = 1e12, 1e9, 2**30, 1e-6

#: YAML field -> (what it holds, for error messages)
FIELDS: dict[str, str] = {
    "description": "text",
    "runtime": "text: the software stack the efficiencies describe",
    "extends": "name of a profile to start from",
    "peak_tflops": "peak rate per dtype in 10^12 operations/s, e.g. {float32: 6.14, float16: 6.14}",
    "mem_gb_per_s": "memory bandwidth in 10^9 bytes/s",
    "mem_gib": "device memory in GiB",
    "usable_mem_gib": "memory a model can use in GiB (at most mem_gib)",
    "launch_overhead_us": "fixed cost of one kernel in microseconds",
    "efficiency": f"fraction of peak reached per kernel class ({', '.join(KERNEL_CLASSES)})",
    "efficiency_scale": "multiplies every default class efficiency this profile does not set",
    "mem_efficiency": "fraction of the bandwidth memory-bound kernels reach, in (0, 1]",
    "fused": "kernel classes the runtime folds into neighbouring kernels (no time of their own)",
    "sources": "where each figure comes from, by field name",
}
REQUIRED = ("peak_tflops", "mem_gb_per_s", "mem_gib")
MERGED = ("peak_tflops", "efficiency", "sources")  # an override merges these key by key


@dataclass(frozen=True)
class Profile:
    """One device and software stack, in SI units inside (bytes, seconds, FLOP/s)."""

    name: str
    description: str
    peak_flops_per_s: dict[str, float]  # per dtype: float32, float16, int8 (ops/s), float64
    mem_bytes_per_s: float
    mem_bytes: int
    usable_mem_bytes: int
    launch_overhead_s: float
    efficiency: dict[str, float]  # per kernel class, resolved (defaults x scale, then the profile's own)
    sources: dict[str, str]
    mem_efficiency: float = 1.0
    efficiency_scale: float = 1.0
    fused: tuple[str, ...] = ()
    runtime: str = ""
    origin: str = ""  # the file that defined it last

    def peak(self, dtype: str) -> float:
        """Peak rate for a dtype, or a clear error when the profile has none."""
        if dtype not in self.peak_flops_per_s:
            known = ", ".join(self.peak_flops_per_s)
            raise CnnCalcError(f"profile {self.name!r} has no peak rate for {dtype}",
                               hint=f"use --dtype with one of {known}, or add peak_tflops.{dtype} to the profile")
        return self.peak_flops_per_s[dtype]

    def to_json(self) -> dict[str, Any]:
        """The profile in SI units, for --format json."""
        data = dataclasses.asdict(self)
        data["fused"] = list(self.fused)
        return data


# ---- loading -------------------------------------------------------------------
def config_dir() -> Path:
    """Per-user config folder: $CNNCALC_CONFIG_DIR, else $XDG_CONFIG_HOME/cnncalc, else ~/.config/cnncalc."""
    if os.environ.get("CNNCALC_CONFIG_DIR"):
        return Path(os.environ["CNNCALC_CONFIG_DIR"])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "cnncalc"


def user_profiles_path() -> Path:
    """The per-user profiles file (it need not exist)."""
    return config_dir() / "profiles.yaml"


def builtin_profiles_text() -> str:
    """The shipped profiles file."""
    return resources.files("cnncalc").joinpath("data/profiles.yaml").read_text(encoding="utf-8")


def load_profiles(extra_files: Sequence[str | Path] = ()) -> dict[str, Profile]:
    """Built-ins, then the per-user file, then `extra_files`; a later definition overrides an earlier one."""
    builtin = _parse_yaml(builtin_profiles_text(), "built-in profiles (cnncalc/data/profiles.yaml)")
    defaults = builtin.get("defaults") or {}
    raw: dict[str, dict[str, Any]] = {}
    origin: dict[str, str] = {}
    _add_file(raw, origin, builtin, "built-in profiles (cnncalc/data/profiles.yaml)", builtin=True)
    layers = [user_profiles_path()] if user_profiles_path().is_file() else []
    for path in [*layers, *(Path(p) for p in extra_files)]:
        if not path.exists() or path.is_dir():  # a pipe (`--profiles <(...)`) is read like a file
            raise SpecFileError(f"profiles file {path} {'is a folder' if path.is_dir() else 'does not exist'}",
                                hint="check the path given to --profiles")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise SpecFileError(f"cannot read profiles file {path}: {error}") from None
        _add_file(raw, origin, _parse_yaml(text, str(path)), str(path))
    return {name: _build(name, _resolve(name, raw, origin), origin[name], defaults) for name in raw}


def get_profiles(names: Sequence[str] | str, extra_files: Sequence[str | Path] = ()) -> list[Profile]:
    """The named profiles in order (one name alone is a list of one); an unknown name is an error
    listing the known ones."""
    return pick_profiles(names, load_profiles(extra_files))


def pick_profiles(names: Sequence[str] | str, known: Mapping[str, Profile]) -> list[Profile]:
    """The named profiles of `known` (as `load_profiles` gives them) in order; an unknown name is an error
    listing the known ones, with the closest first."""
    if isinstance(names, str):  # iterating "jetson-nano" would look up "j", "e", ...
        names = [names]
    found = []
    for name in names:
        if name not in known:
            close = closest_names(name, known)
            guess = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
            raise CnnCalcError(f"unknown hardware profile {name!r}",
                               hint=f"{guess}known profiles: {', '.join(known)} (see `cnncalc profiles`)")
        found.append(known[name])
    return found


def resolve_profiles(profiles: Sequence[Profile | str] | str) -> list[Profile]:
    """Profiles given as objects, names, or a mix (as `analyze` takes them), in order, as Profiles."""
    if isinstance(profiles, (str, Profile)):
        profiles = [profiles]
    names = [p for p in profiles if isinstance(p, str)]
    named = iter(get_profiles(names) if names else [])
    resolved = []
    for profile in profiles:
        if isinstance(profile, str):
            resolved.append(next(named))
        elif isinstance(profile, Profile):
            resolved.append(profile)
        else:
            raise CnnCalcError(f"a hardware profile is a name or a Profile, not {type(profile).__name__}",
                               hint="e.g. profiles=['jetson-nano'] (see `cnncalc profiles`)")
    return resolved


def closest_names(name: str, known: Sequence[str] | Mapping[str, Any]) -> list[str]:
    """The known names a mistyped one most likely meant: the same name in another case, else the nearest by
    spelling, else the names that contain it (`nano` -> jetson-nano, jetson-orin-nano), ignoring case."""
    lowered = {str(candidate).lower(): str(candidate) for candidate in known}
    wanted = name.lower()
    if wanted in lowered:
        return [lowered[wanted]]
    near = difflib.get_close_matches(wanted, list(lowered), n=1)
    if near:
        return [lowered[near[0]]]
    return [lowered[candidate] for candidate in lowered if wanted and wanted in candidate][:3]


def _parse_yaml(text: str, where: str) -> dict[str, Any]:
    from .specfile import safe_load_unique_keys, yaml_problem

    try:
        data = safe_load_unique_keys(text)
    except yaml.YAMLError as error:
        raise SpecFileError(f"{where}: not valid YAML{yaml_problem(error, 'invalid YAML')}",
                            hint="check the indentation and the quotes there") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SpecFileError(f"{where}: a profiles file is a mapping of profile names to fields",
                            hint="write `profiles:` then one entry per profile")
    return data


def _add_file(raw: dict[str, dict[str, Any]], origin: dict[str, str], data: dict[str, Any], where: str,
              builtin: bool = False) -> None:
    """Merge one file's profiles into `raw`: new names are added, known ones overridden field by field."""
    if "defaults" in data and not builtin:
        raise SpecFileError(f"{where}: only the built-in file sets `defaults`",
                            hint="set the fields (efficiency, launch_overhead_us, ...) in each profile")
    allowed = {"profiles", "defaults"} if builtin else {"profiles"}
    if "profiles" in data:
        entries = data["profiles"]
        extra = set(data) - allowed
        if extra:
            raise SpecFileError(f"{where}: unknown top-level key(s) {', '.join(sorted(map(str, extra)))}",
                                hint="a profiles file has `profiles:` mapping names to fields, and nothing else")
    else:
        entries = data  # a bare mapping of profile names is accepted too
    if entries is None:  # `profiles:` with nothing under it yet
        entries = {}
    if not isinstance(entries, dict):
        raise SpecFileError(f"{where}: `profiles` must map profile names to their fields")
    for name, fields in entries.items():
        if name is None or isinstance(name, bool):  # YAML reads `null:`, `yes:`, `on:` as these, not as text
            raise SpecFileError(f"{where}: {name!r} is not a profile name",
                                hint=f"quote it if it is meant as one: '{str(name).lower()}':")
        if not isinstance(fields, dict):
            raise SpecFileError(f"{where}: profile {name!r} must be a mapping of fields",
                                hint="e.g. my-gpu: {peak_tflops: {float32: 10}, mem_gb_per_s: 448, mem_gib: 8}")
        for key in fields:
            if key not in FIELDS:
                close = difflib.get_close_matches(str(key), list(FIELDS), n=1)
                guess = f"did you mean {close[0]!r}? " if close else ""
                raise SpecFileError(f"{where}: profile {name!r}: unknown field {key!r}",
                                    hint=f"{guess}fields: {', '.join(FIELDS)}")
        merged = _without_overridden(raw.get(str(name), {}), fields)
        for key, value in fields.items():
            if key in MERGED and isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
        raw[str(name)] = merged
        origin[str(name)] = where


def _resolve(name: str, raw: dict[str, dict[str, Any]], origin: dict[str, str],
             seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """A profile's fields with `extends` applied (the base first, then the profile's own)."""
    fields = raw[name]
    base_name = fields.get("extends")
    if base_name is None:
        return fields
    if not isinstance(base_name, str):
        raise SpecFileError(f"{origin[name]}: profile {name!r}: field 'extends' must be one profile name, "
                            f"got {base_name!r}", hint=f"e.g. extends: {next(iter(raw))}")
    if base_name not in raw:
        close = closest_names(base_name, [known for known in raw if known != name])
        guess = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
        raise SpecFileError(f"{origin[name]}: profile {name!r}: field 'extends' names unknown profile {base_name!r}",
                            hint=f"{guess}known profiles: {', '.join(raw)}")
    if base_name in seen or base_name == name:
        raise SpecFileError(f"{origin[name]}: profile {name!r}: field 'extends' makes a cycle "
                            f"({' -> '.join((*seen, name, base_name))})")
    base = dict(_resolve(base_name, raw, origin, (*seen, name)))
    base.pop("description", None)
    # the base's own sources describe the base: figures taken over keep them, marked as the base's
    base["sources"] = {key: f"from {base_name}: {source}"
                       for key, source in (raw[base_name].get("sources") or {}).items()}
    base = _without_overridden(base, fields)
    for key, value in fields.items():
        if key in MERGED and isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        elif key != "extends":
            base[key] = value
    return base


def _without_overridden(earlier: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """An earlier definition of a profile (or the base it extends), less what `fields` make stale: the sources
    of the figures they set (a source describes the old value), and the usable memory when they set a new
    mem_gib (the old share described the old memory)."""
    kept = dict(earlier)
    stale = set()
    if "mem_gib" in fields and "usable_mem_gib" not in fields:
        kept.pop("usable_mem_gib", None)
        stale.add("usable_mem_gib")
    kept["sources"] = {key: source for key, source in (earlier.get("sources") or {}).items()
                       if key not in stale and not _overrides(fields, str(key))}
    return kept


def _overrides(fields: dict[str, Any], source_key: str) -> bool:
    """Whether a profile's own fields set what a source key (`mem_gib`, `peak_tflops.float32`) describes."""
    head, _, item = source_key.partition(".")
    if head not in fields:
        return False
    return not item or not isinstance(fields[head], dict) or item in fields[head]


def _build(name: str, fields: dict[str, Any], where: str, defaults: dict[str, Any]) -> Profile:
    """Validate one profile's fields and convert them to SI units."""

    def fail(key: str, problem: str, hint: str | None = None) -> SpecFileError:
        head = key.partition(".")[0]  # `efficiency.conv` is explained by `efficiency`
        return SpecFileError(f"{where}: profile {name!r}: field {key!r} {problem}",
                             hint=hint or f"{head}: {FIELDS.get(head, '')}")

    def number(key: str, value: Any, low: float = 0.0, strict: bool = True, high: float = float("inf")) -> float:
        amount = _as_number(value)
        if amount is None:
            raise fail(key, f"must be a number, got {value!r}")
        if (amount <= low if strict else amount < low) or amount > high:
            bound = f"greater than {low:g}" if strict else f"at least {low:g}"
            if high != float("inf"):
                bound += f" and at most {high:g}"
            raise fail(key, f"must be {bound}, got {amount:g}")
        limits = _plausible_range(key)
        if limits is not None:  # beyond what any device has: almost always a unit mistake
            least, most, unit = limits
            if not least <= amount <= most:
                raise fail(key, f"is {amount:g}, outside {least:g} to {most:g}: is the unit right?", hint=unit)
        return amount

    def mapping(key: str, allowed: Sequence[str], what: str) -> dict[str, float]:
        value = fields.get(key) or {}
        if not isinstance(value, dict):
            raise fail(key, f"must be a mapping of {what} to numbers, got {value!r}")
        result = {}
        for item, amount in value.items():
            if item not in allowed:
                close = [DTYPE_ALIASES[item]] if item in DTYPE_ALIASES else []
                close = close or difflib.get_close_matches(str(item), list(allowed), n=1)
                guess = f"did you mean {close[0]!r}? " if close else ""
                raise fail(key, f"has unknown {what} {item!r}", hint=f"{guess}use {', '.join(allowed)}")
            result[str(item)] = number(f"{key}.{item}", amount)
        return result

    for key in REQUIRED:
        if fields.get(key) is None:
            raise fail(key, "is missing", hint=f"add {key}: {FIELDS[key]}")
    peaks = mapping("peak_tflops", tuple(DTYPE_BYTES), "dtype")
    if not peaks:
        raise fail("peak_tflops", "names no dtype", hint="e.g. peak_tflops: {float32: 6.14}")
    mem_gib = number("mem_gib", fields["mem_gib"])
    usable_gib = number("usable_mem_gib", fields.get("usable_mem_gib", mem_gib), high=mem_gib)
    overhead_us = number("launch_overhead_us", fields.get("launch_overhead_us", defaults.get("launch_overhead_us", 0)),
                         strict=False)
    scale = number("efficiency_scale", fields.get("efficiency_scale", 1.0))
    own = mapping("efficiency", KERNEL_CLASSES, "kernel class")
    base = defaults.get("efficiency") or {}
    efficiency = {cls: own.get(cls, float(base.get(cls, 1.0)) * scale) for cls in KERNEL_CLASSES}
    fused = fields.get("fused") or []
    if not isinstance(fused, list) or any(cls not in FUSABLE_CLASSES for cls in fused):
        # a conv, FC or pool folded away would cost nothing: no runtime runs those inside a neighbour
        raise fail("fused", f"must be a list of classes a runtime folds into a neighbour, got {fused!r}",
                   hint=f"use {' and/or '.join(FUSABLE_CLASSES)} (TensorRT fuses both)")
    sources = fields.get("sources") or {}
    if not isinstance(sources, dict):
        raise fail("sources", "must map field names to text")
    sources = {str(k): str(v) for k, v in sources.items()}
    default_sources = defaults.get("sources") or {}
    for key in ("launch_overhead_us", "mem_efficiency"):
        if key not in fields and key in default_sources:
            sources[key] = f"default: {default_sources[key]}"
    for cls in KERNEL_CLASSES:
        if cls not in own and "efficiency" in default_sources:
            origin_text = default_sources.get(cls, default_sources["efficiency"])
            scaled = f" x efficiency_scale {scale:g}" if scale != 1.0 else ""
            sources.setdefault(f"efficiency.{cls}", f"default{scaled}: {origin_text}")
    for key in ("description", "runtime"):
        if not isinstance(fields.get(key, ""), str):
            raise fail(key, f"must be text, got {fields[key]!r}")
    return Profile(
        name=name, description=fields.get("description", ""),
        peak_flops_per_s={dtype: rate * TERA for dtype, rate in peaks.items()},
        mem_bytes_per_s=number("mem_gb_per_s", fields["mem_gb_per_s"]) * GIGA,
        mem_bytes=int(mem_gib * GIB), usable_mem_bytes=int(usable_gib * GIB),
        launch_overhead_s=overhead_us * MICRO, efficiency=efficiency,
        sources=sources,
        mem_efficiency=number("mem_efficiency", fields.get("mem_efficiency", defaults.get("mem_efficiency", 1.0)),
                              high=1.0),
        efficiency_scale=scale, fused=tuple(fused), runtime=fields.get("runtime", ""), origin=where,
    )


#: plausible ranges in the file's units, per field (or field head): (least, most, what the unit is). Wider
#: than any device on the market, so a value outside is a unit slip (bytes for GiB, FLOP/s for TFLOP/s,
#: a percentage for a fraction), not a device. An efficiency may pass 1 a little: a peak quoted at base
#: clock is beaten under boost (the fitted Titan X conv 0.99); Winograd counts fewer multiplies than the
#: FLOPs (F(6x6,3x3) does 5.06x fewer; the fitted cuDNN value is 1.85).
PLAUSIBLE: dict[str, tuple[float, float, str]] = {
    "peak_tflops": (1e-6, 1e5, "peak_tflops is in 10^12 operations/s: 6.14 for 6.14 TFLOPS, 0.236 for "
                               "236 GFLOPS (an H100's dense int8 is 1979)"),
    "mem_gb_per_s": (1e-6, 1e5, "mem_gb_per_s is in 10^9 bytes/s: 336.5 for 336.5 GB/s (an H100 has 3350)"),
    "mem_gib": (0.0, 1e5, "mem_gib is in GiB (2^30 bytes): 12 for a 12 GB card, not a count of bytes"),
    "usable_mem_gib": (0.0, 1e5, "usable_mem_gib is in GiB (2^30 bytes): 11.5, not a count of bytes"),
    "launch_overhead_us": (0.0, 1e6, "launch_overhead_us is in microseconds: 59.57 for 59.57 us, 1000000 is "
                                     "a second per kernel"),
    "efficiency": (0.0, 2.0, "an efficiency is a fraction of the peak: 0.5 for 50%"),
    "efficiency.conv_winograd": (0.0, 10.0, "a fraction of the peak, above 1 only by the multiplies Winograd "
                                            "saves (cuDNN's fitted 1.85): 0.5 for 50%"),
    "efficiency_scale": (0.0, 2.0, "efficiency_scale multiplies the default efficiencies (conv 0.99): "
                                   "0.5 for half of them"),
}
_NUMBER_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _plausible_range(key: str) -> tuple[float, float, str] | None:
    """The plausible range of a field (`efficiency.conv` falls under `efficiency`), if it has one."""
    return PLAUSIBLE.get(key) or PLAUSIBLE.get(key.partition(".")[0])


def _as_number(value: Any) -> float | None:
    """A finite number from YAML, or None. Text such as `6.14e12` counts: YAML 1.1 reads an exponent without
    a dot or a sign as text, and the error must then be about the unit, not 'must be a number'."""
    if isinstance(value, str) and _NUMBER_TEXT.fullmatch(value.strip()):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        amount = float(value)
    except OverflowError:  # an int too large for a float: out of every range, not "not a number"
        return math.inf
    return amount if math.isfinite(amount) else None


def profile_to_yaml(profile: Profile) -> dict[str, Any]:
    """A profile in the file's units (the inverse of loading), e.g. to save the `host` profile."""
    return {
        "description": profile.description,
        "runtime": profile.runtime,
        "peak_tflops": {dtype: _round(rate / TERA) for dtype, rate in profile.peak_flops_per_s.items()},
        "mem_gb_per_s": _round(profile.mem_bytes_per_s / GIGA),
        "mem_gib": _round(profile.mem_bytes / GIB),
        "usable_mem_gib": _round(profile.usable_mem_bytes / GIB),
        "launch_overhead_us": _round(profile.launch_overhead_s / MICRO),
        "efficiency": {cls: _round(value) for cls, value in profile.efficiency.items()},
        "mem_efficiency": _round(profile.mem_efficiency),
        "fused": list(profile.fused),
        "sources": dict(profile.sources),
    }


def _round(value: float) -> float:
    return float(f"{value:.4g}")


# ---- showing profiles ----------------------------------------------------------
def profile_rows(profiles: Mapping[str, Profile]) -> tuple[list[str], list[list[str]]]:
    """Header and one row per profile, for `cnncalc profiles`."""
    header = ["name", "fp32 TFLOPS", "fp16 TFLOPS", "int8 TOPS", "GB/s", "memory GiB", "usable GiB", "description"]
    rows = []
    for name, p in profiles.items():
        peaks = [f"{p.peak_flops_per_s[d] / TERA:g}" if d in p.peak_flops_per_s else "-"
                 for d in ("float32", "float16", "int8")]
        rows.append([name, *peaks, f"{p.mem_bytes_per_s / GIGA:g}", _gib_text(p.mem_bytes),
                     _gib_text(p.usable_mem_bytes), p.description])
    return header, rows


def _gib_text(nbytes: int) -> str:
    """GiB to three figures, whole from 1000 on: a 1.5 TiB server read '1.54e+03'."""
    gib = nbytes / GIB
    return f"{gib:.3g}" if gib < 1000 else f"{gib:,.0f}"


def profile_detail_rows(profile: Profile) -> tuple[list[str], list[list[str]]]:
    """Header and one row per field (value in file units, and its source), for `cnncalc profiles NAME`."""
    values = profile_to_yaml(profile)
    rows = [["defined in", profile.origin, ""]]
    for key, value in values.items():
        if key == "sources":
            continue
        if isinstance(value, dict):
            for item, amount in value.items():
                source = profile.sources.get(f"{key}.{item}") or profile.sources.get(key, "")
                if key == "efficiency" and not source:
                    source = profile.sources.get("efficiency_scale", "")
                rows.append([f"{key}.{item}", f"{amount:g}", source])
        else:
            text = ", ".join(value) if isinstance(value, list) else f"{value:g}" if isinstance(value, float) else value
            rows.append([key, str(text), profile.sources.get(key, "")])
    return ["field", "value", "source"], rows


def format_table(header: list[str], rows: list[list[str]]) -> str:
    """Plain aligned text columns (for the CLI, which prints it)."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in [header, ["-" * w for w in widths], *rows]]
    return "\n".join(lines) + "\n"


# ---- the cost model ------------------------------------------------------------
@dataclass(frozen=True)
class LayerCost:
    """One layer's estimated forward time on one profile, and why."""

    name: str
    time_s: float
    bound: str  # "compute" | "memory" | "overhead" | "none" (no kernel, or fused into a neighbour)
    intensity: float  # FLOPs per byte moved
    flops: int
    bytes: int  # activations read and written plus weights read
    compute_s: float = 0.0
    memory_s: float = 0.0
    fused: bool = False

    def to_json(self) -> dict[str, Any]:
        """Per-layer figures for --format json."""
        return {"time_ms": self.time_s * 1e3, "bound": self.bound, "intensity": self.intensity,
                "flops": self.flops, "bytes": self.bytes, "fused": self.fused}


@dataclass(frozen=True)
class NetworkCost:
    """A whole network on one profile: latency, training step, throughput, the dominant bound, batch limits."""

    profile: str
    batch: int
    dtype: str
    layers: list[LayerCost]
    latency_s: float  # one forward pass of the whole batch
    throughput_per_s: float  # samples per second at this batch
    train_step_s: float  # forward + backward + one SGD-with-momentum update
    bound: str  # where most of the time goes
    max_batch_inference: int  # 0 = does not fit even at batch 1
    max_batch_training: dict[str, int]  # per optimizer
    usable_bytes: int
    forward_backward_s: float = 0.0
    update_s: dict[str, float] = field(default_factory=dict)  # optimizer step per optimizer
    time_by_bound_s: dict[str, float] = field(default_factory=dict)

    def __repr__(self) -> str:
        """One line for a notebook (the dataclass' own repr spells out every layer's cost)."""
        return (f"<NetworkCost {self.profile}: {self.latency_s * 1e3:.4g} ms at batch {self.batch} {self.dtype}, "
                f"{self.bound}-bound, max batch {self.max_batch_inference:,} for inference, "
                f"{'fits' if self.fits else 'does not fit'}>")

    @property
    def fits(self) -> bool:
        """Whether the analysed batch fits in usable memory for inference (0 < batch <= the largest that fits)."""
        return self.max_batch_inference >= max(1, self.batch)

    def to_json(self) -> dict[str, Any]:
        """Summary figures for --format json (per-layer times are rendered with the layers)."""
        return {
            "latency_ms": self.latency_s * 1e3, "throughput_per_s": self.throughput_per_s,
            "train_step_ms": self.train_step_s * 1e3, "forward_backward_ms": self.forward_backward_s * 1e3,
            "bound": self.bound, "max_batch_inference": self.max_batch_inference,
            "max_batch_training": dict(self.max_batch_training), "fits": self.fits,
            "usable_bytes": self.usable_bytes, "batch": self.batch, "dtype": self.dtype,
            "update_ms": {name: seconds * 1e3 for name, seconds in self.update_s.items()},
            "time_ms_by_bound": {name: seconds * 1e3 for name, seconds in self.time_by_bound_s.items()},
        }


#: what a layer of a `fused` class can fold into: TensorRT runs bias, scale (BN), activations and a residual
#: add in the epilogue of the convolution or matrix multiply before them, and a run of pointwise layers as one
#: kernel (its layer fusion catalog); after a pool, a concat or the input such a layer is a kernel of its own
FOLDS_INTO = {"elementwise": ("conv", "conv_winograd", "depthwise", "gemm", "elementwise")}


def folded_layers(report: NetworkReport, profile: Profile) -> set[str]:
    """Names of the layers of the profile's `fused` classes that have a producer to fold into.

    Reshape layers (Flatten, Identity) are looked through; a layer fed only by the network input has
    nothing to fold into, and an elementwise layer folds only into the kinds of kernel in FOLDS_INTO.
    """
    by_name = {layer.name: layer for layer in report.layers}

    def producer_class(name: str) -> str | None:
        while name in by_name and by_name[name].cost_class == NO_KERNEL and by_name[name].inputs:
            name = by_name[name].inputs[0]
        return by_name[name].cost_class if name in by_name else None  # None: the network input

    folded = set()
    for layer in report.layers:
        if layer.cost_class not in profile.fused:
            continue
        producers = [producer_class(name) for name in layer.inputs]
        hosts = FOLDS_INTO.get(layer.cost_class)
        if any(cls is not None and (hosts is None or cls in hosts) for cls in producers):
            folded.add(layer.name)
    return folded


def estimate_layer(layer: LayerReport, profile: Profile, peak_flops_per_s: float, folded: bool = False) -> LayerCost:
    """Roofline time of one layer's forward pass, plus the kernel's fixed overhead; none for a layer that
    `folded` into a neighbouring kernel (see `folded_layers`)."""
    cls = layer.cost_class
    moved = layer.input_bytes + layer.activation_bytes + layer.weight_bytes
    if cls == NO_KERNEL or folded:
        return LayerCost(layer.name, 0.0, "none", 0.0, layer.flops, 0 if cls == NO_KERNEL else moved,
                         fused=cls != NO_KERNEL)
    efficiency = profile.efficiency.get(cls, 1.0)
    compute_s = layer.flops / (peak_flops_per_s * efficiency)  # FLOPs / effective peak
    memory_s = moved / (profile.mem_bytes_per_s * profile.mem_efficiency)  # bytes / effective bandwidth
    work_s = max(compute_s, memory_s)
    bound = "overhead" if profile.launch_overhead_s > work_s else "compute" if compute_s >= memory_s else "memory"
    intensity = layer.flops / moved if moved else 0.0  # arithmetic intensity, FLOPs per byte
    return LayerCost(layer.name, work_s + profile.launch_overhead_s, bound, intensity, layer.flops, moved,
                     compute_s, memory_s)


def estimate_network(report: NetworkReport, profile: Profile) -> NetworkCost:
    """Latency, training step, throughput, bound and the largest batches that fit, for one profile."""
    from .analysis import OPTIMIZER_SLOTS

    peak = profile.peak(report.dtype)
    folded = folded_layers(report, profile)
    layers = [estimate_layer(layer, profile, peak, layer.name in folded) for layer in report.layers]
    latency_s = sum(cost.time_s for cost in layers)
    # backward runs two kernels of the forward's size per layer (gradient of the input, of the weights)
    forward_backward_s = 3.0 * latency_s
    nbytes = DTYPE_BYTES[report.dtype]
    param_bytes = report.totals.trainable_params * nbytes
    bandwidth = profile.mem_bytes_per_s * profile.mem_efficiency
    update_s = {
        # read weights and gradients, write weights; read and write each state slot; one fused kernel
        name: (param_bytes * (3 + 2 * slots) / bandwidth + profile.launch_overhead_s) if param_bytes else 0.0
        for name, slots in OPTIMIZER_SLOTS.items()
    }
    by_bound = {bound: sum(c.time_s for c in layers if c.bound == bound) for bound in BOUNDS[:3]}
    bound = max(by_bound, key=lambda b: by_bound[b]) if latency_s > 0 else "none"
    inference, training = max_batches(report, profile.usable_mem_bytes)
    return NetworkCost(
        profile=profile.name, batch=report.batch, dtype=report.dtype, layers=layers, latency_s=latency_s,
        throughput_per_s=report.batch / latency_s if latency_s > 0 else float("inf"),
        train_step_s=forward_backward_s + update_s[TRAIN_OPTIMIZER], bound=bound,
        max_batch_inference=inference, max_batch_training=training, usable_bytes=profile.usable_mem_bytes,
        forward_backward_s=forward_backward_s, update_s=update_s, time_by_bound_s=by_bound,
    )


def max_batches(report: NetworkReport, usable_bytes: int) -> tuple[int, dict[str, int]]:
    """Largest batch that fits for inference and per optimizer for training; 0 when even batch 1 does not."""
    totals = report.totals
    # activations (and the input) grow with the batch, weights and optimizer state do not
    per_sample_inference = totals.peak_activation_bytes / report.batch
    kept_bytes = totals.input_bytes + totals.activation_bytes  # what training keeps for backward
    per_sample_training = kept_bytes / report.batch
    inference = _fit(usable_bytes - totals.weight_bytes, per_sample_inference)
    training = {name: _fit(usable_bytes - (total - kept_bytes), per_sample_training)
                for name, total in totals.training_bytes.items()}
    return inference, training


def _fit(free_bytes: float, per_sample_bytes: float) -> int:
    """floor(free / per-sample), never below 0 and never above MAX_BATCH: a larger "largest batch" is one
    --batch refuses, so it could not be analysed or used."""
    if free_bytes <= 0:
        return 0
    if per_sample_bytes <= 0:
        return MAX_BATCH
    return min(MAX_BATCH, int(free_bytes // per_sample_bytes))


# ---- calibrating this machine --------------------------------------------------
def calibrate_host(matmul_n: int = 1024, copy_mib: int = 64, conv_size: int = 28, repeats: int = 5,
                   name: str = "host") -> Profile:
    """Measure this machine with NumPy (matmul FLOP/s, copy bandwidth, conv efficiency, per-op overhead)."""
    if matmul_n < 8 or copy_mib < 1 or conv_size < 4 or repeats < 1:
        raise CnnCalcError("calibration sizes are too small", hint="use matmul_n >= 8, copy_mib >= 1, conv_size >= 4")
    rates = {dtype: _matmul_flops_per_s(matmul_n, np.dtype(dtype), repeats) for dtype in ("float32", "float64")}
    bandwidth = _copy_bytes_per_s(copy_mib * 2**20, repeats)
    pointwise = _pointwise_bytes_per_s(copy_mib * 2**20, repeats)
    conv_rate, depthwise_rate, overhead_s = _conv_rates(conv_size, repeats)
    total, usable = _host_memory_bytes()
    when = datetime.date.today().isoformat()
    how = f"measured by `cnncalc calibrate` on {when}, NumPy {np.__version__}, {platform.machine()}"
    efficiency = {cls: 1.0 for cls in KERNEL_CLASSES}
    # NumPy runs convs as im2col + matmul (no Winograd); depthwise as many tiny matmuls
    efficiency["conv"] = efficiency["conv_winograd"] = min(1.0, conv_rate / rates["float32"])
    efficiency["depthwise"] = min(1.0, depthwise_rate / rates["float32"])
    return Profile(
        name=name, description=f"this machine ({platform.node() or 'host'}), NumPy backend",
        peak_flops_per_s=rates, mem_bytes_per_s=bandwidth, mem_bytes=total, usable_mem_bytes=usable,
        launch_overhead_s=overhead_s, efficiency=efficiency, runtime="cnncalc NumPy backend",
        mem_efficiency=min(1.0, pointwise / bandwidth),
        sources={
            "peak_tflops": f"{how}: best of {repeats} {matmul_n}x{matmul_n} matmuls",
            "mem_gb_per_s": f"{how}: best of {repeats} copies of {copy_mib} MiB (read + write)",
            "mem_gib": "physical memory reported by the OS", "usable_mem_gib": "memory available when calibrated",
            "launch_overhead_us": f"{how}: a 1x1 conv on one pixel through Conv.forward",
            "efficiency.conv": f"{how}: a dense 3x3 Conv.forward on {conv_size}x{conv_size} vs the matmul rate",
            "efficiency.conv_winograd": "NumPy has no Winograd: the same as efficiency.conv",
            "efficiency.depthwise": f"{how}: a depthwise 3x3 Conv.forward on {conv_size}x{conv_size} vs matmul",
            "efficiency": "FC layers are one NumPy matmul (1.0); the other classes are bound by the copy rate",
            "mem_efficiency": f"{how}: ReLU and BN forward on {copy_mib} MiB vs the copy rate (geometric mean)",
        },
        origin="cnncalc calibrate",
    )


def save_host_profile(profile: Profile, path: str | Path | None = None) -> Path:
    """Write the profile into the per-user profiles file, keeping the other profiles there."""
    from .fileio import write_atomic

    target, data = host_profiles_file(path)
    entries = data.setdefault("profiles", {}) if "profiles" in data or not data else data
    entries[profile.name] = profile_to_yaml(profile)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CnnCalcError(f"cannot save the profile to {target}: {error.strerror or error}",
                           hint="set CNNCALC_CONFIG_DIR to a folder you can write") from None
    return write_atomic(target, yaml.safe_dump(data, sort_keys=False))


def host_profiles_file(path: str | Path | None = None) -> tuple[Path, dict[str, Any]]:
    """The file `calibrate` saves to and what it holds now; refused here, before seconds of measuring, when it
    could not be saved (its folder is a file, it is a folder, its YAML is broken)."""
    target = Path(path) if path is not None else user_profiles_path()
    if target.is_dir():
        raise CnnCalcError(f"cannot save the profile to {target}: it is a folder",
                           hint="set CNNCALC_CONFIG_DIR to a folder without a profiles.yaml folder in it")
    blocking = next((folder for folder in target.parents if folder.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise CnnCalcError(f"cannot save the profile to {target}: {blocking} is a file, not a folder",
                           hint=f"set CNNCALC_CONFIG_DIR to a folder, or move {blocking} out of the way")
    data: dict[str, Any] = {}
    if target.is_file():
        try:
            text = target.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise SpecFileError(f"cannot read profiles file {target}: {error}") from None
        data = _parse_yaml(text, str(target))
    if "profiles" in data:
        if data["profiles"] is None:  # `profiles:` with nothing under it yet
            data["profiles"] = {}
        if not isinstance(data["profiles"], dict):
            raise SpecFileError(f"{target}: `profiles` must map profile names to their fields",
                                hint="fix the file, or move it away to start a new one")
    return target, data


def _best_time(run: Callable[[], object], repeats: int) -> float:
    """Fastest of `repeats` timed runs after one warm-up, in seconds."""
    run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return max(best, 1e-9)


def _matmul_flops_per_s(n: int, dtype: np.dtype, repeats: int) -> float:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n)).astype(dtype), rng.standard_normal((n, n)).astype(dtype)
    out = np.empty((n, n), dtype=dtype)
    return 2 * n**3 / _best_time(lambda: np.matmul(a, b, out=out), repeats)  # 2 n^3 FLOPs per n x n matmul


def _copy_bytes_per_s(nbytes: int, repeats: int) -> float:
    src = np.ones(nbytes // 4, dtype=np.float32)
    dst = np.empty_like(src)
    return 2 * src.nbytes / _best_time(lambda: np.copyto(dst, src), repeats)  # read + write


def _pointwise_bytes_per_s(nbytes: int, repeats: int) -> float:
    """Bytes read + written per second by the backend's own ReLU and BN forward (geometric mean of the two)."""
    from .ops.batchnormalization import BatchNormalization
    from .ops.relu import Relu

    channels = 16
    x = np.ones((1, channels, max(1, nbytes // (4 * channels)), 1), dtype=np.float32)
    stats = [np.ones(channels, np.float32), np.zeros(channels, np.float32), np.zeros(channels, np.float32),
             np.ones(channels, np.float32)]
    relu_s = _best_time(functools.partial(Relu().forward, [x]), repeats)
    bn_s = _best_time(functools.partial(BatchNormalization().forward, [x, *stats]), repeats)
    return 2 * x.nbytes / math.sqrt(relu_s * bn_s)  # each reads and writes the tensor once, at least


def _conv_rates(size: int, repeats: int) -> tuple[float, float, float]:
    """FLOP/s of a dense and a depthwise 3x3 conv through the ops, and the fixed cost of one op call."""
    from .ops.conv import Conv

    rng = np.random.default_rng(0)
    channels, batch = 64, 8
    x = rng.standard_normal((batch, channels, size, size)).astype(np.float32)
    rates = []
    for group in (1, channels):
        op = Conv((3, 3), channels, channels, pads=(1, 1, 1, 1), group=group, bias=False)
        w = rng.standard_normal((channels, channels // group, 3, 3)).astype(np.float32)
        flops = batch * op.flops([x.shape[1:]], (channels, size, size))
        rates.append(flops / _best_time(functools.partial(op.forward, [x, w]), repeats))
    tiny = Conv((1, 1), 1, 1, bias=False)
    one = np.ones((1, 1, 1, 1), dtype=np.float32)
    overhead_s = _best_time(lambda: tiny.forward([one, one]), repeats)
    return rates[0], rates[1], overhead_s


def _host_memory_bytes() -> tuple[int, int]:
    """Physical and available memory: /proc/meminfo where there is one, else sysconf (8 / 4 GiB if unknown)."""
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        values = {}
        for line in meminfo.read_text().splitlines():
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                values[key] = int(parts[0]) * 1024  # reported in KiB
        if "MemTotal" in values:
            return values["MemTotal"], values.get("MemAvailable", values["MemTotal"] // 2)
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        total = page * os.sysconf("SC_PHYS_PAGES")
        available = page * os.sysconf("SC_AVPHYS_PAGES")
        return int(total), int(min(available, total))
    except (AttributeError, ValueError, OSError):
        return 8 * 2**30, 4 * 2**30
