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
