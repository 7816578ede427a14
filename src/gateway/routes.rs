//! Routes as data: the YAML files of `routes/` (see `routes/README.md`).
//!
//! ```yaml
//! routes:
//!   - method: GET
//!     path: /hello/{name}
//!     rpc: greeter.hello
//!   - method: POST
//!     path: /add/{a}
//!     rpc: manual_service.add
//!     args: ["path.a:int", "body.b"]
//!     status: 201
//!     timeout: 2.5
//! ```
//!
//! Without `args` and `kwargs`, path and query parameters become keyword
//! arguments (strings) and a JSON object body is merged into them. A source
//! is `path.NAME`, `query.NAME`, `header.NAME`, `body` or `body.FIELD`, with
//! an optional conversion suffix `:str`, `:int`, `:float`, `:bool` or
//! `:json`.
//!
//! A file with an error stops start-up with `FILE:LINE:COLUMN: problem`.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde::Deserialize;

use super::rate_limit::{Limiter, RateLimit};
use crate::error::{Error, Result};
pub use crate::web::table::parse_path;
use crate::web::table::{is_ident, shape};

/// Paths the gateway serves itself; routes may not take them.
pub const RESERVED_PATHS: &[&str] = super::paths::RESERVED;

/// Every route of a directory of route files.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    /// The routes, in file order (files sorted by name).
    pub routes: Vec<Route>,
    /// The sources read, in order (file paths, or the name of built-in
    /// route text), for the start-up log.
    pub files: Vec<String>,
}

/// Route file text built into a binary (with `include_str!`), served when
/// no routes directory is given or found: see [`crate::cli::App::routes`].
#[derive(Debug, Clone)]
pub struct BuiltinRoutes {
    /// What the start-up log and error messages call it, e.g.
    /// `built-in routes/examples.yaml`.
    pub name: String,
    /// The YAML text, in the format of `routes/README.md`.
    pub yaml: String,
}

/// One route: method + path → `service.method`.
#[derive(Debug, Clone)]
pub struct Route {
    /// The HTTP method.
    pub method: Method,
    /// The axum path, e.g. `/hello/{name}`.
    pub path: String,
    /// The path parameters, in order.
    pub params: Vec<String>,
    /// The called service.
    pub service: String,
    /// The called method.
    pub rpc_method: String,
    /// Positional arguments, in order (`None`: the default mapping).
    pub args: Option<Vec<Source>>,
    /// Keyword arguments (`None`: the default mapping).
    pub kwargs: Option<Vec<(String, Source)>>,
    /// The status of a successful answer.
    pub status: StatusCode,
    /// The RPC timeout (`None`: the gateway's `rpc_timeout`).
    pub timeout: Option<Duration>,
    /// A one-line summary, for `/openapi.json` and the page.
    pub summary: Option<String>,
    /// Its rate limit, if it has one (shared by clones of the route).
    pub rate_limit: Option<Arc<Limiter>>,
    /// The file and line it was read from.
    pub origin: String,
}

impl Route {
    /// Whether the default mapping applies (no `args`, no `kwargs`).
    pub fn default_mapping(&self) -> bool {
        self.args.is_none() && self.kwargs.is_none()
    }

    /// Every source the route reads.
    pub fn sources(&self) -> impl Iterator<Item = &Source> {
        let args = self.args.iter().flatten();
        let kwargs = self.kwargs.iter().flatten().map(|(_, s)| s);
        args.chain(kwargs)
    }

    /// Whether the route reads a JSON body.
    pub fn reads_body(&self) -> bool {
        if self.default_mapping() {
            !matches!(self.method, Method::GET | Method::HEAD | Method::DELETE)
        } else {
            self.sources()
                .any(|s| matches!(s.from, Part::Body | Part::BodyField(_)))
        }
    }
}

/// Where an argument comes from, and how it is converted.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// The part of the request.
    pub from: Part,
    /// The conversion of a string value.
    pub conv: Conv,
}

/// A part of the request.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    /// A path parameter.
    Path(String),
    /// A query parameter.
    Query(String),
    /// A request header.
    Header(String),
    /// The whole JSON body.
    Body,
    /// One field of a JSON object body.
    BodyField(String),
}

