//! Attribute arguments: `#[service(name = "...")]`, `#[event_handler(...)]`,
//! `#[timer(...)]`, and the `name = value` grammar they share.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Attribute, Expr, ExprLit, ExprPath, Ident, Lit, LitStr, Path, Token};

use super::Errors;

// ===== attribute arguments =====

/// One argument of an attribute: a positional value (`"payments"`) or a
/// named one (`interval = 5`, `crate = ::enoki`).
pub(crate) enum AttrArg {
    /// A positional value.
    Positional(Expr),
    /// `name = value`.
    Named { name: Ident, value: Expr },
}

impl Parse for AttrArg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.peek(Ident::peek_any) && input.peek2(Token![=]) && !input.peek2(Token![==]) {
            let name = Ident::parse_any(input)?;
            input.parse::<Token![=]>()?;
            Ok(AttrArg::Named {
                name,
                value: input.parse()?,
            })
        } else {
            Ok(AttrArg::Positional(input.parse()?))
        }
    }
}

/// Parses `a, b = c, ...`.
pub(crate) fn parse_args(tokens: TokenStream) -> syn::Result<Vec<AttrArg>> {
    let args = Punctuated::<AttrArg, Token![,]>::parse_terminated.parse2(tokens)?;
    Ok(args.into_iter().collect())
}

/// The arguments of an attribute, as written (`#[timer(interval = 5)]` →
/// `interval = 5`); empty for `#[rpc]`.
pub(crate) fn attr_tokens(attr: &Attribute) -> syn::Result<TokenStream> {
    match &attr.meta {
        syn::Meta::Path(_) => Ok(TokenStream::new()),
        syn::Meta::List(list) => Ok(list.tokens.clone()),
        syn::Meta::NameValue(nv) => Err(syn::Error::new_spanned(
            nv.eq_token,
            "expected parentheses: `#[attr(...)]`, not `#[attr = ...]`",
        )),
    }
}

/// Records `name` as seen; reports a duplicate.
fn first_time(seen: &mut Vec<String>, name: &Ident, errors: &mut Errors) -> bool {
    let key = name.unraw().to_string();
    if seen.contains(&key) {
        errors.at(name, format_args!("duplicate argument `{key}`"));
        return false;
    }
    seen.push(key);
    true
}

/// An unknown argument that is a typo of a required one (`intervall`)
/// counts as that one, so that it isn't also reported missing.
fn mark_near_miss(key: &Ident, required: &[&str], seen: &mut Vec<String>) {
    let key = key.unraw().to_string();
    if let Some(name) = required.iter().find(|name| edit_distance(&key, name) <= 2) {
        seen.push((*name).to_owned());
    }
}

/// Levenshtein distance.
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

fn lit_str(value: &Expr, what: &str, errors: &mut Errors) -> Option<LitStr> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Some(s.clone()),
        other => {
            errors.at(other, format_args!("expected a string literal for {what}"));
            None
        }
    }
}

fn lit_bool(value: &Expr, what: &str, errors: &mut Errors) -> Option<bool> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Bool(b), ..
        }) => Some(b.value),
        other => {
            errors.at(
                other,
                format_args!("expected `true` or `false` for `{what}`"),
            );
            None
        }
    }
}

/// `what` must be a non-empty string without `.`, `*`, `#` or whitespace.
fn check_name(name: &LitStr, what: &str, errors: &mut Errors) {
    let value = name.value();
    if value.is_empty() {
        errors.at(name, format_args!("the {what} must not be empty"));
    } else if value
        .chars()
        .any(|c| matches!(c, '.' | '*' | '#') || c.is_whitespace())
    {
        errors.at(
            name,
            format_args!(
                "the {what} `{value}` must not contain `.`, `*`, `#` or whitespace \
                 (it is part of AMQP routing keys)"
            ),
        );
    }
}

// ===== #[service(...)] =====

/// The arguments of `#[service(name = "...", crate = path)]`.
pub(crate) struct ServiceArgs {
    /// The service name.
    pub(crate) name: LitStr,
    /// The path of the enoki crate (`::enoki` unless `crate = path`).
    pub(crate) krate: Path,
}

