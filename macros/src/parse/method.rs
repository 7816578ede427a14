//! The impl block and its entrypoint methods: which attribute, which
//! parameters, which return type.

use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{
    Attribute, FnArg, GenericArgument, Ident, ImplItem, ImplItemFn, ItemImpl, Pat, PathArguments,
    ReturnType, Type,
};

use super::Errors;
use super::attrs::Kind;

// ===== the impl block =====

/// A `#[service]` impl block: its entrypoints and the block itself with the
/// entrypoint attributes removed.
pub(crate) struct ServiceImpl {
    /// The impl block, entrypoint attributes stripped.
    pub(crate) item: ItemImpl,
    /// The service type (`Greeter`).
    pub(crate) self_ty: Type,
    /// Its last path segment, which names the client (`GreeterClient`).
    pub(crate) self_ident: Ident,
    /// The valid entrypoints, in source order.
    pub(crate) entrypoints: Vec<Entrypoint>,
}

/// One entrypoint method.
pub(crate) struct Entrypoint {
    /// The method name.
    pub(crate) ident: Ident,
    /// What triggers it.
    pub(crate) kind: Kind,
    /// The arguments the method is called with, in order.
    pub(crate) inputs: Vec<Input>,
    /// The return type as written.
    pub(crate) output: Type,
    /// `T` of `Result<T, E>` (always found for `#[rpc]`).
    pub(crate) ok_type: Option<Type>,
    /// The method's doc comments.
    pub(crate) docs: Vec<Attribute>,
}

impl Entrypoint {
    /// The decoded (non-context) parameters.
    pub(crate) fn params(&self) -> impl Iterator<Item = &Param> {
        self.inputs.iter().filter_map(|input| match input {
            Input::Param(param) => Some(&**param),
            Input::Ctx => None,
        })
    }
}

/// One method argument.
pub(crate) enum Input {
    /// A parameter decoded from the payload.
    Param(Box<Param>),
    /// `&WorkerCtx`: the worker context.
    Ctx,
}

/// A decoded parameter.
pub(crate) struct Param {
    /// The binding, for the client (`name`, or `_` for unnamed event payloads).
    pub(crate) ident: Ident,
    /// The keyword name (`r#type` → `type`).
    pub(crate) name: String,
    /// The type.
    pub(crate) ty: Type,
    /// `false` for `Option<..>`.
    pub(crate) required: bool,
}

/// The entrypoint attribute names, as `#[service]` recognises them (by last
/// path segment, so `#[enoki::rpc]` works too).
const ENTRYPOINT_ATTRS: [&str; 5] = ["rpc", "event_handler", "timer", "entrypoint", "http"];

pub(crate) fn is_entrypoint_attr(attr: &Attribute) -> bool {
    let last = attr.path().segments.last();
    last.is_some_and(|seg| ENTRYPOINT_ATTRS.iter().any(|name| seg.ident == name))
}

impl ServiceImpl {
    /// Reads the impl block. `None` when it is not a plain inherent impl.
    pub(crate) fn parse(mut item: ItemImpl, errors: &mut Errors) -> Option<ServiceImpl> {
        let entrypoints = item
            .items
            .iter_mut()
            .filter_map(|item| match item {
                ImplItem::Fn(method) => Entrypoint::parse(method, errors),
                _ => None,
            })
            .collect();

        let mut ok = true;
        if let Some((_, trait_path, _)) = &item.trait_ {
            errors.at(
                trait_path,
                "#[service] goes on an inherent impl block (`impl MyService { ... }`), \
                 not on a trait impl",
            );
            ok = false;
        }
        if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
            errors.at(
                &item.generics,
                "#[service] does not support generic impl blocks",
            );
            ok = false;
        }
        let self_ident = match &*item.self_ty {
            Type::Path(path) if path.qself.is_none() => {
                let last = path.path.segments.last().expect("a path has a segment");
                if !matches!(last.arguments, PathArguments::None) {
                    errors.at(
                        &last.arguments,
                        "#[service] does not support generic services",
                    );
                    ok = false;
                }
                Some(last.ident.clone())
            }
            other => {
                errors.at(other, "#[service] goes on the impl block of a named struct");
                None
            }
        };
        let self_ident = self_ident.filter(|_| ok)?;
        Some(ServiceImpl {
            self_ty: (*item.self_ty).clone(),
            item,
            self_ident,
            entrypoints,
        })
    }
}

