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
//! Services that read config keys of their own declare them, so that a
//! config file using them is accepted (unknown keys are an error):
//!
//! ```no_run
//! # use enoki::prelude::*;
//! # #[derive(Dependencies)] struct Greeter;
//! # #[service(name = "greeter")] impl Greeter {
//! #     #[rpc] async fn hello(&self, name: String) -> Result<String, RemoteError> { Ok(name) }
//! # }
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     enoki::cli::App::new([enoki::service::<Greeter>()])
//!         .config_keys(["STRIPE_KEY"])
//!         .main()
//!         .await
//! }
//! ```
//!
//! # Commands
//!
//! - `run [SERVICE…]`: runs the services (all by default) until Ctrl-C or
//!   SIGTERM, then stops them gracefully and exits 0 (a second Ctrl-C or
//!   SIGTERM exits at once, with status 130);
//! - `call SERVICE.METHOD [ARGS_JSON] [--kwargs JSON] [--context JSON]
//!   [--timeout SECS]`: prints the JSON result on stdout; a remote error
//!   prints `exc_type: value` on stderr and exits 1, and so do
//!   `UnknownService: ...` (nothing consumes the service's requests) and
//!   `RpcTimeout: ...` (no reply in time; default `RPC_TIMEOUT`, else 30 s);
//! - `dispatch SERVICE EVENT_TYPE PAYLOAD_JSON`: dispatches an event as
//!   `SERVICE`;
//! - `show-config`: prints the resolved configuration as YAML;
//! - `shell [--embed [SERVICE,…]]`: the interactive shell
//!   ([`crate::shell`]): `rpc.greeter.hello("Ann")`; from a pipe, one
//!   expression a line, one JSON result a line.
//!
//! With no broker configured, everything runs in this process on the
//! embedded transport: `call` and `dispatch` then start the services for
//! the duration of the command. With `AMQP_URI` set (feature `amqp`), the
//! commands connect to RabbitMQ.
//!
//! # Configuration precedence
//!
//! From lowest to highest, each overriding the ones before:
//!
//! 1. the `--config FILE` (nameko-style YAML, `${VAR:default}`);
//! 2. the `AMQP_URI` environment variable, when set and not empty;
//! 3. `--broker URI`;
//! 4. `--define KEY=VALUE` (so `--define AMQP_URI=...` wins over all).
//!
//! Unlike nameko v3, where the deprecated `--broker` only fills in a
//! missing `AMQP_URI`, here `--broker` (and the environment variable)
//! override the file: the broker to use is a deployment decision.
//!
//! # Errors
//!
//! Bad input (a malformed, unreachable or refusing broker, a config file
//! that is missing, not YAML, not a mapping or has unknown keys, arguments
//! that are not JSON, an unknown service) is reported as one line on
//! stderr, `enoki: ...`, with exit status 1; clap's own usage errors exit
//! with status 2.

use std::ffi::OsString;
use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::{Map, Value};

use crate::client::{ClusterRpc, EventPublisher};
use crate::config::Settings;
use crate::container::ServiceDef;
use crate::error::{Error, Result, one_line};
use crate::runner::ServiceRunner;
use crate::shutdown;
use crate::transport::{self, Transport};

/// How configuration sources override each other, shown by `--help`.
const PRECEDENCE_HELP: &str = "\
Configuration, lowest to highest precedence:
  1. --config FILE (nameko-style YAML, ${VAR:default} substitution)
  2. the AMQP_URI environment variable and the DB_URIS one (when set, not empty)
  3. --broker URI
  4. --define KEY=VALUE (so --define AMQP_URI=... wins)
Without AMQP_URI, everything runs in this process on the embedded broker.

Environment variables read:
  AMQP_URI             the broker URI (amqp://user:pass@host:5672/vhost)
  DB_URIS              database URIs by service, a YAML mapping: '{users: postgres://...}'
  RUST_LOG             the log filter (tracing's EnvFilter), e.g. info,enoki=debug
  ENOKI_SHELL_HISTORY  the shell's history file (default ~/.enoki_shell_history)";

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "enoki",
    version,
    about = "nameko-style microservices for Rust",
    after_help = PRECEDENCE_HELP
)]
#[cfg_attr(feature = "gateway", command(args_conflicts_with_subcommands = true))]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    /// Options of the gateway, for plain `enoki` (same as `enoki gateway`).
    #[cfg(feature = "gateway")]
    #[command(flatten)]
    gateway: crate::gateway::GatewayArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

