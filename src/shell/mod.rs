//! `enoki shell`: nameko's shell, with `rpc` instead of `n.rpc`.
//!
//! One expression a line (the language is in [`parse`]):
//!
//! ```text
//! >>> rpc.greeter.hello("Ann")
//! "Hello, Ann!"
//! >>> rpc.manual_service.add(a=2, b=3)
//! 5
//! >>> dispatch("greeter", "greeted", {"name": "Ann"})
//! >>> context(user_id=7)          # context data for the calls that follow
//! >>> timeout(5)                  # seconds to wait for each reply
//! >>> rpc                         # the services known so far
//! >>> rpc.greeter                 # what an enoki service offers
//! ```
//!
//! Errors print as `exc_type: value` and the shell goes on. On a terminal
//! it has line editing, a history file (`ENOKI_SHELL_HISTORY`, default
//! `~/.enoki_shell_history`) and tab completion of `rpc.<service>.<method>`:
//! enoki services describe themselves ([`crate::describe`]), Python
//! nameko services are completed by name once seen. With stdin not a
//! terminal, it reads one expression a line, prints one JSON result a line
//! and exits with status 1 at the first error, so it can be scripted:
//!
//! ```sh
//! echo 'rpc.greeter.hello("Ann")' | enoki shell      # prints "Hello, Ann!"
//! ```
//!
//! The evaluator is a plain value, usable without a terminal:
//!
//! ```
//! use enoki::prelude::*;
//! use enoki::shell::{Reply, Shell};
//!
//! #[derive(Dependencies)]
//! struct Greeter;
//!
//! #[service(name = "greeter")]
//! impl Greeter {
//!     #[rpc]
//!     async fn hello(&self, name: String) -> Result<String, RemoteError> {
//!         Ok(format!("Hello, {name}!"))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> enoki::Result<()> {
//! let transport = enoki::transport::MemoryTransport::new();
//! let mut runner = ServiceRunner::new(transport.clone(), Settings::new());
//! runner.add(enoki::service::<Greeter>());
//! runner.start().await?;
//! let mut shell = Shell::connect(transport, &Settings::new()).await?;
//! let reply = shell.eval(r#"rpc.greeter.hello(name="Ann")"#).await;
//! assert_eq!(reply.unwrap(), Reply::Value(serde_json::json!("Hello, Ann!")));
//! let err = shell.eval("rpc.greeter.hello(").await.unwrap_err();
//! assert!(err.to_string().starts_with("SyntaxError: unclosed `(`"));
//! runner.stop().await;
//! # Ok(()) }
//! ```

pub mod parse;

mod catalog;
mod complete;
mod input;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Map, Value};

use crate::client::{ClusterRpc, EventPublisher};
use crate::config::Settings;
use crate::error::{Error, Result, one_line};
use crate::transport::Transport;

use self::catalog::{Catalog, describe};
use self::input::Input;
use self::parse::{CallArgs, Expr, parse_line};

/// The default seconds to wait for a reply (`RPC_TIMEOUT` overrides it).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// What a line evaluated to.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A JSON value: printed as JSON.
    Value(Value),
    /// Text for a person (`help`): printed as is.
    Text(String),
    /// Nothing to print (a blank line, a dispatched event).
    Nothing,
    /// `exit`, `quit` or the end of the input.
    Exit,
}

/// Why a line failed: printed as `exc_type: value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellError {
    /// `SyntaxError`, `NameError`, `TypeError`, a remote `exc_type`, …
    pub exc_type: String,
    /// What went wrong, on one line.
    pub value: String,
}

impl ShellError {
    fn new(exc_type: &str, value: impl Into<String>) -> Self {
        ShellError {
            exc_type: exc_type.to_owned(),
            value: one_line(&value.into()),
        }
    }
}

impl std::fmt::Display for ShellError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.exc_type, self.value)
    }
}

impl std::error::Error for ShellError {}

impl From<Error> for ShellError {
    fn from(err: Error) -> Self {
        match err {
            Error::Remote(remote) => ShellError::new(&remote.exc_type, remote.value),
            Error::UnknownService(service) => ShellError::new("UnknownService", service),
            Error::RpcTimeout {
                service,
                method,
                timeout,
            } => ShellError::new(
                "RpcTimeout",
                format!(
                    "no reply from {service}.{method} within {}s",
                    timeout.as_secs_f64()
                ),
            ),
            other => ShellError::new("Error", other.to_string()),
        }
    }
}

