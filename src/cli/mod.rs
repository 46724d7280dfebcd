//! The `procvisor` command line: one subcommand a module.

/// Print a line on standard output; if standard output is gone (a closed
/// pipe, a full disk), end quietly with the status a shell gives a process
/// killed by `SIGPIPE` (141), instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::say_line(format_args!($($arg)*))
    };
}

/// See [`say!`].
pub fn say_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    to_stdout(|out| out.write_fmt(args).and_then(|()| out.write_all(b"\n")));
}

/// Print `text` as it is (a redrawn screen), ending as [`say!`] does if
/// standard output is gone.
pub fn show(text: &str) {
    use std::io::Write;
    to_stdout(|out| out.write_all(text.as_bytes()));
}

/// Write to standard output with `write`, then flush; if standard output
/// is gone, end with status 141 (see [`say!`]).
fn to_stdout(write: impl FnOnce(&mut std::io::StdoutLock<'static>) -> std::io::Result<()>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if write(&mut out).and_then(|()| out.flush()).is_err() {
        std::process::exit(141);
    }
}

/// Job-provided text made safe for a terminal: control characters (escape
/// sequences among them) are shown escaped, not obeyed.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        text.chars()
            .map(|c| {
                if c.is_control() && c != '\n' && c != '\t' {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect::<String>()
            .into()
    } else {
        text.into()
    }
}

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use procvisor::{Config, WorkerCommand};

mod bench;
mod db;
mod hunt;
mod metrics;
mod num;
mod run;
mod sched_args;
mod test_process;
mod test_scheduler;

pub use sched_args::SchedArgs;

/// procvisor: run jobs in supervised worker processes.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run one job in a worker process started here (no database needed) and
    /// print its outcome as JSON (exit 0 only if it completed).
    Run(run::Args),
    /// Push no-op jobs through the supervisor; print throughput and latency.
    Bench(bench::Args),
    /// Find the treasure among N files: sequential, threads, async, and
    /// procvisor worker processes, compared.
    Hunt(hunt::Args),
    /// A test scheduler: a supervisor fed by a producer of sleep jobs with
    /// random priorities, with a live view and a summary.
    TestScheduler(test_scheduler::Args),
    /// A showcase of the process handle: wait, notify, time out,
    /// terminate.
    TestProcess,
    /// The job queue in PostgreSQL: create or update its tables, or show
    /// their version.
    Db(db::DbCommand),
    /// Run jobs from the PostgreSQL job queue until stopped (Ctrl-C,
    /// SIGTERM): as many supervisors as you like, on any machines.
    Supervise(db::supervise::Args),
    /// Put a job in the PostgreSQL job queue; prints its id.
    Submit(db::jobs::SubmitArgs),
    /// Cancel a job in the PostgreSQL job queue, waiting or running.
    Cancel(db::jobs::CancelArgs),
    /// What happened to jobs in the PostgreSQL job queue.
    Events(db::watch::EventsArgs),
    /// Jobs in the PostgreSQL job queue by state and priority, and the
    /// supervisors serving it.
    Status(db::watch::StatusArgs),
    /// Periodic jobs in the PostgreSQL job queue: a job enqueued at every
    /// fire of a cron expression, in a time zone.
    Schedule(db::schedule::ScheduleCommand),
    /// A web dashboard over the PostgreSQL job queue, live in the browser:
    /// jobs by queue, state and priority, supervisors and their heartbeats,
    /// running jobs with their progress, recent endings and failures, each
    /// job's history; cancel a job, run a failed one again, pause and
    /// resume a queue.
    Dashboard(db::dashboard::Args),
    /// The PostgreSQL job queue in the terminal, redrawn every second: jobs
    /// by queue, state and priority, supervisors, running jobs, failures.
    Top(db::top::Args),
    /// Put test-scheduler jobs (sleep, random priority 0 to 10, random
    /// runtime 3 to 15 s) into the PostgreSQL job queue, one every period,
    /// for `procvisor test-scheduler --db` or `supervise` to run.
    Producer(db::bus::ProducerArgs),
}

/// Where the workers come from: `--worker PATH`, else the stock
/// `procvisor-worker` beside this executable, else this executable itself.
#[derive(clap::Args, Debug, Clone)]
pub struct WorkerArgs {
    /// Worker program (default: procvisor-worker beside this executable, or
    /// this executable serving the stock handlers).
    #[arg(long, value_name = "PATH")]
    worker: Option<PathBuf>,
    /// Most memory a worker process may use, in MiB (32 to 1048576): a job
    /// that needs more ends as crashed, with a reason that says so, and the
    /// worker is replaced. Default: no limit.
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(32..=1 << 20))]
    memory_limit: Option<u64>,
    /// Replace each worker process after it has run this many jobs (1 to
    /// 1000000000), for handlers that leak. Default: never.
    #[arg(long, value_name = "JOBS", value_parser = clap::value_parser!(u32).range(1..=1_000_000_000))]
    recycle_after: Option<u32>,
    /// Replace a worker process whose memory in use (resident), measured
    /// after each job, is over this many MiB (1 to 1048576). Default: never.
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    recycle_above_rss: Option<u64>,
}

impl WorkerArgs {
    fn command(&self) -> Result<WorkerCommand, String> {
        if let Some(p) = &self.worker {
            return Ok(WorkerCommand::new(p));
        }
        if let Some(stock) = WorkerCommand::stock_beside_current_exe() {
            return Ok(stock);
        }
        WorkerCommand::current_exe().map_err(|e| {
            format!("cannot find this executable to use as a worker: {e}; pass --worker PATH")
        })
    }

    /// A config with these workers, `n` of them.
    pub fn config(&self, n: usize) -> Result<Config, String> {
        self.config_serving(n, true)
    }

    /// Like [`config`](Self::config); with `test_handlers` false, the stock
    /// worker (when no --worker is given) serves only its safe handlers.
    pub fn config_serving(&self, n: usize, test_handlers: bool) -> Result<Config, String> {
        let mut command = self.command()?;
        if self.worker.is_none() && !test_handlers {
            command = command.env(procvisor::stock::HANDLERS_ENV, "safe");
        }
        Ok(Config::new(command)
            .workers(n)
            .memory_limit(self.memory_limit.map(|m| m << 20))
            .recycle_after(self.recycle_after)
            .recycle_above_rss(self.recycle_above_rss.map(|m| m << 20)))
    }
}

/// Parse the command line and run it; returns the exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => run::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Hunt(a) => hunt::run(a),
        Command::TestScheduler(a) => test_scheduler::run(a),
        Command::TestProcess => test_process::run(),
        Command::Db(a) => db::db(a),
        Command::Supervise(a) => db::supervise::run(a),
        Command::Submit(a) => db::jobs::submit(a),
        Command::Cancel(a) => db::jobs::cancel(a),
        Command::Events(a) => db::watch::events(a),
        Command::Status(a) => db::watch::status(a),
        Command::Schedule(a) => db::schedule::run(a),
        Command::Producer(a) => db::bus::producer(a),
        Command::Dashboard(a) => db::dashboard::run(a),
        Command::Top(a) => db::top::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}
