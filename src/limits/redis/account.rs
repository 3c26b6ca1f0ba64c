//! Where an admitted request's usage is charged in Redis: its tokens into the key id's token
//! bucket, its cost into the spend counters of the current UTC day and month.
//!
//! Apart from the check because it happens apart: after the response, when its usage arrives,
//! possibly after the request's slot was released. The charge is the script's second, small
//! operation, spawned so that the response never waits for it; one that fails is lost
//! (logged at debug).

use std::sync::Arc;
use std::time::SystemTime;

use futures_util::future::BoxFuture;

use super::connection::Connection;
use super::keys::KeyNames;
use crate::limits::spend::to_micros;
use crate::limits::spend::{from_micros, unix_secs, Period};
use crate::limits::tokens::{ChargeUsage, Spent};

/// One key id's account.
#[derive(Debug)]
pub(super) struct Account {
    connection: Arc<Connection>,
    names: Arc<KeyNames>,
    tokens_per_minute: u64,
}

impl Account {
    pub(super) fn new(
        connection: Arc<Connection>,
        names: Arc<KeyNames>,
        tokens_per_minute: u64,
    ) -> Self {
        Self {
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
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                tokens,
                micros,
                "usage not charged: no runtime to reach Redis"
            );
            return;
        };
        let (connection, names, tpm) = (
            Arc::clone(&self.connection),
            Arc::clone(&self.names),
            self.tokens_per_minute,
        );
        runtime.spawn(async move { charge(&connection, &names, tokens, tpm, micros).await });
    }

    /// The counters of this replica's current day and month (the script names them by the
    /// server's clock; the two agree but for the seconds around midnight UTC).
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

async fn charge(
    connection: &Connection,
    names: &KeyNames,
    tokens: u64,
    tokens_per_minute: u64,
    micros: u64,
) {
    let mut invocation = connection.invocation();
    invocation
        .key(&names.tokens)
        .key(&names.spend)
        .arg("charge")
        .arg(tokens)
        .arg(tokens_per_minute)
        .arg(micros);
    if let Err(e) = connection.run::<i64>(&invocation).await {
        tracing::debug!(error = %e, tokens, micros, "usage not charged: the limits backend failed");
    }
}