/// The shell's state: the RPC client and event publisher it calls with,
/// the context data and timeout set by `context(...)` and `timeout(...)`,
/// and what it knows of the services.
#[derive(Debug)]
pub struct Shell {
    rpc: ClusterRpc,
    publisher: EventPublisher,
    context: Map<String, Value>,
    timeout: Duration,
    catalog: Arc<Mutex<Catalog>>,
}

impl Shell {
    /// A shell on `transport`, with `RPC_TIMEOUT` (else 30 s) as timeout.
    pub async fn connect(transport: Arc<dyn Transport>, settings: &Settings) -> Result<Shell> {
        let rpc = ClusterRpc::builder(transport.clone())
            .settings(settings)
            .connect()
            .await?;
        Ok(Shell {
            rpc,
            publisher: EventPublisher::new(transport, settings),
            context: Map::new(),
            timeout: settings.rpc_timeout().unwrap_or(DEFAULT_TIMEOUT),
            catalog: Arc::default(),
        })
    }

    /// Makes `services` known (for `rpc` and completion) before they are
    /// called, e.g. the services running in this process.
    pub fn know(&mut self, services: impl IntoIterator<Item = impl AsRef<str>>) {
        let mut catalog = self.catalog.lock();
        for service in services {
            catalog.seen(service.as_ref());
        }
    }

    /// Evaluates one line.
    pub async fn eval(&mut self, line: &str) -> std::result::Result<Reply, ShellError> {
        let expr =
            parse_line(line).map_err(|err| ShellError::new("SyntaxError", err.to_string()))?;
        let Some(Expr { path, call }) = expr else {
            return Ok(Reply::Nothing);
        };
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        match (path.as_slice(), call) {
            (["rpc"], None) => Ok(Reply::Value(Value::from(
                self.catalog
                    .lock()
                    .services
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>(),
            ))),
            (["rpc", service], None) => self.describe(service).await.map(Reply::Value),
            (["rpc", service, method], Some(args)) => self.call(service, method, args).await,
            (["rpc", service, method], None) => Err(ShellError::new(
                "TypeError",
                format!(
                    "rpc.{service}.{method} is a method: call it, e.g. rpc.{service}.{method}()"
                ),
            )),
            (["rpc", ..], _) => Err(ShellError::new(
                "NameError",
                "expected rpc.SERVICE.METHOD(...)",
            )),
            (["dispatch"], Some(args)) => self.dispatch(args).await,
            (["context"], Some(args)) => self.set_context(args),
            (["timeout"], Some(args)) => self.set_timeout(args),
            (["help"], _) => Ok(Reply::Text(HELP.to_owned())),
            (["exit" | "quit"], _) => Ok(Reply::Exit),
            ([name @ ("dispatch" | "context" | "timeout")], None) => Err(ShellError::new(
                "TypeError",
                format!("{name} is a function: call it, e.g. {name}(...); try help"),
            )),
            (path, _) => Err(ShellError::new(
                "NameError",
                format!("name '{}' is not defined; try help", path.join(".")),
            )),
        }
    }

    async fn call(
        &mut self,
        service: &str,
        method: &str,
        args: CallArgs,
    ) -> std::result::Result<Reply, ShellError> {
        let rpc = self
            .rpc
            .with_timeout(self.timeout)
            .with_context_data(self.context.clone());
        let result = rpc
            .call(service, method, Value::Array(args.args), args.kwargs)
            .await;
        if !matches!(result, Err(Error::UnknownService(_))) {
            self.catalog.lock().seen(service);
        }
        Ok(Reply::Value(result?))
    }

    /// `rpc.SERVICE`: the service's description, or what is known of it.
    async fn describe(&self, service: &str) -> std::result::Result<Value, ShellError> {
        match describe(&self.rpc, &self.catalog, service, self.timeout).await {
            Ok(Some(description)) => Ok(serde_json::to_value(description).unwrap_or_default()),
            Ok(None) => Ok(serde_json::json!({
                "service": service,
                "rpc": null,
                "note": "not an enoki service: it cannot list its methods",
            })),
            Err(err) => Err(err.into()),
        }
    }

    async fn dispatch(&self, args: CallArgs) -> std::result::Result<Reply, ShellError> {
        let usage = || {
            ShellError::new(
                "TypeError",
                "dispatch(service, event_type, payload) takes two strings and a JSON value",
            )
        };
        let mut args = args.args.into_iter();
        let (Some(Value::String(service)), Some(Value::String(event_type)), Some(payload), None) =
            (args.next(), args.next(), args.next(), args.next())
        else {
            return Err(usage());
        };
        crate::transport::check_name("service", &service)
            .and_then(|()| crate::transport::check_name("event type", &event_type))
            .map_err(|err| ShellError::new("ValueError", err.to_string()))?;
        self.publisher
            .dispatch(&service, &event_type, &payload)
            .await?;
        Ok(Reply::Nothing)
    }