/// The conversion of a source value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conv {
    /// Leave it as it is (strings stay strings).
    Keep,
    /// A string as such.
    Str,
    /// An integer.
    Int,
    /// A float.
    Float,
    /// `true`/`false` (also `1`/`0`, `yes`/`no`).
    Bool,
    /// Parsed as JSON.
    Json,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.from {
            Part::Path(n) => write!(f, "path.{n}")?,
            Part::Query(n) => write!(f, "query.{n}")?,
            Part::Header(n) => write!(f, "header.{n}")?,
            Part::Body => f.write_str("body")?,
            Part::BodyField(n) => write!(f, "body.{n}")?,
        }
        match self.conv {
            Conv::Keep => Ok(()),
            Conv::Str => f.write_str(":str"),
            Conv::Int => f.write_str(":int"),
            Conv::Float => f.write_str(":float"),
            Conv::Bool => f.write_str(":bool"),
            Conv::Json => f.write_str(":json"),
        }
    }
}

impl Source {
    /// Parses `path.NAME:int` and friends.
    pub fn parse(text: &str) -> Result<Source> {
        let (spec, conv) = match text.rsplit_once(':') {
            Some((spec, conv)) => (
                spec,
                match conv {
                    "str" => Conv::Str,
                    "int" => Conv::Int,
                    "float" => Conv::Float,
                    "bool" => Conv::Bool,
                    "json" => Conv::Json,
                    other => {
                        return Err(Error::Invalid(format!(
                            "unknown conversion `:{other}` in `{text}` (use :str, :int, :float, :bool or :json)"
                        )));
                    }
                },
            ),
            None => (text, Conv::Keep),
        };
        let from = match spec.split_once('.') {
            None if spec == "body" => Part::Body,
            Some(("path", n)) if is_ident(n) => Part::Path(n.to_owned()),
            Some(("query", n)) if !n.is_empty() => Part::Query(n.to_owned()),
            Some(("header", n)) if !n.is_empty() => Part::Header(n.to_ascii_lowercase()),
            Some(("body", n)) if !n.is_empty() => Part::BodyField(n.to_owned()),
            _ => {
                return Err(Error::Invalid(format!(
                    "bad argument source `{text}` (use path.NAME, query.NAME, header.NAME, body or body.FIELD)"
                )));
            }
        };
        Ok(Source { from, conv })
    }
}

// ===== the file format =====

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteFile {
    #[serde(default)]
    routes: Vec<RawRoute>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    method: String,
    path: String,
    rpc: String,
    #[serde(default)]
    args: Option<Vec<String>>,
    #[serde(default)]
    kwargs: Option<indexmap_like::OrderedMap>,
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    timeout: Option<f64>,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    rate_limit: Option<RateLimit>,
}

/// A string → string mapping that keeps file order.
mod indexmap_like {
    use serde::Deserialize;
    use serde::de::{MapAccess, Visitor};

    #[derive(Debug, Default)]
    pub(super) struct OrderedMap(pub(super) Vec<(String, String)>);

    impl<'de> Deserialize<'de> for OrderedMap {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = OrderedMap;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a mapping of keyword names to argument sources")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedMap, A::Error> {
                    let mut out = Vec::new();
                    while let Some((k, v)) = map.next_entry::<String, String>()? {
                        out.push((k, v));
                    }
                    Ok(OrderedMap(out))
                }
            }
            d.deserialize_map(V)
        }
    }
}