impl Cli {
    /// Plain `enoki`: the gateway (with the options given at the top
    /// level) when built with it, otherwise `run`.
    fn default_command(&self) -> Command {
        #[cfg(feature = "gateway")]
        return Command::Gateway(self.gateway.clone());
        #[cfg(not(feature = "gateway"))]
        return Command::Run(RunArgs::default());
    }
}

/// Options every command takes.
#[derive(Debug, Args, Clone, Default)]
pub struct GlobalArgs {
    /// A nameko-style YAML config file (`${VAR:default}` substitution).
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Sets a config key, overriding the file, AMQP_URI and --broker (the
    /// value is parsed as YAML; `KEY` alone means true); repeatable.
    #[arg(long = "define", short = 'd', global = true, value_name = "KEY=VALUE")]
    pub define: Vec<String>,
    /// Broker URI, e.g. amqp://guest:guest@localhost/ (overrides AMQP_URI
    /// from the file and the environment; --define AMQP_URI=... overrides it).
    #[arg(long, global = true, value_name = "URI")]
    pub broker: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP/WebSocket gateway (the default command): with no
    /// broker, every service runs embedded beside it.
    #[cfg(feature = "gateway")]
    #[command(after_help = PRECEDENCE_HELP)]
    Gateway(crate::gateway::GatewayArgs),
    /// Run services (all by default) until Ctrl-C or SIGTERM.
    #[command(after_help = PRECEDENCE_HELP)]
    Run(RunArgs),
    /// Call an RPC method and print its JSON result.
    #[command(allow_negative_numbers = true, after_help = PRECEDENCE_HELP)]
    Call(CallArgs),
    /// Dispatch an event as a service.
    #[command(allow_negative_numbers = true, after_help = PRECEDENCE_HELP)]
    Dispatch(DispatchArgs),
    /// Print the resolved configuration as YAML.
    #[command(after_help = PRECEDENCE_HELP)]
    ShowConfig(ShowConfigArgs),
    /// Print the AsyncAPI 3.0 document of the services (all by default):
    /// their channels, operations and message schemas, as JSON.
    #[command(after_help = PRECEDENCE_HELP)]
    Asyncapi(AsyncapiArgs),
    /// An interactive shell: rpc.greeter.hello("Ann"), dispatch(...),
    /// context(...), timeout(...); one expression a line from a pipe.
    #[command(after_help = PRECEDENCE_HELP)]
    Shell(ShellArgs),
    /// Dead-letter queues (`<queue>.dlq`): list what was parked there (past
    /// the delivery limit or the retries), or replay it to its queue.
    #[command(subcommand)]
    Dlq(DlqCommand),
}

/// `enoki dlq`.
#[derive(Debug, Subcommand, Clone)]
enum DlqCommand {
    /// Print the dead letters of QUEUE (`rpc-greeter` or `rpc-greeter.dlq`),
    /// one JSON object a line, oldest first; they stay in the queue.
    #[command(after_help = PRECEDENCE_HELP)]
    List(DlqArgs),
    /// Send the dead letters of QUEUE back to the queue they died in; a
    /// message that fails again comes back once, never in a loop.
    #[command(after_help = PRECEDENCE_HELP)]
    Replay(DlqArgs),
}

/// The arguments of `enoki dlq list|replay`.
#[derive(Debug, Args, Clone)]
struct DlqArgs {
    /// The work queue (or its `.dlq`).
    queue: String,
    /// At most this many messages (1 to 10000).
    #[arg(long, default_value_t = 100)]
    limit: usize,
}

/// `enoki shell`.
#[derive(Debug, Args, Clone, Default)]
struct ShellArgs {
    /// Run services in this process: `--embed` alone runs every service on
    /// the embedded broker (even with AMQP_URI set); `--embed a,b` runs
    /// those, on the broker when there is one.
    #[arg(long, value_name = "SERVICE,...", value_delimiter = ',', num_args = 0..)]
    embed: Option<Vec<String>>,
}

/// `enoki run`.
#[derive(Debug, Args, Clone, Default)]
struct RunArgs {
    /// Services to run.
    services: Vec<String>,
    /// Serve the services' metrics (Prometheus' text format) at
    /// http://ADDR/metrics, e.g. 127.0.0.1:9100.
    #[cfg(feature = "http")]
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
}

/// `enoki asyncapi`.
#[derive(Debug, Args, Clone)]
struct AsyncapiArgs {
    /// Services to describe.
    services: Vec<String>,
}

/// `enoki call`.
#[derive(Debug, Args, Clone)]
struct CallArgs {
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
    /// Seconds to wait for the reply (default: RPC_TIMEOUT, else 30).
    #[arg(long)]
    timeout: Option<f64>,
}

/// `enoki dispatch`.
#[derive(Debug, Args, Clone)]
struct DispatchArgs {
    /// The source service.
    service: String,
    /// The event type.
    event_type: String,
    /// The payload, as JSON.
    payload: String,
}

/// `enoki show-config`.
#[derive(Debug, Args, Clone)]
struct ShowConfigArgs {
    /// Also every key enoki reads that is left at its default, with what
    /// it means.
    #[arg(long)]
    all: bool,
}

impl Command {
    /// The default log filter: `run` tells what it does; one-shot commands
    /// keep stderr for their result (warnings and errors only).
    fn default_log_filter(&self) -> &'static str {
        // lapin logs every failed connection attempt as errors; enoki
        // reports them itself (`RUST_LOG=lapin=warn` shows them).
        // `call` reports the outcome itself, so the logs of services it
        // hosts in-process (embedded transport) would only repeat it.
        match self {
            Command::Run(_) => "info,lapin=off",
            #[cfg(feature = "gateway")]
            Command::Gateway(_) => "info,lapin=off",
            Command::Call(_) | Command::Shell(_) => {
                "warn,lapin=off,enoki::container=off,enoki::entrypoint=off,enoki::worker=off"
            }
            _ => "warn,lapin=off",
        }
    }
}

