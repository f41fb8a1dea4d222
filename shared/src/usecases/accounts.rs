//! WhatsApp Business numbers the campaigns send from. Each account's access token goes to its
//! own Secrets Manager secret ([`crate::adapters::secrets::AccountTokens`]) and never back out.

use crate::adapters::secrets::SecretsError;
use crate::adapters::store::{AccountWrite, StoreError};
use crate::app::App;
use crate::domain::account::{Account, AccountChanges, NewAccount};
use crate::domain::campaign::CampaignStatus;
use crate::domain::id::Id;
use crate::domain::now;
use crate::error::{AppError, AppResult};
use crate::usecases::load_by_id;

pub async fn load(app: &App, id: &Id) -> AppResult<Account> {
    load_by_id(app, "account", id, app.db.get_account(id)).await
}

/// Stores a new account: the secret first, so that an account that exists always has its token.
pub async fn create(app: &App, new: NewAccount) -> AppResult<Account> {
    let (account, token) = new.validate(Id::generate(), &now())?;
    app.tokens.create(&account.id, &token).await.map_err(token_err("could not store the access token"))?;
    if let Err(e) = app.db.save_account(&account, AccountWrite::Create).await {
        forget_token(app, &account.id).await;
        return Err(app.store_err("could not store the account")(e));
    }
    Ok(account)
}

/// Changes an account; a new token replaces the secret's value first.
pub async fn update(app: &App, id: &Id, changes: AccountChanges) -> AppResult<Account> {
    let mut account = load(app, id).await?;
    let token = changes.apply(&mut account, &now())?;
    if let Some(t) = &token {
        app.tokens.put(&account.id, t).await.map_err(token_err("could not store the access token"))?;
    }
    match app.db.save_account(&account, AccountWrite::Update { drop_legacy_token: token.is_some() }).await {
        Ok(()) => Ok(account),
        Err(StoreError::ConditionFailed) => {
            // Deleted meanwhile: its secret goes too.
            if token.is_some() {
                forget_token(app, &account.id).await;
            }
            Err(AppError::not_found(format!("account {} not found", account.id)))
        }
        Err(e) => Err(app.store_err("could not store the account")(e)),
    }
}

/// Deletes an account with no campaign sending or scheduled. The token first: a delete that
/// fails halfway leaves an account without a token (its campaigns pause), never a token
/// without an account; repeating the delete finishes it.
pub async fn delete(app: &App, id: &Id) -> AppResult<Account> {
    let account = load(app, id).await?;
    let busy = [CampaignStatus::Sending, CampaignStatus::Scheduled];
    let active = app
        .db
        .count_account_campaigns(&account.id, &busy)
        .await
        .map_err(app.store_err("could not read the account's campaigns"))?;
    if active > 0 {
        return Err(AppError::conflict(format!(
            "account {} has {active} campaign(s) sending or scheduled; pause or cancel them first",
            account.id
        )));
    }
    app.tokens.delete(&account.id).await.map_err(token_err("could not delete the access token"))?;
    app.db.delete_account(&account.id).await.map_err(app.store_err("could not delete the account"))?;
    Ok(account)
}

fn token_err(context: &str) -> impl Fn(SecretsError) -> AppError + '_ {
    move |e| AppError::unavailable(context, e)
}

/// Deletes the secret of an account that was not written after all.
async fn forget_token(app: &App, account_id: &str) {
    if let Err(e) = app.tokens.delete(account_id).await {
        tracing::error!(account = %account_id, error = %e, "the secret of an account that was not stored is left behind");
    }
}