impl Entrypoint {
    /// Reads one method: strips its entrypoint attribute and returns the
    /// entrypoint if it is valid (errors are recorded either way).
    fn parse(method: &mut ImplItemFn, errors: &mut Errors) -> Option<Entrypoint> {
        let mut found: Vec<Attribute> = Vec::new();
        method.attrs.retain(|attr| {
            let entrypoint = is_entrypoint_attr(attr);
            if entrypoint {
                found.push(attr.clone());
            }
            !entrypoint
        });
        let attr = found.first()?;
        for extra in &found[1..] {
            errors.at(
                extra,
                "a method can have only one entrypoint attribute \
                 (`#[rpc]`, `#[event_handler]`, `#[timer]`, `#[http]` or `#[entrypoint]`)",
            );
        }
        let mut scratch = Errors::default();
        let kind = Kind::parse(attr, &mut scratch);
        // `#[http]` rules apply even when its arguments were wrong.
        let http = attr
            .path()
            .segments
            .last()
            .is_some_and(|s| s.ident == "http");
        let signature = Signature::parse(method, kind.as_ref(), http, &mut scratch);
        if let Some(cfg) = method.attrs.iter().find(|a| a.path().is_ident("cfg")) {
            scratch.at(cfg, "`#[cfg]` is not supported on entrypoint methods");
        }
        let valid = scratch.is_empty() && found.len() == 1;
        if let Some(err) = scratch.0 {
            errors.push(err);
        }
        let (kind, signature) = (kind?, signature?);
        let docs = method
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("doc"))
            .cloned()
            .collect();
        valid.then(|| Entrypoint {
            ident: method.sig.ident.clone(),
            kind,
            inputs: signature.inputs,
            output: signature.output,
            ok_type: signature.ok_type,
            docs,
        })
    }
}

// ===== method signatures =====

/// A validated entrypoint signature.
struct Signature {
    inputs: Vec<Input>,
    output: Type,
    ok_type: Option<Type>,
}

impl Signature {
    fn parse(
        method: &ImplItemFn,
        kind: Option<&Kind>,
        http: bool,
        errors: &mut Errors,
    ) -> Option<Signature> {
        let sig = &method.sig;
        let what = match kind {
            None if http => "#[http]",
            Some(Kind::Rpc) | None => "#[rpc]",
            Some(Kind::Event(_)) => "#[event_handler]",
            Some(Kind::Timer(_)) => "#[timer]",
            Some(Kind::Custom) => "#[entrypoint]",
            Some(Kind::Http(_)) => "#[http]",
        };
        if sig.asyncness.is_none() {
            errors.at(
                sig.fn_token,
                format_args!("{what} methods must be `async fn`"),
            );
        }
        if let Some(unsafety) = sig.unsafety {
            errors.at(unsafety, "entrypoint methods can't be `unsafe`");
        }
        let generics = &sig.generics;
        if generics.type_params().next().is_some()
            || generics.const_params().next().is_some()
            || generics.where_clause.is_some()
        {
            errors.at(generics, "entrypoint methods can't be generic");
        }
        if matches!(kind, Some(Kind::Rpc)) && sig.ident == "new" {
            errors.at(
                &sig.ident,
                "an #[rpc] method can't be named `new`: it would clash with the constructor \
                 of the generated client",
            );
        }
        match sig.inputs.first() {
            Some(FnArg::Receiver(receiver)) => {
                if receiver.mutability.is_some() && receiver.reference.is_some() {
                    errors.at(
                        receiver,
                        "entrypoint methods take `&self`, not `&mut self`: each worker gets \
                         its own instance; keep shared state in a dependency",
                    );
                } else if receiver.reference.is_none() || receiver.colon_token.is_some() {
                    errors.at(receiver, "entrypoint methods take `&self`");
                }
            }
            _ => errors.at_span(
                sig.paren_token.span.open(),
                "entrypoint methods take `&self`: add it as the first parameter",
            ),
        }
        let inputs = parse_inputs(sig, kind, what, errors);

        let output = match &sig.output {
            ReturnType::Type(_, ty) => Some((**ty).clone()),
            // An #[http] method may answer nothing: 200 with an empty body.
            ReturnType::Default if http => Some(syn::parse_quote!(())),
            ReturnType::Default => {
                errors.at_span(
                    sig.paren_token.span.close(),
                    format_args!(
                        "{what} methods must return `Result<T, E>` \
                         (with `T: Serialize` and `E: Into<RemoteError>`)"
                    ),
                );
                None
            }
        };
        let ok_type = output.as_ref().and_then(result_ok_type);
        if let (Some(Kind::Rpc), Some(output)) = (kind, &output) {
            match &ok_type {
                None => errors.at(
                    output,
                    "#[rpc] methods must return `Result<T, E>`, written as such: \
                     the generated client returns `enoki::Result<T>`",
                ),
                Some(Type::ImplTrait(ty)) => {
                    errors.at(ty, "the result of an #[rpc] method can't be `impl Trait`");
                }
                Some(_) => {}
            }
        }
        Some(Signature {
            inputs: inputs?,
            output: output?,
            ok_type,
        })
    }
}

