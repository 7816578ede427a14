//! Dependency injection: [`DependencyProvider`] (nameko's hooks, one for
//! one) and [`Dependencies`] (which provider fills which field).
//!
//! A provider lives as long as its container. The container calls its
//! container hooks (`setup`, `start`, `stop`, `kill`) and, around every
//! worker, its worker hooks (`worker_setup`, `get_dependency`,
//! `worker_result`, `worker_teardown`). Every hook has a default, so a
//! simple provider implements `get_dependency` and nothing else.
//!
//! Built-in providers: [`Config`], [`RpcProxy`] and [`EventDispatcher`].

use std::any::{Any, TypeId};
use std::fmt;
use std::future::Future;

use futures::future::BoxFuture;

use crate::container_ctx::ContainerCtx;
use crate::context::WorkerCtx;
use crate::error::{Error, Result};
use crate::outcome::Outcome;

mod config;
mod events;
mod rpc;

pub use config::Config;
pub use events::{Dispatcher, EventDispatcher};
pub use rpc::RpcProxy;

/// A provider of one dependency, with nameko's container and worker hooks.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use enoki::prelude::*;
///
/// /// Counts the workers of its container.
/// #[derive(Default)]
/// struct Counter(Arc<AtomicU64>);
///
/// impl DependencyProvider for Counter {
///     type Dependency = Arc<AtomicU64>;
///
///     fn get_dependency(&self, _worker: &WorkerCtx) -> Arc<AtomicU64> {
///         self.0.clone()
///     }
///
///     async fn worker_teardown(&self, _worker: &WorkerCtx) {
///         self.0.fetch_add(1, Ordering::Relaxed);
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a dependency provider",
    note = "implement `enoki::DependencyProvider` for it, or name a provider such as `RpcProxy`, `EventDispatcher` or `Config`"
)]
pub trait DependencyProvider: Send + Sync + 'static {
    /// What a worker gets: the value injected into the service field.
    type Dependency: Send + 'static;

    /// Container setup: read config, open pools. Runs before `start`.
    fn setup(&mut self, _ctx: &ContainerCtx) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// Container start, after every provider's setup.
    fn start(&self) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// Graceful stop, after the container's workers have finished.
    fn stop(&self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Immediate stop.
    fn kill(&self) {}

    /// The dependency for one worker.
    fn get_dependency(&self, worker: &WorkerCtx) -> Self::Dependency;

    /// Before the worker runs.
    fn worker_setup(&self, _worker: &WorkerCtx) -> impl Future<Output = ()> + Send {
        Nothing
    }

    /// After the worker ran, with its outcome (and, for RPC, after the
    /// reply was sent).
    fn worker_result(
        &self,
        _worker: &WorkerCtx,
        _outcome: &Outcome,
    ) -> impl Future<Output = ()> + Send {
        Nothing
    }

    /// Last, for every worker.
    fn worker_teardown(&self, _worker: &WorkerCtx) -> impl Future<Output = ()> + Send {
        Nothing
    }
}

/// The default worker hooks' future: done at once. It has no size, so the
/// container boxes it without allocating (an `async {}` block has a state
/// byte, and boxing it allocates): a provider that keeps the defaults
/// costs its workers no allocation for its hooks.
struct Nothing;

impl Future for Nothing {
    type Output = ();

    fn poll(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        std::task::Poll::Ready(())
    }
}

/// The dependencies of a service: which provider fills which field.
/// `#[derive(Dependencies)]` implements it; `examples/manual_service.rs`
/// shows it by hand.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not declare its dependencies",
    note = "add `#[derive(Dependencies)]` to the service struct"
)]
pub trait Dependencies: Sized + Send + Sync + 'static {
    /// The providers, in field order.
    fn providers() -> ProviderSet;

    /// Builds the service for one worker from its providers.
    fn inject(providers: &ProviderSet, worker: &WorkerCtx) -> Self;
}

/// The providers of one service, by field name. Built by
/// [`Dependencies::providers`]; providers can be replaced before the
/// container starts ([`ProviderSet::replace`]).
#[derive(Default)]
pub struct ProviderSet {
    slots: Vec<Slot>,
}

struct Slot {
    name: &'static str,
    dependency: TypeId,
    dependency_name: &'static str,
    provider: Box<dyn ErasedProvider>,
}

impl fmt::Debug for ProviderSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.slots
                    .iter()
                    .map(|slot| (slot.name, slot.provider.type_name())),
            )
            .finish()
    }
}

impl ProviderSet {
    /// No providers.
    pub fn new() -> Self {
        ProviderSet::default()
    }

    /// Adds the provider of field `name`.
    #[must_use]
    pub fn with<P: DependencyProvider>(mut self, name: &'static str, provider: P) -> Self {
        self.slots.push(Slot {
            name,
            dependency: TypeId::of::<P::Dependency>(),
            dependency_name: std::any::type_name::<P::Dependency>(),
            provider: Box::new(provider),
        });
        self
    }

    /// Replaces the provider of field `name` with another provider of the
    /// same dependency type (nameko's `replace_dependencies`).
    pub fn replace<P: DependencyProvider>(&mut self, name: &str, provider: P) -> Result<()> {
        let slot = self
            .slots
            .iter_mut()
            .find(|slot| slot.name == name)
            .ok_or_else(|| Error::Lifecycle(format!("no dependency named `{name}`")))?;
        if slot.dependency != TypeId::of::<P::Dependency>() {
            return Err(Error::Lifecycle(format!(
                "dependency `{name}` is a `{}`, but the replacement provides `{}`",
                slot.dependency_name,
                std::any::type_name::<P::Dependency>()
            )));
        }
        slot.provider = Box::new(provider);
        Ok(())
    }