/// A binary's command line: its services, and the config keys they read
/// besides enoki's own ([`crate::config::KEYS`]).
#[derive(Debug)]
pub struct App {
    services: Vec<ServiceDef>,
    config_keys: Vec<String>,
    #[cfg(feature = "gateway")]
    routes: Vec<crate::gateway::BuiltinRoutes>,
}

impl App {
    /// The commands for `services`.
    pub fn new(services: impl IntoIterator<Item = ServiceDef>) -> Self {
        App {
            services: services.into_iter().collect(),
            config_keys: Vec::new(),
            #[cfg(feature = "gateway")]
            routes: Vec::new(),
        }
    }

    /// Builds route file text into the binary (the format of
    /// `routes/README.md`): the gateway serves it when started without
    /// `--routes` where there is no `./routes` directory, so the binary
    /// serves its routes from anywhere (after `cargo install`, in a
    /// container). `name` is what the logs and errors call it.
    ///
    /// ```no_run
    /// # use enoki::prelude::*;
    /// # #[derive(Dependencies)] struct Greeter;
    /// # #[service(name = "greeter")] impl Greeter {
    /// #     #[rpc] async fn hello(&self, name: String) -> Result<String, RemoteError> { Ok(name) }
    /// # }
    /// # async fn main_() -> std::process::ExitCode {
    /// enoki::cli::App::new([enoki::service::<Greeter>()])
    ///     .routes(
    ///         "built-in hello.yaml",
    ///         "routes:\n  - { method: GET, path: /hello/{name}, rpc: greeter.hello }\n",
    ///     )
    ///     .main()
    ///     .await
    /// # }
    /// ```
    #[cfg(feature = "gateway")]
    #[must_use]
    pub fn routes(mut self, name: impl Into<String>, yaml: impl Into<String>) -> Self {
        self.routes.push(crate::gateway::BuiltinRoutes {
            name: name.into(),
            yaml: yaml.into(),
        });
        self
    }

    /// Accepts these top-level keys in config files and `--define`, for
    /// the services' own settings (e.g. `STRIPE_KEY`).
    #[must_use]
    pub fn config_keys<K: Into<String>>(mut self, keys: impl IntoIterator<Item = K>) -> Self {
        self.config_keys.extend(keys.into_iter().map(Into::into));
        self
    }

    /// Parses the process arguments and runs the command. Errors are
    /// printed as one line on stderr.
    pub async fn main(self) -> ExitCode {
        self.main_from(std::env::args_os()).await
    }

    /// Like [`App::main`], with the arguments given (the first is the
    /// program name).
    pub async fn main_from<I, T>(self, args: I) -> ExitCode
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let mut cli = match Cli::try_parse_from(args) {
            Ok(cli) => cli,
            Err(err) => {
                let _ = err.print();
                return if err.use_stderr() {
                    ExitCode::from(2)
                } else {
                    ExitCode::SUCCESS
                };
            }
        };
        let command = match cli.command.take() {
            Some(command) => command,
            None => cli.default_command(),
        };
        let telemetry = match init_tracing(command.default_log_filter()) {
            Ok(telemetry) => telemetry,
            Err(err) => {
                eprintln!("enoki: {}", one_line(&err.to_string()));
                return ExitCode::FAILURE;
            }
        };
        let cli = Cli {
            command: Some(command),
            ..cli
        };
        let code = match run(cli, self).await {
            Ok(code) => code,
            Err(err) => {
                eprintln!("enoki: {}", one_line(&err.to_string()));
                ExitCode::FAILURE
            }
        };
        if let Some(telemetry) = telemetry {
            shutdown_telemetry(telemetry).await;
        }
        code
    }
}

