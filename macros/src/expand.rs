//! Codegen: one function per generated item, tarpc `ServiceGenerator`
//! style. Reading [`ServiceGenerator`]'s `ToTokens` impl is reading the
//! expansion; `examples/manual_service.rs` is its hand-written twin.
//!
//! Generated code names only absolute paths: `#krate::...` (default
//! `::enoki`), `#krate::__private::...` and `::core`/`::std`, so it compiles
//! whatever the user imported (see `macros/tests/ui/pass/hygiene.rs`).

use proc_macro2::{Literal, Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{Ident, ItemImpl, LitStr, Path, Type};

use crate::parse::{
    DependenciesStruct, DependencyField, Entrypoint, Errors, Input, Kind, Provider, ServiceArgs,
    ServiceImpl, is_entrypoint_attr,
};

// ===== #[service] =====

/// Expands `#[service(args)] impl ... { ... }`.
pub(crate) fn service(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let item: ItemImpl = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(_) => {
            errors.at_span(
                Span::call_site(),
                "#[service] goes on an impl block: `#[service(name = \"...\")] impl MyService { ... }`",
            );
            let mut tokens = errors.to_compile_errors();
            tokens.extend(item);
            return tokens;
        }
    };
    let args = ServiceArgs::parse(args, &mut errors);
    let service = ServiceImpl::parse(item.clone(), &mut errors);
    let errors_tokens = errors.to_compile_errors();
    match (args, service) {
        (Some(args), Some(service)) => {
            let generator = ServiceGenerator::new(&args, &service);
            quote!(#errors_tokens #generator)
        }
        // Keep the methods (attributes stripped) so that the only errors
        // are ours.
        (_, Some(service)) => {
            let item = &service.item;
            quote!(#errors_tokens #item)
        }
        (_, None) => {
            let mut item = item;
            strip_entrypoint_attrs(&mut item);
            quote!(#errors_tokens #item)
        }
    }
}

/// Removes the entrypoint attributes of every method.
fn strip_entrypoint_attrs(item: &mut ItemImpl) {
    for item in &mut item.items {
        if let syn::ImplItem::Fn(method) = item {
            method.attrs.retain(|attr| !is_entrypoint_attr(attr));
        }
    }
}

/// Generates everything `#[service]` emits for one impl block.
pub(crate) struct ServiceGenerator<'a> {
    /// `::enoki`, or the `crate = path` argument.
    krate: &'a Path,
    /// The service name.
    name: &'a LitStr,
    service: &'a ServiceImpl,
    /// `GreeterClient`.
    client: Ident,
    /// `__method`, `__payload`, `__ctx` and `__args` of `dispatch`:
    /// mixed-site hygiene, and names that no user constant shadows (a
    /// `const ctx` in scope would turn a `ctx` parameter into a pattern).
    method: Ident,
    payload: Ident,
    ctx: Ident,
    args: Ident,
}

impl<'a> ServiceGenerator<'a> {
    fn new(args: &'a ServiceArgs, service: &'a ServiceImpl) -> Self {
        let hygienic = |name| Ident::new(name, Span::mixed_site());
        ServiceGenerator {
            krate: &args.krate,
            name: &args.name,
            service,
            client: format_ident!("{}Client", service.self_ident),
            method: hygienic("__method"),
            payload: hygienic("__payload"),
            ctx: hygienic("__ctx"),
            args: hygienic("__args"),
        }
    }

    /// The user's impl block, entrypoint attributes removed.
    fn impl_block(&self) -> TokenStream {
        self.service.item.to_token_stream()
    }

    /// `impl Service for Greeter { NAME, entrypoints, dispatch }`.
    fn impl_service(&self) -> TokenStream {
        let ServiceGenerator { krate, name, .. } = self;
        let self_ty = &self.service.self_ty;
        let entrypoints = self.fn_entrypoints();
        let schemas = self.fn_schemas();
        let dispatch = self.fn_dispatch();
        let dispatch_http = self.fn_dispatch_http();
        quote! {
            impl #krate::Service for #self_ty {
                const NAME: &'static str = #name;
                #entrypoints
                #schemas
                #dispatch
                #dispatch_http
            }
        }
    }

    /// `fn entrypoints()`: the table of entrypoints, as plain data.
    fn fn_entrypoints(&self) -> TokenStream {
        let krate = self.krate;
        let specs = self
            .service
            .entrypoints
            .iter()
            .map(|ep| self.entrypoint_spec(ep));
        quote! {
            fn entrypoints() -> ::std::vec::Vec<#krate::__private::EntrypointSpec> {
                ::std::vec![#(#specs),*]
            }
        }
    }

    /// `fn schemas()`: the JSON Schemas of the RPC methods' parameters and
    /// results and of the event handlers' payloads, from their types.
    fn fn_schemas(&self) -> TokenStream {
        let krate = self.krate;
        let private = quote!(#krate::__private);
        let probe = |ty: &Type| quote!((&#private::SchemaProbe::<#ty>::new()).probe());
        let schemas: Vec<TokenStream> = self
            .service
            .entrypoints
            .iter()
            .filter_map(|ep| {
                let result = match &ep.kind {
                    Kind::Rpc => probe(ep.ok_type.as_ref()?),
                    Kind::Event(_) => quote!(#private::Probed::Schema(#private::schema_any())),
                    _ => return None,
                };
                let method = ep.ident.unraw_string();
                let docs = ep.docs.iter().filter_map(doc_line);
                let params = ep.params().map(|p| {
                    let (name, required) = (&p.name, p.required);
                    let schema = probe(&p.ty);
                    quote!((#name, #required, #schema))
                });
                Some(quote! {
                    #private::MethodSchema::new(
                        #method,
                        &[#(#docs),*],
                        ::std::vec![#(#params),*],
                        #result,
                    )
                })
            })
            .collect();
        if schemas.is_empty() {
            return TokenStream::new();
        }
        quote! {
            fn schemas() -> ::std::vec::Vec<#private::MethodSchema> {
                #[allow(unused_imports)]
                use #private::{ViaAny as _, ViaJsonSchema as _};
                ::std::vec![#(#schemas),*]
            }
        }
    }

    /// One `EntrypointSpec`.
    fn entrypoint_spec(&self, ep: &Entrypoint) -> TokenStream {
        let krate = self.krate;
        let method = ep.ident.unraw_string();
        let private = quote!(#krate::__private);
        match &ep.kind {
            Kind::Rpc => quote!(#private::EntrypointSpec::rpc(#method)),
            Kind::Event(event) => {
                let source = &event.source;
                let event_type = &event.event_type;
                let handler_type = event.handler_type.variant();
                let reliable = event.reliable_delivery;
                let requeue = event.requeue_on_error;
                let identifier = match &event.broadcast_identifier {
                    Some(id) => quote!(::core::option::Option::Some(#id)),
                    None => quote!(::core::option::Option::None),
                };
                quote! {
                    #private::EntrypointSpec::event(#method, #private::EventHandlerSpec {
                        source_service: #source,
                        event_type: #event_type,
                        handler_type: #krate::HandlerType::#handler_type,
                        reliable_delivery: #reliable,
                        requeue_on_error: #requeue,
                        broadcast_identifier: #identifier,
                    })
                }
            }
            Kind::Custom => quote!(#private::EntrypointSpec::custom(#method)),
            Kind::Http(http) => {
                let verb = &http.method;
                let path = &http.path;
                quote! {
                    #private::EntrypointSpec::http(#method, #private::HttpSpec {
                        method: #verb,
                        path: #path,
                    })
                }
            }
            Kind::Timer(timer) => {
                let interval = Literal::f64_suffixed(timer.interval);
                let eager = timer.eager;
                let cluster_once = timer.cluster_once;
                let cron = match &timer.cron {
                    Some(cron) => {
                        let (expression, from_config, timezone) =
                            (&cron.expression, cron.from_config, &cron.timezone);
                        quote! {
                            ::core::option::Option::Some(#private::CronSpec {
                                expression: #expression,
                                from_config: #from_config,
                                timezone: #timezone,
                            })
                        }
                    }
                    None => quote! { ::core::option::Option::None },
                };
                quote! {
                    #private::EntrypointSpec::timer(#method, #private::TimerSpec {
                        interval: ::core::time::Duration::from_secs_f64(#interval),
                        eager: #eager,
                        cluster_once: #cluster_once,
                        cron: #cron,
                    })
                }
            }
        }
    }

    /// `fn dispatch(..)`: one `match` arm per entrypoint.
    fn fn_dispatch(&self) -> TokenStream {
        let ServiceGenerator {
            krate,
            method,
            payload,
            ctx,
            ..
        } = self;
        let arms = self
            .service
            .entrypoints
            .iter()
            .filter(|ep| !matches!(ep.kind, Kind::Http(_)))
            .map(|ep| self.dispatch_arm(ep));
        let other = Ident::new("__other", Span::mixed_site());
        quote! {
            #[allow(unused_variables)]
            async fn dispatch(
                &self,
                #method: &::core::primitive::str,
                #payload: &[::core::primitive::u8],
                #ctx: &#krate::WorkerCtx,
            ) -> #krate::__private::Outcome {
                match #method {
                    #(#arms)*
                    #other => ::core::result::Result::Err(
                        #krate::RemoteError::method_not_found(#other),
                    ),
                }
            }
        }
    }

    /// One arm of `dispatch`: decode, call, encode.
    fn dispatch_arm(&self, ep: &Entrypoint) -> TokenStream {
        let ServiceGenerator {
            krate,
            payload,
            ctx,
            args,
            ..
        } = self;
        let private = quote!(#krate::__private);
        let name = ep.ident.unraw_string();
        let ident = &ep.ident;
        let mut decode = TokenStream::new();
        let call_args: Vec<TokenStream> = match &ep.kind {
            Kind::Rpc => {
                let params = ep.params().map(|p| {
                    let (name, required) = (&p.name, p.required);
                    quote!(#private::Param { name: #name, required: #required })
                });
                let bind = quote!(#private::Args::bind(#name, #payload, PARAMS)?);
                decode = if ep.params().next().is_some() {
                    quote! {
                        const PARAMS: &[#private::Param] = &[#(#params),*];
                        let #args = #bind;
                    }
                } else {
                    quote! {
                        const PARAMS: &[#private::Param] = &[];
                        #bind;
                    }
                };
                let mut index = 0usize;
                ep.inputs
                    .iter()
                    .map(|input| match input {
                        Input::Ctx => ctx.to_token_stream(),
                        Input::Param(_) => {
                            let i = Literal::usize_unsuffixed(index);
                            index += 1;
                            quote!(#args.get(#i)?)
                        }
                    })
                    .collect()
            }
            Kind::Http(_) => unreachable!("#[http] methods are dispatched by dispatch_http"),
            Kind::Event(_) | Kind::Timer(_) | Kind::Custom => ep
                .inputs
                .iter()
                .map(|input| match input {
                    Input::Ctx => ctx.to_token_stream(),
                    Input::Param(param) => {
                        let ty = &param.ty;
                        let event = Ident::new("__event", Span::mixed_site());
                        decode = quote! {
                            let #event = #private::event_payload::<#ty>(#name, #payload)?;
                        };
                        event.to_token_stream()
                    }
                })
                .collect(),
        };
        // The result is bound to a variable spanned at the return type, so
        // that a return type which is not a `Result` is reported there.
        let output_span = ep.output.span();
        let ret = Ident::new("__returned", output_span);
        let private = respan(private, output_span);
        let into_outcome = quote_spanned!(output_span=> #private::IntoOutcome::into_outcome(#ret));
        quote! {
            #name => {
                #decode
                let #ret = self.#ident(#(#call_args),*).await;
                #into_outcome
            }
        }
    }

    /// `fn dispatch_http(..)`, when the service has `#[http]` methods: one
    /// arm per method, its parameters extracted from the request (the last
    /// one may take the body), its result turned into the response.
    fn fn_dispatch_http(&self) -> TokenStream {
        let ServiceGenerator {
            krate, method, ctx, ..
        } = self;
        let http: Vec<&Entrypoint> = self
            .service
            .entrypoints
            .iter()
            .filter(|ep| matches!(ep.kind, Kind::Http(_)))
            .collect();
        if http.is_empty() {
            return TokenStream::new();
        }
        let private = quote!(#krate::__private::http);
        let request = Ident::new("__request", Span::mixed_site());
        let parts = Ident::new("__parts", Span::mixed_site());
        let body = Ident::new("__body", Span::mixed_site());
        let other = Ident::new("__other", Span::mixed_site());
        let arms = http.iter().map(|ep| {
            let name = ep.ident.unraw_string();
            let ident = &ep.ident;
            let count = ep.params().count();
            let mut extract = TokenStream::new();
            let mut index = 0usize;
            let call_args: Vec<TokenStream> = ep
                .inputs
                .iter()
                .map(|input| match input {
                    Input::Ctx => ctx.to_token_stream(),
                    Input::Param(param) => {
                        let ty = &param.ty;
                        let var = format_ident!("__extracted{}", index, span = Span::mixed_site());
                        index += 1;
                        let span = ty.span();
                        let from = if index == count {
                            quote_spanned!(span=> #private::from_request::<#ty, _>(#parts, #body))
                        } else {
                            quote_spanned!(span=> #private::from_parts::<#ty>(&mut #parts))
                        };
                        extract.extend(quote! {
                            let #var = match #from.await {
                                ::core::result::Result::Ok(value) => value,
                                ::core::result::Result::Err(rejection) => return rejection,
                            };
                        });
                        var.to_token_stream()
                    }
                })
                .collect();
            let output_span = ep.output.span();
            let ret = Ident::new("__returned", output_span);
            let respond = quote_spanned!(output_span=> #private::IntoResponse::into_response(#ret));
            let unused_body = (count == 0).then(|| quote!(let _ = (#parts, #body);));
            quote! {
                #name => {
                    #[allow(unused_mut)]
                    let (mut #parts, #body) = #private::split(#request);
                    #extract
                    #unused_body
                    let #ret = self.#ident(#(#call_args),*).await;
                    #respond
                }
            }
        });
        quote! {
            #[allow(unused_variables)]
            fn dispatch_http<'a>(
                &'a self,
                #method: &'a ::core::primitive::str,
                #request: #private::Request,
                #ctx: &'a #krate::WorkerCtx,
            ) -> #krate::__private::BoxFuture<'a, #private::Response> {
                #private::boxed(async move {
                    match #method {
                        #(#arms)*
                        #other => #private::method_not_found(#other),
                    }
                })
            }
        }
    }

    /// `pub struct GreeterClient { rpc: ClusterRpc }`.
    fn struct_client(&self) -> TokenStream {
        let ServiceGenerator { krate, client, .. } = self;
        let doc = format!(
            " A typed client of the `{}` service: one method per `#[rpc]` of `{}`.\n\n \
             Generated by `#[service]`.",
            self.name.value(),
            self.service.self_ident
        );
        quote! {
            #[doc = #doc]
            #[derive(::core::fmt::Debug, ::core::clone::Clone)]
            #[allow(dead_code, unreachable_pub)]
            pub struct #client {
                rpc: #krate::ClusterRpc,
            }
        }
    }

    /// `impl GreeterClient { SERVICE, new, one method per #[rpc] }`.
    fn impl_client(&self) -> TokenStream {
        let ServiceGenerator {
            krate,
            name,
            client,
            ..
        } = self;
        let service_doc = format!(" The service name, `{}`.", name.value());
        let methods = self
            .service
            .entrypoints
            .iter()
            .filter(|ep| matches!(ep.kind, Kind::Rpc))
            .map(|ep| self.client_method(ep));
        quote! {
            #[allow(dead_code, unreachable_pub, private_interfaces)]
            impl #client {
                #[doc = #service_doc]
                pub const SERVICE: &'static str = #name;

                /// A client calling through `rpc`.
                pub fn new(rpc: impl ::core::convert::AsRef<#krate::ClusterRpc>) -> Self {
                    #client {
                        rpc: ::core::clone::Clone::clone(
                            <_ as ::core::convert::AsRef<#krate::ClusterRpc>>::as_ref(&rpc),
                        ),
                    }
                }

                #(#methods)*
            }
        }
    }

    /// One client method: `pub async fn m(&self, a: A) -> enoki::Result<T>`.
    fn client_method(&self, ep: &Entrypoint) -> TokenStream {
        let krate = self.krate;
        let ident = &ep.ident;
        let method = ep.ident.unraw_string();
        let docs = &ep.docs;
        let separator = (!docs.is_empty()).then(|| quote!(#[doc = ""]));
        let calls = format!(" Calls `{}.{method}`.", self.name.value());
        let mut replace = ReplaceSelf(&self.service.self_ty);
        let params: Vec<_> = ep
            .params()
            .map(|p| {
                let mut ty = p.ty.clone();
                replace.visit_type_mut(&mut ty);
                (p.ident.clone(), ty)
            })
            .collect();
        let names = params.iter().map(|(name, _)| name);
        let args = if params.is_empty() {
            quote!(&[(); 0])
        } else {
            quote!(&(#(#names,)*))
        };
        let params = params.iter().map(|(name, ty)| quote!(#name: #ty));
        let mut ok = ep
            .ok_type
            .clone()
            .expect("#[rpc] methods have a `Result<T, E>` type");
        replace.visit_type_mut(&mut ok);
        quote! {
            #(#docs)*
            #separator
            #[doc = #calls]
            pub async fn #ident(&self, #(#params),*) -> #krate::Result<#ok> {
                self.rpc.call_typed(Self::SERVICE, #method, #args).await
            }
        }
    }
}

impl ToTokens for ServiceGenerator<'_> {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        tokens.extend([
            self.impl_block(),
            self.impl_service(),
            self.struct_client(),
            self.impl_client(),
        ]);
    }
}

/// Replaces `Self` (the service) in types copied into the client.
struct ReplaceSelf<'a>(&'a Type);

impl VisitMut for ReplaceSelf<'_> {
    fn visit_type_mut(&mut self, ty: &mut Type) {
        match ty {
            Type::Path(path) if path.qself.is_none() && path.path.is_ident("Self") => {
                *ty = self.0.clone();
            }
            _ => syn::visit_mut::visit_type_mut(self, ty),
        }
    }
}

/// `tokens`, every one located at `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut token| {
            if let proc_macro2::TokenTree::Group(group) = &token {
                let mut inner =
                    proc_macro2::Group::new(group.delimiter(), respan(group.stream(), span));
                inner.set_span(span);
                token = inner.into();
            } else {
                token.set_span(token.span().located_at(span));
            }
            token
        })
        .collect()
}

/// `r#type` → `"type"`.
trait UnrawString {
    fn unraw_string(&self) -> String;
}

impl UnrawString for Ident {
    fn unraw_string(&self) -> String {
        syn::ext::IdentExt::unraw(self).to_string()
    }
}

// ===== #[derive(Dependencies)] =====

/// Expands `#[derive(Dependencies)]`.
pub(crate) fn dependencies(input: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let input: syn::DeriveInput = match syn::parse2(input) {
        Ok(input) => input,
        Err(err) => return err.to_compile_error(),
    };
    match DependenciesStruct::parse(&input, &mut errors) {
        Some(model) if errors.is_empty() => DependenciesGenerator(&model).into_token_stream(),
        _ => errors.to_compile_errors(),
    }
}

/// Generates `impl Dependencies`.
pub(crate) struct DependenciesGenerator<'a>(&'a DependenciesStruct);

impl DependenciesGenerator<'_> {
    /// `impl Dependencies for S { providers, inject }`.
    fn impl_dependencies(&self) -> TokenStream {
        let DependenciesStruct { ident, krate, .. } = self.0;
        let providers = self.fn_providers();
        let inject = self.fn_inject();
        quote! {
            impl #krate::Dependencies for #ident {
                #providers
                #inject
            }
        }
    }

    /// `fn providers()`: each provider, type-checked against its field,
    /// then the set in field order.
    fn fn_providers(&self) -> TokenStream {
        let krate = &self.0.krate;
        let fields = &self.0.fields;
        // Spanned at the field, so that "not a provider" and "provides the
        // wrong type" point there.
        let vars: Vec<Ident> = fields
            .iter()
            .enumerate()
            .map(|(i, field)| {
                let span = Span::mixed_site().located_at(field.ident.span());
                Ident::new(&format!("__provider_{i}"), span)
            })
            .collect();
        let builds = fields
            .iter()
            .zip(&vars)
            .map(|(field, var)| self.provider(field, var));
        let names = fields.iter().map(|field| field.ident.unraw_string());
        quote! {
            fn providers() -> #krate::ProviderSet {
                #(#builds)*
                #krate::ProviderSet::new()#(.with(#names, #vars))*
            }
        }
    }

    /// Builds one provider and checks that it provides the field's type;
    /// a mismatch is reported on the field.
    fn provider(&self, field: &DependencyField, var: &Ident) -> TokenStream {
        let krate = &self.0.krate;
        let build = match &field.provider {
            Provider::Type(ty) => {
                quote_spanned!(ty.span()=> <#ty as ::core::default::Default>::default())
            }
            Provider::Expr(expr) => expr.to_token_stream(),
        };
        let ty = &field.ty;
        let span = field.ident.span();
        let krate = respan(krate.to_token_stream(), span);
        let check = quote_spanned! {span=>
            #krate::__private::assert_provides::<_, #ty>(&#var);
        };
        quote! {
            let #var = #build;
            #check
        }
    }

    /// `fn inject(..)`: each field from its provider.
    fn fn_inject(&self) -> TokenStream {
        let krate = &self.0.krate;
        let providers = Ident::new("__providers", Span::mixed_site());
        let worker = Ident::new("__worker", Span::mixed_site());
        let fields = self.0.fields.iter().enumerate().map(|(i, field)| {
            let ident = &field.ident;
            let i = Literal::usize_unsuffixed(i);
            quote!(#ident: #providers.get(#i, #worker))
        });
        let body = quote!(Self { #(#fields),* });
        quote! {
            #[allow(unused_variables)]
            fn inject(#providers: &#krate::ProviderSet, #worker: &#krate::WorkerCtx) -> Self {
                #body
            }
        }
    }
}

impl ToTokens for DependenciesGenerator<'_> {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        tokens.extend(self.impl_dependencies());
    }
}

/// The text of a `#[doc = "..."]` attribute.
fn doc_line(attr: &syn::Attribute) -> Option<syn::LitStr> {
    let syn::Meta::NameValue(meta) = &attr.meta else {
        return None;
    };
    if !meta.path.is_ident("doc") {
        return None;
    }
    match &meta.value {
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(text),
            ..
        }) => Some(text.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;

    #[test]
    fn service_expands_without_errors() {
        let tokens = super::service(
            quote!(name = "greeter"),
            quote! {
                impl Greeter {
                    /// Hello.
                    #[rpc]
                    async fn hello(&self, name: String, ctx: &WorkerCtx) -> Result<String, E> {
                        Ok(name)
                    }
                    #[event_handler("a", "b", handler_type = broadcast)]
                    async fn on_b(&self, payload: u8) -> Result<(), E> { Ok(()) }
                    #[timer(interval = 1.5)]
                    async fn tick(&self) -> Result<(), E> { Ok(()) }
                }
            },
        )
        .to_string();
        assert!(!tokens.contains("compile_error"), "{tokens}");
        assert!(tokens.contains("pub struct GreeterClient"), "{tokens}");
        assert!(tokens.contains("reliable_delivery : false"), "{tokens}");
        assert!(tokens.contains("from_secs_f64 (1.5f64)"), "{tokens}");
        assert!(!tokens.contains("# [rpc]"), "{tokens}");
    }

    #[test]
    fn errors_are_accumulated() {
        let tokens = super::service(
            quote!(name = "a.b"),
            quote! {
                impl Greeter {
                    #[rpc]
                    fn sync(&mut self) -> Result<(), E> { Ok(()) }
                    #[timer(intervall = 1)]
                    async fn tick(&self) -> Result<(), E> { Ok(()) }
                }
            },
        )
        .to_string();
        assert_eq!(tokens.matches("compile_error").count(), 4, "{tokens}");
    }

    #[test]
    fn dependencies_expand() {
        let tokens = super::dependencies(quote! {
            struct S {
                #[dependency(Config)]
                config: Settings,
                #[dependency(Database::new("x"))]
                db: Db,
            }
        })
        .to_string();
        assert!(tokens.contains("< Config as :: core :: default :: Default > :: default ()"));
        assert!(tokens.contains("Database :: new (\"x\")"), "{tokens}");
        assert!(
            tokens.contains(". with (\"db\" , __provider_1)"),
            "{tokens}"
        );
    }
}