    /// The field names, in order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.slots.iter().map(|slot| slot.name)
    }

    /// The dependency of field `index` for one worker. Used by
    /// [`Dependencies::inject`].
    ///
    /// # Panics
    /// If `D` is not the dependency type of that field (generated code
    /// checks this at compile time).
    pub fn get<D: 'static>(&self, index: usize, worker: &WorkerCtx) -> D {
        let slot = &self.slots[index];
        let mut out: Option<D> = None;
        slot.provider.fill(worker, &mut out);
        out.unwrap_or_else(|| {
            panic!(
                "dependency `{}` provides `{}`, not `{}`",
                slot.name,
                slot.dependency_name,
                std::any::type_name::<D>()
            )
        })
    }

    pub(crate) async fn setup(&mut self, ctx: &ContainerCtx) -> Result<()> {
        for slot in &mut self.slots {
            slot.provider
                .setup(ctx)
                .await
                .map_err(|err| Error::Dependency {
                    name: slot.name.to_owned(),
                    source: Box::new(err),
                })?;
        }
        Ok(())
    }

    pub(crate) async fn start(&self) -> Result<()> {
        for slot in &self.slots {
            slot.provider
                .start()
                .await
                .map_err(|err| Error::Dependency {
                    name: slot.name.to_owned(),
                    source: Box::new(err),
                })?;
        }
        Ok(())
    }

    pub(crate) async fn stop(&self) {
        futures::future::join_all(self.slots.iter().map(|slot| slot.provider.stop())).await;
    }

    pub(crate) fn kill(&self) {
        for slot in &self.slots {
            slot.provider.kill();
        }
    }

    /// Whether the service has no dependencies (its workers then skip the
    /// worker hooks altogether).
    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub(crate) async fn worker_setup(&self, worker: &WorkerCtx) {
        for slot in &self.slots {
            slot.provider.worker_setup(worker).await;
        }
    }

    pub(crate) async fn worker_result(&self, worker: &WorkerCtx, outcome: &Outcome) {
        for slot in &self.slots {
            slot.provider.worker_result(worker, outcome).await;
        }
    }

    pub(crate) async fn worker_teardown(&self, worker: &WorkerCtx) {
        for slot in &self.slots {
            slot.provider.worker_teardown(worker).await;
        }
    }
}

/// The object-safe face of a [`DependencyProvider`], for the container.
trait ErasedProvider: Send + Sync {
    fn type_name(&self) -> &'static str;
    fn setup<'a>(&'a mut self, ctx: &'a ContainerCtx) -> BoxFuture<'a, Result<()>>;
    fn start(&self) -> BoxFuture<'_, Result<()>>;
    fn stop(&self) -> BoxFuture<'_, ()>;
    fn kill(&self);
    fn fill(&self, worker: &WorkerCtx, out: &mut dyn Any);
    fn worker_setup<'a>(&'a self, worker: &'a WorkerCtx) -> BoxFuture<'a, ()>;
    fn worker_result<'a>(
        &'a self,
        worker: &'a WorkerCtx,
        outcome: &'a Outcome,
    ) -> BoxFuture<'a, ()>;
    fn worker_teardown<'a>(&'a self, worker: &'a WorkerCtx) -> BoxFuture<'a, ()>;
}

impl<P: DependencyProvider> ErasedProvider for P {
    fn type_name(&self) -> &'static str {
        std::any::type_name::<P>()
    }
    fn setup<'a>(&'a mut self, ctx: &'a ContainerCtx) -> BoxFuture<'a, Result<()>> {
        Box::pin(DependencyProvider::setup(self, ctx))
    }
    fn start(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(DependencyProvider::start(self))
    }
    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(DependencyProvider::stop(self))
    }
    fn kill(&self) {
        DependencyProvider::kill(self);
    }
    fn fill(&self, worker: &WorkerCtx, out: &mut dyn Any) {
        if let Some(out) = out.downcast_mut::<Option<P::Dependency>>() {
            *out = Some(self.get_dependency(worker));
        }
    }
    fn worker_setup<'a>(&'a self, worker: &'a WorkerCtx) -> BoxFuture<'a, ()> {
        Box::pin(DependencyProvider::worker_setup(self, worker))
    }
    fn worker_result<'a>(
        &'a self,
        worker: &'a WorkerCtx,
        outcome: &'a Outcome,
    ) -> BoxFuture<'a, ()> {
        Box::pin(DependencyProvider::worker_result(self, worker, outcome))
    }
    fn worker_teardown<'a>(&'a self, worker: &'a WorkerCtx) -> BoxFuture<'a, ()> {
        Box::pin(DependencyProvider::worker_teardown(self, worker))
    }
}

/// Compile-time check used by `#[derive(Dependencies)]`: provider `P`
/// provides a `D`.
#[doc(hidden)]
pub fn assert_provides<P, D>(_provider: &P)
where
    P: DependencyProvider<Dependency = D>,
{
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::ContextData;

    struct Plain;

    impl DependencyProvider for Plain {
        type Dependency = ();
        fn get_dependency(&self, _worker: &WorkerCtx) {}
    }

    /// A box of a zero-sized value takes no allocation: the container
    /// boxes a provider's worker hooks, and the defaults must cost nothing.
    #[test]
    fn default_worker_hooks_box_without_allocating() {
        let worker = WorkerCtx::new("svc", "method", ContextData::default(), 10);
        let outcome: Outcome = Ok(crate::outcome::Encoded::null());
        let hooks = [
            ErasedProvider::worker_setup(&Plain, &worker),
            ErasedProvider::worker_result(&Plain, &worker, &outcome),
            ErasedProvider::worker_teardown(&Plain, &worker),
        ];
        for hook in hooks {
            assert_eq!(std::mem::size_of_val(&*hook), 0);
            futures::executor::block_on(hook);
        }
    }
}
