//! `procvisor dashboard`: the web dashboard over the job queue.

use std::net::SocketAddr;

use procvisor::dashboard::Dashboard;

use super::DbArgs;

/// Arguments of `dashboard`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    db: DbArgs,
    /// Where to listen (port 0 picks a free port). An address other than
    /// loopback needs --token.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// A secret every request must carry (at least 16 characters): open the
    /// dashboard once as http://ADDR/?token=TOKEN, or send the header
    /// "Authorization: Bearer TOKEN". Default: the
    /// PROCVISOR_DASHBOARD_TOKEN environment variable, else none.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "PROCVISOR_DASHBOARD_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
}

/// Serve until interrupted.
pub fn run(a: Args) -> Result<i32, String> {
    // Refuse an open public address before anything else.
    procvisor::dashboard::check_access(a.listen, a.token.as_deref()).map_err(|e| e.to_string())?;
    super::block_on(async move {
        let store = a.db.connect(4).await?;
        store.require_schema().await.map_err(|e| e.to_string())?;
        let dashboard = Dashboard::new(store).token(a.token);
        let listener = dashboard.bind(a.listen).await.map_err(|e| e.to_string())?;
        let at = listener.local_addr().map_err(|e| e.to_string())?;
        say!("dashboard at http://{at}/ (Ctrl-C to stop)");
        dashboard
            .serve_on(listener)
            .await
            .map_err(|e| e.to_string())?;
        Ok(0)
    })?
}
