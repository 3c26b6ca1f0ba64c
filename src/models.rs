//! Learning the upstream's model ids, so metric labels name real models and nothing else.

use std::time::Duration;

use serde::Deserialize;

use crate::state::{AppState, Snapshot};
use crate::upstream::Upstream;

/// How often the list is fetched again once it has been learnt.
const REFRESH: Duration = Duration::from_secs(3600);

/// Fetches `GET /models` at start-up (retrying with a growing pause: the upstream may not be
/// reachable yet), then hourly and after every reload (which may point at another upstream),
/// each time from the snapshot current then, and teaches the metrics the ids it lists.
pub(crate) async fn learn_upstream_models(state: AppState) {
    let mut delay = Duration::from_secs(1);
    loop {
        match fetch_model_ids(&state.snapshot(), &state).await {
            Ok(ids) => {
                tracing::debug!(count = ids.len(), "learnt the upstream's model ids");
                state.metrics().learn_models(ids);
                delay = REFRESH;
            }
            Err(why) => {
                tracing::debug!(%why, "could not list the upstream's models");
                delay = (delay * 2).min(Duration::from_secs(300));
            }
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = state.reloaded() => delay = Duration::from_secs(1),
        }
    }
}

async fn fetch_model_ids(snapshot: &Snapshot, state: &AppState) -> Result<Vec<String>, String> {
    #[derive(Deserialize)]
    struct Models {
        data: Vec<Model>,
    }
    #[derive(Deserialize)]
    struct Model {
        id: String,
    }
    let upstream = &snapshot.upstream;
    let uri = upstream.uri("/models", None).map_err(|e| e.to_string())?;
    let answer = upstream
        .send(state.metrics(), || {
            Upstream::own_get(uri.clone(), &snapshot.default_upstream_auth)
        })
        .await
        .map_err(|e| e.to_string())?;
    if !answer.response.status().is_success() {
        return Err(format!("status {}", answer.response.status()));
    }
    let body = answer.bytes().await.map_err(|e| e.to_string())?;
    let models: Models = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    Ok(models.data.into_iter().map(|m| m.id).collect())
}
