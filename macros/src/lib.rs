//! Procedural macros for [enoki](https://docs.rs/enoki): `#[service]`,
//! `#[derive(Dependencies)]`, and the entrypoint attributes `#[rpc]`,
//! `#[event_handler]` and `#[timer]`.
//!
//! Use them through `enoki` (`use enoki::prelude::*;`), not directly.
//!
//! What they generate is plain data and one `match`: the service name, a
//! table of entrypoints, a `dispatch` that decodes arguments, calls the
//! method and encodes the result, and a typed client. Spawning, acking,
//! timers and concurrency live in the library. `examples/manual_service.rs`
//! in the enoki repository is the expansion written by hand.
//!
//! Layout: this file holds the entry points and their docs; `parse/` the
//! validated input model (attribute arguments, methods, dependency fields);
//! `expand.rs` the codegen, one function per generated item.

use proc_macro::TokenStream;

mod expand;
mod parse;
#[cfg(test)]
mod snapshots;

/// Declares a service's dependencies: one provider per field.
///
/// Every field carries `#[dependency(...)]`, naming either a provider type
/// (built with `Default::default()`) or an expression that builds one:
///
/// ```rust,ignore
/// use enoki::prelude::*;
///
/// #[derive(Dependencies)]
/// struct Orders {
///     #[dependency(Config)]
///     config: Settings,
///     #[dependency(EventDispatcher)]
///     dispatch: Dispatcher,
///     #[dependency(Database::new("orders"))]
///     db: DbSession,
/// }
/// ```
///
/// The provider's `Dependency` type must be the field's type; a mismatch is
/// a compile error on that field. Unit structs (no dependencies) work too.
/// `#[dependencies(crate = path)]` on the struct changes the path of the
/// enoki crate (default `::enoki`).
///
/// # Expands to
///
/// <details><summary>the generated code</summary>
///
/// ```rust,ignore
/// impl ::enoki::Dependencies for Orders {
///     fn providers() -> ::enoki::ProviderSet {
///         let provider_0 = <Config as ::core::default::Default>::default();
///         ::enoki::__private::assert_provides::<_, Settings>(&provider_0);
///         let provider_1 = <EventDispatcher as ::core::default::Default>::default();
///         ::enoki::__private::assert_provides::<_, Dispatcher>(&provider_1);
///         let provider_2 = Database::new("orders");
///         ::enoki::__private::assert_provides::<_, DbSession>(&provider_2);
///         ::enoki::ProviderSet::new()
///             .with("config", provider_0)
///             .with("dispatch", provider_1)
///             .with("db", provider_2)
///     }
///
///     fn inject(providers: &::enoki::ProviderSet, worker: &::enoki::WorkerCtx) -> Self {
///         Self {
///             config: providers.get(0, worker),
///             dispatch: providers.get(1, worker),
///             db: providers.get(2, worker),
///         }
///     }
/// }
/// ```
///
/// </details>
#[proc_macro_derive(Dependencies, attributes(dependency, dependencies))]
pub fn derive_dependencies(input: TokenStream) -> TokenStream {
    expand::dependencies(input.into()).into()
}

