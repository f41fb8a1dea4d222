//! The status applier (status queue): wiring only; the work lives in `shared::delivery`.

fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_queue(shared::sending::Consumer::Statuses)
}
