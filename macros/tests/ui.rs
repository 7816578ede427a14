//! trybuild UI tests for the macros: `tests/ui/pass` must compile (and run),
//! `tests/ui/fail` must fail with the checked-in `.stderr`.
//!
//! Regenerate the `.stderr` files with `TRYBUILD=overwrite cargo test -p
//! enoki-macros --test ui` and read the diff.
//!
//! They live in the macros crate so that trybuild builds enoki with only
//! the features they use (`macros`, `http`; see `Cargo.toml`): its build
//! of the dependencies cannot reuse the workspace's.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
