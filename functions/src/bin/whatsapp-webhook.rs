//! `GET` and `POST /webhooks/whatsapp`: wiring only; the handlers live in `shared::http`.

fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_route(env!("CARGO_BIN_NAME"))
}
