//! The `enoki` binary: the example services, hosted exactly as a user's own
//! binary hosts theirs, through [`enoki::cli::main`].
//!
//! Run with: `cargo run` (everything embedded), or see `cargo run -- --help`.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/clock.rs"]
mod clock;
#[allow(dead_code, unreachable_pub)]
#[path = "../examples/greeter.rs"]
mod greeter;
#[allow(dead_code, unreachable_pub)]
#[path = "../examples/listener.rs"]
mod listener;
#[allow(dead_code, unreachable_pub)]
#[path = "../examples/manual_service.rs"]
mod manual_service;
#[allow(dead_code, unreachable_pub)]
#[path = "../examples/users.rs"]
mod users;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    enoki::cli::App::new([
        enoki::service::<greeter::Greeter>(),
        enoki::service::<listener::Listener>(),
        enoki::service::<clock::Clock>(),
        enoki::service::<manual_service::ManualService>(),
        enoki::service::<users::Users>(),
    ])
    // Served from anywhere: outside the checkout there is no ./routes.
    .routes(
        "built-in routes/examples.yaml",
        include_str!("../routes/examples.yaml"),
    )
    .main()
    .await
}
