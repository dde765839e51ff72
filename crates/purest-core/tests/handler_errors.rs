//! Handler type errors name the one type that falls short and what it lacks (the handler's
//! requirements are checked in steps, see `purest_core::handler::Handler`; the messages come from
//! `#[diagnostic::on_unimplemented]` and the compiler), pinned by compile-fail cases in
//! `tests/handler_errors/`: a payload without `JsonSchema`, a payload without `Clone`, an output
//! without `JsonSchema`, an argument that is no extractor, a handler returning a bare `bool`, one
//! returning `Result<bool, String>`.

#[test]
fn handler_type_errors_say_what_is_missing() {
    trybuild::TestCases::new().compile_fail("tests/handler_errors/*.rs");
}
