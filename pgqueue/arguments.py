"""A task's arguments: checked against its signature and turned into JSON at enqueue, turned back
into a call on the worker.

Nothing is written for a bad call: it fails at the caller, naming the task and the argument.
Typed parameters go through pydantic both ways (a model is stored as JSON and comes back as a
model, a ``datetime`` as an ISO string and back); untyped ones take plain JSON values only, since
a ``set`` or ``bytes`` silently turned into a list or a string would reach the task as something
else. Strings may not hold U+0000, which PostgreSQL's ``jsonb`` cannot store.
"""

from __future__ import annotations

import inspect
import json
import math
import typing
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any

from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError, to_jsonable_python

from .context import JobContext
from .errors import PayloadTooLarge

# Values that are their own JSON: no conversion needed at enqueue.
_JSON_SCALARS = frozenset({int, str, float, bool, type(None)})


class InvalidArguments(ValueError):
    """The stored arguments no longer fit the task's signature: retrying cannot help."""


class EncodedCall:
    """A call's arguments as JSON-ready values; the JSON text is made when first needed (a batch
    of calls is dumped at once instead)."""

    __slots__ = ("args", "kwargs", "_args_json", "_kwargs_json")

    def __init__(self, args: list[Any], kwargs: dict[str, Any]) -> None:
        self.args = args
        self.kwargs = kwargs
        self._args_json: str | None = None
        self._kwargs_json: str | None = None

    @property
    def args_json(self) -> str:
        if self._args_json is None:
            self._args_json = dumps(self.args)
        return self._args_json

    @property
    def kwargs_json(self) -> str:
        if self._kwargs_json is None:
            self._kwargs_json = dumps(self.kwargs) if self.kwargs else "{}"
        return self._kwargs_json


# Made once: ``json.dumps(..., allow_nan=False)`` would build a new encoder on every call.
_STRICT_JSON = json.JSONEncoder(allow_nan=False)


def dumps(value: Any) -> str:
    """JSON text, refusing NaN and infinities (PostgreSQL's jsonb has no place for them)."""
    try:
        return _STRICT_JSON.encode(value)
    except ValueError as exc:
        raise ValueError(f"arguments are not valid JSON: {exc}") from None


