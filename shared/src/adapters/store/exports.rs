//! Exports of a campaign's results: one item each under the campaign's key
//! (`CAMPAIGN#<id>` / `EXPORT#<export id>`), rewritten at every checkpoint, and deleted with
//! the campaign.

use super::keys::*;
use super::{Db, StoreResult};
use crate::domain::export::{Export, ExportStatus};

impl Db {
    /// Stores a new export, or an export's progress (while it is still `exporting`: a repeated
    /// job never writes over a finished one).
    pub async fn save_export(&self, e: &Export) -> StoreResult<()> {
        let item = self.item(e, vec![("PK", campaign_pk(&e.campaign_id)), ("SK", export_sk(&e.export_id))])?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(PK) OR #status = :exporting")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":exporting", super::s(ExportStatus::Exporting.as_str()))
            .send()
            .await?;
        Ok(())
    }

    pub async fn get_export(&self, campaign_id: &str, export_id: &str) -> StoreResult<Option<Export>> {
        self.get(campaign_pk(campaign_id), &export_sk(export_id)).await
    }
}
