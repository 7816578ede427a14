use enoki::prelude::*;

#[derive(Dependencies)]
struct Greeter {
    #[dependency(Config)]
    config: Settings,
    name: String,
    #[dependency]
    rpc: ClusterRpc,
}

#[derive(Dependencies)]
struct Tuple(#[dependency(Config)] Settings);

#[derive(Dependencies)]
enum NotAStruct {
    A,
}

#[derive(Dependencies)]
struct Generic<T> {
    #[dependency(Config)]
    config: T,
}

fn main() {}