def holds_nul(value: Any) -> bool:
    """True if a string anywhere in a JSON value (keys included) holds U+0000."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(holds_nul(key) or holds_nul(item) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return any(holds_nul(item) for item in value)
    return False


class _NotJson(Exception):
    """Why a value cannot be stored as it is; ``type_error`` says which exception the caller
    gets (a value of the wrong kind, or a value of the right kind that JSON cannot hold)."""

    def __init__(self, reason: str, type_error: bool) -> None:
        super().__init__(reason)
        self.type_error = type_error


def _check_json(value: Any) -> None:
    """Raise ``_NotJson`` unless ``value`` is made of JSON values only (dicts with string keys,
    lists, tuples, strings without U+0000, finite numbers, booleans, None)."""
    kind = type(value)
    if kind is str:
        if "\x00" in value:
            raise _NotJson("holds the character U+0000, which PostgreSQL cannot store", False)
    elif kind is float:
        if not math.isfinite(value):
            raise _NotJson(f"is {value!r}, which JSON cannot hold", False)
    elif kind in _JSON_SCALARS:
        return
    elif kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise _NotJson(f"has a {type(key).__name__} key; JSON keys are strings", True)
            _check_json(key)
            _check_json(item)
    elif kind in (list, tuple):
        for item in value:
            _check_json(item)
    else:
        raise _NotJson(
            f"is a {kind.__name__}, not a JSON value; convert it, or annotate the parameter "
            "with its type so that pydantic stores it and gives it back",
            True,
        )


class Arguments:
    """How one task's calls are checked and encoded, and decoded again for a run."""

    def __init__(self, task_name: str, fn: Callable[..., Any] | None, max_payload_bytes: int) -> None:
        self.task_name = task_name
        self.fn = fn
        self.max_payload_bytes = max_payload_bytes

    # -- what the signature says -----------------------------------------------------------------

    @cached_property
    def context_parameter(self) -> str | None:
        """The parameter the worker fills with the ``JobContext``, if any."""
        for name, annotation in self._hints.items():
            if annotation is JobContext:
                return name
        return None

    @cached_property
    def _hints(self) -> dict[str, Any]:
        if self.fn is None:
            return {}
        try:
            return typing.get_type_hints(self.fn)
        except Exception:  # unresolvable forward references: run without validation
            return {
                name: p.annotation
                for name, p in inspect.signature(self.fn).parameters.items()
                if p.annotation is not inspect.Parameter.empty and not isinstance(p.annotation, str)
            }

    @cached_property
    def _signature(self) -> inspect.Signature:
        """The signature a caller sees: the function's, without the injected context."""
        assert self.fn is not None
        signature = inspect.signature(self.fn)
        return signature.replace(
            parameters=[p for n, p in signature.parameters.items() if n != self.context_parameter]
        )

    @cached_property
    def _adapters(self) -> dict[str, TypeAdapter[Any]]:
        """A pydantic adapter per typed parameter (not ``Any``, not ``*args``/``**kwargs``)."""
        adapters = {}
        for name, parameter in self._signature.parameters.items():
            annotation = self._hints.get(name, Any)
            if annotation is Any or parameter.kind in (
                inspect.Parameter.VAR_POSITIONAL,
                inspect.Parameter.VAR_KEYWORD,
            ):
                continue
            adapters[name] = TypeAdapter(annotation)
        return adapters

    @cached_property
    def _positional_names(self) -> list[str]:
        """The parameter each positional argument goes to; extra ones go to ``*args`` (named
        last), if there is one."""
        names = []
        for name, parameter in self._signature.parameters.items():
            if parameter.kind in (inspect.Parameter.POSITIONAL_ONLY,
                                  inspect.Parameter.POSITIONAL_OR_KEYWORD):
                names.append(name)
            elif parameter.kind is inspect.Parameter.VAR_POSITIONAL:
                names.append(name)
                break
        return names

    @cached_property
    def _plain_arity(self) -> int | None:
        """How many arguments a plain positional call passes, when the signature (without the
        context) is only ordinary parameters and the context, if any, comes last: then such a call
        needs no binding on either side. None otherwise."""
        if self.fn is None:
            return None
        full = list(inspect.signature(self.fn).parameters.values())
        if self.context_parameter is not None and full[-1].name != self.context_parameter:
            return None
        ordinary = [p for p in full if p.name != self.context_parameter]
        if any(p.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD for p in ordinary):
            return None
        return len(ordinary)

    @cached_property
    def _positional_adapters(self) -> list[tuple[Any, TypeAdapter[Any] | None]]:
        """(annotation, adapter) per ordinary parameter, in order, for the plain-call path."""
        return [(self._hints.get(name, Any), self._adapters.get(name))
                for name in self._signature.parameters]

    # -- enqueue ---------------------------------------------------------------------------------

    def encode(self, args: Sequence[Any], kwargs: dict[str, Any]) -> EncodedCall:
        """Check a call against the signature and encode its arguments as JSON values."""
        if self.fn is not None and (kwargs or len(args) != self._plain_arity):
            try:
                self._signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"task {self.task_name}: {exc}") from None
        if not kwargs and self._plainly_json(args):
            return EncodedCall(list(args), {})
        encoded = [self._encode_one(i, value) for i, value in enumerate(args)]
        encoded_kwargs = {name: self._encode_one(name, value) for name, value in kwargs.items()}
        call = EncodedCall(encoded, encoded_kwargs)
        size = len(call.args_json) + len(call.kwargs_json)
        if size > self.max_payload_bytes:
            raise PayloadTooLarge(
                f"task {self.task_name}: arguments encode to {size} bytes, over the limit of "
                f"{self.max_payload_bytes} (PGQUEUE_MAX_PAYLOAD_BYTES); store large data "
                "elsewhere and pass a reference"
            )
        return call

    def _encode_one(self, where: int | str, value: Any) -> Any:
        label = f"argument {where + 1}" if isinstance(where, int) else f"argument {where!r}"
        parameter = self._parameter_of(where)
        adapter = None if parameter is None else self._adapters.get(parameter)
        try:
            if adapter is not None:
                value = to_jsonable_python(value)
            _check_json(value)
        except (PydanticSerializationError, TypeError, ValueError) as exc:
            raise TypeError(
                f"task {self.task_name}: {label} is not JSON-serializable "
                f"({type(value).__name__}): {exc}"
            ) from None
        except _NotJson as problem:
            error = TypeError if problem.type_error else ValueError
            raise error(f"task {self.task_name}: {label} {problem}") from None
        return value

    def _parameter_of(self, where: int | str) -> str | None:
        """The name of the parameter a positional index or keyword goes to, when known."""
        if self.fn is None:
            return None
        if isinstance(where, str):
            return where
        names = self._positional_names
        return names[min(where, len(names) - 1)] if names else None

    def _plainly_json(self, args: Sequence[Any]) -> bool:
        """True if the values need no conversion and cannot come near the payload limit (even
        escaped six times over), so they are stored as they are without a size check."""
        text = 0
        for value in args:
            kind = type(value)
            if kind is str:
                if "\x00" in value:
                    return False
                text += len(value)
            elif kind is float:
                if not math.isfinite(value):
                    return False
            elif kind not in _JSON_SCALARS:
                return False
        return 6 * text + 32 * len(args) < self.max_payload_bytes

    # -- run -------------------------------------------------------------------------------------

    def decode(
        self, args: list[Any], kwargs: dict[str, Any], ctx: JobContext
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Turn a job's stored arguments back into a call: validated values, context injected."""
        assert self.fn is not None
        if not kwargs and len(args) == self._plain_arity:
            return self._decode_plain(args, ctx), {}
        try:
            bound = self._signature.bind(*args, **kwargs)
            for name, adapter in self._adapters.items():
                if name in bound.arguments:
                    bound.arguments[name] = adapter.validate_python(bound.arguments[name])
        except (TypeError, ValidationError) as exc:
            raise InvalidArguments(
                f"task {self.task_name}: stored arguments do not fit: {exc}") from None
        if self.context_parameter is None:
            return bound.args, bound.kwargs
        arguments = dict(bound.arguments)
        arguments[self.context_parameter] = ctx
        full = inspect.signature(self.fn)
        ordered = {name: arguments[name] for name in full.parameters if name in arguments}
        call = inspect.BoundArguments(full, ordered)  # type: ignore[arg-type]
        return call.args, call.kwargs

    def _decode_plain(self, args: list[Any], ctx: JobContext) -> tuple[Any, ...]:
        values = []
        try:
            for value, (annotation, adapter) in zip(args, self._positional_adapters, strict=True):
                if adapter is not None and type(value) is not annotation:
                    value = adapter.validate_python(value)
                values.append(value)
        except ValidationError as exc:
            raise InvalidArguments(
                f"task {self.task_name}: stored arguments do not fit: {exc}") from None
        if self.context_parameter is not None:
            values.append(ctx)
        return tuple(values)
