//! `POST /api/campaigns/{id}/start`: wiring only; the handler lives in `shared::api`.

fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_route("start-campaign")
}