    /// `context()` shows the context data; `context(k=v, ...)` or
    /// `context({...})` replaces it; `context(None)` clears it.
    fn set_context(&mut self, args: CallArgs) -> std::result::Result<Reply, ShellError> {
        match (args.args.as_slice(), args.kwargs.is_empty()) {
            ([], true) => {}
            ([], false) => self.context = args.kwargs,
            ([Value::Object(map)], true) => self.context = map.clone(),
            ([Value::Null], true) => self.context.clear(),
            _ => {
                return Err(ShellError::new(
                    "TypeError",
                    "context(key=value, ...) or context({...}) or context(None)",
                ));
            }
        }
        Ok(Reply::Value(Value::Object(self.context.clone())))
    }

    /// `timeout()` shows the timeout; `timeout(SECONDS)` sets it.
    fn set_timeout(&mut self, args: CallArgs) -> std::result::Result<Reply, ShellError> {
        match (args.args.as_slice(), args.kwargs.is_empty()) {
            ([], true) => {}
            ([Value::Number(n)], true) => {
                let secs = n.as_f64().unwrap_or(f64::NAN);
                self.timeout = crate::config::positive_seconds(
                    "timeout",
                    secs,
                    crate::config::MAX_CONFIG_SECONDS,
                )
                .map_err(|err| ShellError::new("ValueError", err.to_string()))?;
            }
            _ => return Err(ShellError::new("TypeError", "timeout(SECONDS)")),
        }
        Ok(Reply::Value(Value::from(self.timeout.as_secs_f64())))
    }

    /// Tab completion of `line` with the cursor at byte `pos`: where the
    /// completed word starts, and what may replace it (`rpc.greeter.`,
    /// `rpc.greeter.hello(`, `dispatch(`, …). An enoki service never asked
    /// is asked what it offers (for at most a second).
    pub async fn complete(&self, line: &str, pos: usize) -> (usize, Vec<String>) {
        complete::candidates(&self.rpc, &self.catalog, line, pos).await
    }

    /// Runs the shell on the terminal (line editing, history, completion)
    /// or, when stdin is not a terminal, one expression a line until the
    /// end of the input or the first error (exit status 1).
    pub async fn run(mut self) -> ExitCode {
        let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
        let mut lines = if interactive {
            let completer = complete::Completer::new(
                self.rpc.clone(),
                self.catalog.clone(),
                tokio::runtime::Handle::current(),
            );
            println!("enoki shell: rpc.SERVICE.METHOD(...) calls; help for more; Ctrl-D to leave");
            input::Lines::terminal(completer)
        } else {
            input::Lines::stdin()
        };
        let code = loop {
            let Some(input) = lines.next().await else {
                break ExitCode::SUCCESS;
            };
            let result = match input {
                Input::Line(line) => self.eval(&line).await,
                Input::TooLong(len) => Err(ShellError::new(
                    "SyntaxError",
                    format!(
                        "line too long: {len} bytes (at most {})",
                        parse::MAX_LINE_LEN
                    ),
                )),
                Input::Failed(err) => {
                    eprintln!("Error: cannot read the input: {err}");
                    break ExitCode::FAILURE;
                }
            };
            match result {
                Ok(Reply::Exit) => break ExitCode::SUCCESS,
                Ok(Reply::Nothing) => {}
                Ok(Reply::Text(text)) => println!("{text}"),
                Ok(Reply::Value(value)) => {
                    let text = if interactive {
                        serde_json::to_string_pretty(&value)
                    } else {
                        serde_json::to_string(&value)
                    };
                    println!("{}", text.unwrap_or_default());
                }
                Err(err) => {
                    eprintln!("{err}");
                    if !interactive {
                        break ExitCode::FAILURE;
                    }
                }
            }
            lines.done();
        };
        lines.close();
        self.rpc.close().await;
        code
    }
}

const HELP: &str = "\
rpc.SERVICE.METHOD(arg, ..., key=value, ...)   call a method; arguments are JSON
                                               (also 'strings', True, False, None, (tuples))
rpc                                            the services known so far
rpc.SERVICE                                    what an enoki service offers
dispatch(\"service\", \"event_type\", payload)     dispatch an event as that service
context(user_id=7, ...)                        context data for the calls that follow
                                               (context() shows it, context(None) clears it)
timeout(SECONDS)                               how long to wait for each reply
help, exit                                     this text; leave (or Ctrl-D)
Tab completes service and method names.";
