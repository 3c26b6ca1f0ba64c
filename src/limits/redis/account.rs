//! Where an admitted request's usage is charged in Redis: its tokens into the key id's token
//! bucket, its cost into the spend counters of the current UTC day and month.
//!
//! Apart from the check because it happens apart: after the response, when its usage arrives,
//! possibly after the request's slot was released. The charge goes into the `ledger`, which
//! applies it in Redis without the response waiting, and keeps it while Redis is away.

use std::sync::Arc;
use std::time::SystemTime;

use futures_util::future::BoxFuture;

use super::connection::Connection;
use super::keys::KeyNames;
use super::ledger::Ledger;
use crate::limits::spend::to_micros;
use crate::limits::spend::{from_micros, unix_secs, Period};
use crate::limits::tokens::{ChargeUsage, Spent};

/// One key id's account.
#[derive(Debug)]
pub(super) struct Account {
    /// Shared with every charge queued for the ledger (no copy per charge).
    id: Arc<str>,
    ledger: Arc<Ledger>,
    /// For `spent`: the counters are read straight from Redis.
    connection: Arc<Connection>,
    names: Arc<KeyNames>,
    tokens_per_minute: u64,
}

impl Account {
    pub(super) fn new(
        id: &str,
        ledger: Arc<Ledger>,
        connection: Arc<Connection>,
        names: Arc<KeyNames>,
        tokens_per_minute: u64,
    ) -> Self {
        Self {
            id: Arc::from(id),
            ledger,
            connection,
            names,
            tokens_per_minute,
        }
    }
}

impl ChargeUsage for Account {
    fn charge(&self, tokens: u64, cost_usd: f64) {
        let micros = to_micros(cost_usd);
        let tokens = if self.tokens_per_minute > 0 {
            tokens
        } else {
            0
        };
        if tokens == 0 && micros == 0 {
            return;
        }
        self.ledger
            .charge(&self.id, tokens, self.tokens_per_minute, micros);
    }

    /// The counters of this replica's current day and month (charges are filed by the clock of
    /// the replica that made them: replicas agree but for skew around midnight UTC). Charges
    /// still in a journal are not in them yet.
    fn spent(&self) -> BoxFuture<'_, Option<Spent>> {
        Box::pin(async move {
            let secs = unix_secs(SystemTime::now());
            let day = format!("{}:day:{}", self.names.spend, Period::Day.index(secs));
            let month = format!("{}:month:{}", self.names.spend, Period::Month.index(secs));
            let read = self
                .connection
                .guarded(async {
                    let mut manager = self.connection.manager().await?;
                    redis::cmd("MGET")
                        .arg(&day)
                        .arg(&month)
                        .query_async::<(Option<u64>, Option<u64>)>(&mut manager)
                        .await
                })
                .await;
            let (day, month) = read.ok()?;
            Some(Spent {
                day_usd: from_micros(day.unwrap_or(0)),
                month_usd: from_micros(month.unwrap_or(0)),
            })
        })
    }
}
