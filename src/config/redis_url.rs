//! The syntax of a Redis URL (`limits.redis_url`, or the secret `limits.redis_url_env` names).
//!
//! It lives with the configuration because it is a property of what was written: `orgate check`
//! reports it at its key path, before anything connects. The Redis limits backend asks the same
//! question of the URL it is given, so the two cannot disagree.

/// Whether `url` is a Redis URL this build can connect to (`redis://`, `valkey://`, `unix://`;
/// TLS is not built in). The error never repeats the URL, which may hold a password.
pub(crate) fn check_redis_url(url: &str) -> Result<(), String> {
    if url.starts_with("rediss://") || url.starts_with("valkeys://") {
        return Err(
            "TLS (rediss://) is not supported by this build; use redis:// on a \
                    private network or a TLS-terminating proxy"
                .to_owned(),
        );
    }
    redis::Client::open(url).map(drop).map_err(|e| {
        format!(
            "is not a Redis URL like redis://[user:password@]host[:port][/db]: {}",
            e.detail().unwrap_or("cannot parse it")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_without_repeating_them() {
        assert!(check_redis_url("redis://127.0.0.1:6379/0").is_ok());
        assert!(check_redis_url("redis://:hunter2@redis:6379").is_ok());
        let why = check_redis_url("rediss://:hunter2@redis:6379").unwrap_err();
        assert!(why.contains("TLS") && !why.contains("hunter2"), "{why}");
        let why = check_redis_url("http://:hunter2@redis").unwrap_err();
        assert!(!why.contains("hunter2"), "{why}");
    }
}
