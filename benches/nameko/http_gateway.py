"""The incumbent for benches/gateway.rs: a nameko @http entrypoint that makes
the same RPC call as the enoki gateway's GET /hello/{name} route
(greeter.hello, answered by the enoki greeter on the same broker), and
returns its JSON result."""
import json

from nameko.rpc import RpcProxy
from nameko.web.handlers import http


class HttpGateway:
    name = "nameko_http_gateway"

    greeter = RpcProxy("greeter")

    @http("GET", "/hello/<string:name>")
    def hello(self, request, name):
        result = self.greeter.hello(name)
        return 200, {"Content-Type": "application/json"}, json.dumps(result)
