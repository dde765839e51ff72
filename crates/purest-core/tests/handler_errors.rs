//! Handler type errors name what is missing (`#[diagnostic::on_unimplemented]`), pinned by
//! compile-fail cases in `tests/handler_errors/`: a payload without `JsonSchema`, a handler
//! returning a bare `bool`, one returning `Result<bool, String>`, a payload without `Clone`.

#[test]
fn handler_type_errors_say_what_is_missing() {
    trybuild::TestCases::new().compile_fail("tests/handler_errors/*.rs");
}
