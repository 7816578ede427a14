"""The nameko side of `cargo bench --bench rpc_amqp`: a trivial echo service.

    python -m nameko run --config <config.yaml> echo_service

(run from this directory; the bench writes the config with AMQP_URI and
max_workers sized for the in-flight count).
"""

from nameko.rpc import rpc


class NamekoEcho:
    name = "nameko_echo"

    @rpc
    def echo(self, value):
        return value
