//! Creates the table, queues and schedule group in the emulator from the very resources
//! `template.yaml` declares, so that the local stack and AWS cannot drift apart. Safe to run
//! again.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TableStatus, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_yaml::Value;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The parts of `template.yaml` the local stack builds.
pub struct Template {
    resources: serde_yaml::Mapping,
}

impl Template {
    pub fn load(path: &Path) -> Result<Self, BoxError> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, BoxError> {
        let doc: Value = serde_yaml::from_str(text)?;
        let resources =
            doc.get("Resources").and_then(Value::as_mapping).cloned().ok_or("template.yaml has no Resources")?;
        Ok(Template { resources })
    }

    /// The default location: `template.yaml` at the workspace root.
    pub fn default_path() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml")
    }

    /// Logical ids and properties of every resource of `kind`.
    pub fn resources(&self, kind: &str) -> Vec<(String, Value)> {
        self.resources
            .iter()
            .filter(|(_, r)| r.get("Type").and_then(Value::as_str) == Some(kind))
            .filter_map(|(id, r)| Some((id.as_str()?.to_string(), r.get("Properties").cloned().unwrap_or_default())))
            .collect()
    }

    /// The properties of the table resource `Table`.
    pub fn table(&self) -> Result<Value, BoxError> {
        self.resources("AWS::DynamoDB::Table")
            .into_iter()
            .find(|(id, _)| id == "Table")
            .map(|(_, p)| p)
            .ok_or_else(|| "template.yaml has no AWS::DynamoDB::Table named Table".into())
    }

    /// The batching window of the DynamoDB stream event of the function `function`.
    pub fn batching_window(&self, function: &str) -> Option<Duration> {
        let (_, props) = self.resources("AWS::Serverless::Function").into_iter().find(|(id, _)| id == function)?;
        let events = props.get("Events")?.as_mapping()?;
        let stream = events.values().find(|e| e.get("Type").and_then(Value::as_str) == Some("DynamoDB"))?;
        let seconds = stream.get("Properties")?.get("MaximumBatchingWindowInSeconds")?.as_u64()?;
        Some(Duration::from_secs(seconds))
    }
}

/// The logical id of the queue a `RedrivePolicy` sends to (`!GetAtt <Queue>.Arn`).
fn dead_letter_target(redrive_policy: &Value) -> Option<String> {
    match redrive_policy.get("deadLetterTargetArn")? {
        Value::Tagged(t) => t.value.as_str().map(|s| s.trim_end_matches(".Arn").to_string()),
        _ => None,
    }
}

impl Template {
    /// Dead-letter queue → the queue whose `RedrivePolicy` sends to it.
    pub fn dead_letter_sources(&self) -> HashMap<String, String> {
        self.resources("AWS::SQS::Queue")
            .into_iter()
            .filter_map(|(id, props)| Some((dead_letter_target(props.get("RedrivePolicy")?)?, id)))
            .collect()
    }
}

fn text<'a>(v: &'a Value, key: &str) -> Result<&'a str, BoxError> {
    v.get(key).and_then(Value::as_str).ok_or_else(|| format!("template: {key} missing").into())
}

fn key_schema(v: &Value) -> Result<Vec<KeySchemaElement>, BoxError> {
    let list = v.get("KeySchema").and_then(Value::as_sequence).ok_or("template: KeySchema missing")?;
    list.iter()
        .map(|k| {
            Ok(KeySchemaElement::builder()
                .attribute_name(text(k, "AttributeName")?)
                .key_type(KeyType::from(text(k, "KeyType")?))
                .build()?)
        })
        .collect()
}

