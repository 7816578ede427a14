//! `enoki gateway` (and plain `enoki`): the command-line surface of the
//! gateway, for `crate::cli` to call.
//!
//! With no broker configured, every given service runs embedded on the
//! memory transport beside the gateway. With a broker (`--broker` /
//! `AMQP_URI`), the gateway connects to RabbitMQ and runs only the
//! `--embed` services in this process. Ctrl-C or SIGTERM stops it
//! gracefully: no new connections, in-flight requests finish, WebSocket
//! and SSE clients are told, then the services stop.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use super::routes::BuiltinRoutes;
use super::{GatewayState, RouteTable, ServiceInfo, router};
use crate::config::Settings;
use crate::container::ServiceDef;
use crate::error::{Error, Result};
use crate::runner::ServiceRunner;

/// The gateway's options.
#[derive(Debug, Clone, Args)]
pub struct GatewayArgs {
    /// The address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8000")]
    pub listen: String,
    /// The directory of route files (`*.yaml`); it must exist. Without it,
    /// `./routes` when there is one, else the binary's built-in routes.
    #[arg(long, value_name = "DIR")]
    pub routes: Option<PathBuf>,
    /// The directory served at `/` (the built-in page when missing).
    #[arg(long = "static", value_name = "DIR", default_value = "static")]
    pub static_dir: PathBuf,
    /// With a broker: services to run in this process too.
    #[arg(long, value_name = "SERVICE,...", value_delimiter = ',')]
    pub embed: Vec<String>,
    /// The routes served when `routes` is `None` and there is no `./routes`
    /// directory (set by [`crate::cli::App::routes`]; not a flag).
    #[arg(skip)]
    pub builtin_routes: Vec<BuiltinRoutes>,
}

impl Default for GatewayArgs {
    fn default() -> Self {
        GatewayArgs {
            listen: "127.0.0.1:8000".into(),
            routes: None,
            static_dir: PathBuf::from("static"),
            embed: Vec::new(),
            builtin_routes: Vec::new(),
        }
    }
}

/// Runs the gateway until Ctrl-C or SIGTERM.
pub async fn run(args: GatewayArgs, settings: Settings, services: Vec<ServiceDef>) -> Result<()> {
    run_until(
        args,
        settings,
        services,
        crate::shutdown::shutdown_signal(),
        |_| {},
    )
    .await
}

/// Runs the gateway until `signal` resolves; `on_listen` gets the bound
/// address (tests listen on port 0).
pub async fn run_until(
    args: GatewayArgs,
    settings: Settings,
    services: Vec<ServiceDef>,
    signal: impl std::future::Future<Output = ()> + Send + 'static,
    on_listen: impl FnOnce(SocketAddr),
) -> Result<()> {
    let routes = load_routes(&args)?;
    let transport = crate::transport::connect(&settings).await?;
    let embedded: Vec<ServiceDef> = match settings.amqp_uri() {
        None => services,
        Some(_) => {
            let known: Vec<&str> = services.iter().map(ServiceDef::name).collect();
            if let Some(bad) = args.embed.iter().find(|n| !known.contains(&n.as_str())) {
                return Err(Error::Config(format!(
                    "--embed {bad}: unknown service; this binary has: {}",
                    known.join(", ")
                )));
            }
            services
                .into_iter()
                .filter(|s| args.embed.iter().any(|n| n == s.name()))
                .collect()
        }
    };
    let infos = embedded
        .iter()
        .map(|d| ServiceInfo::from_def(d, true))
        .collect();
    // The embedded services' #[http] routes are served here, beside the
    // gateway's own.
    let web = crate::web::WebServer::mounted();
    let mut runner = ServiceRunner::new(transport.clone(), settings.clone());
    let service_metrics = crate::service_metrics::ServiceMetrics::new();
    runner.web_server(web.clone());
    runner.metrics(service_metrics.clone());
    for def in embedded {
        runner.add(def);
    }
    let state = GatewayState::builder(transport.clone())
        .service_metrics(service_metrics)
        .settings(&settings)
        .routes(routes)
        .static_dir(&args.static_dir)
        .services(infos)
        .web_server(web)
        .ready(false)
        .build()
        .await?;
    runner.start().await?;
    state.set_services_ready(true);

    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|err| Error::Config(format!("cannot listen on {}: {err}", args.listen)))?;
    let addr = listener.local_addr()?;
    on_listen(addr);
    let names = runner.service_names().join(", ");
    println!("enoki gateway: listening on http://{addr}/");
    tracing::info!(
        transport = transport.kind(),
        services = %names,
        "gateway started; Ctrl-C to stop"
    );
    let app = router(state.clone());
    let stopping = state.clone();
    let limits = super::serve::ServeLimits::from_config(state.config());
    super::serve::serve(
        listener,
        app,
        limits,
        Some(state.metrics().clone()),
        async move {
            signal.await;
            stopping.set_services_ready(false);
            // WebSocket and SSE streams end now; requests in flight finish.
            stopping.shutdown();
        },
    )
    .await?;
    runner.stop().await;
    state.close().await;
    transport.close().await;
    tracing::info!("gateway stopped");
    Ok(())
}

/// The routes to serve: `--routes DIR` (which must exist), else `./routes`
/// when it is a directory, else the built-in routes. Logs which.
pub fn load_routes(args: &GatewayArgs) -> Result<RouteTable> {
    let default_dir = std::path::Path::new("routes");
    let dir = match &args.routes {
        Some(dir) if !dir.is_dir() => {
            return Err(Error::Config(format!(
                "--routes {}: no such directory",
                dir.display()
            )));
        }
        Some(dir) => Some(dir.as_path()),
        None if default_dir.is_dir() => Some(default_dir),
        None => None,
    };
    let table = match dir {
        Some(dir) => RouteTable::load_dir(dir)?,
        None => {
            let mut table = RouteTable::default();
            for builtin in &args.builtin_routes {
                table.add_yaml(&builtin.yaml, &builtin.name)?;
            }
            table
        }
    };
    let files = if table.files.is_empty() {
        "none".to_owned()
    } else {
        table.files.join(", ")
    };
    match dir {
        Some(dir) => tracing::info!(
            dir = %dir.display(),
            %files,
            routes = table.routes.len(),
            "loaded route files"
        ),
        None => tracing::info!(
            %files,
            routes = table.routes.len(),
            "no routes directory: serving the built-in routes"
        ),
    }
    Ok(table)
}