/// Parses the process arguments and runs the command with `services`
/// available. Errors are printed as one line on stderr. The same as
/// `App::new(services).main()`.
pub async fn main(services: impl IntoIterator<Item = ServiceDef>) -> ExitCode {
    App::new(services).main().await
}

/// Logs to stderr (`RUST_LOG`, else `default_filter`); with the `otel`
/// feature and `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans (INFO and up) are
/// exported too, as `OTEL_SERVICE_NAME` (default `enoki`).
#[cfg(feature = "otel")]
fn init_tracing(default_filter: &str) -> Result<Option<crate::telemetry::Telemetry>> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "enoki".to_owned());
    let Some((otel, telemetry)) = crate::telemetry::otlp_layer(&service, None)? else {
        init_logs(default_filter);
        return Ok(None);
    };
    let subscriber = tracing_subscriber::registry()
        .with(fmt_layer().with_filter(env_filter(default_filter)))
        .with(otel.with_filter(tracing_subscriber::filter::LevelFilter::INFO));
    let _ = tracing::subscriber::set_global_default(subscriber);
    Ok(Some(telemetry))
}

#[cfg(not(feature = "otel"))]
fn init_tracing(default_filter: &str) -> Result<Option<std::convert::Infallible>> {
    init_logs(default_filter);
    Ok(None)
}

/// Sends the exporter's last batch, off the async workers.
#[cfg(feature = "otel")]
async fn shutdown_telemetry(telemetry: crate::telemetry::Telemetry) {
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
}

#[cfg(not(feature = "otel"))]
async fn shutdown_telemetry(never: std::convert::Infallible) {
    match never {}
}

fn env_filter(default_filter: &str) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter))
}

fn fmt_layer<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
}

