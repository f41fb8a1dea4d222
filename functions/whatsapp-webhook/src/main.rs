//! `GET` and `POST /webhooks/whatsapp`: wiring only; the handlers live in `shared::api`.

fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_route("whatsapp-webhook")
}
