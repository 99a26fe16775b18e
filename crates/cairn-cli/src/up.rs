//! `cairn up` / `cairn down`: a whole cluster on this machine — monitors and OSDs as separate
//! processes on 127.0.0.1, their data, logs and pid files under one directory.

use crate::args::{take_flag, take_opt, Global};
use crate::output;
use cairn_client::Rados;
use cairn_types::conf::Conf;
use cairn_types::Error;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

const DEFAULT_DIR: &str = "cairn-cluster";
const CONF_NAME: &str = "cairn.conf";
/// How long `cairn up` waits for the cluster to become healthy.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `cairn down` waits for daemons to exit before killing them.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

struct Layout {
    dir: PathBuf,
    conf_path: PathBuf,
}

impl Layout {
    fn new(words: &mut Vec<String>) -> Result<Layout, Error> {
        let dir = PathBuf::from(take_opt(words, &["--dir"])?.unwrap_or_else(|| DEFAULT_DIR.into()));
        std::fs::create_dir_all(&dir)?;
        let dir = dir.canonicalize()?;
        Ok(Layout { conf_path: dir.join(CONF_NAME), dir })
    }

    fn pid_file(&self, daemon: &str) -> PathBuf {
        self.dir.join("run").join(format!("{daemon}.pid"))
    }
}

pub fn up(_global: &Global, args: &[String]) -> Result<ExitCode, Error> {
    let mut words = args.to_vec();
    let layout = Layout::new(&mut words)?;
    let daemonize = take_flag(&mut words, &["--daemon", "-d"]);
    let osds: Option<u32> = take_opt(&mut words, &["--osds"])?
        .map(|n| n.parse().map_err(|_| Error::einval(format!("--osds: invalid number '{n}'"))))
        .transpose()?;
    let mons: Option<u32> = take_opt(&mut words, &["--mons"])?
        .map(|n| n.parse().map_err(|_| Error::einval(format!("--mons: invalid number '{n}'"))))
        .transpose()?;
    if let Some(w) = words.first() {
        return Err(Error::einval(format!("cairn up: unexpected argument '{w}'")));
    }
    let conf = ensure_conf(&layout, osds.unwrap_or(3), mons.unwrap_or(1))?;
    let mon_ids = crate::daemon::mon_members(&conf, "client.admin")?;
    let osd_ids = osd_ids(&conf);
    for (name, _) in &mon_ids {
        start_daemon(&layout, "mon", name)?;
    }
    for id in &osd_ids {
        start_daemon(&layout, "osd", &id.to_string())?;
    }
    let rt = output::runtime()?;
    rt.block_on(wait_healthy(&conf, osd_ids.len()))?;
    print_next_steps(&layout, mon_ids.len(), osd_ids.len());
    if daemonize {
        return Ok(ExitCode::SUCCESS);
    }
    println!("Running in the foreground; Ctrl-C stops the cluster (`cairn up --daemon` returns instead).");
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
        else {
            return;
        };
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    });
    stop_all(&layout);
    Ok(ExitCode::SUCCESS)
}

pub fn down(_global: &Global, args: &[String]) -> Result<ExitCode, Error> {
    let mut words = args.to_vec();
    let layout = Layout::new(&mut words)?;
    if !layout.conf_path.exists() {
        return Err(Error::enoent(format!(
            "no cluster in {} ({} not found)",
            layout.dir.display(),
            layout.conf_path.display()
        )));
    }
    stop_all(&layout);
    Ok(ExitCode::SUCCESS)
}

/// Loads the cluster's conf, writing a new one (new fsid, free ports) for a new cluster, and
/// adding OSD sections when `--osds` asks for more than it has.
fn ensure_conf(layout: &Layout, osds: u32, mons: u32) -> Result<Conf, Error> {
    let mut conf = if layout.conf_path.exists() {
        Conf::load(&layout.conf_path)?
    } else {
        if mons == 0 || mons > 5 {
            return Err(Error::einval("--mons must be between 1 and 5"));
        }
        new_conf(layout, osds, mons)?
    };
    let have = osd_ids(&conf).len() as u32;
    for id in have..osds {
        conf.set(
            &format!("osd.{id}"),
            "osd data",
            &layout.dir.join(format!("osd.{id}")).display().to_string(),
        )?;
    }
    if osds > have {
        std::fs::write(&layout.conf_path, conf.to_string())?;
    }
    Ok(conf)
}