fn init_logs(default_filter: &str) {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    let subscriber =
        tracing_subscriber::registry().with(fmt_layer().with_filter(env_filter(default_filter)));
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// Runs one parsed command: one function per command.
async fn run(cli: Cli, app: App) -> Result<ExitCode> {
    let App {
        services,
        config_keys,
        #[cfg(feature = "gateway")]
        routes,
    } = app;
    let extra_keys: Vec<&str> = config_keys.iter().map(String::as_str).collect();
    let settings = load_settings(&cli.global, &extra_keys)?;
    let command = match cli.command {
        Some(command) => command,
        None => cli.default_command(),
    };
    match command {
        #[cfg(feature = "gateway")]
        Command::Gateway(mut args) => {
            args.builtin_routes.extend(routes);
            // The gateway's section, checked here to name its file.
            crate::gateway::GatewayConfig::from_settings(&settings).map_err(|err| {
                let file = cli.global.config.as_ref().map_or_else(
                    || "the configuration".to_owned(),
                    |path| path.display().to_string(),
                );
                Error::Config(format!("{file}: {}", config_message(&err)))
            })?;
            gateway(args, settings, services).await
        }
        Command::ShowConfig(args) => show_config(&args, &settings),
        Command::Asyncapi(args) => {
            let contracts: Vec<crate::asyncapi::Contract> = select(services, &args.services)?
                .iter()
                .map(crate::asyncapi::Contract::of)
                .collect();
            let document = crate::asyncapi::document(&contracts, settings.rpc_exchange());
            println!("{}", serde_json::to_string_pretty(&document)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => run_services(&settings, services, &args).await,
        Command::Call(args) => call(args, &settings, services).await,
        Command::Dispatch(args) => dispatch(args, &settings, services).await,
        Command::Shell(args) => shell(args, &settings, services).await,
        Command::Dlq(command) => dlq(command, &settings).await,
    }
}

/// `dlq list|replay`: on the broker only (an embedded broker lives and
/// dies with the process that runs it; a new one here would be empty).
async fn dlq(command: DlqCommand, settings: &Settings) -> Result<ExitCode> {
    if settings.amqp_uri().is_none() {
        return Err(Error::Config(
            "enoki dlq works on a broker: set AMQP_URI or --broker".into(),
        ));
    }
    let transport = transport::connect(settings).await?;
    let result = match &command {
        DlqCommand::List(args) => crate::dlq::list(&*transport, &args.queue, args.limit)
            .await
            .map(|letters| {
                for letter in letters {
                    println!("{}", serde_json::to_string(&letter).unwrap_or_default());
                }
            }),
        DlqCommand::Replay(args) => crate::dlq::replay(&*transport, &args.queue, args.limit)
            .await
            .map(|done| {
                println!(
                    "enoki: replayed {} dead letter(s) of {}; {} could not be sent and stay",
                    done.replayed, args.queue, done.failed
                );
            }),
    };
    transport.close().await;
    result?;
    Ok(ExitCode::SUCCESS)
}

/// `gateway` (and plain `enoki`).
#[cfg(feature = "gateway")]
async fn gateway(
    args: crate::gateway::GatewayArgs,
    settings: Settings,
    services: Vec<ServiceDef>,
) -> Result<ExitCode> {
    crate::gateway::run(args, settings, services).await?;
    Ok(ExitCode::SUCCESS)
}

/// `show-config`: the resolved settings as YAML; with `--all`, every key
/// enoki reads at its value or default, each with its meaning as a comment.
fn show_config(args: &ShowConfigArgs, settings: &Settings) -> Result<ExitCode> {
    let yaml = |map: &Map<String, Value>| {
        serde_yaml_ng::to_string(map).map_err(|err| Error::Config(err.to_string()))
    };
    if !args.all {
        print!("{}", yaml(settings.as_map())?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = String::new();
    for (key, value) in settings.effective() {
        out.push_str(&format!("# {} ({})\n", key.doc, key.describe()));
        let mut one = Map::new();
        one.insert(key.name.to_owned(), value.unwrap_or(Value::Null));
        out.push_str(&yaml(&one)?);
    }
    let own: Map<String, Value> = settings
        .as_map()
        .iter()
        .filter(|(name, _)| crate::config::keys::key(name).is_none())
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    if !own.is_empty() {
        out.push_str("# the services' own keys\n");
        out.push_str(&yaml(&own)?);
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// `call`: one RPC call, its JSON result on stdout.
async fn call(args: CallArgs, settings: &Settings, services: Vec<ServiceDef>) -> Result<ExitCode> {
    let CallArgs {
        target,
        args,
        kwargs,
        context,
        timeout,
    } = args;
    let (service, method) = match target.split_once('.') {
        Some((service, method)) if !service.is_empty() && !method.is_empty() => (service, method),
        _ => {
            return Err(Error::Config(format!(
                "`{target}` is not SERVICE.METHOD (e.g. greeter.hello)"
            )));
        }
    };
    let args = parse_json("ARGS_JSON", args.as_deref().unwrap_or("[]"))?;
    let kwargs = parse_object("--kwargs", kwargs.as_deref())?;
    let context = parse_object("--context", context.as_deref())?;
    let timeout = match timeout {
        Some(secs) => {
            crate::config::positive_seconds("--timeout", secs, crate::config::MAX_CONFIG_SECONDS)?
        }
        None => settings.rpc_timeout().unwrap_or(Duration::from_secs(30)),
    };
    let (transport, runner) = embed(settings, services).await?;
    let result = async {
        let rpc = ClusterRpc::builder(transport.clone())
            .settings(settings)
            .context_data(context)
            .timeout(timeout)
            .connect()
            .await?;
        let result = rpc.call(service, method, args, kwargs).await;
        rpc.close().await;
        result
    }
    .await;
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
            eprintln!("{}: {}", remote.exc_type, one_line(&remote.value));
            Ok(ExitCode::FAILURE)
        }
        Err(Error::UnknownService(service)) => {
            eprintln!("UnknownService: {service}");
            Ok(ExitCode::FAILURE)
        }
        Err(Error::RpcTimeout {
            service,
            method,
            timeout,
        }) => {
            eprintln!(
                "RpcTimeout: no reply from {service}.{method} within {}s",
                timeout.as_secs_f64()
            );
            Ok(ExitCode::FAILURE)
        }
        Err(other) => Err(other),
    }
}

/// `dispatch`: one event, published as `service`.
async fn dispatch(
    args: DispatchArgs,
    settings: &Settings,
    services: Vec<ServiceDef>,
) -> Result<ExitCode> {
    let payload = parse_json("PAYLOAD_JSON", &args.payload)?;
    let (transport, runner) = embed(settings, services).await?;
    let result = EventPublisher::new(transport.clone(), settings)
        .dispatch(&args.service, &args.event_type, &payload)
        .await;
    if let Some(runner) = runner {
        // Let the in-process handlers run, then drain them.
        tokio::time::sleep(Duration::from_millis(50)).await;
        runner.stop().await;
    }
    transport.close().await;
    result?;
    Ok(ExitCode::SUCCESS)
}

/// `shell`: the interactive shell (see [`crate::shell`]).
async fn shell(
    args: ShellArgs,
    settings: &Settings,
    services: Vec<ServiceDef>,
) -> Result<ExitCode> {
    let (transport, runner) = match args.embed {
        None => embed(settings, services).await?,
        Some(names) => {
            let transport: Arc<dyn Transport> = if names.is_empty() {
                transport::MemoryTransport::new()
            } else {
                transport::connect(settings).await?
            };
            let mut runner = tool_runner(&transport, settings);
            for def in select(services, &names)? {
                runner.add(def);
            }
            runner.start().await?;
            (transport, Some(runner))
        }
    };
    let shell = async {
        let mut shell = crate::shell::Shell::connect(transport.clone(), settings).await?;
        if let Some(runner) = &runner {
            shell.know(runner.service_names());
        }
        Ok::<_, Error>(shell.run().await)
    }
    .await;
    if let Some(runner) = runner {
        runner.stop().await;
    }
    transport.close().await;
    shell
}

/// `run`: the selected services until Ctrl-C or SIGTERM.
async fn run_services(
    settings: &Settings,
    services: Vec<ServiceDef>,
    args: &RunArgs,
) -> Result<ExitCode> {
    let selected = select(services, &args.services)?;
    // Signal handlers first, so that a SIGTERM during startup stops the
    // services gracefully instead of killing the process.
    let stop = shutdown::shutdown_signal();
    let transport = transport::connect(settings).await?;
    let names: Vec<&str> = selected.iter().map(ServiceDef::name).collect();
    println!(
        "enoki: running {} on the {} transport (Ctrl-C to stop)",
        names.join(", "),
        transport.kind()
    );
    let mut runner = ServiceRunner::new(transport.clone(), settings.clone());
    #[cfg(feature = "http")]
    let metrics_server = match &args.metrics {
        None => None,
        Some(addr) => {
            let metrics = crate::service_metrics::ServiceMetrics::new();
            runner.metrics(metrics.clone());
            Some(serve_metrics(addr, metrics).await?)
        }
    };
    for def in selected {
        runner.add(def);
    }
    let result = runner
        .run_until(async {
            stop.await;
            // A second signal while stopping gracefully exits at once.
            let again = shutdown::shutdown_signal();
            tokio::spawn(async move {
                again.await;
                eprintln!("enoki: killed (second signal)");
                std::process::exit(130);
            });
        })
        .await;
    #[cfg(feature = "http")]
    if let Some(server) = metrics_server {
        server.abort();
    }
    transport.close().await;
    result?;
    Ok(ExitCode::SUCCESS)
}

/// Serves `GET /metrics` on `addr` (`enoki run --metrics`), with the web
/// server's limits; the task ends with the process.
#[cfg(feature = "http")]
async fn serve_metrics(
    addr: &str,
    metrics: crate::service_metrics::ServiceMetrics,
) -> Result<tokio::task::JoinHandle<()>> {
    use axum::response::IntoResponse;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|err| Error::Config(format!("--metrics {addr}: cannot listen: {err}")))?;
    let bound = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    metrics.render_with_queues().await,
                )
                    .into_response()
            }
        }),
    );
    println!("enoki: metrics at http://{bound}/metrics");
    Ok(tokio::spawn(async move {
        let limits = crate::web::serve::ServeLimits::default();
        if let Err(error) =
            crate::web::serve::serve(listener, app, limits, || {}, std::future::pending()).await
        {
            tracing::error!(%error, "the metrics server stopped");
        }
    }))
}

