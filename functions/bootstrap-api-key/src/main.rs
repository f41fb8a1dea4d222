//! Makes an API key when invoked with `aws lambda invoke`: wiring only; see `shared::auth`.

fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_event(shared::auth::bootstrap)
}
