"""Calls to an object in another process: its methods over the :class:`~.bus.Bus`.

A :class:`MethodTable` names the methods of an interface that may cross processes (an
allowlist: nothing else can be called) and builds, from their type hints, a pydantic
``TypeAdapter`` for each parameter and each result. A call is sent as JSON (every
argument dumped in JSON mode) and validated back into its types on the other side, so
both ends hold the same typed values (pydantic models, dataclass records, paths) and no
live object ever crosses.

The room service's errors cross too: a :class:`ConferenceError` (or a subclass the table
knows) raised by the callee is raised again in the caller with the same message, OWT
code and HTTP status. Whatever else fails in the callee reaches the caller as an
"Internal error" (the callee logs it).
"""

from __future__ import annotations

import inspect
import logging
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pydantic
from pydantic import TypeAdapter

from tessera.conference.errors import ConferenceError, ErrorCode

from .bus import Bus, RemoteError, RequestHandler

logger = logging.getLogger(__name__)

# The kind of a RemoteError carrying a room-service error.
CONFERENCE_ERROR = "conference"
# The kind of a RemoteError for a call the callee could not read.
BAD_CALL = "bad-call"


class MethodTableError(TypeError):
    """An interface method cannot cross processes as written (found at start-up)."""


@dataclass(frozen=True)
class _Method:
    name: str
    signature: inspect.Signature
    parameters: dict[str, TypeAdapter[Any]]
    result: TypeAdapter[Any]


