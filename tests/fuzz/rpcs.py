"""Every RPC of every Cinema service, enumerated from the generated descriptors.

A new RPC (or a new service) in protos/ appears here on the next `make proto` without anybody
listing it, and the fuzz tests are parametrized from this list.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from functools import cache
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, MethodDescriptor

import cinema

# Methods that destroy what they name (AIP standard Delete, custom Cancel): fuzzed after the
# others, so the seeded movie, screening and reservation stand while the rest is fuzzed.
_DESTRUCTIVE_VERBS = ("Delete", "Cancel")


@dataclass(frozen=True)
class Rpc:
    service: str  # full name, e.g. cinema.movie.v1.MovieService
    method: str
    input: Descriptor
    output: Descriptor
    client_streaming: bool
    server_streaming: bool

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.method}"

    @property
    def input_class(self) -> Any:
        return message_factory.GetMessageClass(self.input)

    @property
    def output_class(self) -> Any:
        return message_factory.GetMessageClass(self.output)

    @property
    def destructive(self) -> bool:
        return self.method.startswith(_DESTRUCTIVE_VERBS)

    def __str__(self) -> str:
        return f"{self.service.rsplit('.', 1)[-1]}.{self.method}"


@cache
def contract_services() -> tuple[str, ...]:
    """Full names of every service declared under cinema.* (importing every generated module)."""
    names: list[str] = []
    for module_info in pkgutil.walk_packages(cinema.__path__, "cinema."):
        if not module_info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(module_info.name)
        names.extend(service.full_name for service in module.DESCRIPTOR.services_by_name.values())
    return tuple(sorted(names))


def _rpc(method: MethodDescriptor) -> Rpc:
    return Rpc(
        service=method.containing_service.full_name,
        method=method.name,
        input=method.input_type,
        output=method.output_type,
        client_streaming=bool(method.client_streaming),
        server_streaming=bool(method.server_streaming),
    )


@cache
def all_rpcs() -> tuple[Rpc, ...]:
    """Every RPC of every service; the destructive ones last, otherwise in declaration order."""
    from google.protobuf import descriptor_pool

    pool = descriptor_pool.Default()
    rpcs = [_rpc(method) for name in contract_services() for method in pool.FindServiceByName(name).methods]
    return tuple(sorted(rpcs, key=lambda rpc: rpc.destructive))
