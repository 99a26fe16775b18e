//! `cairn up` / `cairn down`: a whole cluster on this machine — monitors and OSDs as separate
//! processes on 127.0.0.1, their data, logs and pid files under one directory.

use crate::args::{take_flag, take_opt, Global};
use crate::output;
use cairn_auth::{CryptoKey, EntityName, Keyring, KeyringEntry};
use cairn_client::Rados;
use cairn_types::conf::Conf;
use cairn_types::{errno, Error};
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

    /// `cairn.client.admin.keyring` next to `cairn.conf` (what `[client] keyring` points at).
    fn client_keyring(&self, entity: &str) -> PathBuf {
        self.dir.join(format!("cairn.{entity}.keyring"))
    }

    /// A daemon's keyring, in its data directory (the daemons' default `keyring`).
    fn daemon_keyring(&self, daemon: &str) -> PathBuf {
        self.dir.join(daemon).join("keyring")
    }
}

/// `client.admin`'s caps, as Ceph's deployment tools give it.
const ADMIN_CAPS: [(&str, &str); 4] =
    [("mds", "allow *"), ("mgr", "allow *"), ("mon", "allow *"), ("osd", "allow *")];
/// An OSD's caps (Ceph's `ceph-volume` creates them so).
const OSD_CAPS: [&str; 6] = ["mgr", "allow profile osd", "mon", "allow profile osd", "osd", "allow *"];
/// `cairn up --openstack`: the seeds' pools and users (`auth get-or-create` of seed 000, Mitaka
/// and later; Nova gets its own user with Cinder's rights on `vms` and read access to `images`).
const OPENSTACK_POOLS: [&str; 4] = ["images", "volumes", "vms", "backups"];
const OPENSTACK_USERS: [(&str, &str); 4] = [
    ("client.glance", "allow class-read object_prefix rbd_children, allow rwx pool=images"),
    (
        "client.cinder",
        "allow class-read object_prefix rbd_children, allow rwx pool=volumes, allow rwx pool=vms, allow rx pool=images",
    ),
    ("client.cinder-backup", "allow class-read object_prefix rbd_children, allow rwx pool=backups"),
    ("client.nova", "allow class-read object_prefix rbd_children, allow rwx pool=vms, allow rx pool=images"),
];
/// How long `cairn up` retries while a new cluster's auth database is being initialized.
const AUTH_READY_TIMEOUT: Duration = Duration::from_secs(60);

pub fn up(_global: &Global, args: &[String]) -> Result<ExitCode, Error> {
    let mut words = args.to_vec();
    let layout = Layout::new(&mut words)?;
    let daemonize = take_flag(&mut words, &["--daemon", "-d"]);
    let openstack = take_flag(&mut words, &["--openstack"]);
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
    ensure_mon_keys(&layout, &mon_ids)?;
    for (name, _) in &mon_ids {
        start_daemon(&layout, "mon", name)?;
    }
    let rt = output::runtime()?;
    rt.block_on(ensure_osd_keys(&layout, &conf, &osd_ids))?;
    for id in &osd_ids {
        start_daemon(&layout, "osd", &id.to_string())?;
    }
    rt.block_on(wait_healthy(&conf, osd_ids.len()))?;
    if openstack {
        rt.block_on(setup_openstack(&layout, &conf))?;
        rt.block_on(wait_healthy(&conf, osd_ids.len()))?;
    }
    print_next_steps(&layout, mon_ids.len(), osd_ids.len(), openstack);
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
    let mut changed = osds > have;
    // Clusters made before authentication: point clients at their keyrings.
    if conf.get("client.admin", "keyring").is_none() && conf.get("client.admin", "key").is_none() {
        let path = layout.dir.join("cairn.$name.keyring");
        conf.set("client", "keyring", &path.display().to_string())?;
        changed = true;
    }
    if changed {
        std::fs::write(&layout.conf_path, conf.to_string())?;
    }
    Ok(conf)
}

fn entity(name: &str) -> Result<EntityName, Error> {
    name.parse()
}

fn entry(key: CryptoKey, caps: &[(&str, &str)]) -> KeyringEntry {
    KeyringEntry { key, caps: caps.iter().map(|(s, c)| (s.to_string(), c.to_string())).collect() }
}

