//! The `enoki` command line (clap), as a library function so that your own
//! binary gets the same commands for your own services:
//!
//! ```no_run
//! # use enoki::prelude::*;
//! # #[derive(Dependencies)] struct Greeter;
//! # #[service(name = "greeter")] impl Greeter {
//! #     #[rpc] async fn hello(&self, name: String) -> Result<String, RemoteError> { Ok(name) }
//! # }
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     enoki::cli::main([enoki::service::<Greeter>()]).await
//! }
//! ```
//!
//! Commands:
//! - `run [SERVICE…]`: runs the services (all by default) until Ctrl-C or
//!   SIGTERM, then stops gracefully;
//! - `call SERVICE.METHOD [ARGS_JSON] [--kwargs JSON] [--context JSON]
//!   [--timeout SECS]`: prints the JSON result, or `exc_type: value` on
//!   stderr with exit code 1;
//! - `dispatch SERVICE EVENT_TYPE PAYLOAD_JSON`: dispatches an event;
//! - `show-config`: prints the resolved configuration as YAML.
//!
//! With no broker configured, everything runs in this process on the
//! embedded transport: `call` and `dispatch` then start the services for
//! the duration of the command.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::{Map, Value};

use crate::client::{ClusterRpc, EventPublisher};
use crate::config::Settings;
use crate::container::ServiceDef;
use crate::error::{Error, Result};
use crate::runner::ServiceRunner;
use crate::transport::{MemoryTransport, Transport};

/// The command line.
#[derive(Debug, Parser)]
#[command(name = "enoki", version, about = "nameko-style microservices for Rust")]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Options every command takes.
#[derive(Debug, Args, Clone, Default)]
pub struct GlobalArgs {
    /// A nameko-style YAML config file (`${VAR:default}` substitution).
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Sets a config key (the value is parsed as YAML); repeatable.
    #[arg(long = "define", short = 'd', global = true, value_name = "KEY=VALUE")]
    pub define: Vec<String>,
    /// Broker URI (overrides `AMQP_URI` from the file).
    #[arg(long, global = true, value_name = "URI", env = "AMQP_URI")]
    pub broker: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run services (all by default) until Ctrl-C or SIGTERM.
    Run {
        /// Services to run.
        services: Vec<String>,
    },
    /// Call an RPC method and print its JSON result.
    Call {
        /// `service.method`
        target: String,
        /// Positional arguments: a JSON array (or one JSON value).
        args: Option<String>,
        /// Keyword arguments: a JSON object.
        #[arg(long)]
        kwargs: Option<String>,
        /// Context data: a JSON object (e.g. `{"user_id": 7}`).
        #[arg(long)]
        context: Option<String>,
        /// Seconds to wait for the reply.
        #[arg(long, default_value_t = 30.0)]
        timeout: f64,
    },
    /// Dispatch an event as a service.
    Dispatch {
        /// The source service.
        service: String,
        /// The event type.
        event_type: String,
        /// The payload, as JSON.
        payload: String,
    },
    /// Print the resolved configuration as YAML.
    ShowConfig,
}