impl ServiceArgs {
    /// Parses and validates the attribute arguments.
    pub(crate) fn parse(tokens: TokenStream, errors: &mut Errors) -> Option<ServiceArgs> {
        let args = match parse_args(tokens) {
            Ok(args) => args,
            Err(err) => {
                errors.push(err);
                return None;
            }
        };
        let mut name = None;
        let mut krate = None;
        let mut seen = Vec::new();
        for arg in args {
            match arg {
                AttrArg::Named { name: key, value } if key == "name" => {
                    if first_time(&mut seen, &key, errors) {
                        name = lit_str(&value, "the service `name`", errors);
                    }
                }
                AttrArg::Named { name: key, value } if key == "crate" => {
                    if first_time(&mut seen, &key, errors) {
                        krate = crate_path(&value, errors);
                    }
                }
                AttrArg::Named { name: key, .. } => {
                    errors.at(
                        &key,
                        format_args!("unknown argument `{key}`; expected `name` or `crate`"),
                    );
                    mark_near_miss(&key, &["name"], &mut seen);
                }
                AttrArg::Positional(value) => {
                    errors.at(
                        value,
                        "expected `name = \"...\"`: write #[service(name = \"my_service\")]",
                    );
                    seen.push("name".to_owned());
                }
            }
        }
        let Some(name) = name else {
            if !seen.iter().any(|s| s == "name") {
                errors.at_span(
                    Span::call_site(),
                    "missing service name: write #[service(name = \"my_service\")]",
                );
            }
            return None;
        };
        check_name(&name, "service name", errors);
        Some(ServiceArgs {
            name,
            krate: krate.unwrap_or_else(default_crate),
        })
    }
}

/// `::enoki`.
pub(crate) fn default_crate() -> Path {
    syn::parse_quote!(::enoki)
}

pub(crate) fn crate_path(value: &Expr, errors: &mut Errors) -> Option<Path> {
    match value {
        Expr::Path(ExprPath {
            qself: None, path, ..
        }) => Some(path.clone()),
        other => {
            errors.at(other, "expected a path for `crate`, e.g. `crate = ::enoki`");
            None
        }
    }
}

/// What triggers an entrypoint.
pub(crate) enum Kind {
    /// `#[rpc]`.
    Rpc,
    /// `#[event_handler(...)]`.
    Event(EventArgs),
    /// `#[timer(...)]`.
    Timer(TimerArgs),
    /// `#[entrypoint]`: triggered by an entrypoint of the user's own.
    Custom,
    /// `#[http(METHOD, "/path")]`.
    Http(HttpArgs),
}

/// The arguments of `#[http(GET, "/path/{param}")]`.
pub(crate) struct HttpArgs {
    /// Upper case: `GET`.
    pub(crate) method: String,
    pub(crate) path: LitStr,
}

/// The HTTP methods `#[http]` takes.
const HTTP_METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

impl HttpArgs {
    fn parse(attr: &Attribute, args: Vec<AttrArg>, errors: &mut Errors) -> Option<HttpArgs> {
        let usage = "write #[http(GET, \"/path/{param}\")]";
        let mut args = args.into_iter();
        let (Some(first), second) = (args.next(), args.next()) else {
            errors.at(
                attr,
                format_args!("missing the HTTP method and path: {usage}"),
            );
            return None;
        };
        for extra in args {
            errors.at(
                arg_tokens(&extra),
                format_args!("unexpected argument: {usage}"),
            );
        }
        let method = match &first {
            AttrArg::Positional(Expr::Path(path)) if path.path.get_ident().is_some() => path
                .path
                .get_ident()
                .map(|i| (i.to_string(), arg_tokens(&first))),
            AttrArg::Positional(Expr::Lit(ExprLit {
                lit: Lit::Str(s), ..
            })) => Some((s.value(), arg_tokens(&first))),
            other => {
                errors.at(
                    arg_tokens(other),
                    format_args!("expected the HTTP method first: {usage}"),
                );
                None
            }
        };
        let method = method.and_then(|(name, tokens)| {
            let upper = name.to_ascii_uppercase();
            if HTTP_METHODS.contains(&upper.as_str()) {
                Some(upper)
            } else {
                errors.at(
                    tokens,
                    format_args!(
                        "unsupported HTTP method `{name}`: use GET, POST, PUT, PATCH, DELETE, \
                         HEAD or OPTIONS"
                    ),
                );
                None
            }
        });
        let path = match second {
            Some(AttrArg::Positional(value)) => lit_str(&value, "the path", errors),
            Some(other) => {
                errors.at(
                    arg_tokens(&other),
                    format_args!("expected the path second: {usage}"),
                );
                None
            }
            None => {
                errors.at(attr, format_args!("missing the path: {usage}"));
                None
            }
        };
        let path = path?;
        if let Err(why) = check_http_path(&path.value()) {
            errors.at(&path, format_args!("bad path `{}`: {why}", path.value()));
            return None;
        }
        Some(HttpArgs {
            method: method?,
            path,
        })
    }
}