fn new_conf(layout: &Layout, osds: u32, mons: u32) -> Result<Conf, Error> {
    if osds == 0 {
        return Err(Error::einval("--osds must be at least 1"));
    }
    let mut hosts = Vec::new();
    let mut names = Vec::new();
    for i in 0..mons {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        hosts.push(format!("127.0.0.1:{port}"));
        names.push(((b'a' + i as u8) as char).to_string());
    }
    let size = osds.min(3);
    let dir = layout.dir.display();
    let mut text = format!(
        "# Written by `cairn up`. Edit while the cluster is down; `cairn up --dir {dir}` restarts it.\n\
         [global]\n\
         fsid = {fsid}\n\
         mon host = {hosts}\n\
         mon initial members = {names}\n\
         # One host: replicas go to different OSDs rather than different hosts.\n\
         osd crush chooseleaf type = 0\n\
         osd pool default size = {size}\n\
         osd pool default min size = {min_size}\n\
         pid file = {dir}/run/$type.$id.pid\n\
         log file = {dir}/log/$type.$id.log\n",
        fsid = uuid::Uuid::new_v4(),
        hosts = hosts.join(","),
        names = names.join(","),
        min_size = size - size / 2,
    );
    for n in &names {
        text.push_str(&format!("\n[mon.{n}]\nmon data = {dir}/mon.{n}\n"));
    }
    for id in 0..osds {
        text.push_str(&format!("\n[osd.{id}]\nosd data = {dir}/osd.{id}\n"));
    }
    std::fs::write(&layout.conf_path, &text)?;
    Conf::parse(&text)
}

fn osd_ids(conf: &Conf) -> Vec<u32> {
    let mut ids: Vec<u32> = conf
        .sections()
        .iter()
        .filter_map(|s| s.name().strip_prefix("osd.").and_then(|n| n.parse().ok()))
        .collect();
    ids.sort_unstable();
    ids
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0 && is_cairn(pid)
}

/// A live (not zombie) cairn process.
fn is_cairn(pid: i32) -> bool {
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('Z')))
        .unwrap_or(true);
    !zombie
        && std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.windows(5).any(|w| w == b"cairn"))
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn start_daemon(layout: &Layout, kind: &str, id: &str) -> Result<(), Error> {
    let name = format!("{kind}.{id}");
    if read_pid(&layout.pid_file(&name)).is_some_and(alive) {
        println!("{name} is already running");
        return Ok(());
    }
    let log_dir = layout.dir.join("log");
    std::fs::create_dir_all(&log_dir)?;
    let out =
        std::fs::OpenOptions::new().create(true).append(true).open(log_dir.join(format!("{name}.out")))?;
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.args([kind, "--id", id, "-c"]).arg(&layout.conf_path);
    cmd.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out);
    // SAFETY: setsid in the child before exec: the daemon leaves our session, so a Ctrl-C
    // meant for `cairn up` does not reach it and it outlives `cairn up --daemon`.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    println!("started {name} (pid {})", child.id());
    Ok(())
}

async fn wait_healthy(conf: &Conf, osds: usize) -> Result<(), Error> {
    let start = Instant::now();
    let rados = Rados::connect_conf(conf, "client.admin").await?;
    let mut last = String::from("no answer yet");
    while start.elapsed() < HEALTHY_TIMEOUT {
        if let Ok(reply) = rados.mon_command(&serde_json::json!({"prefix": "status", "format": "json"})).await
        {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&reply.data) {
                let up = v["osdmap"]["num_up_osds"].as_u64().unwrap_or(0) as usize;
                let states = v["pgmap"]["pgs_by_state"].as_array().cloned().unwrap_or_default();
                let inactive: u64 = states
                    .iter()
                    .filter(|s| !s["state_name"].as_str().unwrap_or("").starts_with("active"))
                    .map(|s| s["count"].as_u64().unwrap_or(0))
                    .sum();
                let counted: u64 = states.iter().map(|s| s["count"].as_u64().unwrap_or(0)).sum();
                let pgs = v["pgmap"]["num_pgs"].as_u64().unwrap_or(0);
                if up == osds && inactive == 0 && counted == pgs {
                    return Ok(());
                }
                last = format!("{up}/{osds} osds up, {inactive} of {pgs} pgs not active");
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(Error::timed_out(format!(
        "the cluster did not become healthy within {}s: {last}",
        HEALTHY_TIMEOUT.as_secs()
    )))
}

fn print_next_steps(layout: &Layout, mons: usize, osds: usize) {
    let conf = layout.conf_path.display();
    println!(
        "\nCairn is up: {mons} mon, {osds} osds, data in {dir}.\n\
         Try:\n  export CAIRN_CONF={conf}\n  cairn -s\n  cairn osd pool create volumes 32\n  \
         cairn osd pool application enable volumes rbd\n  echo hello | cairn rados -p volumes put greeting -\n  \
         cairn rados -p volumes get greeting -\n  cairn osd tree\n\
         Stop it with: cairn down --dir {dir}",
        dir = layout.dir.display()
    );
}

fn stop_all(layout: &Layout) {
    let run = layout.dir.join("run");
    let Ok(entries) = std::fs::read_dir(&run) else { return };
    let mut pids = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().is_some_and(|x| x == "pid") {
            if let Some(pid) = read_pid(&path).filter(|p| alive(*p)) {
                // SAFETY: sending SIGTERM to a cairn daemon we started.
                unsafe { libc::kill(pid, libc::SIGTERM) };
                pids.push((pid, path));
            } else {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    let start = Instant::now();
    while pids.iter().any(|(p, _)| alive(*p)) && start.elapsed() < STOP_TIMEOUT {
        std::thread::sleep(Duration::from_millis(50));
    }
    for (pid, path) in pids {
        if alive(pid) {
            // SAFETY: the daemon ignored SIGTERM for too long.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = std::fs::remove_file(path);
        println!("stopped pid {pid}");
    }
}
