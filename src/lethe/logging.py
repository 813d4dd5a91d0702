"""Masking of PII in log records: a stdlib `logging.Filter` and a structlog processor.

Logs are copied to places a retention policy never reaches (aggregators, tickets,
backups), so the safest PII in a log is none. Both maskers rewrite what a record says:

* values the detectors of `lethe.pii` find: emails (`p***@example.com`), phone numbers,
  card numbers (last four kept), IBANs, bearer tokens, API keys and secrets;
* the values of declared PII fields, by name: `email=…`, `"email": "…"`, `'email': '…'`
  in the message, and record attributes (`extra={"email": …}`) of those names.

lethe installs the filter on itself (`install_masking()` in the CLI entry point and the
HTTP API); an application embedding lethe may call it for its own loggers too.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from typing import Any

from lethe import pii

MASK = "***"
DEFAULT_LOGGERS = ("lethe", "uvicorn", "uvicorn.access", "uvicorn.error")
# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}


class Masker:
    """The text masking both front ends share: declared fields, then the detectors."""

    def __init__(self, fields: Iterable[str] = (), kinds: Iterable[str] = pii.LOG_KINDS):
        self.fields = frozenset(fields)
        self.kinds = tuple(kinds)
        self._field_value: re.Pattern[str] | None = None
        if self.fields:
            names = "|".join(re.escape(f) for f in sorted(self.fields, key=len, reverse=True))
            # name=value, name: value, "name": "value", 'name': 'value' (JSON, reprs, logfmt)
            self._field_value = re.compile(
                rf"(?<![\w.-])(?P<q>[\"']?)(?:{names})(?P=q)\s*[=:]\s*"
                r"(?P<v>\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|[^\s,;&)\]}]+)")

    def text(self, text: str) -> str:
        if self._field_value is not None and any(f in text for f in self.fields):
            text = self._field_value.sub(_masked_value, text)
        return pii.mask(text, self.kinds)

    def value(self, key: str, value: Any) -> Any:
        """A structured value: wholly masked under a declared field's name, else scanned."""
        if key in self.fields and value is not None:
            return MASK
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {k: self.value(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.value("", v) for v in value)
        return value


def _masked_value(match: re.Match[str]) -> str:
    value = match.group("v")
    quote = value[0] if value[0] in "\"'" else ""
    head = match.group()[: match.start("v") - match.start()]
    return f"{head}{quote}{MASK}{quote}"


class MaskingFilter(logging.Filter):
    """Masks PII in a record before any handler formats it; never drops a record.

    The message is masked with its arguments applied. When masking each argument on its
    own gives the same text, the arguments stay separate (uvicorn's access formatter
    unpacks them); otherwise the record carries the masked message and no arguments.
    A traceback is rendered into `exc_text` and masked; if it held PII, `exc_info` is
    dropped so no later formatter renders the unmasked original.
    """

    def __init__(self, fields: Iterable[str] = (), kinds: Iterable[str] = pii.LOG_KINDS,
                 name: str = "") -> None:
        super().__init__(name)
        self.masker = Masker(fields, kinds)

    def filter(self, record: logging.LogRecord) -> bool:
        self._message(record)
        self._traceback(record)
        attributes = vars(record)
        for key in attributes.keys() - _STANDARD:  # what `extra=` added
            if not key.startswith("_"):
                value = attributes[key]
                masked = self.masker.value(key, value)
                if masked is not value and masked != value:
                    setattr(record, key, masked)
        return True

    def _message(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            # a broken format string: the handler reports it; show no arguments
            message = str(record.msg)
            record.args = ()
        masked = self.masker.text(message)
        if masked == message:
            return
        args = record.args
        if isinstance(args, tuple) and args and isinstance(record.msg, str):
            each = tuple(self._arg(a) for a in args)
            template = self.masker.text(record.msg)
            try:
                if template % each == masked:
                    record.msg, record.args = template, each
                    return
            except (TypeError, ValueError):
                pass
        record.msg, record.args = masked, ()

    def _arg(self, arg: object) -> object:
        if isinstance(arg, str):
            return self.masker.text(arg)
        if isinstance(arg, int | float) or arg is None:
            return arg
        text = str(arg)
        masked = self.masker.text(text)
        return arg if masked == text else masked

    def _traceback(self, record: logging.LogRecord) -> None:
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            masked = self.masker.text(record.exc_text)
            if masked != record.exc_text:
                record.exc_text = masked
                record.exc_info = None
        if record.stack_info:
            record.stack_info = self.masker.text(record.stack_info)


class MaskProcessor:
    """A structlog processor: masks every string in the event dict, and wholly replaces
    the values of declared fields. Put it after `format_exc_info` (so the rendered
    traceback is masked) and before the renderer."""

    def __init__(self, fields: Iterable[str] = (), kinds: Iterable[str] = pii.LOG_KINDS):
        self.masker = Masker(fields, kinds)

    def __call__(self, logger: Any, method_name: str,
                 event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key, value in list(event_dict.items()):
            masked = self.masker.value(key, value)
            if masked is not value:
                event_dict[key] = masked
        return event_dict


mask_processor = MaskProcessor()
"""The processor with the detectors only; `MaskProcessor(fields=…)` adds declared fields."""


def install_masking(logger_names: Sequence[str] = DEFAULT_LOGGERS, fields: Iterable[str] = (),
                    kinds: Iterable[str] = pii.LOG_KINDS) -> MaskingFilter:
    """Attach one `MaskingFilter` to the named loggers, their handlers, the root logger's
    handlers and the last-resort handler (what prints when nothing is configured).

    A logger's own filter sees only records logged on it, not its children's, while a
    handler's sees everything it emits; hence both. Call it again after configuring
    logging (uvicorn replaces its handlers at start-up): an earlier `MaskingFilter` is
    replaced, never doubled. Returns the filter.
    """
    masking = MaskingFilter(fields, kinds)
    targets: list[logging.Filterer] = []
    for name in logger_names:
        logger = logging.getLogger(name)
        targets.append(logger)
        targets.extend(logger.handlers)
    targets.extend(logging.getLogger().handlers)
    if logging.lastResort is not None:
        targets.append(logging.lastResort)
    for target in dict.fromkeys(targets):
        for old in [f for f in target.filters if isinstance(f, MaskingFilter)]:
            target.removeFilter(old)
        target.addFilter(masking)
    return masking