/// Settings from `--config`, the `AMQP_URI` environment variable,
/// `--broker` and `--define`, in that order of precedence (see the
/// [module docs](self)). `extra_keys` are accepted besides
/// [`crate::config::KEYS`].
pub fn load_settings(global: &GlobalArgs, extra_keys: &[&str]) -> Result<Settings> {
    let env_uri = std::env::var("AMQP_URI").ok();
    let settings = resolve_settings(global, env_uri.as_deref(), extra_keys)?;
    let env_db_uris = std::env::var("DB_URIS").ok();
    with_env_db_uris(settings, global, env_db_uris.as_deref())
}

/// Merges the `DB_URIS` environment variable (a YAML mapping of service
/// to URI) over the file's `DB_URIS`; `--define DB_URIS=...` still wins.
fn with_env_db_uris(
    settings: Settings,
    global: &GlobalArgs,
    env: Option<&str>,
) -> Result<Settings> {
    let Some(text) = env.filter(|text| !text.trim().is_empty()) else {
        return Ok(settings);
    };
    let value: Value = serde_yaml_ng::from_str(text).map_err(|err| {
        Error::Config(format!(
            "the DB_URIS environment variable is not YAML: {err}"
        ))
    })?;
    let Value::Object(from_env) = value else {
        return Err(Error::Config(format!(
            "the DB_URIS environment variable must be a mapping of service to URI, e.g. '{{users: sqlite://users.db}}', got {value}"
        )));
    };
    let defined = global
        .define
        .iter()
        .any(|d| d.split('=').next().is_some_and(|k| k.trim() == "DB_URIS"));
    if defined {
        return Ok(settings);
    }
    let mut uris = match settings.get("DB_URIS") {
        Some(Value::Object(file)) => file.clone(),
        _ => Map::new(),
    };
    uris.extend(from_env);
    let settings = settings.with("DB_URIS", Value::Object(uris));
    settings.validate()?;
    Ok(settings)
}

