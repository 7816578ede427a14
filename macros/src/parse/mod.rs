//! The input model: what `#[service]` and `#[derive(Dependencies)]` read
//! from their input, validated.
//!
//! Parsing never stops at the first problem: every error is pushed into an
//! [`Errors`] and pinned to the token it is about, so one compile shows
//! them all. Codegen (`expand.rs`) only ever sees validated models.

use std::fmt::Display;

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;

mod attrs;
mod dependencies;
mod method;

pub(crate) use attrs::{Kind, ServiceArgs};
pub(crate) use dependencies::{DependenciesStruct, DependencyField, Provider};
pub(crate) use method::{Entrypoint, Input, ServiceImpl, is_entrypoint_attr};

// ===== errors =====

/// Errors accumulated while parsing, combined into one `syn::Error`.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    /// Adds an error.
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(errors) => errors.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// Adds an error pointing at `tokens`.
    pub(crate) fn at(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// Adds an error pointing at `span`.
    pub(crate) fn at_span(&mut self, span: Span, message: impl Display) {
        self.push(syn::Error::new(span, message));
    }

    /// Whether nothing went wrong.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The errors as `compile_error!` invocations (nothing when empty).
    pub(crate) fn to_compile_errors(&self) -> TokenStream {
        self.0
            .as_ref()
            .map(syn::Error::to_compile_error)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;
    use syn::parse_quote;

    use super::attrs::edit_distance;
    use super::method::{is_option, result_ok_type};

    #[test]
    fn option_parameters_are_optional() {
        assert!(is_option(&parse_quote!(Option<String>)));
        assert!(is_option(&parse_quote!(std::option::Option<u8>)));
        assert!(is_option(&parse_quote!(::core::option::Option<u8>)));
        assert!(!is_option(&parse_quote!(String)));
        assert!(!is_option(&parse_quote!(my::Option<u8>)));
        assert!(!is_option(&parse_quote!(Option)));
    }

    #[test]
    fn ok_type_of_results() {
        let ok = |ty: syn::Type| result_ok_type(&ty).map(|t| quote!(#t).to_string());
        assert_eq!(
            ok(parse_quote!(Result<String, RemoteError>)).as_deref(),
            Some("String")
        );
        assert_eq!(
            ok(parse_quote!(enoki::Result<Vec<u8>>)).as_deref(),
            Some("Vec < u8 >")
        );
        assert_eq!(ok(parse_quote!(String)), None);
        assert_eq!(ok(parse_quote!(MyResult)), None);
    }

    #[test]
    fn near_misses() {
        assert_eq!(edit_distance("intervall", "interval"), 1);
        assert_eq!(edit_distance("source", "sauce"), 2);
        assert!(edit_distance("colour", "event_type") > 2);
    }
}
