//! `GET /api/campaigns/{id}`: wiring only; the handler lives in `shared::api`.

fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_route("get-campaign")
}