/// The message of a config error, without its kind.
#[cfg(feature = "gateway")]
fn config_message(err: &Error) -> String {
    match err {
        Error::Config(message) => message.clone(),
        other => other.to_string(),
    }
}

/// [`load_settings`] with the `AMQP_URI` environment variable given.
fn resolve_settings(
    global: &GlobalArgs,
    env_uri: Option<&str>,
    extra_keys: &[&str],
) -> Result<Settings> {
    let mut settings = match &global.config {
        Some(path) => {
            let settings = Settings::load(path)?;
            settings.check_keys(extra_keys, &path.display().to_string())?;
            settings
        }
        None => Settings::new(),
    };
    if let Some(uri) = env_uri.filter(|uri| !uri.is_empty()) {
        settings = settings.with("AMQP_URI", Value::String(uri.to_owned()));
    }
    if let Some(broker) = &global.broker {
        settings = settings.with("AMQP_URI", Value::String(broker.clone()));
    }
    let mut defined = Settings::new();
    for define in &global.define {
        let (key, value) = match define.split_once('=') {
            Some((key, value)) => {
                let value: Value = serde_yaml_ng::from_str(value).map_err(|err| {
                    Error::Config(format!("--define {define}: the value is not YAML: {err}"))
                })?;
                (key.trim(), value)
            }
            None => (define.trim(), Value::Bool(true)),
        };
        if key.is_empty() {
            return Err(Error::Config(format!(
                "--define {define}: expected KEY=VALUE"
            )));
        }
        defined = defined.with(key, value);
    }
    defined.check_keys(extra_keys, "--define")?;
    let settings = settings.merged(&defined);
    settings.validate()?;
    Ok(settings)
}

/// Moved to [`crate::transport::connect`].
#[deprecated(since = "0.1.0", note = "use `enoki::transport::connect`")]
pub async fn connect(settings: &Settings) -> Result<Arc<dyn Transport>> {
    transport::connect(settings).await
}

/// Connects; on the embedded transport, also starts the services in this
/// process (they are the only ones that can answer).
async fn embed(
    settings: &Settings,
    services: Vec<ServiceDef>,
) -> Result<(Arc<dyn Transport>, Option<ServiceRunner>)> {
    let transport = transport::connect(settings).await?;
    if settings.amqp_uri().is_some() {
        return Ok((transport, None));
    }
    let mut runner = tool_runner(&transport, settings);
    for def in services {
        runner.add(def);
    }
    runner.start().await?;
    Ok((transport, Some(runner)))
}

