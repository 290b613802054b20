//! Compile-fail tests of `#[multiproc::main]`: each misuse in `ui/` must fail to build with
//! the message in its `.stderr` file, and the attribute as documented must build.

#[test]
fn misuses_fail_with_a_clear_message() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}

#[test]
fn documented_uses_build() {
    let t = trybuild::TestCases::new();
    t.pass("tests/pass/*.rs");
}
