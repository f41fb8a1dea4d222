//! Key and index values of every entity; `docs/dynamodb.md` lists the access patterns they serve.

pub const ACCOUNT_SK: &str = "ACCOUNT";
/// Where earlier versions kept an account's access token (now in Secrets Manager): only ever
/// deleted.
pub const LEGACY_TOKEN_SK: &str = "TOKEN";
/// The account's pace: the next free send slot, shared by every sender.
pub const PACE_SK: &str = "PACE";
pub const TEMPLATE_SK: &str = "TEMPLATE";
pub const CAMPAIGN_SK: &str = "#CAMPAIGN";
pub const RECIPIENT_PREFIX: &str = "R#";
pub const API_KEY_SK: &str = "APIKEY";
pub const API_KEY_ID_SK: &str = "APIKEYID";

pub fn account_pk(id: &str) -> String {
    format!("ACCOUNT#{id}")
}
pub fn template_pk(id: &str) -> String {
    format!("TEMPLATE#{id}")
}
pub fn campaign_pk(id: &str) -> String {
    format!("CAMPAIGN#{id}")
}
/// An API key, under the SHA-256 (hex) of the key.
pub fn api_key_pk(hash: &str) -> String {
    format!("APIKEY#{hash}")
}
/// An API key's id, pointing to its hash (for revoking by id).
pub fn api_key_id_pk(id: &str) -> String {
    format!("APIKEYID#{id}")
}
/// The partition of a campaign's recipients in `shard` (none: the campaign's own partition, as
/// for campaigns created before recipients were sharded).
pub fn recipient_pk(campaign_id: &str, shard: Option<u32>) -> String {
    match shard {
        Some(k) => format!("CAMPAIGN#{campaign_id}#{k}"),
        None => campaign_pk(campaign_id),
    }
}
/// Every partition that holds recipients of a campaign of `shards` shards, in shard order.
pub fn recipient_shards(shards: u32) -> Vec<Option<u32>> {
    if shards == 0 { vec![None] } else { (0..shards).map(Some).collect() }
}
/// The campaign id in a recipient's partition key.
pub fn campaign_of_recipient_pk(pk: &str) -> Option<(&str, Option<u32>)> {
    let rest = pk.strip_prefix("CAMPAIGN#")?;
    match rest.split_once('#') {
        Some((id, shard)) => Some((id, Some(shard.parse().ok()?))),
        None => Some((rest, None)),
    }
}
pub fn recipient_sk(phone: &str) -> String {
    format!("{RECIPIENT_PREFIX}{phone}")
}
/// Guards the uniqueness of a template name and language within an account.
pub fn template_name_sk(name: &str, language: &str) -> String {
    format!("TEMPLATE_NAME#{name}#{language}")
}
/// An export of a campaign's results (under the campaign's key).
pub fn export_sk(export_id: &str) -> String {
    format!("EXPORT#{export_id}")
}
/// A number that stopped marketing messages from the account (under the account's key).
pub fn opt_out_sk(phone: &str) -> String {
    format!("OPTOUT#{phone}")
}
pub fn created_sk(created_at: &str, id: &str) -> String {
    format!("{created_at}#{id}")
}
pub const ALL_ACCOUNTS: &str = "ACCOUNTS";
pub const ALL_TEMPLATES: &str = "TEMPLATES";
pub const ALL_CAMPAIGNS: &str = "CAMPAIGNS";
pub const ALL_API_KEYS: &str = "APIKEYS";
pub fn account_templates(account_id: &str) -> String {
    format!("ACCOUNT#{account_id}#TEMPLATES")
}
pub fn account_campaigns(account_id: &str) -> String {
    format!("ACCOUNT#{account_id}#CAMPAIGNS")
}
/// The GSI3 partition of deleted campaigns whose items are being removed.
pub const DELETING_CAMPAIGNS: &str = "CAMPAIGNS#deleting";
pub fn campaigns_in_status(status: &str) -> String {
    format!("CAMPAIGNS#{status}")
}
/// The status index partition of a campaign's recipients in `status` and `shard`.
pub fn recipients_in_status(campaign_id: &str, status: &str, shard: Option<u32>) -> String {
    match shard {
        Some(k) => format!("CAMPAIGN#{campaign_id}#{status}#{k}"),
        None => format!("CAMPAIGN#{campaign_id}#{status}"),
    }
}
pub fn wamid_pk(wamid: &str) -> String {
    format!("WAMID#{wamid}")
}
/// A campaign's counter items (see `super::counters`).
pub const COUNTER_PREFIX: &str = "#COUNT#";
pub fn counter_sk(shard: u32) -> String {
    format!("{COUNTER_PREFIX}{shard}")
}
/// A request made once under an `Idempotency-Key` (the key as the client sent it), with the
/// route's method and path as its sort key.
pub fn idempotency_pk(key: &str) -> String {
    format!("IDEMPOTENCY#{key}")
}
/// A business portfolio's people reached per hour (the tier's 24-hour cap).
pub fn business_pk(business_account_id: &str) -> String {
    format!("BUSINESS#{business_account_id}")
}
pub const LIMIT_SK: &str = "LIMIT";
/// A person a business portfolio reached, and the hour they were last counted in.
pub fn contact_pk(business_account_id: &str, phone: &str) -> String {
    format!("CONTACT#{business_account_id}#{phone}")
}
pub const CONTACT_SK: &str = "CONTACT";
