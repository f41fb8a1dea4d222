//! The reconciler (an EventBridge schedule, every minute): wiring only; the work lives in `shared::sending`.

fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_event(|app, _event| async move { shared::sending::reconcile(&app).await })
}