/// Creates the table unless it exists, then waits until it is active.
pub async fn ensure_table(client: &aws_sdk_dynamodb::Client, name: &str, template: &Template) -> Result<(), BoxError> {
    let props = template.table()?;
    let mut req = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::from(props.get("BillingMode").and_then(Value::as_str).unwrap_or("PAY_PER_REQUEST")));
    for a in props.get("AttributeDefinitions").and_then(Value::as_sequence).ok_or("AttributeDefinitions missing")? {
        req = req.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(text(a, "AttributeName")?)
                .attribute_type(ScalarAttributeType::from(text(a, "AttributeType")?))
                .build()?,
        );
    }
    req = req.set_key_schema(Some(key_schema(&props)?));
    for g in props.get("GlobalSecondaryIndexes").and_then(Value::as_sequence).into_iter().flatten() {
        let projection = g.get("Projection").and_then(|p| p.get("ProjectionType")).and_then(Value::as_str);
        req = req.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(text(g, "IndexName")?)
                .set_key_schema(Some(key_schema(g)?))
                .projection(
                    Projection::builder().projection_type(ProjectionType::from(projection.unwrap_or("ALL"))).build(),
                )
                .build()?,
        );
    }
    if let Some(view) = props.get("StreamSpecification").and_then(|s| s.get("StreamViewType")).and_then(Value::as_str) {
        req = req.stream_specification(
            aws_sdk_dynamodb::types::StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(aws_sdk_dynamodb::types::StreamViewType::from(view))
                .build()?,
        );
    }
    match req.send().await {
        Ok(_) => {}
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => {}
        Err(e) => {
            return Err(format!("create table {name}: {}", aws_sdk_dynamodb::error::DisplayErrorContext(e)).into());
        }
    }
    for _ in 0..100 {
        let d = client.describe_table().table_name(name).send().await?;
        if d.table.and_then(|t| t.table_status) == Some(TableStatus::Active) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if let Some(ttl) = props.get("TimeToLiveSpecification") {
        let spec = TimeToLiveSpecification::builder()
            .attribute_name(text(ttl, "AttributeName")?)
            .enabled(ttl.get("Enabled").and_then(Value::as_bool).unwrap_or(false))
            .build()?;
        // Setting the same TTL twice is refused by DynamoDB; that is fine here.
        let _ = client.update_time_to_live().table_name(name).time_to_live_specification(spec).send().await;
    }
    Ok(())
}

/// Creates every queue of the template, named `<prefix>-<LogicalId>`, dead-letter queues
/// first so redrive policies can point at them. Returns logical id → queue URL.
pub async fn ensure_queues(
    client: &aws_sdk_sqs::Client,
    prefix: &str,
    template: &Template,
) -> Result<HashMap<String, String>, BoxError> {
    let mut queues = template.resources("AWS::SQS::Queue");
    queues.sort_by_key(|(_, p)| p.get("RedrivePolicy").is_some());
    let mut urls = HashMap::new();
    let mut arns: HashMap<String, String> = HashMap::new();
    for (id, props) in queues {
        let mut req = client.create_queue().queue_name(format!("{prefix}-{id}"));
        for (key, attr) in [
            ("VisibilityTimeout", QueueAttributeName::VisibilityTimeout),
            ("MessageRetentionPeriod", QueueAttributeName::MessageRetentionPeriod),
        ] {
            if let Some(v) = props.get(key).and_then(Value::as_u64) {
                req = req.attributes(attr, v.to_string());
            }
        }
        if let Some(rp) = props.get("RedrivePolicy") {
            let target =
                dead_letter_target(rp).ok_or_else(|| format!("{id}: RedrivePolicy needs !GetAtt <Queue>.Arn"))?;
            let arn = arns.get(&target).ok_or_else(|| format!("{id}: unknown dead-letter queue {target}"))?;
            let max = rp.get("maxReceiveCount").and_then(Value::as_u64).unwrap_or(5);
            let policy = serde_json::json!({ "deadLetterTargetArn": arn, "maxReceiveCount": max });
            req = req.attributes(QueueAttributeName::RedrivePolicy, policy.to_string());
        }
        let url = req
            .send()
            .await
            .map_err(|e| format!("create queue {id}: {}", aws_sdk_sqs::error::DisplayErrorContext(e)))?
            .queue_url
            .ok_or("create queue returned no URL")?;
        let attrs =
            client.get_queue_attributes().queue_url(&url).attribute_names(QueueAttributeName::QueueArn).send().await?;
        if let Some(arn) = attrs.attributes.and_then(|mut a| a.remove(&QueueAttributeName::QueueArn)) {
            arns.insert(id.clone(), arn);
        }
        urls.insert(id, url);
    }
    Ok(urls)
}