fn parse_inputs(
    sig: &syn::Signature,
    kind: Option<&Kind>,
    what: &str,
    errors: &mut Errors,
) -> Option<Vec<Input>> {
    let mut inputs = Vec::new();
    let mut ctx_seen = false;
    let mut ok = true;
    for arg in &sig.inputs {
        let FnArg::Typed(arg) = arg else { continue };
        match ctx_type(&arg.ty) {
            Some(true) if ctx_seen => {
                errors.at(
                    arg,
                    "only one worker context (`&WorkerCtx`) parameter is allowed",
                );
                ok = false;
            }
            Some(true) => {
                ctx_seen = true;
                inputs.push(Input::Ctx);
            }
            Some(false) => {
                errors.at(&arg.ty, "take the worker context as `&WorkerCtx`");
                ok = false;
            }
            None => match parse_param(arg, kind, errors) {
                Some(param) => inputs.push(Input::Param(Box::new(param))),
                None => ok = false,
            },
        }
    }
    let params: Vec<&syn::PatType> = sig
        .inputs
        .iter()
        .filter_map(|arg| match arg {
            FnArg::Typed(arg) if ctx_type(&arg.ty).is_none() => Some(arg),
            _ => None,
        })
        .collect();
    match kind {
        Some(Kind::Event(_) | Kind::Custom) if params.len() > 1 => {
            errors.at(
                params[1],
                format_args!(
                    "{what} methods take at most one parameter, the {} \
                     (plus an optional `&WorkerCtx`)",
                    if matches!(kind, Some(Kind::Custom)) {
                        "payload"
                    } else {
                        "event payload"
                    }
                ),
            );
            ok = false;
        }
        Some(Kind::Timer(_)) if !params.is_empty() => {
            errors.at(
                params[0],
                format_args!("{what} methods take no parameters (except an optional `&WorkerCtx`)"),
            );
            ok = false;
        }
        _ => {}
    }
    ok.then_some(inputs)
}

fn parse_param(arg: &syn::PatType, kind: Option<&Kind>, errors: &mut Errors) -> Option<Param> {
    let ty = strip_group(&arg.ty);
    match ty {
        Type::ImplTrait(_) => {
            errors.at(
                ty,
                "entrypoint parameters can't be `impl Trait`: name a concrete type",
            );
            return None;
        }
        Type::Reference(_) if matches!(kind, Some(Kind::Http(_))) => {
            errors.at(
                ty,
                "#[http] parameters are axum extractors, which are owned types \
                 (e.g. `Path<String>`, `Json<T>`, `HeaderMap`)",
            );
            return None;
        }
        Type::Reference(_) => {
            errors.at(
                ty,
                "entrypoint parameters are decoded from JSON, so they must be owned types \
                 (e.g. `String` rather than `&str`)",
            );
            return None;
        }
        _ => {}
    }
    let ident = match &*arg.pat {
        Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => pat.ident.clone(),
        other if !matches!(kind, Some(Kind::Rpc)) => Ident::new("payload", other.span()),
        other => {
            errors.at(
                other,
                "#[rpc] parameters need a plain name (it is their keyword): write `name: Type`",
            );
            return None;
        }
    };
    Some(Param {
        name: ident.unraw().to_string(),
        ident,
        ty: arg.ty.as_ref().clone(),
        required: !is_option(ty),
    })
}

fn strip_group(ty: &Type) -> &Type {
    match ty {
        Type::Group(group) => strip_group(&group.elem),
        Type::Paren(paren) => strip_group(&paren.elem),
        other => other,
    }
}

/// `Some(true)` for `&WorkerCtx` (any path ending in `WorkerCtx`),
/// `Some(false)` for `&mut WorkerCtx`, `None` for anything else.
fn ctx_type(ty: &Type) -> Option<bool> {
    let Type::Reference(reference) = strip_group(ty) else {
        return None;
    };
    let Type::Path(path) = strip_group(&reference.elem) else {
        return None;
    };
    let last = path.path.segments.last()?;
    (path.qself.is_none() && last.ident == "WorkerCtx").then_some(reference.mutability.is_none())
}

/// `Option<T>`, `std::option::Option<T>` or `core::option::Option<T>`.
pub(crate) fn is_option(ty: &Type) -> bool {
    let Type::Path(path) = strip_group(ty) else {
        return false;
    };
    if path.qself.is_some() {
        return false;
    }
    let segments: Vec<String> = path
        .path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect();
    let plain = match segments.as_slice() {
        [one] => one == "Option" && path.path.leading_colon.is_none(),
        [krate, module, name] => {
            (krate == "std" || krate == "core") && module == "option" && name == "Option"
        }
        _ => false,
    };
    plain
        && matches!(
            path.path.segments.last().map(|s| &s.arguments),
            Some(PathArguments::AngleBracketed(_))
        )
}

/// `T` of `Result<T, E>` (or of an alias spelled `Result<T>`).
pub(crate) fn result_ok_type(ty: &Type) -> Option<Type> {
    let Type::Path(path) = strip_group(ty) else {
        return None;
    };
    let last = path.path.segments.last()?;
    if path.qself.is_some() || last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        GenericArgument::Type(ty) => Some(ty.clone()),
        _ => None,
    }
}
