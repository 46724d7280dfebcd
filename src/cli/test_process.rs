//! `procvisor test-process`: a showcase of the process handle, each
//! step printed as it happens: wait for a process, be notified when one
//! ends while doing other things, time one out, terminate one (and one that
//! ignores SIGTERM).

use std::process::Command;
use std::time::{Duration, Instant};

use procvisor::process::Process;

fn sh(script: &str) -> Result<Process, String> {
    Process::spawn(Command::new("sh").args(["-c", script]))
        .map_err(|e| format!("cannot start sh: {e}"))
}

pub fn run() -> Result<i32, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a tokio runtime: {e}"))?;
    let t0 = Instant::now();
    let say = |what: String| say!("[{:>6.3} s] {what}", t0.elapsed().as_secs_f64());
    rt.block_on(async {
        let p = sh("sleep 0.5")?;
        say(format!(
            "1. started `sleep 0.5` as pid {}; waiting for it",
            p.pid()
        ));
        let out = p.wait().await.map_err(|e| e.to_string())?;
        say(format!("   pid {} ended: {out:?}", p.pid()));

        let p = sh("sleep 0.4; exit 3")?;
        say(format!(
            "2. started `sleep 0.4; exit 3` as pid {}; doing other things until it ends",
            p.pid()
        ));
        let waiter = p.clone();
        let mut ended = std::pin::pin!(async move { waiter.wait().await });
        let mut ticks = 0;
        let out = loop {
            tokio::select! {
                out = &mut ended => break out.map_err(|e| e.to_string())?,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {
                    ticks += 1;
                    say(format!("   ... still working (tick {ticks})"));
                }
            }
        };
        say(format!("   notified: pid {} ended: {out:?}", p.pid()));

        let p = sh("sleep 30")?;
        say(format!(
            "3. started `sleep 30` as pid {} with a 0.3 s deadline",
            p.pid()
        ));
        let out = p
            .wait_until(Some(Instant::now() + Duration::from_millis(300)))
            .await
            .map_err(|e| e.to_string())?;
        say(format!("   pid {} ended: {out:?}", p.pid()));

        let p = sh("sleep 30")?;
        say(format!(
            "4. started `sleep 30` as pid {}; terminating it in 0.2 s (grace 1 s)",
            p.pid()
        ));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let out = p
            .terminate(Duration::from_secs(1))
            .await
            .map_err(|e| e.to_string())?;
        say(format!("   pid {} ended: {out:?}", p.pid()));

        let p = sh("trap '' TERM; while :; do sleep 0.05; done")?;
        say(format!(
            "5. started a loop that ignores SIGTERM as pid {}; terminating it (grace 0.3 s)",
            p.pid()
        ));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let out = p
            .terminate(Duration::from_millis(300))
            .await
            .map_err(|e| e.to_string())?;
        say(format!(
            "   pid {} ended: {out:?} (SIGKILL after the grace)",
            p.pid()
        ));
        Ok::<_, String>(())
    })?;
    Ok(0)
}
