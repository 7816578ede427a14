//! Expansion snapshots, as tonic checks its generated code: the examples'
//! `#[derive(Dependencies)]` structs and `#[service]` impls are expanded by
//! this crate's own code, formatted with prettyplease, and compared with
//! the checked-in `tests/expand/<name>.expanded.rs`, so that every change
//! to the generated code is a diff in review.
//!
//! Inputs: `examples/greeter.rs`, `examples/listener.rs`,
//! `examples/clock.rs`, and `tests/expand/manual_service.rs` (the macro form
//! of `examples/manual_service.rs`, the hand-written twin).
//!
//! After a deliberate change to the expansion:
//! `ENOKI_BLESS=1 cargo test -p enoki-macros snapshots`, then review the
//! diff of `tests/expand/`.

use std::path::{Path, PathBuf};

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};

const CASES: &[(&str, &str)] = &[
    ("greeter", "examples/greeter.rs"),
    ("listener", "examples/listener.rs"),
    ("clock", "examples/clock.rs"),
    ("manual_service", "tests/expand/manual_service.rs"),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("macros/ sits in the workspace root")
        .to_path_buf()
}

fn has_attr(attrs: &[syn::Attribute], name: &str) -> bool {
    attrs.iter().any(|a| a.path().is_ident(name))
}

/// Removes `Dependencies` from a `#[derive(...)]`, keeping the rest.
fn without_derive_dependencies(attrs: &mut Vec<syn::Attribute>) -> bool {
    let mut found = false;
    attrs.retain_mut(|attr| {
        if !attr.path().is_ident("derive") {
            return true;
        }
        let Ok(paths) = attr.parse_args_with(
            syn::punctuated::Punctuated::<syn::Path, syn::Token![,]>::parse_terminated,
        ) else {
            return true;
        };
        let kept: Vec<&syn::Path> = paths
            .iter()
            .filter(|p| {
                let is_deps = p.segments.last().is_some_and(|s| s.ident == "Dependencies");
                found |= is_deps;
                !is_deps
            })
            .collect();
        if kept.is_empty() {
            return false;
        }
        *attr = syn::parse_quote!(#[derive(#(#kept),*)]);
        true
    });
    found
}

/// The file with every macro of this crate expanded.
fn expand_file(source: &str) -> String {
    let file: syn::File = syn::parse_file(source).expect("the input parses");
    let mut out = TokenStream::new();
    for item in file.items {
        match item {
            syn::Item::Struct(mut item) if has_attr(&item.attrs, "derive") => {
                let derives = without_derive_dependencies(&mut item.attrs);
                if derives {
                    let input = item.to_token_stream();
                    // The derive sees the struct, helper attributes included.
                    let generated = crate::expand::dependencies(input);
                    strip_helpers(&mut item);
                    out.extend(quote!(#item #generated));
                } else {
                    out.extend(item.to_token_stream());
                }
            }
            syn::Item::Impl(mut item) if has_attr(&item.attrs, "service") => {
                let index = item
                    .attrs
                    .iter()
                    .position(|a| a.path().is_ident("service"))
                    .expect("checked above");
                let attr = item.attrs.remove(index);
                let args = match attr.meta {
                    syn::Meta::List(list) => list.tokens,
                    _ => TokenStream::new(),
                };
                out.extend(crate::expand::service(args, item.to_token_stream()));
            }
            other => out.extend(other.to_token_stream()),
        }
    }
    let expanded: syn::File = syn::parse2(out).expect("the expansion parses as a file");
    prettyplease::unparse(&expanded)
}

/// Drops `#[dependency(...)]` from the fields (the derive consumes them).
fn strip_helpers(item: &mut syn::ItemStruct) {
    for field in item.fields.iter_mut() {
        field.attrs.retain(|a| !a.path().is_ident("dependency"));
    }
    item.attrs.retain(|a| !a.path().is_ident("dependencies"));
}

#[test]
fn expansions_match_the_snapshots() {
    let bless = std::env::var("ENOKI_BLESS").is_ok_and(|v| v == "1");
    let mut stale = Vec::new();
    for (name, input) in CASES {
        let source = std::fs::read_to_string(root().join(input))
            .unwrap_or_else(|err| panic!("{input}: {err}"));
        let expanded = format!(
            "// The expansion of `{input}`, checked by macros/src/snapshots.rs.\n\
             // Regenerate: ENOKI_BLESS=1 cargo test -p enoki-macros snapshots\n\n{}",
            expand_file(&source)
        );
        assert!(
            !expanded.contains("compile_error"),
            "{input} expands with errors:\n{expanded}"
        );
        let snapshot = root().join(format!("tests/expand/{name}.expanded.rs"));
        let current = std::fs::read_to_string(&snapshot).unwrap_or_default();
        if current != expanded {
            if bless {
                std::fs::write(&snapshot, &expanded).unwrap();
            } else {
                stale.push(snapshot.display().to_string());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "the expansion changed: {stale:?} are stale. If the change is meant, run \
         `ENOKI_BLESS=1 cargo test -p enoki-macros snapshots` and review the diff."
    );
}

#[test]
fn the_snapshot_reader_sees_a_change() {
    let a = expand_file(
        "#[service(name = \"a\")] impl A { #[rpc] async fn f(&self) -> Result<(), E> { Ok(()) } }",
    );
    let b = expand_file(
        "#[service(name = \"a\")] impl A { #[rpc] async fn g(&self) -> Result<(), E> { Ok(()) } }",
    );
    assert_ne!(a, b);
    assert!(a.contains("EntrypointSpec::rpc(\"f\")"), "{a}");
}
