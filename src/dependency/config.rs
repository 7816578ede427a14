//! The `Config` provider: the container's settings, as nameko's `Config`.

use crate::config::Settings;
use crate::container_ctx::ContainerCtx;
use crate::context::WorkerCtx;
use crate::dependency::DependencyProvider;
use crate::error::Result;

/// Provides the container's [`Settings`] (nameko's `Config()`).
///
/// ```
/// use enoki::prelude::*;
///
/// #[derive(Dependencies)]
/// struct Reporter {
///     #[dependency(Config)]
///     config: Settings,
/// }
///
/// #[service(name = "reporter")]
/// impl Reporter {
///     #[rpc]
///     async fn exchange(&self) -> Result<String, RemoteError> {
///         Ok(self.config.rpc_exchange().to_owned())
///     }
/// }
/// ```
#[derive(Debug, Default)]
pub struct Config {
    settings: Settings,
}

impl DependencyProvider for Config {
    type Dependency = Settings;

    async fn setup(&mut self, ctx: &ContainerCtx) -> Result<()> {
        self.settings = ctx.settings().clone();
        Ok(())
    }

    fn get_dependency(&self, _worker: &WorkerCtx) -> Settings {
        self.settings.clone()
    }
}
