"""Toil's requirement forms: ``PromisedRequirement`` and accelerators ("cuda:1", dicts, lists)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from flow.core.exceptions import JobException

#: Accelerator kinds, brands and APIs Toil's string form names (other words are models).
KINDS = ("gpu",)
BRANDS = ("nvidia", "amd")
APIS = ("cuda", "rocm", "opencl")
_KEYS = ("count", "kind", "model", "brand", "api")


class PromisedRequirement:
    """A resource requirement known only when another job has run, as Toil's::

        Job.wrapJobFn(analyse, fileID=download.rv(0), disk=PromisedRequirement(download.rv(1)))
        Job.wrapFn(f, memory=PromisedRequirement(lambda size: size * 2, download.rv(1)))

    With one argument, the value of that promise; with a function and arguments, the function
    applied to them (promises among them resolved first). Only wrapped functions take them
    (``wrapFn``, ``wrapJobFn``, ``addChildFn`` ...): the job first runs as a small stand-in that
    resolves the requirements and then runs the function as its child, with them.
    """

    def __init__(self, valueOrCallable: Any, *args: Any) -> None:
        if callable(valueOrCallable) and not _is_promise(valueOrCallable):
            if not args:
                raise JobException("PromisedRequirement(function, ...) needs the function's arguments")
            self._func: Callable[..., Any] | None = valueOrCallable
            self._args = list(args)
        else:
            if args:
                raise JobException("PromisedRequirement with several values needs a function "
                                   "to combine them as its first argument")
            self._func = None
            self._args = [valueOrCallable]

    def getValue(self) -> Any:
        """The requirement (call this only once the promises it holds are resolved)."""
        return self._func(*self._args) if self._func is not None else self._args[0]

    @staticmethod
    def convertPromises(kwargs: Mapping[str, Any]) -> bool:
        """Whether any of ``kwargs`` is a PromisedRequirement (Toil's name)."""
        return any(isinstance(value, PromisedRequirement) for value in kwargs.values())


def _is_promise(value: Any) -> bool:
    from flow.core.promise import Promise

    return isinstance(value, Promise)


def parse_accelerators(value: Any) -> list[dict[str, Any]]:
    """Toil's accelerator forms as a list of requirement dicts ``{"count", "kind", "model",
    "brand", "api"}``: an int (that many GPUs), a string ``"[kind|brand|api|model][:count]"``
    ("cuda:1", "nvidia-tesla-k80:2", "gpu"), a dict, or a list of any of these."""
    if value is None or value == 0:
        return []
    if isinstance(value, (list, tuple)):
        return [spec for item in value for spec in parse_accelerators(item)]
    if isinstance(value, bool):
        raise JobException(f"accelerators must be a count, a string such as 'cuda:1', a dict or a list, not {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise JobException(f"accelerators must not be negative, got {value}")
        return [{"count": value, "kind": "gpu"}]
    if isinstance(value, str):
        return [_parse_accelerator_string(value)]
    if isinstance(value, Mapping):
        unknown = set(value) - set(_KEYS)
        if unknown:
            raise JobException(f"accelerator {dict(value)!r} has unknown keys {sorted(unknown)}; "
                               f"known: {', '.join(_KEYS)}")
        spec = {"count": 1, "kind": "gpu", **{k: v for k, v in value.items() if v is not None}}
        return [_checked(spec, repr(dict(value)))]
    raise JobException(f"accelerators must be a count, a string such as 'cuda:1', a dict or a list, not {value!r}")


def _parse_accelerator_string(text: str) -> dict[str, Any]:
    name, _, count_text = text.strip().partition(":")
    spec: dict[str, Any] = {"count": 1, "kind": "gpu"}
    if count_text:
        try:
            spec["count"] = int(count_text)
        except ValueError:
            raise JobException(f"accelerator {text!r}: {count_text!r} is not a count") from None
    word = name.strip().lower()
    if word in KINDS:
        spec["kind"] = word
    elif word in BRANDS:
        spec["brand"] = word
    elif word in APIS:
        spec["api"] = word
    elif word:
        spec["model"] = name.strip()
    else:
        raise JobException(f"accelerator {text!r} names no kind, brand, API or model")
    return _checked(spec, repr(text))


def _checked(spec: dict[str, Any], shown: str) -> dict[str, Any]:
    count = spec["count"]
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise JobException(f"accelerator {shown}: count must be a whole number >= 0, got {count!r}")
    return spec


def accelerator_count(specs: list[dict[str, Any]] | list[dict[str, object]]) -> int:
    return sum(int(str(spec["count"])) for spec in specs)
