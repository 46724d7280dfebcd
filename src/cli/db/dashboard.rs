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
    /// A file whose first line is a secret every request must carry (at
    /// least 16 characters, no spaces): open the dashboard once as
    /// http://ADDR/?token=TOKEN, or send the header "Authorization: Bearer
    /// TOKEN". The PROCVISOR_DASHBOARD_TOKEN environment variable may hold
    /// it instead. (A token on the command line itself is refused: every
    /// user of this machine can read it, in ps.)
    #[arg(long = "token-file", value_name = "FILE")]
    token_file: Option<std::path::PathBuf>,
    /// Refused: see --token-file.
    #[arg(long, value_name = "TOKEN", hide = true)]
    token: Option<String>,
    /// Also answer requests that reach it by this host name (repeatable),
    /// besides IP addresses and localhost: any other name in a request is
    /// refused, so a web page cannot point its own name at this machine to
    /// read the dashboard.
    #[arg(long = "allow-host", value_name = "NAME")]
    allow_host: Vec<String>,
}

/// The dashboard's token: from --token-file, else the environment.
fn token(a: &Args) -> Result<Option<String>, String> {
    if a.token.is_some() {
        return Err("--token puts the secret where every user of this machine can read it (ps): put it in a file and pass --token-file FILE, or set PROCVISOR_DASHBOARD_TOKEN".into());
    }
    if let Some(file) = &a.token_file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read the token file {}: {e}", file.display()))?;
        let first = text.lines().next().unwrap_or("").trim().to_string();
        if first.is_empty() {
            return Err(format!(
                "the token file {} is empty: write the token on its first line",
                file.display()
            ));
        }
        return Ok(Some(first));
    }
    Ok(std::env::var("PROCVISOR_DASHBOARD_TOKEN")
        .ok()
        .filter(|t| !t.is_empty()))
}

/// Serve until interrupted.
pub fn run(a: Args) -> Result<i32, String> {
    // Refuse an open public address before anything else.
    let secret = token(&a)?;
    procvisor::dashboard::check_access(a.listen, secret.as_deref()).map_err(|e| e.to_string())?;
    super::block_on(async move {
        let store = a.db.connect(4).await?;
        store.require_schema().await.map_err(|e| e.to_string())?;
        let dashboard = a
            .allow_host
            .iter()
            .fold(Dashboard::new(store).token(secret), |d, h| d.allow_host(h));
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
