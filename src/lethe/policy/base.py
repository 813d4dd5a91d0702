"""What every part of the policy model is built from: strict models, durations, names."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer, WithJsonSchema

from lethe.policy.durations import Duration, parse_duration

DurationField = Annotated[
    Duration,
    BeforeValidator(parse_duration),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^(\d+(mo|m|h|d|w|y)|forever)$",
                    "examples": ["24h", "30d", "12mo", "7y", "forever"]}),
]
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
METADATA = re.compile(r"^(metadata|tag)\.[A-Za-z0-9_-]+$")  # an object's metadata or tag


def identifier(value: str, what: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"invalid {what} name {value!r} (letters, digits and _ only)")
    return value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
