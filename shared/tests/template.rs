//! template.yaml and the function binary agree: every function resource is built by the
//! Makefile and names, as its Handler, a function the binary serves; every function the binary
//! serves is deployed once.

use std::path::Path;

#[test]
fn every_function_resource_names_a_function_and_every_function_is_deployed_once() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
    let template: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut deployed = Vec::new();
    for (id, resource) in template["Resources"].as_mapping().unwrap() {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let id = id.as_str().unwrap();
        assert_eq!(resource["Metadata"]["BuildMethod"].as_str(), Some("makefile"), "{id}");
        let handler = resource["Properties"]["Handler"].as_str();
        deployed.push(handler.unwrap_or_else(|| panic!("{id} has no Handler")).to_string());
    }
    deployed.sort();
    assert_eq!(deployed, shared::lambda::function_names());
}

#[test]
fn the_functions_log_json_emit_metrics_and_the_dashboard_graphs_every_metric() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
    let template: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let env = &template["Globals"]["Function"]["Environment"]["Variables"];
    assert_eq!((env["LOG_FORMAT"].as_str(), env["METRICS"].as_str()), (Some("json"), Some("emf")));
    assert!(!env["METRICS_NAMESPACE"].is_null());
    let dashboard = &template["Resources"]["Dashboard"];
    assert_eq!(dashboard["Type"].as_str(), Some("AWS::CloudWatch::Dashboard"));
    // !Sub [body, {Namespace: …}]: the body is JSON once substituted.
    let body = serde_yaml::to_string(&dashboard["Properties"]["DashboardBody"]).unwrap();
    let sub: Vec<serde_yaml::Value> = match serde_yaml::from_str::<serde_yaml::Value>(&body).unwrap() {
        serde_yaml::Value::Tagged(t) => serde_yaml::from_value(t.value).unwrap(),
        other => panic!("DashboardBody is not a !Sub: {other:?}"),
    };
    let text = sub[0].as_str().unwrap().replace("${AWS::Region}", "eu-west-1").replace("${Namespace}", "s/Campaigns");
    let parsed: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert!(parsed["widgets"].as_array().is_some_and(|w| !w.is_empty()));
    for name in shared::adapters::metrics::METRIC_NAMES {
        assert!(
            text.contains(&format!("\"{name}\"")) || text.contains(&format!("\\\"{name}\\\"")),
            "{name} is not graphed"
        );
    }
}
