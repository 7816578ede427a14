use enoki::prelude::*;

#[derive(Dependencies)]
struct Greeter {
    #[dependency(Config)]
    config: Settings,
    #[dependency(EventDispatcher)]
    rpc: ClusterRpc,
    #[dependency(String::new())]
    name: String,
}

fn main() {}