/// Creates every event bus of the template, named `<prefix>-<LogicalId>`. Returns logical id →
/// bus name.
pub async fn ensure_event_buses(
    client: &aws_sdk_eventbridge::Client,
    prefix: &str,
    template: &Template,
) -> Result<HashMap<String, String>, BoxError> {
    let mut names = HashMap::new();
    for (id, _) in template.resources("AWS::Events::EventBus") {
        let name = format!("{prefix}-{id}");
        match client.create_event_bus().name(&name).send().await {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_already_exists_exception()) => {}
            Err(e) => {
                return Err(
                    format!("create event bus {id}: {}", aws_sdk_eventbridge::error::DisplayErrorContext(e)).into()
                );
            }
        }
        names.insert(id, name);
    }
    Ok(names)
}

/// Locally, a rule copies every campaign event of `bus` to the queue `<bus>-tap`, where the
/// tests and developers read them. Returns the queue's URL.
pub async fn ensure_event_tap(
    events: &aws_sdk_eventbridge::Client,
    sqs: &aws_sdk_sqs::Client,
    bus: &str,
) -> Result<String, BoxError> {
    let url = sqs.create_queue().queue_name(format!("{bus}-tap")).send().await?.queue_url.ok_or("no queue URL")?;
    let attrs = sqs.get_queue_attributes().queue_url(&url).attribute_names(QueueAttributeName::QueueArn).send().await?;
    let arn = attrs.attributes.and_then(|mut a| a.remove(&QueueAttributeName::QueueArn)).ok_or("no queue ARN")?;
    let pattern = serde_json::json!({ "source": [shared::domain::events::SOURCE] }).to_string();
    events.put_rule().name("tap").event_bus_name(bus).event_pattern(pattern).send().await?;
    let target = aws_sdk_eventbridge::types::Target::builder().id("tap-queue").arn(arn).build()?;
    events.put_targets().rule("tap").event_bus_name(bus).targets(target).send().await?;
    Ok(url)
}

/// Creates every schedule group of the template that does not exist yet, named
/// `<prefix>-<LogicalId>`. Returns logical id → group name. (The emulator replaces an existing
/// group, schedules and all, when asked to create it again: hence the look first.)
pub async fn ensure_schedule_groups(
    client: &aws_sdk_scheduler::Client,
    prefix: &str,
    template: &Template,
) -> Result<HashMap<String, String>, BoxError> {
    let mut groups = HashMap::new();
    for (id, _) in template.resources("AWS::Scheduler::ScheduleGroup") {
        let name = format!("{prefix}-{id}");
        match client.get_schedule_group().name(&name).send().await {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => {
                client.create_schedule_group().name(&name).send().await.map_err(|e| {
                    format!("create schedule group {id}: {}", aws_sdk_scheduler::error::DisplayErrorContext(e))
                })?;
            }
            Err(e) => {
                return Err(
                    format!("read schedule group {id}: {}", aws_sdk_scheduler::error::DisplayErrorContext(e)).into()
                );
            }
        }
        groups.insert(id, name);
    }
    Ok(groups)
}

