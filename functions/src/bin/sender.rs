//! The sender (send queue): wiring only; the work lives in `shared::usecases::send`.

fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_queue(shared::usecases::send::Consumer::Sender)
}
