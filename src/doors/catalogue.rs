//! The read-only catalogue: what models and providers there are. Forwarded as it is for any
//! client key: it holds nothing of the org's (its account, keys, generations, files and presets
//! are not here, and stay refused unless `[routes] allow` opens them).

/// Whether `path` (decoded, under the API prefix) is in the catalogue: `/models` and below
/// (endpoints, per-user lists), `/model/...`, `/providers`, `/endpoints/zdr`,
/// `/embeddings/models`.
pub(super) fn is_catalogue(path: &str) -> bool {
    matches!(
        path,
        "/models" | "/providers" | "/endpoints/zdr" | "/embeddings/models"
    ) || path.starts_with("/models/")
        || path.starts_with("/model/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_is_a_few_read_only_paths() {
        for path in [
            "/models",
            "/models/openai/gpt-4o/endpoints",
            "/models/user",
            "/model/openai/gpt-4o",
            "/providers",
            "/endpoints/zdr",
            "/embeddings/models",
        ] {
            assert!(is_catalogue(path), "{path}");
        }
        for path in [
            "/modelsx",
            "/credits",
            "/key",
            "/generation",
            "/embeddings",
            "/",
        ] {
            assert!(!is_catalogue(path), "{path}");
        }
    }
}
