//! template.yaml and the function binaries agree: every function resource is built by the
//! Makefile from the binary its logical id names, and every binary has its resource.

use std::path::Path;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The Makefile's rule: CreateCampaignFunction -> create-campaign (WhatsApp is one word).
fn binary_of(logical_id: &str) -> String {
    let stem = logical_id.strip_suffix("Function").unwrap().replace("WhatsApp", "Whatsapp");
    let mut name = String::new();
    for (i, c) in stem.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('-');
        }
        name.push(c.to_ascii_lowercase());
    }
    name
}

#[test]
fn every_function_resource_builds_an_existing_binary_and_every_binary_is_deployed() {
    let text = std::fs::read_to_string(root().join("template.yaml")).unwrap();
    let template: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let mut deployed = Vec::new();
    for (id, resource) in template["Resources"].as_mapping().unwrap() {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let id = id.as_str().unwrap();
        assert_eq!(resource["Metadata"]["BuildMethod"].as_str(), Some("makefile"), "{id}");
        assert!(id.ends_with("Function"), "{id}: the Makefile builds <Name>Function resources");
        deployed.push(binary_of(id));
    }
    let mut binaries: Vec<String> = std::fs::read_dir(root().join("functions/src/bin"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap().trim_end_matches(".rs").to_string())
        .collect();
    deployed.sort();
    binaries.sort();
    assert_eq!(deployed, binaries);
}

#[test]
fn logical_ids_map_to_binary_names() {
    assert_eq!(binary_of("CreateCampaignFunction"), "create-campaign");
    assert_eq!(binary_of("WhatsAppWebhookFunction"), "whatsapp-webhook");
    assert_eq!(binary_of("BootstrapApiKeyFunction"), "bootstrap-api-key");
}
