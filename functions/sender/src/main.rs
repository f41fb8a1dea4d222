//! The sender (send queue): wiring only; the work lives in `shared::sending`.

fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_queue(shared::sending::Consumer::Sender)
}
