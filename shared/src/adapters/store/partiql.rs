//! Conditional single-item updates written many to a request without a transaction.
//!
//! A transaction bills two write units per item; the only batched write that takes a condition
//! per item and bills one is PartiQL's `BatchExecuteStatement` (25 statements a request, each
//! applied or refused on its own). The updates are built as for `UpdateItem` (expressions with
//! `#name` and `:value` placeholders) and turned into PartiQL here, so that one builder serves
//! both: `SET a = :v` → `SET "a" = ?`, `REMOVE a` → `REMOVE "a"`, the key → `WHERE "PK" = ? AND
//! "SK" = ?`, and the condition after it, with `attribute_not_exists(a)` → `"a" IS MISSING`.
//! A PartiQL `UPDATE` never creates an item: on a missing one it fails its condition.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, BatchStatementErrorCodeEnum, BatchStatementRequest, Update};

use super::{Db, StoreError, StoreResult, wait_before_retry};

/// Statements per `BatchExecuteStatement` (DynamoDB's limit).
pub const STATEMENTS_PER_BATCH: usize = 25;

/// Attempts of statements that met throttling or a concurrent transaction.
const ATTEMPTS: u32 = 8;

/// A fresh mark for a write that the counter of changes counts: the table's stream shows it on
/// the item's new image, different from the old image's (`usecases::tally`).
pub fn new_tally() -> String {
    let mut mark = uuid::Uuid::new_v4().simple().to_string();
    mark.truncate(16);
    mark
}

fn invalid(what: &str, expr: &str) -> StoreError {
    StoreError::Dynamo(format!("cannot write as PartiQL: {what} in `{expr}`"))
}

/// Splits an expression into words, placeholders, operators and parentheses.
fn tokens(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '(' | ')' | ',' | '=' => out.push(c.to_string()),
            '<' | '>' => match chars.peek() {
                Some('=') | Some('>') => out.push(format!("{c}{}", chars.next().unwrap_or_default())),
                _ => out.push(c.to_string()),
            },
            _ => {
                let mut word = c.to_string();
                while let Some(&n) = chars.peek() {
                    if n.is_alphanumeric() || matches!(n, '_' | '#' | ':' | '.' | '-') {
                        word.push(n);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push(word);
            }
        }
    }
    out
}

struct Render<'a> {
    names: Option<&'a HashMap<String, String>>,
    values: Option<&'a HashMap<String, AttributeValue>>,
    params: Vec<AttributeValue>,
}

impl Render<'_> {
    fn name(&self, word: &str) -> StoreResult<String> {
        let name = match word.strip_prefix('#') {
            Some(_) => self.names.and_then(|n| n.get(word)).ok_or_else(|| invalid("an unknown name", word))?,
            None => word,
        };
        Ok(format!("\"{name}\""))
    }

    fn value(&mut self, word: &str) -> StoreResult<&'static str> {
        let v = self.values.and_then(|v| v.get(word)).ok_or_else(|| invalid("an unknown value", word))?;
        self.params.push(v.clone());
        Ok("?")
    }

    fn operand(&mut self, word: &str) -> StoreResult<String> {
        if word.starts_with(':') { self.value(word).map(String::from) } else { self.name(word) }
    }

    /// `SET a = :v, b = :w REMOVE c` → ` SET "a" = ? SET "b" = ? REMOVE "c"`.
    fn update(&mut self, expr: &str) -> StoreResult<String> {
        let mut out = String::new();
        let mut clause = "";
        let words = tokens(expr);
        let mut i = 0;
        while i < words.len() {
            match words[i].as_str() {
                w @ ("SET" | "REMOVE") => clause = w,
                "," => {}
                w if clause == "SET" => {
                    let (Some(eq), Some(v)) = (words.get(i + 1), words.get(i + 2)) else {
                        return Err(invalid("an assignment", expr));
                    };
                    if eq != "=" || !v.starts_with(':') || words.get(i + 3).is_some_and(|n| n != "," && n != "REMOVE") {
                        return Err(invalid("an assignment other than `name = :value`", expr));
                    }
                    out.push_str(&format!(" SET {} = {}", self.name(w)?, self.value(v)?));
                    i += 2;
                }
                w if clause == "REMOVE" => out.push_str(&format!(" REMOVE {}", self.name(w)?)),
                _ => return Err(invalid("a clause other than SET or REMOVE", expr)),
            }
            i += 1;
        }
        Ok(out)
    }

    /// A condition expression with comparisons, `AND`, `OR`, parentheses and
    /// `attribute_exists` / `attribute_not_exists`.
    fn condition(&mut self, expr: &str) -> StoreResult<String> {
        let words = tokens(expr);
        let mut out: Vec<String> = Vec::new();
        let mut i = 0;
        while i < words.len() {
            let w = words[i].as_str();
            match w {
                "attribute_exists" | "attribute_not_exists" => {
                    let (Some(open), Some(name), Some(close)) = (words.get(i + 1), words.get(i + 2), words.get(i + 3))
                    else {
                        return Err(invalid("a function call", expr));
                    };
                    if open != "(" || close != ")" {
                        return Err(invalid("a function call", expr));
                    }
                    let missing = if w == "attribute_exists" { "IS NOT MISSING" } else { "IS MISSING" };
                    out.push(format!("{} {missing}", self.name(name)?));
                    i += 3;
                }
                "AND" | "OR" | "NOT" | "(" | ")" | "=" | "<>" | "<" | "<=" | ">" | ">=" => out.push(w.to_string()),
                w if w == "," || words.get(i + 1).is_some_and(|n| n == "(") => {
                    return Err(invalid("a function other than attribute_exists", expr));
                }
                w => out.push(self.operand(w)?),
            }
            i += 1;
        }
        Ok(out.join(" "))
    }
}

