//! The HTTP API's `$default` route: wiring only; the answers live in `shared::http::unrouted`.

fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_unrouted()
}
