//! The scheduled start (invoked by EventBridge Scheduler): wiring only; the work lives in `shared::usecases::schedule`.

fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_event(shared::usecases::schedule::handle)
}
