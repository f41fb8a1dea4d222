//! The HTTP API's Lambda authorizer (API keys): wiring only; the check lives in `shared::usecases::keys`.

fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_event(shared::http::auth::authorizer)
}
