"""A model's policy versions beside its model versions, hash-checked like them.

Layout under the registry root: `<model>/policies/p<N>.json` (immutable, one per `set`) and
`<model>/policies/current.json`, written last, naming the version in force and its sha256. A
policy file whose sha256 does not match is refused; a model with no policy runs under the
defaults (`core.policy.Policy()`). Model versions are never touched.
"""

from __future__ import annotations

import json
import re
from typing import Any

from core.errors import InputError
from core.policy import Policy, parse_policy
from model_registry.registry import Registry, sha256_of

POLICY_DIR = "policies"
CURRENT = "current.json"
_VERSION = re.compile(r"^p[0-9]{1,9}$")


def _dir(registry: Registry, model: str) -> str:
    return f"{registry._dir(model)}/{POLICY_DIR}"


def current_policy(registry: Registry, model: str) -> Policy:
    """The policy in force for `model`, checked against its recorded sha256."""
    directory = _dir(registry, model)
    storage = registry.storage
    pointer_path = f"{directory}/{CURRENT}"
    raw = storage.read_bytes(pointer_path)
    if raw is None:
        return Policy()
    shown = storage.uri_of(pointer_path)
    try:
        pointer = json.loads(raw)
        version, expected = str(pointer["version"]), str(pointer["sha256"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(
            f"{shown}: not a policy pointer ({exc!r}); set the policy again with "
            "`driftline policy set`"
        ) from exc
    if not _VERSION.match(version):  # a version becomes a path
        raise InputError(f"{shown}: policy version {version!r} is not of the form p1, p2, ...")
    path = f"{directory}/{version}.json"
    payload = storage.read_bytes(path)
    if payload is None:
        raise InputError(
            f"{storage.uri_of(path)}: the policy in force is missing; set it again with "
            "`driftline policy set`"
        )
    actual = sha256_of(payload)
    if actual != expected:
        raise InputError(
            f"{storage.uri_of(path)}: sha256 {actual[:12]}... does not match its record "
            f"({expected[:12]}...); the policy changed after it was set and was not used: set "
            "it again with `driftline policy set`"
        )
    return parse_policy(json.loads(payload), source=storage.uri_of(path), version=version)


def set_policy(registry: Registry, model: str, raw: Any, *, source: str) -> Policy:
    """Store `raw` (parsed JSON or YAML) as the model's next policy version and put it in force,
    once it is valid and names only the production model's features."""
    policy = parse_policy(raw, source=source)
    policy.check_features(registry.card(model).feature_names, source=source)
    directory = _dir(registry, model)
    storage = registry.storage
    taken = [
        int(name[1:-5])
        for name in (p.rsplit("/", 1)[-1] for p in storage.files(directory, ".json"))
        if _VERSION.match(name[:-5])
    ]
    version = f"p{max(taken, default=0) + 1}"
    payload = (json.dumps(policy.to_mapping(), indent=2) + "\n").encode()
    storage.write_bytes(f"{directory}/{version}.json", payload)
    pointer = {"version": version, "sha256": sha256_of(payload)}
    storage.write_bytes(f"{directory}/{CURRENT}", (json.dumps(pointer) + "\n").encode())
    return parse_policy(policy.to_mapping(), source=source, version=version)
