use enoki::prelude::*;

#[derive(Dependencies)]
struct Greeter;

trait Greet {
    fn hello(&self);
}

#[service(name = "greeter")]
impl Greet for Greeter {
    fn hello(&self) {}
}

fn main() {}