/// The PartiQL statement of an update built for `UpdateItem` (key `PK`, `SK`).
pub fn statement(u: &Update) -> StoreResult<BatchStatementRequest> {
    let mut r =
        Render { names: u.expression_attribute_names(), values: u.expression_attribute_values(), params: Vec::new() };
    let mut text = format!("UPDATE \"{}\"", u.table_name());
    text.push_str(&r.update(u.update_expression())?);
    text.push_str(" WHERE \"PK\" = ? AND \"SK\" = ?");
    for key in ["PK", "SK"] {
        let v = u.key().get(key).ok_or_else(|| invalid("a key without", key))?;
        r.params.push(v.clone());
    }
    if let Some(c) = u.condition_expression() {
        text.push_str(&format!(" AND ({})", r.condition(c)?));
    }
    BatchStatementRequest::builder()
        .statement(text)
        .set_parameters(Some(r.params))
        .build()
        .map_err(|e| StoreError::Dynamo(e.to_string()))
}

impl Db {
    /// Applies each update on its own condition, up to 25 to a request, without a transaction
    /// (one write unit an item). Returns, per update, whether it was written (`false`: its
    /// condition failed, the item missing included). Statements throttled or meeting a
    /// transaction are tried again after a back-off.
    pub async fn update_each(&self, updates: &[Update]) -> StoreResult<Vec<bool>> {
        let statements = updates.iter().map(statement).collect::<StoreResult<Vec<_>>>()?;
        let mut written = vec![false; updates.len()];
        for (c, chunk) in statements.chunks(STATEMENTS_PER_BATCH).enumerate() {
            let mut todo: Vec<usize> = (0..chunk.len()).collect();
            let mut attempt = 0;
            while !todo.is_empty() {
                let batch: Vec<BatchStatementRequest> = todo.iter().map(|i| chunk[*i].clone()).collect();
                let out = self.client.batch_execute_statement().set_statements(Some(batch)).send().await?;
                let mut again = Vec::new();
                for (i, response) in todo.iter().zip(out.responses()) {
                    match response.error().and_then(|e| e.code()) {
                        None => written[c * STATEMENTS_PER_BATCH + i] = true,
                        Some(BatchStatementErrorCodeEnum::ConditionalCheckFailed) => {}
                        Some(
                            BatchStatementErrorCodeEnum::TransactionConflict
                            | BatchStatementErrorCodeEnum::ThrottlingError
                            | BatchStatementErrorCodeEnum::ProvisionedThroughputExceeded
                            | BatchStatementErrorCodeEnum::RequestLimitExceeded
                            | BatchStatementErrorCodeEnum::InternalServerError,
                        ) if attempt + 1 < ATTEMPTS => again.push(*i),
                        Some(code) => {
                            let message = response.error().and_then(|e| e.message()).unwrap_or_default();
                            return Err(StoreError::Dynamo(format!("BatchExecuteStatement: {code}: {message}")));
                        }
                    }
                }
                todo = again;
                if !todo.is_empty() {
                    attempt += 1;
                    wait_before_retry(attempt).await;
                }
            }
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> AttributeValue {
        AttributeValue::S(v.into())
    }

    #[test]
    fn an_update_becomes_a_statement_with_its_values_in_order() {
        let u = Update::builder()
            .table_name("t")
            .key("PK", s("CAMPAIGN#c#1"))
            .key("SK", s("R#+1"))
            .update_expression("SET #status = :to, wamid = :w REMOVE claim_id, GSI2PK")
            .condition_expression(
                "#status = :held AND claim_id = :job AND (attribute_not_exists(retry_at) OR retry_at <= :now)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":to", s("sent"))
            .expression_attribute_values(":w", s("wamid.1"))
            .expression_attribute_values(":held", s("sending"))
            .expression_attribute_values(":job", s("j"))
            .expression_attribute_values(":now", AttributeValue::N("5".into()))
            .build()
            .unwrap();
        let st = statement(&u).unwrap();
        assert_eq!(
            st.statement(),
            "UPDATE \"t\" SET \"status\" = ? SET \"wamid\" = ? REMOVE \"claim_id\" REMOVE \"GSI2PK\" \
             WHERE \"PK\" = ? AND \"SK\" = ? AND (\"status\" = ? AND \"claim_id\" = ? AND ( \"retry_at\" IS MISSING \
             OR \"retry_at\" <= ? ))"
        );
        let p: Vec<_> = st.parameters().iter().map(|v| v.as_s().cloned().or(v.as_n().cloned()).unwrap()).collect();
        assert_eq!(p, ["sent", "wamid.1", "CAMPAIGN#c#1", "R#+1", "sending", "j", "5"]);
    }

    #[test]
    fn what_partiql_here_cannot_say_is_an_error() {
        let base = || Update::builder().table_name("t").key("PK", s("p")).key("SK", s("s"));
        let add = base().update_expression("SET n = n + :one").expression_attribute_values(":one", s("1"));
        assert!(statement(&add.build().unwrap()).is_err());
        let adds = base().update_expression("ADD n :one").expression_attribute_values(":one", s("1"));
        assert!(statement(&adds.build().unwrap()).is_err());
        let f = base()
            .update_expression("SET a = :v")
            .condition_expression("begins_with(a, :v)")
            .expression_attribute_values(":v", s("x"));
        assert!(statement(&f.build().unwrap()).is_err());
        let unknown = base().update_expression("SET a = :v");
        assert!(statement(&unknown.build().unwrap()).is_err());
    }
}
