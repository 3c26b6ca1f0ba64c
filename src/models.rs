//! Learning the upstream's model ids, so metric labels name real models and nothing else.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::metrics::Metrics;
use crate::state::Snapshot;

/// The `User-Agent` of requests orgate makes on its own behalf.
pub const USER_AGENT: &str = concat!("orgate/", env!("CARGO_PKG_VERSION"));

/// Fetches `GET /models` once at start-up (retrying for a while: the upstream may not be
/// reachable yet) and then hourly, and teaches `metrics` the ids it lists.
pub async fn learn_upstream_models(snapshot: Arc<Snapshot>, metrics: Arc<Metrics>) {
    let mut delay = Duration::from_secs(1);
    loop {
        match fetch_model_ids(&snapshot, &metrics).await {
            Ok(ids) => {
                tracing::debug!(count = ids.len(), "learnt the upstream's model ids");
                metrics.learn_models(ids);
                delay = Duration::from_secs(3600);
            }
            Err(why) => {
                tracing::debug!(%why, "could not list the upstream's models");
                delay = (delay * 2).min(Duration::from_secs(300));
            }
        }
        tokio::time::sleep(delay).await;
    }
}

async fn fetch_model_ids(snapshot: &Snapshot, metrics: &Metrics) -> Result<Vec<String>, String> {
    #[derive(Deserialize)]
    struct Models {
        data: Vec<Model>,
    }
    #[derive(Deserialize)]
    struct Model {
        id: String,
    }
    let upstream = &snapshot.upstream;
    let answer = upstream
        .send(metrics, || {
            upstream.own_get("/models", None, &snapshot.default_upstream_auth)
        })
        .await
        .map_err(|e| e.to_string())?;
    if !answer.response.status().is_success() {
        return Err(format!("status {}", answer.response.status()));
    }
    let body = answer.response.bytes().await.map_err(|e| e.to_string())?;
    let models: Models = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    Ok(models.data.into_iter().map(|m| m.id).collect())
}