/// The rules of axum paths that a route table checks at start-up, checked
/// at compile time: `/` first, no empty segment, `{name}` parameters as
/// whole segments, `{*rest}` only last.
fn check_http_path(path: &str) -> Result<(), String> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err("it must start with `/`".into());
    };
    if rest.is_empty() {
        return Ok(());
    }
    let segments: Vec<&str> = rest.split('/').collect();
    let mut names: Vec<&str> = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        if segment.is_empty() {
            return Err("empty segment (`//` or a trailing `/`)".into());
        }
        if let Some(inner) = segment.strip_prefix('{') {
            let Some(name) = inner.strip_suffix('}') else {
                return Err("a parameter must be a whole segment, `{name}`".into());
            };
            let name = match name.strip_prefix('*') {
                Some(name) if i + 1 == segments.len() => name,
                Some(_) => return Err("a `{*rest}` parameter must be the last segment".into()),
                None => name,
            };
            let ident = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ident {
                return Err(format!("`{{{name}}}` is not a parameter name"));
            }
            if names.contains(&name) {
                return Err(format!("parameter `{name}` appears twice"));
            }
            names.push(name);
        } else if segment.contains(['{', '}', '*', ':']) {
            return Err(format!(
                "`{segment}`: parameters are written `{{name}}`, as a whole segment"
            ));
        }
    }
    Ok(())
}

/// The arguments of `#[event_handler(...)]`.
pub(crate) struct EventArgs {
    pub(crate) source: LitStr,
    pub(crate) event_type: LitStr,
    pub(crate) handler_type: HandlerType,
    pub(crate) reliable_delivery: bool,
    pub(crate) requeue_on_error: bool,
    pub(crate) broadcast_identifier: Option<LitStr>,
}

/// nameko's `handler_type`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum HandlerType {
    ServicePool,
    Singleton,
    Broadcast,
}

impl HandlerType {
    /// The variant of `enoki::HandlerType`.
    pub(crate) fn variant(self) -> Ident {
        let name = match self {
            HandlerType::ServicePool => "ServicePool",
            HandlerType::Singleton => "Singleton",
            HandlerType::Broadcast => "Broadcast",
        };
        Ident::new(name, Span::call_site())
    }
}

/// The arguments of `#[timer(...)]`.
pub(crate) struct TimerArgs {
    /// Seconds (0 for a cron timer).
    pub(crate) interval: f64,
    pub(crate) eager: bool,
    pub(crate) cluster_once: bool,
    pub(crate) cron: Option<CronArgs>,
}

/// `cron = "..."` or `cron_from_config = "KEY"`, and `timezone = "..."`.
pub(crate) struct CronArgs {
    pub(crate) expression: String,
    pub(crate) from_config: bool,
    pub(crate) timezone: String,
}

