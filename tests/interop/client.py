"""Python clients for the enoki interop tests (tests/interop.rs).

    python client.py <amqp uri> <scenario> [json args...]

Prints one JSON document on stdout: what the scenario saw.
"""

import json
import sys

import eventlet

eventlet.monkey_patch()

from nameko import exceptions  # noqa: E402
from nameko.standalone.events import event_dispatcher  # noqa: E402
from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402

# The same as context_data() in support.rs; non-ASCII on purpose.
CONTEXT = {"user_id": 42, "language": "en-gb", "user_agent": "t\u00e9st/1.0 \U0001f980"}


def caught(fn):
    """Runs fn(); returns what the exception looked like, or the result."""
    try:
        return {"result": fn()}
    except Exception as e:  # noqa: BLE001
        cls = type(e)
        return {
            "class": cls.__name__,
            "module": cls.__module__,
            "is_remote_error": isinstance(e, exceptions.RemoteError),
            "is_method_not_found": isinstance(e, exceptions.MethodNotFound),
            "is_incorrect_signature": isinstance(e, exceptions.IncorrectSignature),
            "exc_type": getattr(e, "exc_type", None),
            "value": getattr(e, "value", None),
            "args": [str(a) for a in e.args],
        }


def call_enoki(uri):
    config = {"AMQP_URI": uri}
    with ClusterRpcProxy(config, context_data=CONTEXT, timeout=20) as rpc:
        svc = rpc.enokisvc
        return {
            "positional": svc.add(2, 3),
            "keyword": svc.add(a=2, b=5),
            "mixed": svc.add(2, b=7),
            "default": svc.add(4),
            "greet_default": svc.greet("Ann"),
            "greet_keyword": svc.greet(name="Bo", greeting="Hi"),
            "nested_result": svc.echo({"list": [1, 2.5, None, True], "text": "h\u00e9"}),
            "custom_error": caught(lambda: svc.fail("it broke")),
            "method_not_found": caught(lambda: svc.nosuch()),
            "missing_arg": caught(lambda: svc.add()),
            "too_many": caught(lambda: svc.add(1, 2, 3)),
            "unexpected_kwarg": caught(lambda: svc.add(1, c=2)),
            "context": svc.context(),
            "context_again": svc.context(),
        }


def relay(uri, services):
    """Calls <service>.relay() for each service, with context data."""
    with ClusterRpcProxy({"AMQP_URI": uri}, context_data=CONTEXT, timeout=20) as rpc:
        return {service: rpc[service].relay() for service in services}


def dispatch_events(uri, count):
    config = {"AMQP_URI": uri}
    dispatch = event_dispatcher(config)
    for n in range(count):
        dispatch("pysvc", "evt", {"n": n, "via": "standalone"})
    with ClusterRpcProxy(config, context_data=CONTEXT, timeout=20) as rpc:
        for n in range(count):
            rpc.pysvc.emit("evt", {"n": n, "via": "service"})
    return {"sent": 2 * count}


def call_shared(uri, count):
    with ClusterRpcProxy({"AMQP_URI": uri}, timeout=20) as rpc:
        replies = [rpc.shared.who.call_async(n) for n in range(count)]
        return [reply.result() for reply in replies]


SCENARIOS = {
    "call_enoki": call_enoki,
    "relay": relay,
    "dispatch_events": dispatch_events,
    "call_shared": call_shared,
}

if __name__ == "__main__":
    uri, scenario = sys.argv[1], sys.argv[2]
    args = [json.loads(a) for a in sys.argv[3:]]
    print(json.dumps(SCENARIOS[scenario](uri, *args)))
