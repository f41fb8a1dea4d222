//! `POST /api/campaigns/{id}/start`: wiring only; the handler lives in `shared::http`.

fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_route(env!("CARGO_BIN_NAME"))
}