impl Kind {
    pub(crate) fn parse(attr: &Attribute, errors: &mut Errors) -> Option<Kind> {
        let name = attr
            .path()
            .segments
            .last()
            .expect("a path has a segment")
            .ident
            .to_string();
        let args = match attr_tokens(attr).and_then(parse_args) {
            Ok(args) => args,
            Err(err) => {
                errors.push(err);
                return None;
            }
        };
        match name.as_str() {
            "rpc" => {
                if let Some(first) = args.first() {
                    errors.at(arg_tokens(first), "#[rpc] takes no arguments");
                    return None;
                }
                Some(Kind::Rpc)
            }
            "entrypoint" => {
                if let Some(first) = args.first() {
                    errors.at(
                        arg_tokens(first),
                        "#[entrypoint] takes no arguments: the entrypoint that triggers the \
                         method is added with `ServiceDef::with_entrypoint`",
                    );
                    return None;
                }
                Some(Kind::Custom)
            }
            "event_handler" => EventArgs::parse(attr, args, errors).map(Kind::Event),
            "http" => HttpArgs::parse(attr, args, errors).map(Kind::Http),
            _ => TimerArgs::parse(attr, args, errors).map(Kind::Timer),
        }
    }
}

pub(crate) fn arg_tokens(arg: &AttrArg) -> TokenStream {
    match arg {
        AttrArg::Positional(value) => value.to_token_stream(),
        AttrArg::Named { name, value } => quote::quote!(#name = #value),
    }
}

impl EventArgs {
    fn parse(attr: &Attribute, args: Vec<AttrArg>, errors: &mut Errors) -> Option<EventArgs> {
        let mut positional = Vec::new();
        let (mut source, mut event_type, mut handler_type) = (None, None, None);
        let (mut reliable, mut requeue, mut identifier) = (None, None, None);
        let mut seen = Vec::new();
        for arg in args {
            let (key, value) = match arg {
                AttrArg::Positional(value) => {
                    positional.push(value);
                    continue;
                }
                AttrArg::Named { name, value } => (name, value),
            };
            if !first_time(&mut seen, &key, errors) {
                continue;
            }
            match key.to_string().as_str() {
                "source" => source = lit_str(&value, "`source`", errors),
                "event_type" => event_type = lit_str(&value, "`event_type`", errors),
                "handler_type" => handler_type = parse_handler_type(&value, errors),
                "reliable_delivery" => reliable = lit_bool(&value, "reliable_delivery", errors),
                "requeue_on_error" => requeue = lit_bool(&value, "requeue_on_error", errors),
                "broadcast_identifier" => {
                    identifier = lit_str(&value, "`broadcast_identifier`", errors);
                }
                _ => {
                    errors.at(
                        &key,
                        format_args!(
                            "unknown argument `{key}`; expected `source`, `event_type`, \
                             `handler_type`, `reliable_delivery`, `requeue_on_error` \
                             or `broadcast_identifier`"
                        ),
                    );
                    mark_near_miss(&key, &["source", "event_type"], &mut seen);
                }
            }
        }
        let mut positional = positional.into_iter();
        for (slot, what) in [(&mut source, "source"), (&mut event_type, "event_type")] {
            let Some(value) = positional.next() else {
                break;
            };
            if slot.is_some() || seen.iter().any(|s| s == what) {
                errors.at(&value, format_args!("`{what}` is given twice"));
            } else {
                *slot = lit_str(&value, &format!("the `{what}`"), errors);
                seen.push(what.to_owned());
            }
        }
        for extra in positional {
            errors.at(
                extra,
                "unexpected argument: #[event_handler] takes the source service and the \
                 event type, then named arguments",
            );
        }
        for (value, what) in [(&source, "source"), (&event_type, "event_type")] {
            if value.is_none() && !seen.iter().any(|s| s == what) {
                errors.at(
                    attr,
                    format_args!(
                        "missing `{what}`: write #[event_handler(\"source_service\", \"event_type\")]"
                    ),
                );
            }
        }
        let (source, event_type) = (source?, event_type?);
        check_name(&source, "source service name", errors);
        if event_type.value().is_empty() {
            errors.at(&event_type, "the event type must not be empty");
        }
        if let Some(id) = &identifier
            && id.value().is_empty()
        {
            errors.at(id, "the broadcast identifier must not be empty");
        }
        let handler_type = handler_type.unwrap_or(HandlerType::ServicePool);
        let broadcast = handler_type == HandlerType::Broadcast;
        if identifier.is_some() && !broadcast {
            errors.at(
                identifier.as_ref(),
                "`broadcast_identifier` only applies to `handler_type = broadcast`",
            );
        }
        // nameko: a broadcast queue without a stable identifier is unique per
        // instance, so it can't outlive the instance.
        let reliable_delivery = match reliable {
            Some(true) if broadcast && identifier.is_none() => {
                errors.at(
                    attr,
                    "broadcast handlers with reliable_delivery need a broadcast_identifier: \
                     add `broadcast_identifier = \"...\"` or set `reliable_delivery = false`",
                );
                return None;
            }
            Some(value) => value,
            None => !(broadcast && identifier.is_none()),
        };
        Some(EventArgs {
            source,
            event_type,
            handler_type,
            reliable_delivery,
            requeue_on_error: requeue.unwrap_or(false),
            broadcast_identifier: identifier,
        })
    }
}

fn parse_handler_type(value: &Expr, errors: &mut Errors) -> Option<HandlerType> {
    let name = match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => s.value(),
        Expr::Path(ExprPath {
            qself: None, path, ..
        }) => path
            .segments
            .last()
            .map(|s| s.ident.to_string())
            .unwrap_or_default(),
        _ => String::new(),
    };
    match name.as_str() {
        "service_pool" | "ServicePool" => Some(HandlerType::ServicePool),
        "singleton" | "Singleton" => Some(HandlerType::Singleton),
        "broadcast" | "Broadcast" => Some(HandlerType::Broadcast),
        _ => {
            errors.at(
                value,
                "unknown handler_type; expected `service_pool`, `singleton` or `broadcast`",
            );
            None
        }
    }
}