impl RouteTable {
    /// Loads every `*.yaml` / `*.yml` file of `dir`, sorted by name. A
    /// missing directory is an empty table.
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<RouteTable> {
        let dir = dir.as_ref();
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Ok(RouteTable::default());
            }
            Err(err) => {
                return Err(Error::Config(format!(
                    "cannot read routes directory {}: {err}",
                    dir.display()
                )));
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .is_some_and(|ext| ext == "yaml" || ext == "yml")
            })
            .collect();
        files.sort();
        let mut table = RouteTable::default();
        for file in files {
            let text = std::fs::read_to_string(&file)
                .map_err(|err| Error::Config(format!("{}: {err}", file.display())))?;
            table.add_yaml(&text, &file.display().to_string())?;
        }
        Ok(table)
    }

    /// Parses one route file's text (`source` names it in errors) and adds
    /// its routes.
    pub fn add_yaml(&mut self, text: &str, source: &str) -> Result<()> {
        let file: RouteFile = if text.trim().is_empty() {
            RouteFile { routes: vec![] }
        } else {
            serde_yaml_ng::from_str(text).map_err(|err| match err.location() {
                Some(loc) => Error::Config(format!(
                    "{source}:{}:{}: {}",
                    loc.line(),
                    loc.column(),
                    strip_location(&err.to_string())
                )),
                None => Error::Config(format!("{source}: {err}")),
            })?
        };
        self.files.push(source.to_owned());
        let items = item_lines(text);
        for (index, raw) in file.routes.into_iter().enumerate() {
            let item = items.get(index).copied();
            let line_of = |key: &str| key_line(text, item, items.get(index + 1).copied(), key);
            let fail = |key: &str, message: String| {
                Error::Config(format!("{source}:{}: {message}", line_of(key)))
            };
            let route = build(raw, &|key, message| fail(key, message)).map(|mut route| {
                route.origin = format!("{source}:{}", line_of("path"));
                route
            })?;
            if let Some(other) = self.conflict(&route) {
                return Err(fail(
                    "path",
                    format!(
                        "duplicate route {} {}: already defined at {}",
                        route.method, route.path, other.origin
                    ),
                ));
            }
            self.routes.push(route);
        }
        Ok(())
    }

    fn conflict(&self, route: &Route) -> Option<&Route> {
        let shape = shape(&route.path);
        self.routes.iter().find(|other| {
            shape == self::shape(&other.path)
                && (other.method == route.method || other.path != route.path)
        })
    }
}

fn build(raw: RawRoute, fail: &dyn Fn(&str, String) -> Error) -> Result<Route> {
    let method = match raw.method.to_ascii_uppercase().as_str() {
        m @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE") => {
            Method::from_bytes(m.as_bytes()).map_err(|err| fail("method", err.to_string()))?
        }
        _ => {
            return Err(fail(
                "method",
                format!(
                    "unsupported method `{}` (use GET, POST, PUT, PATCH or DELETE)",
                    raw.method
                ),
            ));
        }
    };
    let params = parse_path(&raw.path).map_err(|e| fail("path", e.to_string()))?;
    if RESERVED_PATHS.contains(&raw.path.as_str()) {
        return Err(fail(
            "path",
            format!("`{}` is served by the gateway itself", raw.path),
        ));
    }
    let (service, rpc_method) = raw
        .rpc
        .split_once('.')
        .filter(|(s, m)| is_ident(s) && is_ident(m))
        .ok_or_else(|| fail("rpc", format!("`{}` is not SERVICE.METHOD", raw.rpc)))?;
    let check = |key: &str, text: &str| -> Result<Source> {
        let source = Source::parse(text).map_err(|e| fail(key, e.to_string()))?;
        if let Part::Path(name) = &source.from
            && !params.contains(name)
        {
            return Err(fail(
                key,
                format!("`{text}`: the path {} has no parameter `{name}`", raw.path),
            ));
        }
        Ok(source)
    };
    let args = match raw.args {
        None => None,
        Some(list) => Some(
            list.iter()
                .map(|s| check("args", s))
                .collect::<Result<Vec<_>>>()?,
        ),
    };
    let kwargs = match raw.kwargs {
        None => None,
        Some(map) => Some(
            map.0
                .iter()
                .map(|(k, s)| {
                    if !is_ident(k) {
                        return Err(fail("kwargs", format!("`{k}` is not a keyword name")));
                    }
                    Ok((k.clone(), check("kwargs", s)?))
                })
                .collect::<Result<Vec<_>>>()?,
        ),
    };
    let status = match raw.status {
        None => StatusCode::OK,
        Some(code) => StatusCode::from_u16(code)
            .ok()
            .filter(|s| s.is_success())
            .ok_or_else(|| fail("status", format!("{code} is not a success status (2xx)")))?,
    };
    let timeout = match raw.timeout {
        None => None,
        Some(secs) => Some(
            crate::config::positive_seconds("timeout", secs, crate::config::MAX_CONFIG_SECONDS)
                .map_err(|err| fail("timeout", err.to_string()))?,
        ),
    };
    let rate_limit = match raw.rate_limit {
        None => None,
        Some(limit) => {
            Some(Arc::new(Limiter::new(limit).map_err(|err| {
                fail("rate_limit", format!("rate_limit: {err}"))
            })?))
        }
    };
    Ok(Route {
        rate_limit,
        method,
        path: raw.path,
        params,
        service: service.to_owned(),
        rpc_method: rpc_method.to_owned(),
        args,
        kwargs,
        status,
        timeout,
        summary: raw.summary,
        origin: String::new(),
    })
}

