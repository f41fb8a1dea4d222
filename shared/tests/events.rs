//! Every function has a sample event in `events/`, and each one stays a valid API Gateway
//! event for the route its function serves.

use std::path::Path;

use shared::api::{ROUTES, find};

#[test]
fn every_function_has_a_valid_sample_event_for_its_route() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../events");
    let all: Vec<_> = ROUTES.iter().collect();
    for route in ROUTES {
        let file = dir.join(format!("{}.json", route.name));
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let req = lambda_http::request::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let (found, params) =
            find(&all, req.method(), req.uri().path()).unwrap_or_else(|e| panic!("{}: {}", file.display(), e.message));
        assert_eq!(found.name, route.name, "{} is routed to another function", file.display());
        if route.path.contains("{id}") {
            assert!(params.iter().any(|(k, v)| k == "id" && !v.is_empty()), "{}", file.display());
        }
    }
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(files, ROUTES.len(), "events/ has files for functions that do not exist");
}
