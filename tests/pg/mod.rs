//! A real, throwaway PostgreSQL for the store's tests: `initdb` into a
//! private temporary folder, the server on a free loopback port (and a
//! socket only in that folder), a random password, and a fresh database
//! per test. One server per test program, started on first use, run as a
//! non-root user (`nobody`, or `PROCVISOR_PG_USER`) when the tests run as
//! root. The server is stopped and its folder removed when the test
//! program ends, however it ends: a small shell keeps it, and stops it
//! when the test program's end closes its standard input.
//!
//! With no PostgreSQL on the machine a test says so on stderr and skips,
//! unless `PROCVISOR_REQUIRE_PG` is set (as CI sets it), when it fails.

#![allow(dead_code)]

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use procvisor::store::{Event, Store};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A server of this test program.
pub struct Server {
    pub port: u16,
    pub password: String,
    pub dir: PathBuf,
    pub bin: PathBuf,
    pub user: Option<(u32, u32)>,
    keeper: Mutex<Child>,
}

static SERVER: OnceLock<Option<Server>> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(1);

/// A fresh database's URL on this program's server; `None` (after saying
/// so loudly) when no PostgreSQL can be had and it is not required.
pub fn database(test: &str) -> Option<String> {
    let server = SERVER.get_or_init(|| match Server::start() {
        Ok(s) => Some(s),
        Err(why) => {
            if std::env::var_os("PROCVISOR_REQUIRE_PG").is_some() {
                panic!("PostgreSQL is required (PROCVISOR_REQUIRE_PG is set) but cannot be started: {why}");
            }
            eprintln!(
                "\n*** SKIPPED: no PostgreSQL for the store tests: {why}\n*** install it (apt-get install postgresql) or set PROCVISOR_PG_BIN\n"
            );
            None
        }
    });
    let server = server.as_ref()?;
    let name = format!(
        "t{}_{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::Relaxed),
        test.chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(30)
            .collect::<String>()
    );
    server.psql("postgres", &format!("CREATE DATABASE {name}"));
    Some(server.url(&name))
}

/// The server, if one was started.
pub fn server() -> Option<&'static Server> {
    SERVER.get().and_then(|s| s.as_ref())
}

fn find_bin() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("PROCVISOR_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        if dir.join("initdb").exists() && dir.join("postgres").exists() {
            return Ok(dir);
        }
    }
    Err("initdb and postgres were not found (in PROCVISOR_PG_BIN, /usr/lib/postgresql/*/bin or PATH)".into())
}

/// The user to run the server as: `None` for ourselves, or the uid and gid
/// of an unprivileged user when we are root.
fn run_as() -> Result<Option<(u32, u32)>, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = std::env::var("PROCVISOR_PG_USER").unwrap_or_else(|_| "nobody".into());
    let cname = std::ffi::CString::new(name.clone()).map_err(|e| e.to_string())?;
    // SAFETY: getpwnam returns a pointer into static storage or null; we
    // copy the two numbers out at once, from this one thread's call.
    let pw = unsafe { libc::getpwnam(cname.as_ptr()) };
    if pw.is_null() {
        return Err(format!("running as root, and there is no user {name:?} to run PostgreSQL as (set PROCVISOR_PG_USER)"));
    }
    // SAFETY: pw is non-null and points to a valid passwd record.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok(Some((uid, gid)))
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Server {
    fn command(&self, program: &str) -> Command {
        as_user(Command::new(self.bin.join(program)), self.user)
    }

    fn start() -> Result<Server, String> {
        let bin = find_bin()?;
        let user = run_as()?;
        let dir = std::env::temp_dir().join(format!(
            "procvisor-pg-{}-{}",
            std::process::id(),
            random_hex(4)
        ));
        std::fs::create_dir(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| e.to_string())?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
        }
        let password = random_hex(16);
        let pwfile = dir.join("pw");
        std::fs::write(&pwfile, &password).map_err(|e| e.to_string())?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
        }
        let data = dir.join("data");
        let init = as_user(Command::new(bin.join("initdb")), user)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "-A",
                "scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .map_err(|e| format!("cannot run initdb: {e}"))?;
        if !init.status.success() {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&init.stderr)
            ));
        }
        let _ = std::fs::remove_file(&pwfile);
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let server = Server::launch(&bin, user, &dir, &data, port, &password)?;
            match server.await_ready() {
                Ok(()) => return Ok(server),
                Err(e) => last = e,
            }
        }
        Err(format!("the server did not start: {last}"))
    }

    fn launch(
        bin: &Path,
        user: Option<(u32, u32)>,
        dir: &Path,
        data: &Path,
        port: u16,
        password: &str,
    ) -> Result<Server, String> {
        // The keeper: runs the server; restarts it when told `restart` on
        // its input; on the end of its input (this test program's end)
        // stops it and removes the folder.
        let script = format!(
            r#"start() {{
  {postgres} -D {data} -p {port} -k {dir} -c listen_addresses=127.0.0.1 \
    -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 \
    -c shared_buffers=128MB >>{dir}/server.log 2>&1 &
  pg=$!
}}
start
while read -r order; do
  case "$order" in
    restart) kill -INT $pg; wait $pg; start ;;
    "restart after "*) kill -INT $pg; wait $pg; sleep "${{order#restart after }}"; start ;;
  esac
