//! Makes an API key when invoked with `aws lambda invoke`: wiring only; see `shared::usecases::keys`.

fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_event(shared::http::auth::bootstrap)
}
