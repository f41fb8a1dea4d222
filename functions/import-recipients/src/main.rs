//! `POST /api/campaigns/{id}/recipients/import`: wiring only; the handler lives in `shared::api`.

fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_route("import-recipients")
}