impl TimerArgs {
    fn parse(attr: &Attribute, args: Vec<AttrArg>, errors: &mut Errors) -> Option<TimerArgs> {
        let (mut interval, mut eager, mut cluster_once) = (None, None, None);
        let (mut cron, mut cron_from_config, mut timezone) = (None, None, None);
        let mut seen = Vec::new();
        for arg in args {
            match arg {
                AttrArg::Named { name, value } if name == "interval" => {
                    if first_time(&mut seen, &name, errors) {
                        interval = parse_interval(&value, errors);
                    }
                }
                AttrArg::Named { name, value } if name == "eager" => {
                    if first_time(&mut seen, &name, errors) {
                        eager = lit_bool(&value, "eager", errors);
                    }
                }
                AttrArg::Named { name, value } if name == "cluster_once" => {
                    if first_time(&mut seen, &name, errors) {
                        cluster_once = lit_bool(&value, "cluster_once", errors);
                    }
                }
                AttrArg::Named { name, value } if name == "cron" => {
                    if first_time(&mut seen, &name, errors) {
                        cron = lit_str(&value, "`cron`", errors);
                    }
                }
                AttrArg::Named { name, value } if name == "cron_from_config" => {
                    if first_time(&mut seen, &name, errors) {
                        cron_from_config = lit_str(&value, "`cron_from_config`", errors);
                    }
                }
                AttrArg::Named { name, value } if name == "timezone" => {
                    if first_time(&mut seen, &name, errors) {
                        timezone = lit_str(&value, "`timezone`", errors);
                    }
                }
                AttrArg::Named { name, .. } => {
                    errors.at(
                        &name,
                        format_args!(
                            "unknown argument `{name}`; expected `interval`, `eager`, `cluster_once`, `cron`, `cron_from_config` or `timezone`"
                        ),
                    );
                    mark_near_miss(&name, &["interval"], &mut seen);
                }
                AttrArg::Positional(Expr::Path(path)) if path.path.is_ident("cluster_once") => {
                    let name = path.path.get_ident().expect("an ident").clone();
                    if first_time(&mut seen, &name, errors) {
                        cluster_once = Some(true);
                    }
                }
                AttrArg::Positional(value) => {
                    errors.at(
                        value,
                        "expected `interval = <seconds>`, e.g. #[timer(interval = 5)]",
                    );
                    seen.push("interval".to_owned());
                }
            }
        }
        let scheduled = seen.iter().any(|s| s == "cron" || s == "cron_from_config");
        if scheduled && seen.iter().any(|s| s == "interval") {
            errors.at(
                attr,
                "a timer has either `interval` or a cron schedule (`cron`, `cron_from_config`), not both",
            );
            return None;
        }
        if seen.iter().any(|s| s == "cron") && seen.iter().any(|s| s == "cron_from_config") {
            errors.at(attr, "`cron` and `cron_from_config` exclude each other");
            return None;
        }
        if !scheduled && seen.iter().any(|s| s == "timezone") {
            errors.at(
                attr,
                "`timezone` only applies to a cron schedule (`cron = \"...\"`)",
            );
            return None;
        }
        let cron = if scheduled {
            let timezone_lit = timezone;
            let timezone = timezone_lit
                .as_ref()
                .map_or_else(|| "UTC".to_owned(), LitStr::value);
            if let Some(lit) = &timezone_lit
                && timezone.parse::<chrono_tz::Tz>().is_err()
            {
                errors.at(
                    lit,
                    format_args!("unknown time zone {timezone:?} (expected an IANA name such as UTC or Europe/Paris)"),
                );
            }
            match (cron, cron_from_config) {
                (Some(lit), _) => {
                    let expression = lit.value();
                    if let Err(why) = check_cron(&expression) {
                        errors.at(&lit, why);
                    }
                    Some(CronArgs {
                        expression,
                        from_config: false,
                        timezone,
                    })
                }
                (None, Some(key)) => Some(CronArgs {
                    expression: key.value(),
                    from_config: true,
                    timezone,
                }),
                (None, None) => return None,
            }
        } else {
            None
        };
        if cron.is_none() && interval.is_none() && !seen.iter().any(|s| s == "interval") {
            errors.at(
                attr,
                "missing `interval`: write #[timer(interval = <seconds>)] (or `cron = \"...\"`)",
            );
        }
        Some(TimerArgs {
            interval: if cron.is_some() { 0.0 } else { interval? },
            eager: eager.unwrap_or(false),
            cluster_once: cluster_once.unwrap_or(false),
            cron,
        })
    }
}