/// Creates what a new cluster's monitors need, keeping what exists: `client.admin`'s key in
/// `cairn.client.admin.keyring` (0600), and in each mon's data directory the mon keyring —
/// `mon.` (one key all mons share) and `client.admin`, from which the leader seeds the auth
/// database (Ceph's `ceph-mon --mkfs --keyring`).
fn ensure_mon_keys(layout: &Layout, mons: &[(String, String)]) -> Result<(), Error> {
    let admin_name = entity("client.admin")?;
    let admin_path = layout.client_keyring("client.admin");
    let admin = if admin_path.exists() {
        Keyring::load(&admin_path)?
    } else {
        let mut k = Keyring::default();
        k.entries.insert(admin_name.clone(), entry(CryptoKey::generate(), &ADMIN_CAPS));
        k.save(&admin_path)?;
        println!("wrote {} (the admin key; keep it private)", admin_path.display());
        k
    };
    let mon_name = entity("mon.")?;
    let paths: Vec<PathBuf> =
        mons.iter().map(|(id, _)| layout.daemon_keyring(&format!("mon.{id}"))).collect();
    let existing = paths.iter().find(|p| p.exists()).map(|p| Keyring::load(p)).transpose()?;
    let mon_key = match existing.as_ref().and_then(|k| k.get(&mon_name)) {
        Some(e) => e.key.clone(),
        None => CryptoKey::generate(),
    };
    let mut keyring = Keyring::default();
    keyring.entries.insert(mon_name, entry(mon_key, &[("mon", "allow *")]));
    if let Some(e) = admin.get(&admin_name) {
        keyring.entries.insert(admin_name, e.clone());
    }
    for p in paths.iter().filter(|p| !p.exists()) {
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir)?;
        }
        keyring.save(p)?;
    }
    Ok(())
}

/// Runs a mon command as `client.admin`, retrying while a new cluster's auth database is
/// being initialized (EAGAIN).
async fn admin_command(rados: &Rados, cmd: serde_json::Value) -> Result<cairn_client::MonReply, Error> {
    let start = Instant::now();
    loop {
        match rados.mon_command_ok(&cmd).await {
            Err(e) if e.errno == errno::EAGAIN && start.elapsed() < AUTH_READY_TIMEOUT => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

/// `auth get-or-create` of `name` with `caps`; writes the keyring it prints to `path` (0600).
async fn create_user(rados: &Rados, name: &str, caps: &[&str], path: &Path) -> Result<(), Error> {
    let cmd = serde_json::json!({"prefix": "auth get-or-create", "entity": name, "caps": caps});
    let reply = admin_command(rados, cmd).await?;
    let keyring = Keyring::parse(&String::from_utf8_lossy(&reply.data))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    keyring.save(path)
}

/// Gives every OSD without a keyring its key (`auth get-or-create osd.N …` as the admin, with
/// the monitors running), written to its data directory.
async fn ensure_osd_keys(layout: &Layout, conf: &Conf, osds: &[u32]) -> Result<(), Error> {
    let missing: Vec<u32> =
        osds.iter().copied().filter(|id| !layout.daemon_keyring(&format!("osd.{id}")).exists()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let rados = Rados::connect_conf(conf, "client.admin").await?;
    for id in missing {
        let name = format!("osd.{id}");
        create_user(&rados, &name, &OSD_CAPS, &layout.daemon_keyring(&name)).await?;
    }
    Ok(())
}

/// `--openstack`: the pools and per-service users of the seed guides, each user's keyring in
/// `cairn.client.NAME.keyring` next to the conf (so `cairn --id glance …` finds it).
async fn setup_openstack(layout: &Layout, conf: &Conf) -> Result<(), Error> {
    let rados = Rados::connect_conf(conf, "client.admin").await?;
    for pool in OPENSTACK_POOLS {
        if rados.map().pool_by_name(pool).is_none() {
            admin_command(&rados, serde_json::json!({"prefix": "osd pool create", "pool": pool})).await?;
        }
        let enable = serde_json::json!({"prefix": "osd pool application enable", "pool": pool, "app": "rbd"});
        admin_command(&rados, enable).await?;
    }
    for (name, osd_caps) in OPENSTACK_USERS {
        let path = layout.client_keyring(name);
        create_user(&rados, name, &["mon", "allow r", "osd", osd_caps], &path).await?;
        println!("{name}: {}", path.display());
    }
    Ok(())
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
         log file = {dir}/log/$type.$id.log\n\
         # cephx between daemons, for clients, and required by clients (Ceph's defaults).\n\
         auth cluster required = cephx\n\
         auth service required = cephx\n\
         auth client required = cephx\n\
         \n\
         [client]\n\
         # `cairn up` keeps client keyrings here: cairn.client.admin.keyring, and with --openstack\n\
         # cairn.client.glance.keyring and the others. Daemons read DATA_DIR/keyring.\n\
         keyring = {dir}/cairn.$name.keyring\n",
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

fn print_next_steps(layout: &Layout, mons: usize, osds: usize, openstack: bool) {
    let conf = layout.conf_path.display();
    let users = if openstack {
        "\nOpenStack pools images, volumes, vms, backups and users client.glance, client.cinder,\n\
         client.cinder-backup, client.nova are ready (try: cairn --id glance rados -p images ls).\n"
    } else {
        ""
    };
    println!(
        "\nCairn is up: {mons} mon, {osds} osds, data in {dir}; authentication is on (cephx),\n\
         the admin key is in {admin}.{users}\n\
         Try:\n  export CAIRN_CONF={conf}\n  cairn -s\n  cairn osd pool create volumes 32\n  \
         cairn osd pool application enable volumes rbd\n  echo hello | cairn rados -p volumes put greeting -\n  \
         cairn rados -p volumes get greeting -\n  cairn auth ls\n  cairn osd tree\n\
         Stop it with: cairn down --dir {dir}",
        dir = layout.dir.display(),
        admin = layout.client_keyring("client.admin").display(),
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
