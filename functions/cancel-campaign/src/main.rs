//! `POST /api/campaigns/{id}/cancel`: wiring only; the handler lives in `shared::api`.

fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_route("cancel-campaign")
}
