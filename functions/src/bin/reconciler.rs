//! The reconciler (an EventBridge schedule, every minute): wiring only; the work lives in `shared::usecases::send`.

fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_event(|app, _event| async move { shared::usecases::send::reconcile(&app).await })
}
