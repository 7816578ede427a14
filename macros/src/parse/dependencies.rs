//! The `#[derive(Dependencies)]` struct: one provider per field.

use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Attribute, Expr, Ident, Path, Type};

use super::Errors;
use super::attrs::{AttrArg, arg_tokens, attr_tokens, crate_path, default_crate, parse_args};

// ===== #[derive(Dependencies)] =====

/// A `#[derive(Dependencies)]` struct.
pub(crate) struct DependenciesStruct {
    /// The struct name.
    pub(crate) ident: Ident,
    /// The path of the enoki crate.
    pub(crate) krate: Path,
    /// Its fields, in order (empty for unit structs).
    pub(crate) fields: Vec<DependencyField>,
}

/// One field and its provider.
pub(crate) struct DependencyField {
    pub(crate) ident: Ident,
    pub(crate) ty: Type,
    pub(crate) provider: Provider,
}

/// How a field's provider is built.
pub(crate) enum Provider {
    /// `#[dependency(Config)]`: `<Config as Default>::default()`.
    Type(Type),
    /// `#[dependency(Database::new("orders"))]`: the expression.
    Expr(Expr),
}

impl Parse for Provider {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.is_empty() {
            return Err(input.error("expected a provider: #[dependency(Provider)]"));
        }
        let fork = input.fork();
        if let Ok(ty @ Type::Path(_)) = fork.parse::<Type>()
            && fork.is_empty()
        {
            input.parse::<Type>()?;
            return Ok(Provider::Type(ty));
        }
        Ok(Provider::Expr(input.parse()?))
    }
}

impl DependenciesStruct {
    /// Reads the struct; every problem is recorded in `errors`.
    pub(crate) fn parse(input: &syn::DeriveInput, errors: &mut Errors) -> Option<Self> {
        let krate = derive_crate(&input.attrs, errors);
        if !input.generics.params.is_empty() || input.generics.where_clause.is_some() {
            errors.at(
                &input.generics,
                "#[derive(Dependencies)] does not support generic structs",
            );
        }
        let data = match &input.data {
            syn::Data::Struct(data) => data,
            syn::Data::Enum(data) => {
                errors.at(
                    data.enum_token,
                    "#[derive(Dependencies)] goes on a struct: its fields are the dependencies",
                );
                return None;
            }
            syn::Data::Union(data) => {
                errors.at(
                    data.union_token,
                    "#[derive(Dependencies)] goes on a struct: its fields are the dependencies",
                );
                return None;
            }
        };
        let fields = match &data.fields {
            syn::Fields::Named(fields) => &fields.named,
            syn::Fields::Unit => &Punctuated::new(),
            syn::Fields::Unnamed(fields) => {
                errors.at(
                    fields,
                    "#[derive(Dependencies)] needs named fields, one per dependency: \
                     `struct MyService { #[dependency(Config)] config: Settings }`",
                );
                return None;
            }
        };
        let fields: Vec<_> = fields
            .iter()
            .filter_map(|f| DependencyField::parse(f, errors))
            .collect();
        errors.is_empty().then(|| DependenciesStruct {
            ident: input.ident.clone(),
            krate,
            fields,
        })
    }
}

/// `#[dependencies(crate = path)]` on the struct, or `::enoki`.
fn derive_crate(attrs: &[Attribute], errors: &mut Errors) -> Path {
    let mut krate = None;
    for attr in attrs.iter().filter(|a| a.path().is_ident("dependencies")) {
        let args = match attr_tokens(attr).and_then(parse_args) {
            Ok(args) => args,
            Err(err) => {
                errors.push(err);
                continue;
            }
        };
        for arg in args {
            match arg {
                AttrArg::Named { name, value } if name == "crate" => {
                    krate = crate_path(&value, errors);
                }
                other => errors.at(arg_tokens(&other), "expected `crate = path`"),
            }
        }
    }
    krate.unwrap_or_else(default_crate)
}

impl DependencyField {
    fn parse(field: &syn::Field, errors: &mut Errors) -> Option<Self> {
        let ident = field.ident.clone()?;
        let mut attrs = field
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("dependency"));
        let Some(attr) = attrs.next() else {
            errors.at(
                &ident,
                "every field of a service struct is a dependency: add #[dependency(Provider)]",
            );
            return None;
        };
        for extra in attrs {
            errors.at(extra, "a field has one #[dependency(...)]");
        }
        let provider = match &attr.meta {
            syn::Meta::List(list) => syn::parse2::<Provider>(list.tokens.clone()).map_err(|err| {
                if list.tokens.is_empty() {
                    syn::Error::new_spanned(attr, "expected a provider: #[dependency(Provider)]")
                } else {
                    err
                }
            }),
            _ => Err(syn::Error::new_spanned(
                attr,
                "expected a provider: #[dependency(Provider)]",
            )),
        };
        match provider {
            Ok(provider) => Some(DependencyField {
                ident,
                ty: field.ty.clone(),
                provider,
            }),
            Err(err) => {
                errors.push(err);
                None
            }
        }
    }
}