/// Whether `expression` is a cron expression the timer will accept: six or
/// seven fields, seconds first (the same check as the library's).
fn check_cron(expression: &str) -> Result<(), String> {
    let fields = expression.split_whitespace().count();
    if !(6..=7).contains(&fields) {
        return Err(format!(
            "cron expression {expression:?} has {fields} fields; expected 6 or 7 fields: sec min hour day-of-month month day-of-week [year]"
        ));
    }
    <cron::Schedule as std::str::FromStr>::from_str(expression)
        .map(|_| ())
        .map_err(|err| {
            let detail = err.to_string();
            let reason = detail
                .lines()
                .map(str::trim)
                .rfind(|line| !line.is_empty() && !line.chars().all(|c| c == '^'))
                .unwrap_or("it does not parse")
                .to_owned();
            format!("cron expression {expression:?} does not parse: {reason}")
        })
}

fn parse_interval(value: &Expr, errors: &mut Errors) -> Option<f64> {
    let seconds = match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => int.base10_parse::<u64>().ok().map(|s| s as f64),
        Expr::Lit(ExprLit {
            lit: Lit::Float(float),
            ..
        }) => float.base10_parse::<f64>().ok(),
        Expr::Unary(unary) if matches!(unary.op, syn::UnOp::Neg(_)) => Some(-1.0),
        _ => None,
    };
    match seconds {
        Some(s) if s > 0.0 && s.is_finite() => Some(s),
        Some(_) => {
            errors.at(value, "the timer interval must be greater than 0 seconds");
            None
        }
        None => {
            errors.at(
                value,
                "expected a number of seconds, e.g. `interval = 5` or `interval = 0.5`",
            );
            None
        }
    }
}