/// Makes an inherent impl block a service: its `#[rpc]`, `#[event_handler]`
/// and `#[timer]` methods become entrypoints.
///
/// ```rust,ignore
/// use enoki::prelude::*;
///
/// #[service(name = "greeter")]
/// impl Greeter {
///     /// Greets someone.
///     #[rpc]
///     async fn hello(&self, name: String, greeting: Option<String>) -> Result<String, RemoteError> {
///         Ok(format!("{}, {name}!", greeting.as_deref().unwrap_or("Hello")))
///     }
///
///     #[event_handler("payments", "paid", handler_type = broadcast)]
///     async fn on_paid(&self, payment: Payment, ctx: &WorkerCtx) -> Result<(), RemoteError> {
///         Ok(())
///     }
///
///     #[timer(interval = 30, eager = true)]
///     async fn sweep(&self) -> Result<(), RemoteError> {
///         Ok(())
///     }
/// }
/// ```
///
/// Arguments: `name = "..."` (required; no `.`, `*`, `#` or whitespace) and
/// `crate = path` (the path of the enoki crate, default `::enoki`).
///
/// Rules for entrypoint methods:
/// - `async fn`, taking `&self`, not generic;
/// - parameters are decoded from JSON (owned types); `Option<T>` parameters
///   may be left out by the caller; one parameter of type `&WorkerCtx` (any
///   position) receives the worker context instead;
/// - the return type is `Result<T, E>` with `T: Serialize` and
///   `E: Into<RemoteError>`;
/// - `#[rpc]` parameters are plain names, which are their keywords; an
///   `#[rpc]` method can't be named `new`.
///
/// The methods stay ordinary inherent methods (the entrypoint attributes
/// are removed), so tests can call them directly.
///
/// # Expands to
///
/// Paths abbreviated; the generated code spells every path from `::enoki`,
/// `::core` or `::std`, and names its own bindings `__method`, `__args`, ….
///
/// <details><summary>the generated code</summary>
///
/// ```rust,ignore
/// impl Greeter { /* the methods, unchanged */ }
///
/// impl ::enoki::Service for Greeter {
///     const NAME: &'static str = "greeter";
///
///     fn entrypoints() -> ::std::vec::Vec<::enoki::__private::EntrypointSpec> {
///         ::std::vec![
///             EntrypointSpec::rpc("hello"),
///             EntrypointSpec::event("on_paid", EventHandlerSpec {
///                 source_service: "payments",
///                 event_type: "paid",
///                 handler_type: ::enoki::HandlerType::Broadcast,
///                 reliable_delivery: false,
///                 requeue_on_error: false,
///                 broadcast_identifier: None,
///             }),
///             EntrypointSpec::timer("sweep", TimerSpec {
///                 interval: ::core::time::Duration::from_secs_f64(30f64),
///                 eager: true,
///                 cluster_once: false,
///                 cron: None,
///             }),
///         ]
///     }
///
///     async fn dispatch(&self, method: &str, payload: &[u8], ctx: &WorkerCtx) -> Outcome {
///         match method {
///             "hello" => {
///                 const PARAMS: &[Param] = &[
///                     Param { name: "name", required: true },
///                     Param { name: "greeting", required: false },
///                 ];
///                 let args = Args::bind("hello", payload, PARAMS)?;
///                 let returned = self.hello(args.get(0)?, args.get(1)?).await;
///                 IntoOutcome::into_outcome(returned)
///             }
///             "on_paid" => {
///                 let event = event_payload::<Payment>("on_paid", payload)?;
///                 let returned = self.on_paid(event, ctx).await;
///                 IntoOutcome::into_outcome(returned)
///             }
///             "sweep" => {
///                 let returned = self.sweep().await;
///                 IntoOutcome::into_outcome(returned)
///             }
///             other => Err(::enoki::RemoteError::method_not_found(other)),
///         }
///     }
/// }
///
/// /// A typed client of the `greeter` service: one method per `#[rpc]` of `Greeter`.
/// #[derive(Debug, Clone)]
/// pub struct GreeterClient {
///     rpc: ::enoki::ClusterRpc,
/// }
///
/// impl GreeterClient {
///     /// The service name, `greeter`.
///     pub const SERVICE: &'static str = "greeter";
///
///     /// A client calling through `rpc`.
///     pub fn new(rpc: impl AsRef<::enoki::ClusterRpc>) -> Self { /* ... */ }
///
///     /// Greets someone.
///     ///
///     /// Calls `greeter.hello`.
///     pub async fn hello(&self, name: String, greeting: Option<String>) -> ::enoki::Result<String> {
///         self.rpc.call_typed(Self::SERVICE, "hello", &(name, greeting,)).await
///     }
/// }
/// ```
///
/// </details>
#[proc_macro_attribute]
pub fn service(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::service(args.into(), item.into()).into()
}

/// Marks a method of a `#[service]` impl block as an RPC entrypoint,
/// called as `<service>.<method>` with nameko's `{"args", "kwargs"}`.
///
/// Takes no arguments. `#[service]` reads and removes it; anywhere else it
/// is an error.
///
/// # Expands to
///
/// Nothing of its own: see [`macro@service`] (a `match` arm in `dispatch`,
/// an `EntrypointSpec::rpc`, and a method of the generated client).
#[proc_macro_attribute]
pub fn rpc(_args: TokenStream, item: TokenStream) -> TokenStream {
    outside_service("rpc", item)
}