class MethodTable:
    """The methods of ``interface`` named in ``names``, with adapters for their types.

    ``errors`` lists the ConferenceError subclasses raised again as themselves in the
    caller (others become a plain ConferenceError with the same message, code and status).
    """

    def __init__(
        self,
        interface: type,
        names: Iterable[str],
        errors: Iterable[type[ConferenceError]] = (),
    ) -> None:
        self.interface = interface
        self.methods: dict[str, _Method] = {}
        for name in names:
            self.methods[name] = self._build(interface, name)
        self.errors: dict[str, type[ConferenceError]] = {"ConferenceError": ConferenceError}
        for cls in errors:
            self.errors[cls.__name__] = cls

    @staticmethod
    def _build(interface: type, name: str) -> _Method:
        function = getattr(interface, name, None)
        if function is None or not inspect.iscoroutinefunction(function):
            raise MethodTableError(f"{interface.__name__}.{name} is not a coroutine method")
        try:
            hints = typing.get_type_hints(function)
        except Exception as exc:  # a name only imported under TYPE_CHECKING, ...
            raise MethodTableError(
                f"the type hints of {interface.__name__}.{name} cannot be resolved: {exc}"
            ) from exc
        signature = inspect.signature(function)
        parameters: dict[str, TypeAdapter[Any]] = {}
        for parameter in list(signature.parameters.values())[1:]:  # without self
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                raise MethodTableError(f"{interface.__name__}.{name} takes *args or **kwargs")
            if parameter.name not in hints:
                raise MethodTableError(
                    f"{interface.__name__}.{name}: parameter {parameter.name!r} has no type"
                )
            parameters[parameter.name] = TypeAdapter(hints[parameter.name])
        if "return" not in hints:
            raise MethodTableError(f"{interface.__name__}.{name} has no return type")
        return _Method(name, signature, parameters, TypeAdapter(hints["return"]))

    def method(self, name: str) -> _Method:
        found = self.methods.get(name)
        if found is None:
            raise RemoteError(BAD_CALL, f"{name!r} cannot be called from another process")
        return found

    # -- the caller's side ------------------------------------------------------------

    def encode_call(self, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        """The JSON body of a call of ``name`` with these arguments."""
        method = self.method(name)
        bound = method.signature.bind(None, *args, **kwargs)  # None stands for self
        values = dict(bound.arguments)
        values.pop(next(iter(method.signature.parameters)))
        return {
            key: method.parameters[key].dump_python(value, mode="json")
            for key, value in values.items()
        }

    def decode_result(self, name: str, raw: Any) -> Any:
        return self.method(name).result.validate_python(raw, strict=False)

    def raise_again(self, error: RemoteError) -> typing.NoReturn:
        """A callee's refusal raised here as the error it was (ConferenceError or a
        subclass of the table's); anything else as a ConferenceError saying so."""
        if error.kind.startswith(CONFERENCE_ERROR + ":"):
            cls = self.errors.get(error.kind.partition(":")[2], ConferenceError)
            data = error.data
            try:
                code = ErrorCode(int(data.get("code", ErrorCode.BAD_REQUEST)))
            except ValueError:
                code = ErrorCode.UNEXPECTED
            status = data.get("status", 400)
            raise cls(error.message, code, status if isinstance(status, int) else 500) from None
        raise ConferenceError(error.message, ErrorCode.UNEXPECTED, 500) from None

    # -- the callee's side ------------------------------------------------------------

    def decode_call(self, name: str, body: Any) -> tuple[_Method, dict[str, Any]]:
        method = self.method(name)
        if not isinstance(body, dict) or not set(body) <= set(method.parameters):
            raise RemoteError(BAD_CALL, f"the arguments of {name} are not an object of its own")
        try:
            values = {
                key: method.parameters[key].validate_python(value, strict=False)
                for key, value in body.items()
            }
            method.signature.bind(None, **values)
        except (pydantic.ValidationError, TypeError) as exc:
            raise RemoteError(BAD_CALL, f"the arguments of {name} are invalid: {exc}") from None
        return method, values

    def encode_result(self, method: _Method, value: Any) -> Any:
        return method.result.dump_python(value, mode="json")


def conference_error(exc: ConferenceError) -> RemoteError:
    """A room-service refusal as it crosses the bus."""
    return RemoteError(
        f"{CONFERENCE_ERROR}:{type(exc).__name__}",
        exc.message,
        {"code": int(exc.code), "status": exc.status},
    )


class RpcServer:
    """Answers calls of ``table``'s methods on ``target`` (bus requests ``<prefix><name>``)."""

    def __init__(self, table: MethodTable, target: object, prefix: str) -> None:
        self.table = table
        self.target = target
        self.prefix = prefix

    async def handle(self, method: str, body: Any, sender: str) -> Any:
        name = method.removeprefix(self.prefix)
        described, values = self.table.decode_call(name, body)
        try:
            result = await getattr(self.target, name)(**values)
        except ConferenceError as exc:
            raise conference_error(exc) from None
        return self.table.encode_result(described, result)


class RpcClient:
    """Calls ``table``'s methods on whichever node the caller names."""

    def __init__(self, bus: Bus, table: MethodTable, prefix: str) -> None:
        self.bus = bus
        self.table = table
        self.prefix = prefix

    async def call(
        self, node_id: str, name: str, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> Any:
        """The result of ``name(*args, **kwargs)`` on ``node_id``; the callee's
        ConferenceError raised again here; a BusError if the node cannot be reached."""
        body = self.table.encode_call(name, args, kwargs)
        try:
            raw = await self.bus.request(node_id, self.prefix + name, body, timeout=timeout)
        except RemoteError as exc:
            self.table.raise_again(exc)
        return self.table.decode_result(name, raw)


class RequestRouter:
    """A node's one request handler, handing each request to the handler of its prefix."""

    def __init__(self) -> None:
        self._handlers: dict[str, RequestHandler] = {}

    def add(self, prefix: str, handler: RequestHandler) -> None:
        self._handlers[prefix] = handler

    async def handle(self, method: str, body: Any, sender: str) -> Any:
        for prefix, handler in self._handlers.items():
            if method.startswith(prefix):
                return await handler(method, body, sender)
        raise RemoteError(BAD_CALL, f"no handler for {method!r}")
