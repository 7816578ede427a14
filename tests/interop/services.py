"""nameko 2.x services for the enoki interop tests (tests/interop.rs).

Run by the tests with `python -m nameko run services:<Class> --broker <uri>`
from this directory. Environment:

- INTEROP_INSTANCE: who this process is (returned by `ping` / `who`);
- INTEROP_OUT: a file where event handlers append one JSON line per event.
"""

import json
import os
import time

from nameko.events import BROADCAST, SINGLETON, EventDispatcher, event_handler
from nameko.extensions import DependencyProvider
from nameko.rpc import RpcProxy, rpc

INSTANCE = os.environ.get("INTEROP_INSTANCE", "python")
OUT = os.environ.get("INTEROP_OUT")


class PyError(Exception):
    """A user exception: reaches callers as exc_path `services.PyError`."""


class Ctx(DependencyProvider):
    """Injects the worker context itself."""

    def get_dependency(self, worker_ctx):
        return worker_ctx


def describe(worker_ctx):
    data = {k: v for k, v in worker_ctx.context_data.items() if k != "call_id_stack"}
    return {"call_id_stack": list(worker_ctx.call_id_stack), "data": data}


def record(handler, payload, worker_ctx):
    line = dict(describe(worker_ctx), handler=handler, payload=payload, instance=INSTANCE)
    with open(OUT, "a") as out:
        out.write(json.dumps(line) + "\n")


class PyService:
    name = "pysvc"

    enoki = RpcProxy("enokisvc")
    dispatch = EventDispatcher()
    ctx = Ctx()

    @rpc
    def ping(self):
        return INSTANCE

    @rpc
    def add(self, a, b=0):
        return a + b

    @rpc
    def fail(self, message):
        raise PyError(message)

    @rpc
    def sleep(self, seconds):
        time.sleep(seconds)
        return seconds

    @rpc
    def context(self):
        return describe(self.ctx)

    @rpc
    def relay(self):
        """Calls enokisvc.context() through this worker's RpcProxy."""
        return {"here": describe(self.ctx), "inner": self.enoki.context()}

    @rpc
    def emit(self, event_type, payload):
        self.dispatch(event_type, payload)


class PyListener:
    name = "pylistener"

    ctx = Ctx()

    @rpc
    def ping(self):
        return INSTANCE

    @event_handler("enokisvc", "evt")
    def on_pool(self, payload):
        record("service_pool", payload, self.ctx)

    @event_handler("enokisvc", "evt", handler_type=SINGLETON)
    def on_singleton(self, payload):
        record("singleton", payload, self.ctx)

    @event_handler("enokisvc", "evt", handler_type=BROADCAST, reliable_delivery=False)
    def on_broadcast(self, payload):
        record("broadcast", payload, self.ctx)


class SharedPy:
    """The Python half of service `shared` (the enoki half is in interop.rs)."""

    name = "shared"

    @rpc
    def ping(self):
        return INSTANCE

    @rpc
    def who(self, n):
        time.sleep(0.01)
        return {"n": n, "by": INSTANCE}
