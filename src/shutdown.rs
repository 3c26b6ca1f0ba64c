//! Signals: SIGTERM and SIGINT start a graceful shutdown; SIGHUP asks for a config reload.

/// Calls `on_hup` on every SIGHUP until the process ends (a no-op where there are no signals).
pub(crate) async fn on_sighup(mut on_hup: impl FnMut()) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot listen for SIGHUP: live reload is off");
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP received: reloading the config");
            on_hup();
        }
    }
    #[cfg(not(unix))]
    let _ = &mut on_hup;
}

/// Completes on the first SIGTERM or SIGINT (Ctrl-C).
pub(crate) async fn signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received: shutting down"),
        _ = terminate => tracing::info!("SIGTERM received: shutting down"),
    }
}