/// Parses the process arguments and runs the command with `services`
/// available. Errors are printed as one line on stderr.
pub async fn main(services: impl IntoIterator<Item = ServiceDef>) -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match run(cli, services.into_iter().collect()).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("enoki: {err}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn run(cli: Cli, services: Vec<ServiceDef>) -> Result<ExitCode> {
    let settings = load_settings(&cli.global, &services)?;
    match cli.command.unwrap_or(Command::Run { services: vec![] }) {
        Command::ShowConfig => {
            let yaml = serde_yaml_ng::to_string(settings.as_map())
                .map_err(|err| Error::Config(err.to_string()))?;
            print!("{yaml}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { services: names } => {
            let selected = select(services, &names)?;
            let transport = connect(&settings).await?;
            let names: Vec<&str> = selected.iter().map(ServiceDef::name).collect();
            println!(
                "enoki: running {} on the {} transport (Ctrl-C to stop)",
                names.join(", "),
                transport.kind()
            );
            let mut runner = ServiceRunner::new(transport.clone(), settings);
            for def in selected {
                runner.add(def);
            }
            runner.run_until(shutdown_signal()).await?;
            transport.close().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Call {
            target,
            args,
            kwargs,
            context,
            timeout,
        } => {
            let (service, method) = target
                .split_once('.')
                .ok_or_else(|| Error::Config(format!("`{target}` is not SERVICE.METHOD")))?;
            let args = parse_json("ARGS_JSON", args.as_deref().unwrap_or("[]"))?;
            let kwargs = parse_object("--kwargs", kwargs.as_deref())?;
            let context = parse_object("--context", context.as_deref())?;
            if !(timeout.is_finite() && timeout > 0.0) {
                return Err(Error::Config(format!(
                    "--timeout must be a positive number, got {timeout}"
                )));
            }
            let (transport, runner) = embed(&settings, services).await?;
            let rpc = ClusterRpc::builder(transport.clone())
                .settings(&settings)
                .context_data(context)
                .timeout(Duration::from_secs_f64(timeout))
                .connect()
                .await?;
            let result = rpc.call(service, method, args, kwargs).await;
            rpc.close().await;
            if let Some(runner) = runner {
                runner.stop().await;
            }
            transport.close().await;
            match result {
                Ok(value) => {
                    println!("{}", serde_json::to_string_pretty(&value)?);
                    Ok(ExitCode::SUCCESS)
                }
                Err(Error::Remote(remote)) => {
                    eprintln!("{}: {}", remote.exc_type, remote.value);
                    Ok(ExitCode::FAILURE)
                }
                Err(other) => Err(other),
            }
        }
        Command::Dispatch {
            service,
            event_type,
            payload,
        } => {
            let payload = parse_json("PAYLOAD_JSON", &payload)?;
            let (transport, runner) = embed(&settings, services).await?;
            EventPublisher::new(transport.clone(), &settings)
                .dispatch(&service, &event_type, &payload)
                .await?;
            if let Some(runner) = runner {
                // Let the in-process handlers run, then drain them.
                tokio::time::sleep(Duration::from_millis(50)).await;
                runner.stop().await;
            }
            transport.close().await;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Settings from `--config`, `--define` and `--broker` / `AMQP_URI`.
pub fn load_settings(global: &GlobalArgs, services: &[ServiceDef]) -> Result<Settings> {
    let mut settings = match &global.config {
        Some(path) => {
            let settings = Settings::load(path)?;
            let _ = services;
            settings.check_keys(&[], &path.display().to_string())?;
            settings
        }
        None => Settings::new(),
    };
    for define in &global.define {
        let (key, value) = match define.split_once('=') {
            Some((key, value)) => {
                let value: Value = serde_yaml_ng::from_str(value)
                    .map_err(|err| Error::Config(format!("--define {define}: {err}")))?;
                (key, value)
            }
            None => (define.as_str(), Value::Bool(true)),
        };
        settings = settings.with(key, value);
    }
    if let Some(broker) = &global.broker {
        settings = settings.with("AMQP_URI", Value::String(broker.clone()));
    }
    settings.validate()?;
    Ok(settings)
}

/// The transport the settings ask for.
pub async fn connect(settings: &Settings) -> Result<Arc<dyn Transport>> {
    match settings.amqp_uri() {
        None => Ok(MemoryTransport::new()),
        Some(uri) => Err(Error::Config(format!(
            "AMQP_URI is set ({uri}), but this build has no AMQP transport"
        ))),
    }
}

/// Connects; on the embedded transport, also starts the services in this
/// process (they are the only ones that can answer).
async fn embed(
    settings: &Settings,
    services: Vec<ServiceDef>,
) -> Result<(Arc<dyn Transport>, Option<ServiceRunner>)> {
    let transport = connect(settings).await?;
    if settings.amqp_uri().is_some() {
        return Ok((transport, None));
    }
    let mut runner = ServiceRunner::new(transport.clone(), settings.clone());
    for def in services {
        runner.add(def);
    }
    runner.start().await?;
    Ok((transport, Some(runner)))
}

fn select(services: Vec<ServiceDef>, names: &[String]) -> Result<Vec<ServiceDef>> {
    if names.is_empty() {
        return Ok(services);
    }
    let known: Vec<&str> = services.iter().map(ServiceDef::name).collect();
    for name in names {
        if !known.contains(&name.as_str()) {
            return Err(Error::Config(format!(
                "unknown service `{name}`; this binary has: {}",
                known.join(", ")
            )));
        }
    }
    Ok(services
        .into_iter()
        .filter(|s| names.iter().any(|n| n == s.name()))
        .collect())
}

fn parse_json(what: &str, text: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|err| Error::Config(format!("{what} is not JSON: {err}")))
}

fn parse_object(what: &str, text: Option<&str>) -> Result<Map<String, Value>> {
    match text {
        None => Ok(Map::new()),
        Some(text) => match parse_json(what, text)? {
            Value::Object(map) => Ok(map),
            other => Err(Error::Config(format!(
                "{what} must be a JSON object, got {other}"
            ))),
        },
    }
}

/// Resolves on Ctrl-C or SIGTERM (axum's `shutdown_signal`).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received");
}
