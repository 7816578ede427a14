"""A tiny nameko service for tests/gateway_nameko.rs: the gateway calls it
over HTTP, and its events reach the gateway's WebSocket clients."""
from nameko.contextdata import UserId
from nameko.events import EventDispatcher
from nameko.rpc import rpc


class PyGreeter:
    name = "pygreeter"

    dispatch = EventDispatcher()
    user_id = UserId()

    @rpc
    def hello(self, name, punctuation="!"):
        self.dispatch("greeted", {"name": name, "by": "python"})
        return "Bonjour, %s%s" % (name, punctuation)

    @rpc
    def whoami(self):
        return self.user_id

    @rpc
    def boom(self):
        raise ValueError("boom from python")
