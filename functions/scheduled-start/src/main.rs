//! The scheduled start (invoked by EventBridge Scheduler): wiring only; the work lives in `shared::scheduling`.

fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_event(shared::scheduling::handle)
}
