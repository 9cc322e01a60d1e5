"""The CLI's `--json` contract: every document a command prints validates against its schema
in cli/schemas/ (COMMAND.schema.json, words joined by '-'; messages.schema.json holds the
message definitions they refer to). Fleet.cli checks every `--json` output of every lab test.

    problems = json_contract.problems(["evidence", "list"], doc)   # [] when it validates
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from typing import List, Optional, Sequence

import jsonschema

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SCHEMA_DIR = os.path.join(REPO, "cli", "schemas")
MESSAGES_REF = "messages.schema.json#/$defs/"


def schema_path(command: str) -> str:
    return os.path.join(SCHEMA_DIR, command.replace(" ", "-") + ".schema.json")


def command_of(args: Sequence[str]) -> Optional[str]:
    """The command `bulkhead ARGS...` runs: two words when a two-word schema exists."""
    words = [a for a in args if not a.startswith("-")][:2]
    if len(words) == 2 and os.path.exists(schema_path(" ".join(words))):
        return " ".join(words)
    return words[0] if words else None


def _inline(node, defs_used: set):
    """The schema with references into messages.schema.json made local (#/$defs/...)."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str) and v.startswith(MESSAGES_REF):
                defs_used.add(v[len(MESSAGES_REF):])
                out[k] = "#/$defs/" + v[len(MESSAGES_REF):]
            else:
                out[k] = _inline(v, defs_used)
        return out
    if isinstance(node, list):
        return [_inline(v, defs_used) for v in node]
    return node


@lru_cache(maxsize=None)
def validator(command: str) -> jsonschema.Draft202012Validator:
    with open(os.path.join(SCHEMA_DIR, "messages.schema.json")) as f:
        messages = json.load(f)
    with open(schema_path(command)) as f:
        schema = _inline(json.load(f), set())
    schema["$defs"] = _inline(messages["$defs"], set())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def problems(args: Sequence[str], doc) -> List[str]:
    """Why `doc`, printed by `bulkhead --json ARGS...`, breaks the contract ([] if it does not)."""
    command = command_of(args)
    if command is None or not os.path.exists(schema_path(command)):
        return [f"no schema for `bulkhead {command} --json` in {SCHEMA_DIR}"]
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '(document)'}: {e.message}"
            for e in validator(command).iter_errors(doc)]