done
kill -INT $pg 2>/dev/null
wait $pg
rm -rf {dir}"#,
            postgres = bin.join("postgres").display(),
            data = data.display(),
            dir = dir.display(),
        );
        let keeper = as_user(Command::new("/bin/sh"), user)
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the server: {e}"))?;
        Ok(Server {
            port,
            password: password.to_string(),
            dir: dir.to_path_buf(),
            bin: bin.to_path_buf(),
            user,
            keeper: Mutex::new(keeper),
        })
    }

    fn await_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.keeper.lock().unwrap().try_wait() {
                return Err(format!("it exited with {status}: {}", self.log()));
            }
            let ok = Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("not ready within 60 s: {}", self.log()))
    }

    /// Restart the server the way an operator would (a fast shutdown:
    /// every connection is cut), and wait until it takes connections
    /// again.
    pub fn restart(&self) {
        self.restart_after(Duration::ZERO);
    }

    /// Like [`restart`](Self::restart), the server staying down for
    /// `down` (whole milliseconds) between its stop and its start.
    pub fn restart_after(&self, down: Duration) {
        use std::io::Write;
        let started = self.log().matches("ready to accept connections").count();
        let order = if down.is_zero() {
            "restart\n".to_string()
        } else {
            format!("restart after {:.3}\n", down.as_secs_f64())
        };
        {
            let mut keeper = self.keeper.lock().unwrap();
            let input = keeper.stdin.as_mut().expect("the keeper's input");
            input
                .write_all(order.as_bytes())
                .expect("tell the keeper to restart");
            input.flush().unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.log().matches("ready to accept connections").count() <= started {
            assert!(
                Instant::now() < deadline,
                "the server did not restart within 60 s: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// The URL of database `db`.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/{db}",
            self.password, self.port
        )
    }

    /// Run one SQL statement with psql; panics with its error.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &self.url(db),
                "-c",
                sql,
            ])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

fn as_user(mut cmd: Command, user: Option<(u32, u32)>) -> Command {
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
        // Somewhere the unprivileged user may be.
        cmd.current_dir("/");
    }
    cmd
}

/// A migrated store on a fresh database, or `None` (said loudly) when no
/// PostgreSQL can be had.
pub async fn store(test: &str) -> Option<Store> {
    Some(migrated(test).await?.0)
}

/// [`store`], with the database's URL.
pub async fn migrated(test: &str) -> Option<(Store, String)> {
    let url = database(test)?;
    let store = Store::connect(&url).await.expect("connect");
    store.migrate().await.expect("migrate");
    Some((store, url))
}

/// The database name in a test database's URL.
pub fn db_name(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_string()
}

/// Run one SQL statement with psql in the test database at `url` (as
/// [`Server::psql`]); panics with its error.
pub fn psql(url: &str, sql: &str) -> String {
    server()
        .expect("a test database URL comes from the test server")
        .psql(&db_name(url), sql)
}

/// Every event in `store` so far, oldest first. The stream holds back
/// events behind any transaction still open on the server (another test's
/// too), so an empty read is read again a moment later before it counts as
/// the end.
pub async fn all_events(store: &procvisor::store::Store) -> Vec<procvisor::store::Event> {
    let mut cursor = procvisor::store::EventCursor::from_start();
    let mut all = Vec::new();
    let mut empty = 0;
    while empty < 3 {
        let batch = store.next_events(&mut cursor).await.unwrap();
        if batch.is_empty() {
            empty += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        } else {
            empty = 0;
            all.extend(batch);
        }
    }
    all
}

/// A small multi-threaded runtime for a store test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// `procvisor supervise` on `url`, its output to the test's stderr.
pub fn supervise(url: &str, workers: u32, lease_secs: u32) -> Child {
    Command::new(env!("CARGO_BIN_EXE_procvisor"))
        .args([
            "supervise",
            "--test-handlers",
            "--workers",
            &workers.to_string(),
            "--lease",
            &lease_secs.to_string(),
            "--poll-ms",
            "100",
            "--grace",
            "1",
        ])
        .env("PROCVISOR_DATABASE_URL", url)
        .stdin(Stdio::null())
        .spawn()
        .expect("start procvisor supervise")
}

pub fn signal(child: &Child, sig: i32) {
    // SAFETY: kill with a pid we spawned and have not reaped.
    unsafe { libc::kill(child.id() as i32, sig) };
}

/// Stop a supervisor gracefully; it must exit 0 within 30 s.
pub fn stop(mut child: Child) {
    signal(&child, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "supervise exited with {status}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "supervise did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait until `n` jobs have ended; returns every event.
pub async fn until_ended(store: &Store, n: usize, limit: Duration) -> Vec<Event> {
    let deadline = Instant::now() + limit;
    loop {
        let events = all_events(store).await;
        let ended = events.iter().filter(|e| e.terminal).count();
        if ended >= n {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "only {ended} of {n} jobs ended within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Assert that `events` hold exactly one ending for each job of `ids`, and
/// none for any other job.
pub fn assert_each_ended_once(events: &[Event], ids: &[i64]) {
    let mut ended: Vec<i64> = events
        .iter()
        .filter(|e| e.terminal)
        .map(|e| e.job_id)
        .collect();
    ended.sort_unstable();
    let before = ended.len();
    ended.dedup();
    assert_eq!(before, ended.len(), "a job ended twice");
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    assert_eq!(ended, ids, "every job submitted ended, and nothing else");
}
