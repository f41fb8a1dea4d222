//! The status applier (status queue): wiring only; the work lives in `shared::usecases::statuses`.

fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_queue(shared::usecases::send::Consumer::Statuses)
}