/// Marks a method of a `#[service]` impl block as an event handler.
///
/// `#[event_handler("source_service", "event_type")]`, or with
/// `source = "..."`, `event_type = "..."`; optional `handler_type =
/// service_pool | singleton | broadcast` (an identifier or a string),
/// `reliable_delivery = bool` (default `true`, but `false` for a broadcast
/// handler without `broadcast_identifier`), `requeue_on_error = bool`
/// (default `false`) and `broadcast_identifier = "..."`.
///
/// The method takes at most one parameter, the decoded event payload (plus
/// an optional `&WorkerCtx`).
///
/// # Expands to
///
/// Nothing of its own: see [`macro@service`] (a `match` arm in `dispatch`
/// and an `EntrypointSpec::event`).
#[proc_macro_attribute]
pub fn event_handler(_args: TokenStream, item: TokenStream) -> TokenStream {
    outside_service("event_handler", item)
}

/// Marks a method of a `#[service]` impl block as a timer.
///
/// `#[timer(interval = 5)]` (seconds, integer or float, greater than 0);
/// `eager = true` fires once at start; `cluster_once` (or
/// `cluster_once = true`) fires on one instance of the service at a time
/// instead of on every instance (see `TimerSpec::cluster_once`). Instead of
/// an interval, `cron = "0 */5 * * * *"` (six or seven fields, seconds
/// first; checked at compile time) fires on a cron schedule, in UTC unless
/// `timezone = "Europe/Paris"`; `cron_from_config = "KEY"` reads the
/// expression from a config key at start. The method takes no parameters
/// (except an optional `&WorkerCtx`).
///
/// # Expands to
///
/// Nothing of its own: see [`macro@service`] (a `match` arm in `dispatch`
/// and an `EntrypointSpec::timer`).
#[proc_macro_attribute]
pub fn timer(_args: TokenStream, item: TokenStream) -> TokenStream {
    outside_service("timer", item)
}

/// Marks a method of a `#[service]` impl block as an HTTP endpoint
/// (nameko's `@http`): `#[http(GET, "/users/{id}/profile")]`.
///
/// The method (GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS) comes
/// first, then the path in axum's syntax (`{name}` segments, `{*rest}`
/// last), checked at compile time. The parameters are axum extractors
/// (`Path`, `Query`, `Json`, `HeaderMap`, ...; the last one may read the
/// body), plus an optional `&WorkerCtx`; dependencies are the service's
/// fields, as for every entrypoint. The method returns anything that
/// implements axum's `IntoResponse`, typically `Result<Json<T>,
/// RemoteError>`: an `Err` answers as the gateway does (`NotFound` 404,
/// `BadRequest` 400, `Conflict` 409, others 500, with a JSON body) and
/// counts as a failed worker.
///
/// # Expands to
///
/// An arm of the service's `dispatch_http` (extract, call, respond) and an
/// `EntrypointSpec::http`; see [`macro@service`].
#[proc_macro_attribute]
pub fn http(_args: TokenStream, item: TokenStream) -> TokenStream {
    outside_service("http", item)
}

/// Marks a method of a `#[service]` impl block as run by an entrypoint of
/// your own: an [`Entrypoint`] added to the service with
/// `ServiceDef::with_entrypoint`, which hands the method its payload
/// through the container's worker pool.
///
/// Takes no arguments. The method takes at most one parameter, the payload
/// decoded from JSON (plus an optional `&WorkerCtx`), as an event handler
/// does.
///
/// [`Entrypoint`]: https://docs.rs/enoki/latest/enoki/entrypoint/trait.Entrypoint.html
///
/// # Expands to
///
/// Nothing of its own: see [`macro@service`] (a `match` arm in `dispatch`
/// and an `EntrypointSpec::custom`).
#[proc_macro_attribute]
pub fn entrypoint(_args: TokenStream, item: TokenStream) -> TokenStream {
    outside_service("entrypoint", item)
}

/// `#[service]` removes the entrypoint attributes before they expand, so an
/// entrypoint attribute that does expand is misplaced: report it, and keep
/// the item so that it is the only error.
fn outside_service(attr: &str, item: TokenStream) -> TokenStream {
    let message = format!(
        "#[{attr}] is only allowed on a method inside a #[service(name = \"...\")] impl block"
    );
    let error = syn::Error::new(proc_macro2::Span::call_site(), message).to_compile_error();
    let item = proc_macro2::TokenStream::from(item);
    quote::quote!(#error #item).into()
}