/// Creates the upload bucket `name` unless it exists, with the template's notice of created
/// objects under `uploads/` going to the queue `queue_arn` (the emulator sends S3's event
/// messages to SQS as AWS does).
pub async fn ensure_upload_bucket(
    client: &aws_sdk_s3::Client,
    name: &str,
    queue_arn: &str,
    template: &Template,
) -> Result<(), BoxError> {
    use aws_sdk_s3::types::{
        Event, FilterRule, FilterRuleName, NotificationConfiguration, NotificationConfigurationFilter,
        QueueConfiguration, S3KeyFilter,
    };
    let props = template
        .resources("AWS::S3::Bucket")
        .into_iter()
        .find(|(id, _)| id == "UploadBucket")
        .map(|(_, p)| p)
        .ok_or("template.yaml has no AWS::S3::Bucket named UploadBucket")?;
    let s3_error = |what: &str, e: String| -> BoxError { format!("{what} {name}: {e}").into() };
    if client.head_bucket().bucket(name).send().await.is_err() {
        client
            .create_bucket()
            .bucket(name)
            .send()
            .await
            .map_err(|e| s3_error("create bucket", aws_sdk_s3::error::DisplayErrorContext(e).to_string()))?;
    }
    let mut config = NotificationConfiguration::builder();
    let queues = props["NotificationConfiguration"]["QueueConfigurations"].as_sequence().cloned().unwrap_or_default();
    for q in queues {
        let mut filter = S3KeyFilter::builder();
        for rule in q["Filter"]["S3Key"]["Rules"].as_sequence().into_iter().flatten() {
            filter = filter.filter_rules(
                FilterRule::builder()
                    .name(FilterRuleName::from(text(rule, "Name")?.to_ascii_lowercase().as_str()))
                    .value(text(rule, "Value")?)
                    .build(),
            );
        }
        config = config.queue_configurations(
            QueueConfiguration::builder()
                .queue_arn(queue_arn)
                .events(Event::from(text(&q, "Event")?))
                .filter(NotificationConfigurationFilter::builder().key(filter.build()).build())
                .build()?,
        );
    }
    client
        .put_bucket_notification_configuration()
        .bucket(name)
        .notification_configuration(config.build())
        .send()
        .await
        .map_err(|e| s3_error("notification of", aws_sdk_s3::error::DisplayErrorContext(e).to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_streams_its_changes_to_the_tally_function_within_its_counting_lag() {
        let t = Template::load(&Template::default_path()).unwrap();
        let table = t.table().unwrap();
        assert_eq!(table["StreamSpecification"]["StreamViewType"].as_str(), Some("NEW_AND_OLD_IMAGES"));
        // The dispatcher reckons with this much delay before an outcome is counted.
        assert_eq!(t.batching_window("TallyFunction"), Some(shared::domain::sending::COUNTING_LAG));
    }

    #[test]
    fn the_template_declares_the_table_and_queues_the_code_uses() {
        let t = Template::load(&Template::default_path()).unwrap();
        let table = t.table().unwrap();
        let indexes: Vec<&str> = table["GlobalSecondaryIndexes"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|g| g["IndexName"].as_str().unwrap())
            .collect();
        assert_eq!(indexes, ["GSI1", "GSI2", "GSI3"]);
        let mut queues: Vec<String> = t.resources("AWS::SQS::Queue").into_iter().map(|(id, _)| id).collect();
        queues.sort();
        assert_eq!(
            queues,
            [
                "DispatchDeadLetterQueue",
                "DispatchQueue",
                "ImportDeadLetterQueue",
                "ImportQueue",
                "JobDeadLetterQueue",
                "JobQueue",
                "ScheduleDeadLetterQueue",
                "SendDeadLetterQueue",
                "SendQueue",
                "StatusDeadLetterQueue",
                "StatusQueue"
            ]
        );
        let groups: Vec<String> = t.resources("AWS::Scheduler::ScheduleGroup").into_iter().map(|(id, _)| id).collect();
        assert_eq!(groups, ["ScheduleGroup"]);
    }

    #[test]
    fn every_dead_letter_queue_the_sender_the_status_backlog_and_the_webhook_signature_have_an_alarm() {
        let t = Template::load(&Template::default_path()).unwrap();
        let alarms: Vec<Value> = t.resources("AWS::CloudWatch::Alarm").into_iter().map(|(_, p)| p).collect();
        let watches = |metric: &str, target: &str| {
            alarms.iter().any(|a| {
                let dims = serde_yaml::to_string(&a["Dimensions"]).unwrap_or_default();
                a["MetricName"].as_str() == Some(metric) && dims.contains(target) && a["AlarmDescription"].is_string()
            })
        };
        let queues: Vec<String> = t.resources("AWS::SQS::Queue").into_iter().map(|(id, _)| id).collect();
        let dead_letter_queues: Vec<&String> = queues.iter().filter(|q| q.ends_with("DeadLetterQueue")).collect();
        assert_eq!(dead_letter_queues.len(), 6);
        for q in dead_letter_queues {
            assert!(watches("ApproximateNumberOfMessagesVisible", &format!("{q}.QueueName")), "no alarm on {q}");
        }
        assert!(watches("Errors", "SenderFunction") && watches("Throttles", "SenderFunction"));
        assert!(watches("ApproximateAgeOfOldestMessage", "StatusQueue.QueueName"), "no alarm on the status backlog");
        // The signature alarm counts the very log line the webhook writes.
        let filters = t.resources("AWS::Logs::MetricFilter");
        let pattern = filters.iter().find_map(|(_, p)| p["FilterPattern"].as_str()).unwrap_or_default().to_string();
        assert!(pattern.contains(&format!("$.fields.event = \"{}\"", shared::http::webhook::SIGNATURE_REJECTED)));
        assert!(alarms.iter().any(|a| a["MetricName"] == "SignatureRejected"));
    }

    #[test]
    fn every_route_is_its_functions_http_event_behind_the_authorizer_unless_public_and_the_rest_is_unrouted() {
        let t = Template::load(&Template::default_path()).unwrap();
        let (mut declared, mut default_routes) = (Vec::new(), Vec::new());
        for (_, r) in t.resources.iter().filter(|(_, r)| r["Type"] == "AWS::Serverless::Function") {
            // The function the binary serves as this resource (shared/tests/template.rs checks
            // that every function is deployed once).
            let binary = r["Properties"]["Handler"].as_str().unwrap().to_string();
            for (_, e) in r["Properties"]["Events"].as_mapping().into_iter().flatten() {
                if e["Type"] == "HttpApi" {
                    let p = &e["Properties"];
                    let public = p["Auth"]["Authorizer"] == "NONE";
                    let (method, path) = (p["Method"].as_str().unwrap(), p["Path"].as_str().unwrap());
                    if path == "$default" {
                        default_routes.push(format!("{binary} {method} public={public}"));
                    } else {
                        declared.push(format!("{binary} {method} {path} public={public}"));
                    }
                }
            }
        }
        let mut routes: Vec<String> = shared::http::ROUTES
            .iter()
            .map(|r| format!("{} {} {} public={}", r.name, r.method, r.path, r.public))
            .collect();
        declared.sort();
        routes.sort();
        assert_eq!(declared, routes);
        // What no route takes goes to one function answering 404/405 in the envelope.
        assert_eq!(default_routes, ["unrouted ANY public=true"]);

        // The authorizer: every route by default, either header (no identity source), no cache.
        let api = &t.resources("AWS::Serverless::HttpApi")[0].1["Auth"];
        let name = api["DefaultAuthorizer"].as_str().unwrap();
        let authorizer = &api["Authorizers"][name];
        assert_eq!(authorizer["AuthorizerPayloadFormatVersion"], "2.0");
        assert_eq!(authorizer["EnableSimpleResponses"], true);
        assert_eq!(authorizer["Identity"]["ReauthorizeEvery"], 0);
        assert!(authorizer["Identity"].get("Headers").is_none());
    }
}