/// serde_yaml_ng appends " at line L column C"; we print it first.
fn strip_location(message: &str) -> &str {
    message
        .find(" at line ")
        .map_or(message, |at| &message[..at])
}

/// The 1-based lines where the items of the top-level `routes:` list start.
fn item_lines(text: &str) -> Vec<usize> {
    let mut lines = Vec::new();
    let mut in_routes = false;
    let mut indent: Option<usize> = None;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let depth = line.len() - trimmed.len();
        if depth == 0 && !trimmed.starts_with('-') {
            in_routes = trimmed.starts_with("routes:");
            indent = None;
            continue;
        }
        if in_routes && (trimmed.starts_with("- ") || trimmed == "-") {
            let level = *indent.get_or_insert(depth);
            if depth == level {
                lines.push(n + 1);
            }
        }
    }
    lines
}

/// The line of `key:` within the item starting at `start` (or the item's
/// own line).
fn key_line(text: &str, start: Option<usize>, next: Option<usize>, key: &str) -> usize {
    let Some(start) = start else { return 1 };
    let end = next.unwrap_or(usize::MAX);
    let needle = format!("{key}:");
    text.lines()
        .enumerate()
        .skip(start - 1)
        .take_while(|(n, _)| n + 1 < end)
        .find(|(_, line)| {
            let t = line.trim_start().trim_start_matches("- ").trim_start();
            t.starts_with(&needle)
        })
        .map_or(start, |(n, _)| n + 1)
}

impl RouteTable {
    /// The routes grouped by path, in first-seen order.
    pub fn by_path(&self) -> Vec<(&str, Vec<&Route>)> {
        let mut order: Vec<&str> = Vec::new();
        let mut groups: HashMap<&str, Vec<&Route>> = HashMap::new();
        for route in &self.routes {
            groups
                .entry(route.path.as_str())
                .or_insert_with(|| {
                    order.push(route.path.as_str());
                    Vec::new()
                })
                .push(route);
        }
        order
            .into_iter()
            .map(|p| (p, groups.remove(p).unwrap_or_default()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<RouteTable> {
        let mut table = RouteTable::default();
        table.add_yaml(text, "r.yaml")?;
        Ok(table)
    }

    fn err(text: &str) -> String {
        load(text).unwrap_err().to_string()
    }

    #[test]
    fn parses_a_route() {
        let t = load("routes:\n  - method: get\n    path: /hello/{name}\n    rpc: greeter.hello\n    status: 201\n    timeout: 2\n").unwrap();
        let r = &t.routes[0];
        assert_eq!(r.method, Method::GET);
        assert_eq!(r.params, vec!["name"]);
        assert_eq!(r.status, StatusCode::CREATED);
        assert_eq!(r.origin, "r.yaml:3");
    }

    #[test]
    fn errors_name_file_line_and_problem() {
        let e = err("routes:\n  - method: GET\n    path: /a\n    rpc: a.b\n    bogus: 1\n");
        assert!(
            e.contains("r.yaml:5:") && e.contains("unknown field `bogus`"),
            "{e}"
        );
        let e = err(
            "routes:\n  - method: GET\n    path: /a\n    rpc: a.b\n  - method: GET\n    path: /a\n    rpc: c.d\n",
        );
        assert!(
            e.contains("r.yaml:6: duplicate route GET /a: already defined at r.yaml:3"),
            "{e}"
        );
        let e = err("routes:\n  - method: GET\n    path: /a/{x\n    rpc: a.b\n");
        assert!(e.contains("r.yaml:3: bad path `/a/{x`"), "{e}");
        let e = err("routes: [\n");
        assert!(e.starts_with("configuration error: r.yaml:"), "{e}");
        let e =
            err("routes:\n  - method: GET\n    path: /a/{x}\n    rpc: a.b\n    args: [path.y]\n");
        assert!(
            e.contains("r.yaml:5:") && e.contains("no parameter `y`"),
            "{e}"
        );
    }

    #[test]
    fn same_shape_is_a_duplicate() {
        let e = err(
            "routes:\n- {method: GET, path: '/a/{x}', rpc: a.b}\n- {method: POST, path: '/a/{y}', rpc: a.b}\n",
        );
        assert!(e.contains("r.yaml:3: duplicate route"), "{e}");
        load("routes:\n- {method: GET, path: '/a/{x}', rpc: a.b}\n- {method: POST, path: '/a/{x}', rpc: a.b}\n").unwrap();
    }
}
