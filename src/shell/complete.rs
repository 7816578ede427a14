//! Tab completion: `rpc.<service>` from the services known so far,
//! `rpc.<service>.<method>` from what an enoki service says of itself
//! (asked once, with a short timeout), and the shell's own names.

use std::borrow::Cow;
use std::sync::Arc;

use parking_lot::Mutex;
use rustyline::completion::Pair;

use super::catalog::{Catalog, DESCRIBE_TIMEOUT, describe};
use crate::client::ClusterRpc;

/// The shell's own names, completed at the start of a line.
const BUILTINS: &[&str] = &["rpc.", "dispatch(", "context(", "timeout(", "help", "exit"];

/// The rustyline helper: completion (no hints, no highlighting).
pub(crate) struct Completer {
    rpc: ClusterRpc,
    catalog: Arc<Mutex<Catalog>>,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for Completer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Completer").finish_non_exhaustive()
    }
}

impl Completer {
    pub(crate) fn new(
        rpc: ClusterRpc,
        catalog: Arc<Mutex<Catalog>>,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        Completer {
            rpc,
            catalog,
            runtime,
        }
    }

    /// The start of the word being completed and its candidates. Runs on
    /// the input thread, outside the runtime, so it may block on it.
    pub(crate) fn candidates(&self, line: &str, pos: usize) -> (usize, Vec<String>) {
        self.runtime
            .block_on(candidates(&self.rpc, &self.catalog, line, pos))
    }
}

/// The start of the word before `pos` and what can replace it; asks a
/// service never asked what it offers (for at most [`DESCRIBE_TIMEOUT`]).
pub(crate) async fn candidates(
    rpc: &ClusterRpc,
    catalog: &Mutex<Catalog>,
    line: &str,
    pos: usize,
) -> (usize, Vec<String>) {
    let mut pos = pos.min(line.len());
    while !line.is_char_boundary(pos) {
        pos -= 1;
    }
    let before = &line[..pos];
    let start = before
        .rfind(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.')))
        .map_or(0, |at| at + 1);
    let word = &before[start..];
    let parts: Vec<&str> = word.split('.').collect();
    let found = match parts.as_slice() {
        ["rpc", prefix] => catalog
            .lock()
            .services
            .keys()
            .filter(|name| name.starts_with(prefix))
            .map(|name| format!("rpc.{name}."))
            .collect(),
        ["rpc", service, prefix] => {
            let known = catalog.lock().methods(service);
            let methods = match known {
                Some(methods) => methods,
                None => describe(rpc, catalog, service, DESCRIBE_TIMEOUT)
                    .await
                    .ok()
                    .flatten()
                    .map(|d| d.rpc)
                    .unwrap_or_default(),
            };
            methods
                .into_iter()
                .filter(|m| m.starts_with(prefix))
                .map(|m| format!("rpc.{service}.{m}("))
                .collect()
        }
        [prefix] if before[..start].trim().is_empty() => BUILTINS
            .iter()
            .filter(|b| b.starts_with(prefix))
            .map(|b| (*b).to_owned())
            .collect(),
        _ => Vec::new(),
    };
    (start, found)
}

impl rustyline::completion::Completer for Completer {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let (start, found) = self.candidates(line, pos);
        let pairs = found
            .into_iter()
            .map(|replacement| Pair {
                display: replacement.clone(),
                replacement,
            })
            .collect();
        Ok((start, pairs))
    }
}

impl rustyline::hint::Hinter for Completer {
    type Hint = String;
}

impl rustyline::highlight::Highlighter for Completer {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        Cow::Borrowed(line)
    }
}

impl rustyline::validate::Validator for Completer {}

impl rustyline::Helper for Completer {}
