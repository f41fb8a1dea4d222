//! Every limit on input, in one place: the "Limits on input" table of docs/api.md lists them, and the
//! OpenAPI contract (`docs/openapi.yaml`) carries them as `maxLength`, `maxItems`, `maximum`….
//! Lengths count characters (Unicode scalar values); sizes count bytes. A size over its limit is
//! answered 413, any other excess 422; both name the limit.

/// A request body: the Lambda invocation payload limit. Imports and the webhook take this much.
pub const MAX_BODY_BYTES: usize = 6 * 1024 * 1024;
/// The JSON body of a create or an update. The largest template Meta takes fits with room to
/// spare, and so every stored item stays well under DynamoDB's 400 KB.
pub const MAX_JSON_BODY_BYTES: usize = 256 * 1024;
/// Nesting of arrays and objects in a JSON body, below DynamoDB's 32 levels for what is stored.
pub const MAX_JSON_DEPTH: usize = 16;

/// Listings: the highest `page` and `limit`.
pub const MAX_PAGE: u32 = 100_000;
pub const MAX_PAGE_SIZE: u32 = 100;
/// Campaigns and recipients page by cursor (`next_cursor`) at any depth; by number only up to
/// this page (10,000 items deep at the largest `limit`: each skipped item costs read capacity).
pub const MAX_NUMBERED_PAGE: u32 = 100;

/// Accounts.
pub const ACCOUNT_NAME_CHARS: usize = 200;
/// `phone_number_id` and `business_account_id` (Meta's numeric ids).
pub const META_ID_CHARS: usize = 64;
pub const ACCESS_TOKEN_CHARS: usize = 4096;

/// Templates (the text limits are Meta's).
pub const TEMPLATE_NAME_CHARS: usize = 512;
pub const HEADER_TEXT_CHARS: usize = 60;
pub const BODY_TEXT_CHARS: usize = 1024;
pub const FOOTER_TEXT_CHARS: usize = 60;
pub const BUTTONS: usize = 10;
pub const BUTTON_TEXT_CHARS: usize = 25;
pub const BUTTON_URL_CHARS: usize = 2000;
pub const BUTTON_PHONE_CHARS: usize = 20;
/// One `example` (Meta's sample values) as JSON.
pub const EXAMPLE_BYTES: usize = 4096;
/// Placeholders of one template, and so entries of a campaign's `variable_mapping`.
pub const TEMPLATE_PARAMETERS: usize = 100;
/// A named placeholder (`{{first_name}}`).
pub const PLACEHOLDER_NAME_CHARS: usize = 64;

/// Campaigns.
pub const CAMPAIGN_NAME_CHARS: usize = 200;
/// A `variable_mapping` key (a parameter key such as `header.first_name`).
pub const MAPPING_KEY_CHARS: usize = 80;
/// A campaign's `header_media`: its link, a media id, a document's filename.
pub const MEDIA_LINK_CHARS: usize = 2000;
pub const MEDIA_ID_CHARS: usize = 128;
pub const MEDIA_FILENAME_CHARS: usize = 240;
/// A campaign's `header_location`: its name and its address.
pub const HEADER_LOCATION_TEXT_CHARS: usize = 1000;

/// Recipient fields: their names (CSV columns, JSON keys, `variable_mapping` values) and values.
pub const FIELD_NAME_CHARS: usize = 64;
pub const FIELD_VALUE_CHARS: usize = 1024;
/// Fields of one recipient, the phone number included (CSV columns, keys of a JSON recipient).
pub const FIELDS: usize = 50;
pub const PHONE_CHARS: usize = 40;
/// Rows of one import.
pub const IMPORT_ROWS: usize = 100_000;
/// An uploaded recipient file (`POST /recipients/uploads`): its size, its rows, and one row's
/// bytes (a row longer than this is an unbalanced quote or bracket, not data: 50 fields of
/// 1,024 characters fit).
pub const UPLOAD_BYTES: u64 = 1024 * 1024 * 1024;
pub const UPLOAD_ROWS: u64 = 5_000_000;
pub const MAX_ROW_BYTES: usize = 1024 * 1024;
/// How long an upload's presigned URL is valid (seconds).
pub const UPLOAD_URL_SECONDS: u64 = 3600;
/// Rejected rows listed in an import's answer (the rest are only counted).
pub const REPORTED_ERRORS: usize = 100;

/// The deepest nesting of arrays and objects in a JSON text, read without parsing it (so a
/// body nested too deep for the parser is measured too). Brackets inside strings do not count.
pub fn json_depth(body: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in body {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Refuses a JSON body nested deeper than [`MAX_JSON_DEPTH`], with a message naming the limit.
pub fn check_depth(body: &[u8]) -> Result<(), String> {
    match json_depth(body) {
        depth if depth > MAX_JSON_DEPTH => Err(format!(
            "the JSON body is nested {depth} levels deep; the limit is {MAX_JSON_DEPTH} levels of arrays and objects"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_arrays_and_objects_outside_strings() {
        assert_eq!(json_depth(b"1"), 0);
        assert_eq!(json_depth(br#"{"a":[1,{"b":[]}]}"#), 4);
        assert_eq!(json_depth(br#"{"a":"[[[{{{\"[[["}"#), 1);
        assert_eq!(json_depth(br#"[[],[[]]]"#), 3);
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(json_depth(deep.as_bytes()), 10_000);
    }
}
