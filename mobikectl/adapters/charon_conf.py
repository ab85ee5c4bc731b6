"""Start-up check of the charon settings mobikectl relies on (see docs/charon.md).

VICI cannot read charon's settings, so this reads the strongswan.conf the daemon uses
(STRONGSWAN_CONF, default /etc/strongswan.conf) with its `include` files, the way charon
does as far as mobikectl needs: sections `name { ... }`, `key = value`, `#` comments,
`include GLOB` (relative to the including file). A later value wins. Settings under
`charon-systemd` fall back to `charon`, as charon-systemd does.

Needed:  charon.prefer_best_path = yes   (read live: `swanctl --reload-settings` applies it)
Advised: charon.interfaces_use (so ipsec0, docker bridges and such are never paths)
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

from mobikectl.errors import DataError

TRUE = {"yes", "true", "enabled", "1", "y"}


def parse(path: str | os.PathLike, settings: dict[str, str] | None = None, _depth: int = 0) -> dict[str, str]:
    """strongswan.conf → {"charon.prefer_best_path": "yes", ...} (dotted keys)."""
    settings = {} if settings is None else settings
    path = Path(path)
    if _depth > 10:
        return settings
    stack: list[str] = []
    for raw in path.read_text(errors="replace").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("include "):
            pattern = line.split(None, 1)[1].strip().strip('"')
            if not os.path.isabs(pattern):
                pattern = str(path.parent / pattern)
            for inc in sorted(glob.glob(pattern)):
                sub = parse(inc, {}, _depth + 1)
                prefix = ".".join(stack)
                for k, v in sub.items():
                    settings[f"{prefix}.{k}" if prefix else k] = v
            continue
        while line:
            if line.startswith("}"):
                if stack:
                    stack.pop()
                line = line[1:].strip()
                continue
            if "{" in line and ("=" not in line or line.index("{") < line.index("=")):
                name, line = line.split("{", 1)
                stack.append(name.strip())
                line = line.strip()
                continue
            if "=" in line:
                k, v = line.split("=", 1)
                v = v.strip()
                closing = v.count("}")
                v = v.rstrip("}").strip().strip('"')
                settings[".".join([*stack, k.strip()])] = v
                for _ in range(closing):
                    if stack:
                        stack.pop()
            break
    return settings


def get(settings: dict[str, str], key: str) -> str | None:
    """A charon option, with charon-systemd's fallback to charon."""
    return settings.get(f"charon-systemd.{key}", settings.get(f"charon.{key}"))


def problems(path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """(errors, warnings) about the settings in `path`."""
    try:
        settings = parse(path)
    except OSError as exc:
        return [f"cannot read charon's settings {path}: {exc.strerror or exc}: "
                f"set STRONGSWAN_CONF to the file charon uses"], []
    errors, warnings = [], []
    if (get(settings, "prefer_best_path") or "no").lower() not in TRUE:
        errors.append(
            f"charon.prefer_best_path is not enabled in {path}: the controller cannot move SAs; add "
            f"`prefer_best_path = yes` to the charon section and run `swanctl --reload-settings`")
    if not get(settings, "interfaces_use"):
        warnings.append(
            f"charon.interfaces_use is not set in {path}: charon treats every interface (ipsec0, "
            f"docker bridges, ...) as a possible path; list the uplinks, e.g. `interfaces_use = "
            f"eth0,wlan0,wwan0` (read at charon's start)")
    if (get(settings, "plugins.kernel-netlink.roam_events") or "yes").lower() not in TRUE:
        errors.append(f"charon.plugins.kernel-netlink.roam_events is off in {path}: charon ignores route "
                      f"changes, so steering cannot work; remove it and restart charon")
    if (get(settings, "process_route") or "yes").lower() not in TRUE:
        errors.append(f"charon.process_route is off in {path}: charon ignores route changes, so steering "
                      f"cannot work; remove it and restart charon")
    return errors, warnings


def check_charon_settings(path: str | os.PathLike) -> list[str]:
    """Raise DataError (exit 65) listing every error; return the warnings."""
    errors, warnings = problems(path)
    if errors:
        raise DataError(errors[0], problems=errors)
    return warnings
