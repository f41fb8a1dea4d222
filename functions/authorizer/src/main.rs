//! The HTTP API's Lambda authorizer (API keys): wiring only; the check lives in `shared::auth`.

fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_event(shared::auth::authorizer)
}