/// The runner of services embedded in a tool (`call`, `dispatch`,
/// `shell`): they answer RPC and events; their `#[http]` routes are not
/// served (no port is taken).
fn tool_runner(transport: &Arc<dyn Transport>, settings: &Settings) -> ServiceRunner {
    #[cfg_attr(not(feature = "http"), allow(unused_mut))]
    let mut runner = ServiceRunner::new(transport.clone(), settings.clone());
    #[cfg(feature = "http")]
    runner.web_server(crate::web::WebServer::mounted());
    runner
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

/// Moved to [`crate::shutdown::shutdown_signal`].
#[deprecated(since = "0.1.0", note = "use `enoki::shutdown::shutdown_signal`")]
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    crate::shutdown::shutdown_signal()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn global(
        config: Option<&std::path::Path>,
        broker: Option<&str>,
        define: &[&str],
    ) -> GlobalArgs {
        GlobalArgs {
            config: config.map(std::path::Path::to_path_buf),
            define: define.iter().map(|d| (*d).to_owned()).collect(),
            broker: broker.map(str::to_owned),
        }
    }

    #[test]
    fn amqp_uri_precedence() {
        let dir = std::env::temp_dir().join(format!("enoki-cli-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("config.yaml");
        std::fs::write(&file, "AMQP_URI: amqp://file/\nmax_workers: 3\n").unwrap();
        let uri = |global: &GlobalArgs, env: Option<&str>| {
            resolve_settings(global, env, &[])
                .unwrap()
                .amqp_uri()
                .map(str::to_owned)
        };
        let f = Some(file.as_path());
        assert_eq!(
            uri(&global(f, None, &[]), None).as_deref(),
            Some("amqp://file/")
        );
        assert_eq!(
            uri(&global(f, None, &[]), Some("")).as_deref(),
            Some("amqp://file/")
        );
        assert_eq!(
            uri(&global(f, None, &[]), Some("amqp://env/")).as_deref(),
            Some("amqp://env/")
        );
        assert_eq!(
            uri(&global(f, Some("amqp://flag/"), &[]), Some("amqp://env/")).as_deref(),
            Some("amqp://flag/")
        );
        assert_eq!(
            uri(
                &global(f, Some("amqp://flag/"), &["AMQP_URI=amqp://define/"]),
                Some("amqp://env/")
            )
            .as_deref(),
            Some("amqp://define/")
        );
        // `--define AMQP_URI=` (null) means no broker: the embedded one.
        assert_eq!(
            uri(&global(f, Some("amqp://flag/"), &["AMQP_URI="]), None),
            None
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn db_uris_from_the_environment_merge_over_the_file_and_under_defines() {
        let file = std::env::temp_dir().join(format!("enoki-cli-db-{}.yaml", std::process::id()));
        std::fs::write(
            &file,
            "DB_URIS:\n  users: sqlite://file.db\n  other: sqlite://o.db\n",
        )
        .unwrap();
        let from_file = GlobalArgs {
            config: Some(file.clone()),
            ..GlobalArgs::default()
        };
        let base = resolve_settings(&from_file, None, &[]).unwrap();
        let merged =
            with_env_db_uris(base.clone(), &from_file, Some("{users: 'postgres://h/u'}")).unwrap();
        assert_eq!(
            merged.get("DB_URIS"),
            Some(&serde_json::json!({"users": "postgres://h/u", "other": "sqlite://o.db"}))
        );
        let untouched = with_env_db_uris(base.clone(), &from_file, Some("  ")).unwrap();
        assert_eq!(untouched.get("DB_URIS"), base.get("DB_URIS"));
        let defined = GlobalArgs {
            define: vec!["DB_URIS={users: sqlite://d.db}".into()],
            ..from_file.clone()
        };
        let settings = resolve_settings(&defined, None, &[]).unwrap();
        let kept = with_env_db_uris(settings, &defined, Some("{users: x}")).unwrap();
        assert_eq!(
            kept.get("DB_URIS"),
            Some(&serde_json::json!({"users": "sqlite://d.db"}))
        );
        for bad in ["[a, b]", "{users: [", "just text"] {
            let err = with_env_db_uris(base.clone(), &from_file, Some(bad)).unwrap_err();
            assert!(
                err.to_string().contains("DB_URIS environment variable"),
                "{bad}: {err}"
            );
        }
        std::fs::remove_file(&file).unwrap();
    }

    #[test]
    fn defines_are_yaml_and_checked() {
        let settings = resolve_settings(
            &global(
                None,
                None,
                &[
                    "max_workers=5",
                    "DECLARE_EVENT_EXCHANGES=false",
                    "DB_URIS={a: b}",
                    "FLAG",
                ],
            ),
            None,
            &["DB_URIS", "FLAG"],
        )
        .unwrap();
        assert_eq!(settings.max_workers(), 5);
        assert!(!settings.declare_event_exchanges());
        assert_eq!(
            settings.get("DB_URIS"),
            Some(&serde_json::json!({"a": "b"}))
        );
        assert_eq!(settings.get("FLAG"), Some(&Value::Bool(true)));
        let err = resolve_settings(&global(None, None, &["max_workrs=5"]), None, &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("max_workrs") && err.contains("max_workers"),
            "{err}"
        );
        let err = resolve_settings(&global(None, None, &["max_workers=lots"]), None, &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_workers"), "{err}");
    }

    #[test]
    fn errors_are_one_line() {
        assert_eq!(one_line("a\n  b\n\nc"), "a b c");
    }
}
