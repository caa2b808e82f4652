//! Misuse of the macros must fail to compile with a message pointing at the problem.

#[test]
fn misuse_is_reported_at_the_problem() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
