//! trybuild UI tests for the macros: `tests/ui/pass` must compile (and run),
//! `tests/ui/fail` must fail with the checked-in `.stderr`.
//!
//! Regenerate the `.stderr` files with `TRYBUILD=overwrite cargo test --test ui`
//! and read the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
